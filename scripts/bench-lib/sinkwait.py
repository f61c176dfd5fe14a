#!/usr/bin/env python3
"""Watch Postfix's smtp-sink for scripts/bench's outbound scenario.

smtp-sink runs with -c and its stdout in a file (COUNTER): it writes
"sess=S quit=Q mesg=M\\r" whenever a session ends, QUIT arrives or "." arrives. M counts the
messages the sink has received; S the sessions that have ended.

    sinkwait.py wait --counter FILE --port P --target N --out JSON
                     [--stall S] [--max S] [--t0 EPOCH] [--poll S] [--cmd-name NAME]
                     [-- CMD ARG...]
        Starts CMD (the injection, e.g. smtp-source; optional), then polls the counter every
        --poll seconds (0.02) until M >= N. The clock starts at --t0 (an epoch time, e.g. taken
        just before a server was started) or, by default, right before CMD starts. Gives up,
        without hanging, when M has not grown for --stall seconds (30) since the later of
        its last increase and CMD's exit, or after --max seconds (300) in all. Meanwhile it
        samples /proc/net/tcp every 0.2 s for ESTABLISHED connections to the sink's port P.
        Writes JSON to --out:
          target, delivered (M at the end), reached (bool), seconds (t0 -> N-th message),
          msgs_per_s (N / seconds), first_delivery_s (t0 -> first message at the sink),
          inject_s / inject_rc (CMD's run time and exit status; with --cmd-name NAME:
          NAME_s / NAME_rc), max_conns (most ESTABLISHED
          connections to the sink seen at once), conns_seen (distinct client ports seen over
          the samples: a lower bound on the sessions), stop ("reached", "stalled", "max"),
          and ticks: [[seconds since t0, M], ...] (about 50 points, for a delivery curve).
        Exits 0 if N was reached, 3 if not (stalled or out of time).

    sinkwait.py listening --port P [--max S]
        Waits (<= --max, default 10 s) until something LISTENs on TCP port P, without
        connecting to it (a probe connection would count as a session at the sink). Exits
        0 once it does, 1 if not.

    sinkwait.py sessions --counter FILE --port P [--max S]
        Waits (<= --max, default 15 s) until no connection to P is ESTABLISHED (the servers'
        connection caches have timed out and sent QUIT), then prints JSON
        {"sess", "quit", "mesg", "open_conns", "waited_s"} from the counter.
"""
import json
import os
import re
import subprocess
import sys
import time

COUNTER_RE = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)\r")


