#!/usr/bin/env python3
"""Assemble scripts/bench's per-phase fragments into a table and results.json.

    report.py RESULTS_DIR OUT_JSON key=value...

RESULTS_DIR/order lists the servers in run order; RESULTS_DIR/<server>/{meta,idle,smtp_source,
loadgen}.json are the fragments. RESULTS_DIR/tls-auth/ holds dakiya's TLS/AUTH phase (a second
table), RESULTS_DIR/outbound/ the outbound scenario (a third: RESULTS_DIR/outbound/order and
RESULTS_DIR/outbound/<server>/{meta,relay,backlog,cpu-*,sink-*}.json), RESULTS_DIR/auth/ the
message-authentication scenario (a fourth; authreport.py), RESULTS_DIR/spam/ the spam-controls
scenario (spamreport.py), RESULTS_DIR/pop3/ the POP3 scenario (pop3report.py). The key=value
pairs describe the run.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

from jsonfiles import read_order
from authreport import auth_phase, print_auth_table
from spamreport import print_spam_table, spam_phase
from pop3report import pop3_phase, print_pop3_table


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None



def load_quiet(d):
    """The machine's quiet checks taken before each phase: quiet-PHASE.json files in `d`."""
    quiet = {}
    for fn in sorted(os.listdir(d)):
        if fn.startswith("quiet-") and fn.endswith(".json"):
            v = load(os.path.join(d, fn))
            if v is not None:
                quiet[fn[len("quiet-"):-len(".json")]] = v
    return quiet

def fmt_rate(x):
    return "-" if x is None else f"{x:.0f}"


def fmt_ms(x):
    return "-" if x is None else (f"{x:.2f}ms" if x < 10 else f"{x:.1f}ms")


def fmt_bytes(x):
    return "-" if x is None else str(x)


def fmt_cpu(x):
    return "-" if x is None else f"{x:.3f}"


def per_op(cpu, count):
    """ms of CPU per operation, or None."""
    if cpu is None or not count:
        return None
    return round(1000 * cpu / count, 3)


# The TLS/AUTH phase: (file key, label, unit, count field of the loadgen output).
TLS_ROWS = [
    ("starttls", "STARTTLS+AUTH, {sessions} x {size} B", "msgs/s", "messages_incl_warmup"),
    ("implicit", "implicit TLS+AUTH, {sessions} x {size} B", "msgs/s", "messages_incl_warmup"),
    ("handshakes", "TLS handshakes, {handshake_workers} workers", "/s", "ops_incl_warmup"),
    ("plain-conns", "plain connections, {handshake_workers} workers", "/s", "ops_incl_warmup"),
    ("auth", "AUTH PLAIN, {auth_workers} workers", "/s", "ops_incl_warmup"),
]


