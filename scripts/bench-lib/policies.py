#!/usr/bin/env python3
"""`scripts/bench outbound --policies`: dakiya's outbound throughput and added latency with
and without a TLS policy toward the same TLS-capable sink (docs/benchmark.md, "Outbound with
policies"). Loopback only; every wait is bounded.

    policies.py --dakiya BIN --tmp DIR --out FILE [--msgs N] [--rounds R] [--probes P]

One sink for every case: a second dakiya (the same binary) with STARTTLS and a certificate
for mx.sink.test from a test CA (openssl), delivering into a Maildir (its CPU is not counted).
DNS: knotd on loopback serves sink.test (MX mx.sink.test, A 127.0.0.1), unsigned for cases
`none` and `mta-sts`, signed with ldns-signzone for `dane`. Cases, alternated in each round,
each on a fresh sending dakiya, fresh sink and fresh DNS:

  none     no policy published: opportunistic STARTTLS (tls = "mta-sts", nothing to find)
  mta-sts  `_mta-sts` TXT + an enforce policy from a loopback HTTPS server (test CA, which
           the sender trusts through outbound.tls_ca_file); tls = "mta-sts"
  dane     a TLSA 3 1 1 record for the sink's key in the signed zone, the zone's key as
           outbound.dnssec_trust_anchor; tls = "dane"

Per case and round: (1) relay: smtp-source injects N messages (20 sessions x 5 KB) while the
sender relays; msgs/s from its start to the N-th message in the sink's Maildir; (2) backlog:
N messages queued while the sink is down (first attempts refused), then the sink starts and
`dakiya queue retry --all`; msgs/s from the retry to the N-th at the sink; the sender's CPU
(utime+stime from /proc) per message over each; (3) latency: P single messages one at a time
(idle connections expire between them), from the 250 after DATA to the file at the sink; the
first is the cold one (policy fetch, DNS cold), the rest cached (median).
"""

import argparse
import hashlib
import http.server
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
DOMAIN = "sink.test"
MX = "mx.sink.test"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.sink.test\r\nmax_age: 86400\r\n"
CLK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(time.strftime("%H:%M:%S"), "policies:", msg, file=sys.stderr, flush=True)


def run(cmd, cwd=None, inp=None):
    r = subprocess.run(cmd, cwd=cwd, input=inp, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]}: {r.stderr.strip()[-300:]}")
    return r.stdout