def read_counter(path):
    """(sess, quit, mesg) from the last complete record, or (0, 0, 0)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 512))
            tail = f.read()
    except OSError:
        return 0, 0, 0
    last = None
    for last in COUNTER_RE.finditer(tail):
        pass
    if last is None:
        return 0, 0, 0
    return tuple(int(x) for x in last.groups())


def established(port):
    """Client ports of the ESTABLISHED TCP connections whose local port is `port` (the sink's
    side of each session), IPv4 and IPv6."""
    want = f":{port:04X}"
    ports = set()
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f, None)
                for line in f:
                    parts = line.split(None, 4)
                    if len(parts) < 4 or parts[3] != "01":
                        continue
                    if parts[1].endswith(want):
                        ports.add(parts[2])
        except OSError:
            pass
    return ports


def opts(argv, spec):
    o, rest = dict(spec), []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest = argv[i + 1:]
            break
        if a not in o:
            sys.exit(f"sinkwait: unknown option {a}\n{__doc__}")
        o[a] = argv[i + 1]
        i += 2
    return o, rest


def wait(argv):
    o, cmd = opts(argv, {"--counter": None, "--port": None, "--target": None, "--out": None,
                         "--stall": "30", "--max": "300", "--t0": None, "--poll": "0.02",
                         "--cmd-name": "inject"})
    for k in ("--counter", "--port", "--target", "--out"):
        if o[k] is None:
            sys.exit(f"sinkwait: {k} is required")
    counter, port, target = o["--counter"], int(o["--port"]), int(o["--target"])
    stall, limit, poll = float(o["--stall"]), float(o["--max"]), float(o["--poll"])
    # Wall-clock t0 (it may come from the caller), monotonic from here on.
    t0_wall = float(o["--t0"]) if o["--t0"] else time.time()
    mono0 = time.monotonic() - (time.time() - t0_wall)
    proc = subprocess.Popen(cmd) if cmd else None
    inject_s = inject_rc = None
    last_m, last_inc = read_counter(counter)[2], time.monotonic()
    first = done = None
    max_conns, seen = 0, set()
    ticks, next_sample, stop = [], 0.0, "max"
    while True:
        now = time.monotonic()
        if proc is not None and inject_rc is None:
            rc = proc.poll()
            if rc is not None:
                inject_rc, inject_s = rc, now - mono0
                last_inc = max(last_inc, now)
        m = read_counter(counter)[2]
        if m != last_m:
            last_m, last_inc = m, now
            if first is None and m > 0:
                first = now - mono0
            if not ticks or now - mono0 - ticks[-1][0] >= 0.5:
                ticks.append([round(now - mono0, 3), m])
        if m >= target:
            done, stop = now - mono0, "reached"
            ticks.append([round(done, 3), m])
            break
        if now >= next_sample:
            c = established(port)
            max_conns = max(max_conns, len(c))
            seen |= c
            next_sample = now + 0.2
        injecting = proc is not None and inject_rc is None
        if not injecting and now - last_inc >= stall:
            stop = "stalled"
            break
        if now - mono0 >= limit:
            stop = "max"
            break
        time.sleep(poll)
    c = established(port)
    max_conns, seen = max(max_conns, len(c)), seen | c
    if proc is not None and inject_rc is None:
        # Delivery finished before the injection did (cannot happen for N-th message unless
        # the counter was already high), or we gave up: let it finish, briefly.
        try:
            inject_rc = proc.wait(timeout=10 if stop == "reached" else 1)
        except subprocess.TimeoutExpired:
            proc.kill()
            inject_rc = proc.wait()
        inject_s = time.monotonic() - mono0
    r = {"target": target, "delivered": last_m, "reached": done is not None, "stop": stop,
         "seconds": None if done is None else round(done, 3),
         "msgs_per_s": None if done is None else round(target / done, 1),
         "first_delivery_s": None if first is None else round(first, 3),
         "waited_s": round(time.monotonic() - mono0, 3),
         "max_conns": max_conns, "conns_seen": len(seen)}
    if proc is not None:
        r[o["--cmd-name"] + "_s"] = round(inject_s, 3)
        r[o["--cmd-name"] + "_rc"] = inject_rc
    if len(ticks) > 60:
        step = len(ticks) / 50
        ticks = [ticks[int(i * step)] for i in range(50)] + [ticks[-1]]
    r["ticks"] = ticks
    with open(o["--out"], "w") as f:
        json.dump(r, f)
    return 0 if done is not None else 3


def sessions(argv):
    o, _ = opts(argv, {"--counter": None, "--port": None, "--max": "15"})
    port, limit = int(o["--port"]), float(o["--max"])
    t0 = time.monotonic()
    while established(port) and time.monotonic() - t0 < limit:
        time.sleep(0.1)
    time.sleep(0.2)  # the sink writes its counter after the session's last read
    s, q, m = read_counter(o["--counter"])
    print(json.dumps({"sess": s, "quit": q, "mesg": m, "open_conns": len(established(port)),
                      "waited_s": round(time.monotonic() - t0, 1)}))
    return 0


def listening(argv):
    o, _ = opts(argv, {"--port": None, "--max": "10"})
    want, limit = f":{int(o['--port']):04X}", float(o["--max"])
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(fn) as f:
                    next(f, None)
                    for line in f:
                        parts = line.split(None, 4)
                        if len(parts) >= 4 and parts[3] == "0A" and parts[1].endswith(want):
                            return 0
            except OSError:
                pass
        time.sleep(0.05)
    return 1


def main(argv):
    if argv and argv[0] == "listening":
        return listening(argv[1:])
    if argv and argv[0] == "wait":
        return wait(argv[1:])
    if argv and argv[0] == "sessions":
        return sessions(argv[1:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