def tls_phase(res_dir, plain_loadgen):
    """Collects RESULTS_DIR/tls-auth into one dict (for results.json) and derives the cost of
    one handshake and of one AUTH. plain_loadgen: (server CPU ms/msg, msgs/s) of the plain-text
    loadgen run in the first table, for comparison, or None."""
    d = os.path.join(res_dir, "tls-auth")
    t = load(os.path.join(d, "meta.json"))
    if t is None:
        return None
    if t.get("status") != "ok":
        return t
    for key, _, _, count in TLS_ROWS:
        r = load(os.path.join(d, key + ".json"))
        if r is None:
            continue
        c = load(os.path.join(d, f"cpu-{key}.json"))
        if c is not None:
            r["cpu"] = c
            r["server_cpu_ms_per_op"] = per_op(c.get("server_cpu_s"), r.get(count))
            r["client_cpu_ms_per_op"] = per_op(c.get("client_cpu_s"), r.get(count))
        t[key] = r
    for n in (1, 2):
        # The unreported warm-up run on each fresh server (its messages count for delivery).
        w = load(os.path.join(d, f"warmup-{n}.json"))
        if w is not None:
            w["cpu"] = load(os.path.join(d, f"cpu-warmup-{n}.json"))
            t[f"server_warmup_{n}"] = w
    try:
        t["partial"] = open(os.path.join(d, "partial")).read().strip()
    except OSError:
        pass
    quiet = load_quiet(d)
    if quiet:
        t["machine_before_phase"] = quiet
    delivered = []
    for n in (1, 2):
        try:
            delivered.append(int(open(os.path.join(d, f"delivered-{n}")).read().strip()))
        except (OSError, ValueError):
            pass
    if len(delivered) == 2:
        t["delivered"] = sum(delivered)
    loads = [t.get(k) or {} for k in ("server_warmup_1", "starttls", "server_warmup_2", "implicit")]
    if "delivered" in t and all("messages_incl_warmup" in x for x in loads):
        t["accepted"] = sum(x["messages_incl_warmup"] for x in loads)

    def cpu(key):
        return (t.get(key) or {}).get("server_cpu_ms_per_op")
    derived = {}
    hs, plain, auth = cpu("handshakes"), cpu("plain-conns"), cpu("auth")
    for key in ("starttls", "implicit"):
        # The server CPU of a load run includes its SESSIONS session set-ups: a TLS handshake
        # and an argon2 AUTH each, ~20 ms of CPU apiece, which would add a few percent to the
        # per-message figure of a short run. Subtract them, counted as one AUTH cycle each.
        r = t.get(key) or {}
        c = r.get("cpu") or {}
        if auth is not None and r.get("messages_incl_warmup") and c.get("server_cpu_s") is not None:
            setup_s = r.get("session_setups", 0) * auth / 1000
            r["server_cpu_ms_per_msg_setups_excluded"] = per_op(
                max(0.0, c["server_cpu_s"] - setup_s), r["messages_incl_warmup"])
    if hs is not None and plain is not None:
        # A handshake cycle is connect, handshake, 220, QUIT, 221, close; the plain cycle is the
        # same without TLS. The difference is what the TLS handshake itself costs the server.
        derived["server_cpu_ms_per_tls_handshake"] = round(hs - plain, 3)
    if auth is not None and hs is not None:
        # An AUTH cycle is a handshake cycle plus EHLO and AUTH PLAIN.
        derived["server_cpu_ms_per_auth"] = round(auth - hs, 3)
    if plain_loadgen is not None:
        derived["plain_loadgen_server_cpu_ms_per_msg"] = plain_loadgen[0]
        derived["plain_loadgen_msgs_per_s"] = plain_loadgen[1]
    if derived:
        t["derived"] = derived
    return t