def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((HOST, 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


def wait_port(port, secs=15):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def cputicks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def certs(d):
    """A test CA and a leaf for the MX and the policy host; the leaf key's SPKI SHA-256."""
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench test CA"], cwd=d)
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={MX}"], cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{MX},DNS:mta-sts.{DOMAIN}\n")
    run(["openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "leaf.pem", "-days", "2", "-extfile", "ext"], cwd=d)
    with open(os.path.join(d, "chain.pem"), "w") as f:
        f.write(open(os.path.join(d, "leaf.pem")).read() + open(os.path.join(d, "ca.pem")).read())
    der = subprocess.run(["openssl", "pkey", "-in", "leaf.key", "-pubout", "-outform", "DER"], cwd=d,
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


class Zone:
    """knotd serving sink.test (signed with a fresh key when `sign`) on a free port."""

    def __init__(self, d, records, sign):
        os.makedirs(d, exist_ok=True)
        self.d = d
        zone = (f"$ORIGIN {DOMAIN}.\n$TTL 300\n@ IN SOA ns.{DOMAIN}. admin.{DOMAIN}. 1 3600 600 86400 300\n"
                f"@ IN NS ns.{DOMAIN}.\nns IN A {HOST}\n{records}\n")
        open(os.path.join(d, "zone"), "w").write(zone)
        served, self.anchor = "zone", None
        if sign:
            key = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", DOMAIN], cwd=d).split()[0]
            run(["ldns-signzone", "-n", "-f", "signed", "zone", key], cwd=d)
            served, self.anchor = "signed", os.path.join(d, f"{key}.key")
        self.port = free_port()
        open(os.path.join(d, "knot.conf"), "w").write(
            f"server:\n    listen: {HOST}@{self.port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n"
            f"zone:\n  - domain: {DOMAIN}\n    file: {d}/{served}\n    journal-content: none\n"
            "    zonefile-sync: -1\n")
        self.proc = subprocess.Popen(["knotd", "-c", os.path.join(d, "knot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        stop(self.proc)


class PolicyServer:
    """HTTPS on a free loopback port answering every GET with the enforce policy."""

    def __init__(self, d):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = POLICY.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "chain.pem"), os.path.join(d, "leaf.key"))
        self.srv = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Dakiya:
    def __init__(self, binary, d, port, extra):
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        self.binary, self.d, self.port = binary, d, port
        self.cfg = os.path.join(d, "dakiya.toml")
        open(self.cfg, "w").write(
            f'hostname = "bench.test"\nallow_root = true\ndata_dir = "{d}/data"\n'
            f'trusted_networks = ["127.0.0.0/8"]\n{extra}\n'
            f'[[listen]]\naddress = "{HOST}:{port}"\nrole = "mx"\nverify = false\nrate_limits = "bench"\n'
            "[rate_limits.bench]\n[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\n"
            "max_connections_per_network = 5000\n")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.logf = open(os.path.join(d, "dakiya.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", self.cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env)
        wait_port(port)

    def retry_all(self):
        run([self.binary, "queue", "--config", self.cfg, "retry", "--all"])

    def stop(self):
        stop(self.proc)
        self.logf.close()


def sink_config(d):
    return (f'[tls]\ncert = "{d}/chain.pem"\nkey = "{d}/leaf.key"\n'
            f'[domains."{DOMAIN}"]\nmailboxes = ["user"]\n')


def sender_config(case, zone, policy_port, d, sink_port):
    out = (f'[delivery]\nretry_schedule = ["1h"]\n[outbound]\nhelo_name = "bench.test"\n'
           f'nameservers = ["{HOST}:{zone.port}"]\nsmtp_port = {sink_port}\nip_preference = "ipv4_only"\n'
           f'concurrency = 100\nper_destination = 20\nidle_timeout = "1s"\ntls_ca_file = "{d}/ca.pem"\n')
    if case == "dane":
        return out + f'tls = "dane"\ndnssec_trust_anchor = "{zone.anchor}"\n'
    return out + f'tls = "mta-sts"\nmta_sts_port = {policy_port}\n'


def records(case, spki, sink_port):
    r = f"@ IN MX 10 {MX}.\nmx IN A {HOST}\n"
    if case == "mta-sts":
        r += f'_mta-sts IN TXT "v=STSv1; id=1"\nmta-sts IN A {HOST}\n'
    if case == "dane":
        r += f"_{sink_port}._tcp.mx IN TLSA 3 1 1 {spki}\n"
    return r


def maildir_count(sink):
    try:
        return len(os.listdir(os.path.join(sink.d, "data", "mail", DOMAIN, "user", "new")))
    except FileNotFoundError:
        return 0


def wait_count(sink, n, stall=30, limit=600):
    """Seconds until the sink holds n messages (from now), or None when it stalls."""
    t0 = last_t = time.time()
    last = -1
    while True:
        c = maildir_count(sink)
        now = time.time()
        if c >= n:
            return now - t0
        if c != last:
            last, last_t = c, now
        if now - last_t > stall or now - t0 > limit:
            return None
        time.sleep(0.02)


def inject(port, n):
    return subprocess.Popen(["smtp-source", "-d", "-s", "20", "-l", "5120", "-m", str(n), "-c",
                             "-f", "bench@bench.test", "-t", f"user@{DOMAIN}", f"{HOST}:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def smtp_one(port, i):
    """One message by hand; returns the time of the 250 after DATA."""
    s = socket.create_connection((HOST, port), timeout=15)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line or line[3:4] != b"-":
                return line

    reply()
    for cmd in ["EHLO probe.test", "MAIL FROM:<bench@bench.test>", f"RCPT TO:<user@{DOMAIN}>", "DATA"]:
        s.sendall(cmd.encode() + b"\r\n")
        reply()
    s.sendall(f"Subject: probe {i}\r\n\r\nprobe\r\n.\r\n".encode())
    line = reply()
    t = time.time()
    if not line.startswith(b"250"):
        raise RuntimeError(f"probe not accepted: {line!r}")
    s.sendall(b"QUIT\r\n")
    s.close()
    return t


def measure(case, args, spki, rnd):
    d = os.path.join(args.tmp, f"{case}-{rnd}")
    os.makedirs(d, exist_ok=True)
    for f in ["ca.pem", "chain.pem", "leaf.key"]:
        os.link(os.path.join(args.tmp, f), os.path.join(d, f))
    res = {"case": case, "round": rnd}
    sink_port, sender_port = free_port(), free_port()
    zone = Zone(os.path.join(d, "zone"), records(case, spki, sink_port), case == "dane")
    policy = PolicyServer(args.tmp) if case == "mta-sts" else None
    extra = sender_config(case, zone, policy.port if policy else 443, args.tmp, sink_port)
    sink = sender = None
    try:
        # (3) latency first, on a fresh sender: the first probe is the cold one.
        sink = Dakiya(args.dakiya, os.path.join(d, "sink-lat"), sink_port, sink_config(args.tmp))
        sender = Dakiya(args.dakiya, os.path.join(d, "sender-lat"), sender_port, extra)
        lat = []
        for i in range(args.probes):
            before = maildir_count(sink)
            t = smtp_one(sender_port, i)
            while maildir_count(sink) <= before:
                if time.time() - t > 20:
                    raise RuntimeError(f"{case}: probe {i} not delivered (see {sender.d}/dakiya.log)")
                time.sleep(0.0005)
            lat.append(time.time() - t)
            time.sleep(1.3)  # past idle_timeout: the next probe opens a new connection
        res["latency_cold_ms"] = round(lat[0] * 1000, 2)
        res["latency_cached_ms"] = round(statistics.median(lat[1:]) * 1000, 2)
        sender.stop()
        sink.stop()
        # (1) relay
        sink = Dakiya(args.dakiya, os.path.join(d, "sink-relay"), sink_port, sink_config(args.tmp))
        sender = Dakiya(args.dakiya, os.path.join(d, "sender-relay"), sender_port, extra)
        c0, t0 = cputicks(sender.proc.pid), time.time()
        src = inject(sender_port, args.msgs)
        secs = wait_count(sink, args.msgs)
        src.wait(60)
        c1 = cputicks(sender.proc.pid)
        if secs is None:
            raise RuntimeError(f"{case}: relay stalled at {maildir_count(sink)} (see {sender.d}/dakiya.log)")
        secs = time.time() - t0
        res["relay_s"] = round(secs, 3)
        res["relay_msgs_per_s"] = round(args.msgs / secs, 1)
        res["relay_cpu_ms_per_msg"] = round((c1 - c0) * 1000 / CLK / args.msgs, 3)
        sender.stop()
        sink.stop()
        # (2) backlog: the sink is down while the messages are queued.
        sender = Dakiya(args.dakiya, os.path.join(d, "sender-backlog"), sender_port, extra)
        src = inject(sender_port, args.msgs)
        src.wait(300)
        time.sleep(3)  # the first attempts (connection refused) end
        sink = Dakiya(args.dakiya, os.path.join(d, "sink-backlog"), sink_port, sink_config(args.tmp))
        c0, t0 = cputicks(sender.proc.pid), time.time()
        sender.retry_all()
        secs = wait_count(sink, args.msgs)
        c1 = cputicks(sender.proc.pid)
        if secs is None:
            raise RuntimeError(f"{case}: backlog stalled at {maildir_count(sink)}")
        secs = time.time() - t0
        res["backlog_s"] = round(secs, 3)
        res["backlog_msgs_per_s"] = round(args.msgs / secs, 1)
        res["backlog_cpu_ms_per_msg"] = round((c1 - c0) * 1000 / CLK / args.msgs, 3)
    except Exception as e:  # noqa: BLE001 - reported, the other cases go on
        res["error"] = str(e)
    finally:
        for p in (sender, sink):
            if p is not None:
                p.stop()
        if policy:
            policy.stop()
        zone.stop()
    log(json.dumps(res))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dakiya", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--msgs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--cases", default="none,mta-sts,dane")
    args = ap.parse_args()
    spki = certs(args.tmp)
    results = []
    for rnd in range(1, args.rounds + 1):
        for case in args.cases.split(","):
            results.append(measure(case, args, spki, rnd))
    json.dump({"messages": args.msgs, "rounds": args.rounds, "results": results}, open(args.out, "w"), indent=1)
    print(f"{'case':8} {'round':>5} {'relay/s':>8} {'cpu ms':>7} {'backlog/s':>9} {'cpu ms':>7} "
          f"{'cold ms':>8} {'cached ms':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:8} {r['round']:>5} error: {r['error']}")
            continue
        print(f"{r['case']:8} {r['round']:>5} {r['relay_msgs_per_s']:>8} {r['relay_cpu_ms_per_msg']:>7} "
              f"{r['backlog_msgs_per_s']:>9} {r['backlog_cpu_ms_per_msg']:>7} {r['latency_cold_ms']:>8} "
              f"{r['latency_cached_ms']:>9}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
