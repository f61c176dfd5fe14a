#!/usr/bin/env python3
"""The POP3 scenario's client and meters (`scripts/bench pop3`, docs/benchmark.md, "POP3").

    pop3bench.py maildir DIR N SIZE
        N messages of SIZE bytes (LF line ends) in DIR/{tmp,new,cur}, named as dakiya's local
        delivery names them (docs/maildir.md: SECS.MUSECPpidQn.host,S=SIZE,W=CRLFSIZE), in new/.
    pop3bench.py retr --port P --user U --password-file F --expect N --window W --pids PID...
        One download of the whole maildrop: greeting, CAPA, USER/PASS, STAT, UIDL, LIST, then
        RETR 1..N (W commands outstanding when the server announces PIPELINING in CAPA,
        lock-step otherwise), no DELE, QUIT. Prints JSON: seconds (connect to the QUIT reply),
        retr_s (first RETR sent to last RETR answer), messages, bytes (the multi-line bodies as
        received), the client's own CPU, and the server tree's CPU (see `ticks`).
    pop3bench.py idle --port P --conns K --pids PID...
        K connections that read the greeting, send CAPA and read its answer, then wait; prints
        JSON with the server tree's RSS/PSS before and after (memstat.py's counting) and PSS per
        connection.
    pop3bench.py lmtp --new DIR --target N --mta PID... --dovecot PID... [--stall S] -- CMD...
        Runs CMD (the injector), and waits until DIR holds N files; prints JSON: seconds from
        CMD's start to the N-th file, the first file, the injector's exit, and the CPU of the
        MTA's tree, Dovecot's tree and the injector.

CPU of a tree (`ticks`): utime+stime+cutime+cstime of every process in it, so that the
processes Dovecot and Postfix fork per connection or per delivery and reap before the end of a
measurement are counted too (their time moves to the parent's cutime/cstime when reaped).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memstat  # noqa: E402  (same directory)

HZ = os.sysconf("SC_CLK_TCK")


def ticks(roots) -> int:
    """CPU clock ticks of the trees under `roots`, reaped children included."""
    return memstat.cputicks(memstat.tree(roots))


def tree_mem(roots) -> dict:
    """RSS and PSS summed over the trees under `roots` (memstat.py `mem`)."""
    pids = memstat.tree(roots)
    rss = pss = 0
    for pid in pids:
        r, p = memstat.mem(pid)
        rss, pss = rss + r, pss + p
    return {"procs": len(pids), "rss": rss, "pss": pss}


def settle(roots, limit: float) -> None:
    """Waits (<= limit s) until the trees use < 5% of one CPU over 0.5 s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        a = ticks(roots)
        time.sleep(0.5)
        if (ticks(roots) - a) / HZ / 0.5 < 0.05:
            return


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------------------------
# maildir


def make_maildir(d: str, n: int, size: int) -> None:
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    now = int(time.time()) - n  # oldest first, one second apart: a stable order
    pid = os.getpid()
    for i in range(n):
        head = (
            f"Return-Path: <a@bench.test>\nDelivered-To: b@bench.test\n"
            f"Received: from loadgen.bench.test (localhost [127.0.0.1])\n\tby bench.test with ESMTP id B{i:07d}\n"
            f"From: a@bench.test\nTo: b@bench.test\nSubject: bench message {i}\n"
            f"Message-ID: <{i}.{pid}@bench.test>\n\n"
        ).encode()
        # Body: 75-character lines; every 20th starts with a dot (dot-stuffed on the wire).
        body = bytearray()
        k = 0
        while len(head) + len(body) < size:
            line = (b"." if k % 20 == 0 else b"x") + b"abcdefghijklmnopqrstuvwxyz0123456789"[: 36] * 2 + b"\n"
            body += line
            k += 1
        data = (head + bytes(body))[: size - 1] + b"\n"
        crlf_size = len(data) + data.count(b"\n")
        name = f"{now + i}.M{i % 1000000}P{pid}Q{i + 1}.bench.test,S={len(data)},W={crlf_size}"
        path = os.path.join(d, "new", name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (now + i, now + i))


# --------------------------------------------------------------------------------------------
# POP3 client