def print_tls_table(t):
    print()
    print("dakiya over TLS with AUTH (Postfix: not measured; it has no SASL set up in this benchmark)")
    if t is None:
        return
    if t.get("status") != "ok":
        print(f"{t.get('status', '?')}: {t.get('reason', '')}")
        return
    if not any(t.get(k) for k, _, _, _ in TLS_ROWS):
        print("no results" + (f": {t['partial']}" if t.get("partial") else ""))
        return
    cols = ["test", "rate", "p50", "p90", "p99", "max", "server-cpu-ms/op", "client-cpu-ms/op"]
    rows, notes = [], []
    for key, label, unit, _ in TLS_ROWS:
        r = t.get(key) or {}
        label = label.format(**t)
        lat = r.get("latency_ms") or {}
        rate = r.get("msgs_per_s", r.get("ops_per_s"))
        srv = r.get("server_cpu_ms_per_msg_setups_excluded", r.get("server_cpu_ms_per_op"))
        rows.append([
            label,
            "-" if rate is None else f"{rate:.0f} {unit}" if unit != "/s" else f"{rate:.0f}/s",
            fmt_ms(lat.get("p50")), fmt_ms(lat.get("p90")), fmt_ms(lat.get("p99")),
            fmt_ms(lat.get("max")),
            fmt_cpu(srv), fmt_cpu(r.get("client_cpu_ms_per_op")),
        ])
        if r.get("error"):
            notes.append(f"{key}: {r['error']}")
        if r.get("errors"):
            notes.append(f"{key}: {r['errors']} error(s); first: {r.get('first_error')}")
        c = r.get("cpu") or {}
        if c.get("other_cpu_s", 0) > 0.25 * c.get("wall_s", 0) * (os.cpu_count() or 1):
            notes.append(f"{key}: {c['other_cpu_s']} CPU-s of {c['machine_cpu_s']} went to other "
                         f"processes or the kernel ({c['wall_s']} s run): something else was running")
    for tag, q in (t.get("machine_before_phase") or {}).items():
        if tag.startswith(("start", "end", "warmup")):
            continue  # not measurements
        other = q.get("busy_pct", 0) - q.get("server_pct", 0)
        if q.get("busy_pct", 0) >= 15 and other >= 10:
            notes.append(f"before {tag} the machine was still {q['busy_pct']}% busy "
                         f"({other}% not the server): that row's figures are low")
    if t.get("partial"):
        notes.append(t["partial"])
    if "accepted" in t and t["delivered"] < t["accepted"]:
        notes.append(f"only {t['delivered']} of {t['accepted']} accepted messages were delivered "
                     "to the Maildir after the run")
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()
    print(line(cols))
    for r in rows:
        print(line(r))
    print()
    tls = next((t[k].get("tls") for k in ("handshakes", "implicit", "starttls")
                if (t.get(k) or {}).get("tls")), None)
    print(f"submission (STARTTLS) on {t.get('submission_port')}, submissions (implicit TLS) on "
          f"{t.get('submissions_port')}, plain connections on the mx port {t.get('mx_port')}; "
          f"{tls or 'TLS ?'}, self-signed ECDSA P-256 certificate, full handshakes (no "
          "resumption). The STARTTLS row ran on one fresh server, the other rows on a second; "
          f"each server first had {t.get('server_warmup_s')} s of unreported load. p50..max: messages = MAIL FROM to the 250 after the final dot; "
          "handshakes and plain connections = connect() to the 220 banner; AUTH = AUTH PLAIN "
          "to the 235. cpu-ms/op: CPU time per message (the server's: without the session set-ups, "
          "counted as one AUTH cycle each), per connection cycle (connect, [TLS], 220, QUIT, "
          "close), per AUTH cycle (the same plus EHLO and AUTH PLAIN); warm-up included.")
    dv = t.get("derived") or {}
    parts = []
    if "server_cpu_ms_per_tls_handshake" in dv:
        parts.append(f"one TLS handshake ≈ {dv['server_cpu_ms_per_tls_handshake']:.3f} ms "
                     "(handshake cycle minus plain connection cycle)")
    if "server_cpu_ms_per_auth" in dv:
        parts.append(f"one AUTH PLAIN ≈ {dv['server_cpu_ms_per_auth']:.3f} ms "
                     "(AUTH cycle minus handshake cycle; argon2id)")
    if "plain_loadgen_server_cpu_ms_per_msg" in dv:
        parts.append(f"in clear text the loadgen run above cost {dv['plain_loadgen_server_cpu_ms_per_msg']:.3f} ms "
                     f"per message at {dv['plain_loadgen_msgs_per_s']:.0f} msgs/s")
    if parts:
        print("server CPU: " + "; ".join(parts) + ".")
    for n in notes:
        print(f"note: tls-auth: {n}")


def outbound_phase(res_dir):
    """Collects RESULTS_DIR/outbound (the outbound scenario) into one dict, or None."""
    d = os.path.join(res_dir, "outbound")
    o = load(os.path.join(d, "meta.json"))
    if o is None:
        return None
    order = read_order(d)
    servers = []
    n = o.get("messages")
    for name in order:
        sd = os.path.join(d, name)
        s = load(os.path.join(sd, "meta.json")) or {"name": name, "status": "unknown"}
        for phase in ("relay", "backlog"):
            r = load(os.path.join(sd, phase + ".json"))
            if r is None:
                continue
            cpu = load(os.path.join(sd, f"cpu-{phase}.json"))
            if cpu is not None:
                r["cpu"] = cpu
                if r.get("reached") and n:
                    # relay: accepting and delivering N messages; backlog: delivering them.
                    r["server_cpu_ms_per_msg"] = per_op(cpu.get("server_cpu_s"), n)
            sink = load(os.path.join(sd, f"sink-{phase}.json"))
            if sink is not None:
                r["sink"] = sink
                if sink.get("sess"):
                    r["sink_sessions"] = sink["sess"]
                    r["msgs_per_session"] = round(sink.get("mesg", 0) / sink["sess"], 1)
            if phase == "relay" and r.get("inject_s") and n and r.get("inject_rc") == 0:
                r["inject_msgs_per_s"] = round(n / r["inject_s"], 1)
            if phase == "backlog":
                ic = load(os.path.join(sd, "cpu-backlog-inject.json"))
                if ic is not None:
                    r["inject_cpu"] = ic
                    if r.get("queue_inject_s") and n:
                        r["queue_inject_msgs_per_s"] = round(n / float(r["queue_inject_s"]), 1)
            s[phase] = r
        quiet = {}
        if os.path.isdir(sd):
            for fn in sorted(os.listdir(sd)):
                if fn.startswith("quiet-") and fn.endswith(".json"):
                    v = load(os.path.join(sd, fn))
                    if v is not None:
                        quiet[fn[len("quiet-"):-len(".json")]] = v
        if quiet:
            s["machine_before_phase"] = quiet
        servers.append(s)
    o["servers"] = servers
    return o