class Pop3:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.received = 0

    def _fill(self) -> None:
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.received += len(chunk)
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            self._fill()

    def ok(self) -> bytes:
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise RuntimeError(f"server said {ln[:200]!r}")
        return ln

    def multi(self) -> bytes:
        """The rest of a multi-line answer after its status line, up to '.' CRLF."""
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return b""
            if i >= 0:
                out = bytes(self.buf[: i + 2])
                del self.buf[: i + 5]
                return out
            self._fill()

    def cmd(self, line: str) -> bytes:
        self.s.sendall(line.encode() + b"\r\n")
        return self.ok()


def count_terminators(p: Pop3, want: int) -> int:
    """Consumes `want` complete RETR answers (+OK line, body, '.' CRLF) from the stream without
    parsing each body: dot-stuffing guarantees that CRLF '.' CRLF only ends an answer. Returns
    the bytes consumed. Checks that every answer started with +OK."""
    done = 0
    used = 0
    while done < want:
        # One answer at a time, but found with bytes.find over a large buffer: cheap.
        start = 0
        while done < want:
            if not p.buf.startswith(b"+OK", start):
                if len(p.buf) - start < 3:
                    break
                raise RuntimeError(f"RETR answer {done + 1}: {bytes(p.buf[start:start + 100])!r}")
            j = p.buf.find(b"\r\n", start)
            if j < 0:
                break
            k = p.buf.find(b"\r\n.\r\n", j)
            if k < 0:
                # An empty body: '+OK ...' CRLF '.' CRLF.
                if p.buf.startswith(b".\r\n", j + 2):
                    k = j
                else:
                    break
            start = k + 5
            done += 1
        used += start
        del p.buf[:start]
        if done < want:
            p._fill()
    return used