def print_outbound_table(o):
    print()
    print(f"outbound: relay to the same smtp-sink, {o.get('messages')} x {o.get('size')} B")
    if o.get("status") != "ok":
        print(f"{o.get('status', '?')}: {o.get('reason', '')}")
        return
    cols = ["server", "relay msgs/s", "relay s", "in msgs/s", "sessions", "msgs/sess",
            "max-conns", "cpu-ms/msg", "backlog msgs/s", "backlog sessions", "backlog cpu-ms/msg"]
    rows, notes = [], []
    fr = lambda x: "-" if x is None else f"{x:.0f}"
    for s in o.get("servers", []):
        name = s.get("name", "?")
        if s.get("status") == "skipped":
            rows.append([name, f"skipped: {s.get('reason', '')}"])
            continue
        r, b = s.get("relay") or {}, s.get("backlog") or {}
        ok, bok = r.get("reached"), b.get("reached")
        rows.append([
            name,
            fr(r.get("msgs_per_s")) if ok else "-",
            "-" if not ok else f"{r['seconds']:.1f}",
            fr(r.get("inject_msgs_per_s")),
            str(r.get("sink_sessions", "-")) if ok else "-",
            "-" if not ok or r.get("msgs_per_session") is None else f"{r['msgs_per_session']:.0f}",
            str(r.get("max_conns", "-")) if ok else "-",
            fmt_cpu(r.get("server_cpu_ms_per_msg")),
            fr(b.get("msgs_per_s")) if bok else "-",
            str(b.get("sink_sessions", "-")) if bok else "-",
            fmt_cpu(b.get("server_cpu_ms_per_msg")),
        ])
        for phase, v in (("relay", r), ("backlog", b)):
            if v.get("error"):
                notes.append(f"{name}: {phase}: {v['error']}")
        for tag, q in (s.get("machine_before_phase") or {}).items():
            if tag not in ("relay", "backlog"):
                continue
            other = q.get("busy_pct", 0) - q.get("server_pct", 0)
            if q.get("busy_pct", 0) >= 15 and other >= 10:
                notes.append(f"{name}: before {tag} the machine was still {q['busy_pct']}% busy "
                             f"({other}% not the server): that figure is low")
    widths = [len(c) for c in cols]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    for r in rows:
        if len(r) == len(cols):
            widths = [max(w, len(x)) for w, x in zip(widths, r)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()
    print(line(cols))
    for r in rows:
        print(line(r) if len(r) == len(cols) else f"{r[0].ljust(widths[0])}  {r[1]}")
    print()
    print(f"Each server relays {o.get('messages')} messages for {o.get('domain')} (injected with "
          f"`{o.get('inject_command')}`) to `{o.get('sink_command')}`, at most "
          f"{o.get('per_destination')} connections to it. relay = from the injection's start to "
          "the N-th message at the sink (end to end); in msgs/s = the injection's own rate "
          "meanwhile; sessions = SMTP sessions the sink saw (connection reuse: msgs/sess); "
          "max-conns = most connections open at once; cpu-ms/msg = the server's CPU per message "
          "(accept + queue + deliver). backlog = delivery only: N messages queued with delivery "
          "held, then released (Postfix: hold queue, then postsuper -H ALL; postqueue -f; dakiya: "
          "first attempts refused by a closed port, restart with the route to the sink, then "
          "dakiya queue retry --all), from the release to the N-th at the sink; its "
          "cpu-ms/msg is delivery alone.")
    for n in notes:
        print(f"note: outbound: {n}")


def cpu_comparison(servers):
    """The rows of the CPU-per-message comparison (every server with a complete smtp-source
    run) and dakiya's ratio to each Postfix baseline."""
    rows = []
    for s in servers:
        src = s.get("smtp_source") or {}
        if s.get("status") == "skipped" or src.get("error") or not src.get("messages"):
            continue
        rows.append({"name": s.get("name"), "delivery": s.get("delivery", ""),
                     "msgs_per_s": src.get("msgs_per_s"),
                     "cpu_ms_per_msg": s.get("server_cpu_ms_per_msg_to_delivered"),
                     "cpu_ms_per_msg_run_only": s.get("server_cpu_ms_per_msg"),
                     "settle_s": src.get("settle_s"), "fs": s.get("fs"),
                     "disk": src.get("disk") or {}})
    ratios = []
    ours = next((r for r in rows if r["name"] == "dakiya"), None)
    for r in rows:
        if ours is None or not r["name"].startswith("postfix"):
            continue
        x = {"vs": r["name"]}
        if ours["msgs_per_s"] and r["msgs_per_s"]:
            x["msgs_per_s_ratio"] = round(ours["msgs_per_s"] / r["msgs_per_s"], 2)
        if ours["cpu_ms_per_msg"] and r["cpu_ms_per_msg"]:
            x["cpu_per_msg_ratio"] = round(ours["cpu_ms_per_msg"] / r["cpu_ms_per_msg"], 3)
        ratios.append(x)
    return {"rows": rows, "dakiya_ratios": ratios}


def fs_text(fs):
    if not fs:
        return "?"
    j = {True: "journal", False: "no journal", None: "journal ?"}[fs.get("journal")]
    return f"{fs.get('fstype')} {fs.get('source')}, {j}" + (", fresh" if fs.get("fresh") else "")


def print_cpu_comparison(cmp, sessions, size):
    rows = cmp["rows"]
    if not rows:
        return
    print()
    print(f"msgs/s and server CPU per message (smtp-source, {sessions} x {size} B), CPU counted until "
          "the server had delivered them")
    cols = ["server", "does with a message", "msgs/s", "cpu-ms/msg", "of it after the run",
            "journal commits/msg", "device flushes/msg", "data directory's file system"]
    out = []
    per = lambda d, k: "-" if d.get(k) is None else f"{d[k]:.3f}"
    for r in rows:
        after = None
        if r["cpu_ms_per_msg"] is not None and r["cpu_ms_per_msg_run_only"] is not None:
            after = r["cpu_ms_per_msg"] - r["cpu_ms_per_msg_run_only"]
        out.append([r["name"], r["delivery"] or "?", fmt_rate(r["msgs_per_s"]),
                    fmt_cpu(r["cpu_ms_per_msg"]), fmt_cpu(after),
                    per(r["disk"], "journal_commits_per_msg"), per(r["disk"], "device_flushes_per_msg"),
                    fs_text(r["fs"])])
    widths = [max(len(c), *(len(x[i]) for x in out)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()
    print(line(cols))
    for r in out:
        print(line(r))
    for x in cmp["dakiya_ratios"]:
        parts = []
        if "msgs_per_s_ratio" in x:
            parts.append(f"{x['msgs_per_s_ratio']:.2f}x the msgs/s")
        if "cpu_per_msg_ratio" in x:
            parts.append(f"{x['cpu_per_msg_ratio']:.3f}x the CPU per message "
                         f"({x['vs']} uses {1 / x['cpu_per_msg_ratio']:.1f}x dakiya's)")
        if parts:
            print(f"dakiya vs {x['vs']}: " + ", ".join(parts))
    print("cpu-ms/msg: utime+stime of the server's whole process tree (Postfix: master and every "
          "child, with the children that exited during the run counted through master's "
          "cutime/cstime), from the start of the timed smtp-source run until its deliveries were "
          "done (queue empty, or the server idle), divided by the messages of the run; 'of it "
          "after the run': the part of that spent after smtp-source had finished (delivery "
          "backlog). Kernel threads (writeback, jbd2, the loop device) are not counted. "
          "journal commits/msg and device flushes/msg (--fresh-fs only: the server's own image): "
          "the image's jbd2 commits and its loop device's completed cache flushes over the same "
          "interval, per message.")


def postfix_version():
    try:
        return subprocess.run(["postconf", "-dh", "mail_version"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    res_dir, out_json = sys.argv[1], sys.argv[2]
    run = {}
    for kv in sys.argv[3:]:
        k, _, v = kv.partition("=")
        try:
            run[k] = json.loads(v)
        except ValueError:
            run[k] = v
    run["timestamp"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run["machine"] = {"nproc": os.cpu_count(), "kernel": platform.release(),
                      "postfix_version": postfix_version()}
    order = read_order(res_dir)

    servers = []
    for name in order:
        d = os.path.join(res_dir, name)
        s = load(os.path.join(d, "meta.json")) or {"name": name, "status": "unknown"}
        for phase in ("idle", "smtp_source", "loadgen"):
            v = load(os.path.join(d, phase + ".json"))
            if v is not None:
                s[phase] = v
        quiet = load_quiet(d)
        if quiet:
            s["machine_before_phase"] = quiet
        for phase in ("smtp-source", "loadgen"):
            v = load(os.path.join(d, f"cpu-{phase}.json"))
            if v is not None:
                s.setdefault("cpu", {})[phase] = v
        cpu_src = (s.get("cpu") or {}).get("smtp-source")
        src0 = s.get("smtp_source") or {}
        if cpu_src and src0.get("messages") and not src0.get("error"):
            # Server CPU per accepted message: steadier than msgs/s on a shared 2-core machine.
            s["server_cpu_ms_per_msg"] = round(1000 * cpu_src["server_cpu_s"] / src0["messages"], 3)
        fs = load(os.path.join(d, "fs.json"))
        if fs is not None:
            s["fs"] = fs
        if src0.get("server_cpu_s_to_delivered") is not None and src0.get("messages") and not src0.get("error"):
            s["server_cpu_ms_per_msg_to_delivered"] = round(
                1000 * src0["server_cpu_s_to_delivered"] / src0["messages"], 3)
        for key in ("delivered",):
            try:
                s[key] = int(open(os.path.join(d, key)).read().strip())
            except (OSError, ValueError):
                pass
        src, lg = s.get("smtp_source") or {}, s.get("loadgen") or {}
        if "delivered" in s and not src.get("error") and not lg.get("error") and "messages" in src:
            s["accepted"] = (src["messages"] + src.get("warmup_messages", 0)
                             + src.get("discarded_run_messages", 0)
                             + lg.get("messages_incl_warmup", 0))
        servers.append(s)
    run["servers"] = servers
    cmp = cpu_comparison(servers)
    if cmp["rows"]:
        run["cpu_comparison"] = cmp
    plain_lg = None
    for s in servers:
        if s.get("name") == "dakiya" and s.get("status") != "skipped":
            lg, c = s.get("loadgen") or {}, (s.get("cpu") or {}).get("loadgen") or {}
            ms = per_op(c.get("server_cpu_s"), lg.get("messages_incl_warmup"))
            if ms is not None and not lg.get("error"):
                plain_lg = (ms, lg.get("msgs_per_s"))
    tls = tls_phase(res_dir, plain_lg)
    if tls is not None:
        run["tls_auth"] = tls
    outbound = outbound_phase(res_dir)
    if outbound is not None:
        run["outbound"] = outbound
    auth = auth_phase(res_dir)
    if auth is not None:
        run["auth"] = auth
    spam = spam_phase(res_dir)
    if spam is not None:
        run["spam"] = spam
    pop3 = pop3_phase(res_dir)
    if pop3 is not None:
        run["pop3"] = pop3

    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(run, f, indent=2)
        f.write("\n")

    cols = ["server", "msgs/s(smtp-source)", "msgs/s(loadgen)", "p50", "p99", "idle-conn-bytes",
            "p90", "max", "idle-conn-pss", "cpu-ms/msg"]
    rows, notes = [], []
    for s in servers:
        name = s.get("name", "?")
        if s.get("status") == "skipped":
            rows.append([name, f"skipped: {s.get('reason', '')}"])
            continue
        src, lg, idle = s.get("smtp_source") or {}, s.get("loadgen") or {}, s.get("idle") or {}
        lat = lg.get("latency_ms") or {}
        rows.append([
            name,
            fmt_rate(src.get("msgs_per_s")),
            fmt_rate(lg.get("msgs_per_s")),
            fmt_ms(lat.get("p50")),
            fmt_ms(lat.get("p99")),
            fmt_bytes(idle.get("rss_per_conn")),
            fmt_ms(lat.get("p90")),
            fmt_ms(lat.get("max")),
            fmt_bytes(idle.get("pss_per_conn")),
            "-" if s.get("server_cpu_ms_per_msg") is None else f"{s['server_cpu_ms_per_msg']:.3f}",
        ])
        if s.get("status") == "partial":
            notes.append(f"{name}: {s.get('reason')}")
        for phase, v in (("smtp-source", src), ("loadgen", lg), ("idle", idle)):
            if v.get("error"):
                notes.append(f"{name}: {phase}: {v['error']}")
        if lg.get("errors"):
            notes.append(f"{name}: loadgen: {lg['errors']} failed transaction(s), "
                         f"{lg.get('reconnects', 0)} reconnect(s); first: {lg.get('first_error')}")
        if "accepted" in s and s["delivered"] < s["accepted"]:
            notes.append(f"{name}: only {s['delivered']} of {s['accepted']} accepted messages "
                         "were delivered to the Maildir after the run")
        for phase, c in (s.get("cpu") or {}).items():
            # A large share of the machine went to neither the server nor the load tool.
            # (Some of it is the kernel working for the server: ext4 journal and writeback
            # threads. A quarter of the machine is more than that.)
            if c.get("other_cpu_s", 0) > 0.25 * c.get("wall_s", 0) * (os.cpu_count() or 1):
                notes.append(f"{name}: during {phase}, {c['other_cpu_s']} CPU-s of "
                             f"{c['machine_cpu_s']} went to other processes or the kernel "
                             f"({c['wall_s']} s run): something else was running")
        for tag, q in (s.get("machine_before_phase") or {}).items():
            if tag not in ("idle", "smtp-source", "loadgen"):
                continue  # "start" and "end" are not measurements
            other = q.get("busy_pct", 0) - q.get("server_pct", 0)
            if q.get("busy_pct", 0) >= 15 and other >= 10:
                notes.append(f"{name}: before {tag} the machine was still {q['busy_pct']}% busy "
                             f"({other}% not the server): that phase's figures are low")
        if idle.get("failed"):
            notes.append(f"{name}: idle: {idle['failed']} of {idle.get('conns')} connections failed")

    widths = [len(c) for c in cols]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    for r in rows:
        if len(r) == len(cols):
            widths = [max(w, len(x)) for w, x in zip(widths, r)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()
    if rows:
        print()
        print(line(cols))
        for r in rows:
            print(line(r) if len(r) == len(cols) else f"{r[0].ljust(widths[0])}  {r[1]}")
    print()
    summary = f"{run.get('mode')} run, {run.get('seconds')} s"
    if rows:
        summary += (f"; {run.get('sessions')} sessions x {run.get('size')} B; latency = MAIL FROM "
                    "to the 250 after the final dot (loadgen); idle = per connection after EHLO, "
                    f"{run.get('idle_conns')} connections (bytes = summed RSS delta, pss = summed "
                    "PSS delta); cpu-ms/msg = the server's CPU time per message during the "
                    "smtp-source run (without the deliveries still due after it: see the next table)")
    print(summary + ".")
    fb, fa = run.get("fsync_before") or {}, run.get("fsync_after") or {}
    if fb:
        print(f"disk: 5 KB create+write+fsync {fb.get('mean_ms')} ms mean before the run, "
              f"{fa.get('mean_ms', '?')} ms after.")
    for n in notes:
        print(f"note: {n}")
    print_cpu_comparison(cmp, run.get("sessions"), run.get("size"))
    tf = run.get("tmp_fs")
    if isinstance(tf, dict):
        print(f"temp directory {tf.get('dir')}: {fs_text(tf)}" + (
            "" if run.get("fresh_fs") else " (without --fresh-fs every server's data is there; on "
            "ext4 without a journal, files deleted in the minutes before a run slow its file "
            "creation: docs/performance.md section 5)"))
    if tls is not None and tls.get("status") == "off":
        print(f"\nTLS/AUTH phase not run: {tls.get('reason')}")
    elif tls is not None:
        print_tls_table(tls)
    if outbound is not None:
        print_outbound_table(outbound)
    if auth is not None:
        print_auth_table(auth)
    if spam is not None:
        print_spam_table(spam)
    if pop3 is not None:
        print_pop3_table(pop3)
    print(f"raw numbers: {out_json}")


if __name__ == "__main__":
    main()