def retr_pass(args) -> dict:
    password = open(args.password_file).read().strip()
    roots = args.pids
    cpu0, self0, t0 = ticks(roots), self_cpu(), time.monotonic()
    p = Pop3(args.port)
    p.ok()
    p.cmd("CAPA")
    capa = p.multi().decode(errors="replace").split("\r\n")
    pipelining = any(c.strip().upper() == "PIPELINING" for c in capa)
    p.cmd(f"USER {args.user}")
    p.cmd(f"PASS {password}")
    stat = p.cmd("STAT").split()
    count = int(stat[1])
    p.cmd("UIDL")
    uidl = p.multi().count(b"\r\n")
    p.cmd("LIST")
    listed = p.multi().count(b"\r\n")
    if count != args.expect or uidl != count or listed != count:
        raise RuntimeError(f"STAT says {count}, UIDL {uidl}, LIST {listed} messages; expected {args.expect}")
    window = args.window if pipelining else 1
    t1 = time.monotonic()
    sent = got = 0
    body_bytes = 0
    while got < count:
        burst = []
        while sent < count and sent - got < window:
            sent += 1
            burst.append(f"RETR {sent}\r\n")
        if burst:
            p.s.sendall("".join(burst).encode())
        # Wait for at least half the window (or the rest) before refilling it.
        want = min(sent - got, max(1, window // 2))
        body_bytes += count_terminators(p, want)
        got += want
    t2 = time.monotonic()
    p.s.sendall(b"QUIT\r\n")
    p.ok()
    p.s.close()
    t3 = time.monotonic()
    time.sleep(0.3)  # a forked server process exits and is reaped
    cpu1, self1 = ticks(roots), self_cpu()
    server_s = (cpu1 - cpu0) / HZ
    return {
        "messages": count,
        "bytes": body_bytes,
        "seconds": round(t3 - t0, 3),
        "retr_s": round(t2 - t1, 3),
        "msgs_per_s": round(count / (t3 - t0), 1),
        "mb_per_s": round(body_bytes / (t3 - t0) / 1e6, 2),
        "pipelining": pipelining,
        "window": window,
        "server_cpu_s": round(server_s, 3),
        "server_cpu_us_per_msg": round(server_s / count * 1e6, 1),
        "client_cpu_s": round(self1 - self0, 3),
        "client_cpu_us_per_msg": round((self1 - self0) / count * 1e6, 1),
    }


# --------------------------------------------------------------------------------------------
# idle connections


def idle(args) -> dict:
    before = tree_mem(args.pids)
    conns, failed = [], 0
    for _ in range(args.conns):
        try:
            p = Pop3(args.port)
            p.s.settimeout(30)
            p.ok()
            p.cmd("CAPA")
            p.multi()
            conns.append(p)
        except (OSError, RuntimeError, ConnectionError):
            failed += 1
    # Let a forking server finish setting up its per-connection processes.
    settle(args.pids, 10)
    after = tree_mem(args.pids)
    still = 0
    for p in conns:
        # Still open? A closed connection reads as EOF at once.
        p.s.setblocking(False)
        try:
            still += 0 if p.s.recv(1) == b"" else 1
        except BlockingIOError:
            still += 1
        except OSError:
            pass
        p.s.close()
    opened = len(conns)
    r = {"conns": args.conns, "opened": opened, "failed": failed, "still_open": still,
         "procs_before": before["procs"], "procs_after": after["procs"],
         "rss_before": before["rss"], "rss_after": after["rss"],
         "pss_before": before["pss"], "pss_after": after["pss"]}
    if opened:
        r["rss_per_conn"] = round((after["rss"] - before["rss"]) / opened)
        r["pss_per_conn"] = round((after["pss"] - before["pss"]) / opened)
    return r


# --------------------------------------------------------------------------------------------
# LMTP delivery


def count_files(d: str) -> int:
    try:
        return sum(1 for e in os.scandir(d) if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def lmtp(args) -> dict:
    m0, d0 = ticks(args.mta), ticks(args.dovecot)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(args.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = inject_s = None
    n, last_n, last_change = 0, 0, t0
    rc = None
    while True:
        now = time.monotonic()
        if rc is None and proc.poll() is not None:
            rc, inject_s = proc.returncode, now - t0
        n = count_files(args.new)
        if n and first is None:
            first = now - t0
        if n != last_n:
            last_n, last_change = n, now
        if n >= args.target:
            break
        if rc is not None and now - last_change > args.stall:
            break
        if now - t0 > args.max:
            break
        time.sleep(0.02)
    t1 = time.monotonic()
    if rc is None:
        rc = proc.wait(timeout=60)
        inject_s = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")[-300:]
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m1, d1 = ticks(args.mta), ticks(args.dovecot)
    secs = t1 - t0
    out = {
        "target": args.target, "delivered": n, "reached": n >= args.target,
        "seconds": round(secs, 3), "msgs_per_s": round(n / secs, 1) if secs > 0 else None,
        "first_s": round(first, 3) if first is not None else None,
        "inject_s": round(inject_s, 3) if inject_s is not None else None, "inject_rc": rc,
        "mta_cpu_s": round((m1 - m0) / HZ, 3), "dovecot_cpu_s": round((d1 - d0) / HZ, 3),
        "client_cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 3),
    }
    if n:
        for k in ("mta", "dovecot", "client"):
            out[f"{k}_cpu_us_per_msg"] = round(out[f"{k}_cpu_s"] / n * 1e6, 1)
    if rc:
        out["inject_error"] = err
    return out


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="op", required=True)
    m = sub.add_parser("maildir")
    m.add_argument("dir")
    m.add_argument("n", type=int)
    m.add_argument("size", type=int)
    r = sub.add_parser("retr")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--user", required=True)
    r.add_argument("--password-file", required=True)
    r.add_argument("--expect", type=int, required=True)
    r.add_argument("--window", type=int, default=32)
    r.add_argument("--pids", type=int, nargs="+", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--conns", type=int, required=True)
    i.add_argument("--pids", type=int, nargs="+", required=True)
    lm = sub.add_parser("lmtp")
    lm.add_argument("--new", required=True)
    lm.add_argument("--target", type=int, required=True)
    lm.add_argument("--mta", type=int, nargs="+", required=True)
    lm.add_argument("--dovecot", type=int, nargs="+", required=True)
    lm.add_argument("--stall", type=float, default=20)
    lm.add_argument("--max", type=float, default=600)
    lm.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARG...")
    a = ap.parse_args(argv)
    if a.op == "maildir":
        make_maildir(a.dir, a.n, a.size)
        return 0
    if a.op == "lmtp" and a.cmd[:1] == ["--"]:
        a.cmd = a.cmd[1:]
    try:
        result = {"retr": retr_pass, "idle": idle, "lmtp": lmtp}[a.op](a)
    except (OSError, RuntimeError, ConnectionError, ValueError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
