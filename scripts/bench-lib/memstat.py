#!/usr/bin/env python3
"""Memory and CPU of a server's whole process tree, for scripts/bench.

    memstat.py mem PID [PID...]    -> JSON {"procs": N, "rss": BYTES, "pss": BYTES, "pids": [...]}
    memstat.py cputicks PID [...]  -> total utime+stime clock ticks of the tree (one integer)
    memstat.py cpubusy [SECONDS]   -> percent of all CPUs busy over SECONDS (default 1), for
                                      "is something else loading the machine?"
    memstat.py fsync DIR [N]       -> JSON {"mean_ms", "p99_ms"}: N (100) times create a file in
                                      DIR, write 5 KB, fsync, close (then unlink them all): what
                                      one durable message costs this disk, for the record
    memstat.py run --out FILE [PID...] -- CMD [ARG...]
                                   -> runs CMD (stdin/stdout/stderr passed through), exits with
                                      its status, and writes JSON to FILE: wall_s, client_cpu_s
                                      (CMD's own CPU), server_cpu_s (the tree of PIDs), and
                                      machine_cpu_s / other_cpu_s (everything else: another
                                      build, the kernel's own work) over the same interval
    memstat.py quiet PID [...] [--max S] [--idle-pct P]
                                   -> waits until the whole machine is below P% busy (default
                                      15% of all CPUs) over two consecutive 0.4 s samples, or S
                                      seconds pass (default 60); prints JSON {"waited_s",
                                      "busy_pct" (machine), "server_pct" (the tree, % of all CPUs)}
    memstat.py settle PID [...] [--max S] [--idle-pct P]
                                   -> waits until the tree uses < P% of one CPU over two
                                      consecutive 0.5 s samples (or S seconds pass); prints the
                                      seconds waited and, after a space, the seconds after which
                                      the quiet samples began (the work ended in the 0.5 s
                                      before: the waited time less the idle check's own 1 s)

The tree is every given PID plus all of its descendants (a multi-process server such as
Postfix: master and every smtpd, cleanup, qmgr... child). RSS counts shared pages (libraries,
the shared text of 1000 smtpd processes) once per process; PSS divides each shared page among
the processes that map it, so PSS sums to what the tree really costs.
"""
import json
import os
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("ascii", "replace")
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2 :].split()
    return rest  # rest[0] = state, rest[1] = ppid, rest[11] = utime, rest[12] = stime


def tree(roots):
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    seen, todo = [], [r for r in roots if os.path.exists(f"/proc/{r}")]
    while todo and len(seen) < 100_000:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children.get(p, []))
    return seen


def mem(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
        return rss, pss
    except OSError:
        pass
    try:  # no smaps_rollup: RSS only
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        return rss, rss
    except OSError:
        return 0, 0


def cputicks(pids):
    """utime+stime of each process, plus cutime+cstime: the CPU of children it has reaped
    (a Postfix daemon that exited during the interval is still counted, through master)."""
    total = 0
    for p in pids:
        try:
            f = _stat_fields(p)
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_measured(out, roots, cmd):
    import subprocess
    m0_total, m0_idle = _machine_sample()
    s0 = cputicks(tree(roots))
    t0 = time.monotonic()
    p = subprocess.Popen(cmd)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except KeyboardInterrupt:
        p.kill()
        raise
    wall = time.monotonic() - t0
    m1_total, m1_idle = _machine_sample()
    s1 = cputicks(tree(roots))
    ncpu = os.cpu_count() or 1
    # /proc/stat counts every CPU: total ticks over the interval = ncpu * wall.
    machine = ((m1_total - m0_total) - (m1_idle - m0_idle)) / HZ
    client = ru.ru_utime + ru.ru_stime
    server = (s1 - s0) / HZ
    with open(out, "w") as f:
        json.dump({"wall_s": round(wall, 3), "client_cpu_s": round(client, 2),
                   "server_cpu_s": round(server, 2), "machine_cpu_s": round(machine, 2),
                   "other_cpu_s": round(max(0.0, machine - client - server), 2),
                   "machine_busy_pct": round(100 * machine / max(1e-9, wall * ncpu))}, f)
    return os.waitstatus_to_exitcode(status)


def _machine_sample():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v[:8]), idle


def wait_quiet(roots, limit, pct):
    t0 = time.monotonic()
    ok = 0
    busy = srv = 100.0
    while True:
        a_total, a_idle = _machine_sample()
        a_srv = cputicks(tree(roots))
        time.sleep(0.4)
        b_total, b_idle = _machine_sample()
        b_srv = cputicks(tree(roots))
        total = max(1, b_total - a_total)
        busy = 100.0 * (total - (b_idle - a_idle)) / total
        srv = min(100.0, 100.0 * (b_srv - a_srv) / total)
        ok = ok + 1 if busy < pct else 0
        if ok >= 2 or time.monotonic() - t0 >= limit:
            break
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_pct": round(busy),
            "server_pct": round(srv)}


def cpubusy(secs):
    sample = _machine_sample
    t0, i0 = sample()
    time.sleep(secs)
    t1, i1 = sample()
    total = t1 - t0
    return 0.0 if total <= 0 else 100.0 * (total - (i1 - i0)) / total


def fsync_probe(d, n):
    lat, paths = [], []
    try:
        for i in range(n):
            p = os.path.join(d, f".fsync-probe-{os.getpid()}-{i}")
            paths.append(p)
            t = time.perf_counter()
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"x" * 5120)
            os.fsync(fd)
            os.close(fd)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
    lat.sort()
    return {"mean_ms": round(sum(lat) / len(lat), 3),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3)}


def main(argv):
    if argv and argv[0] == "run":
        if "--" not in argv:
            sys.exit(__doc__)
        i = argv.index("--")
        head, cmd = argv[1:i], argv[i + 1:]
        out = head[head.index("--out") + 1]
        roots = [int(a) for j, a in enumerate(head) if a != "--out" and head[j - 1] != "--out"]
        sys.exit(run_measured(out, roots, cmd))
    if argv and argv[0] == "fsync":
        n = int(argv[2]) if len(argv) > 2 else 100
        print(json.dumps(fsync_probe(argv[1], max(1, min(n, 10000)))))
        return
    if argv and argv[0] == "cpubusy":
        print(f"{cpubusy(float(argv[1]) if len(argv) > 1 else 1.0):.0f}")
        return
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, rest = argv[0], argv[1:]
    opts = {"--max": 60.0, "--idle-pct": 5.0}
    roots = []
    given = set()
    it = iter(rest)
    for a in it:
        if a in opts:
            opts[a] = float(next(it))
            given.add(a)
        else:
            roots.append(int(a))
    if cmd == "mem":
        pids = tree(roots)
        rss = pss = 0
        for p in pids:
            r, s = mem(p)
            rss += r
            pss += s
        print(json.dumps({"procs": len(pids), "rss": rss, "pss": pss, "pids": sorted(pids)}))
    elif cmd == "cputicks":
        print(cputicks(tree(roots)))
    elif cmd == "quiet":
        pct = opts["--idle-pct"] if "--idle-pct" in given else 15.0
        print(json.dumps(wait_quiet(roots, opts["--max"], pct)))
    elif cmd == "settle":
        t0 = time.monotonic()
        quiet = 0
        quiet_from = None
        limit = opts["--max"]
        while time.monotonic() - t0 < limit:
            start = time.monotonic() - t0
            a = cputicks(tree(roots))
            time.sleep(0.5)
            b = cputicks(tree(roots))
            pct = (b - a) / HZ / 0.5 * 100
            quiet = quiet + 1 if pct < opts["--idle-pct"] else 0
            if quiet == 1:
                quiet_from = start
            if quiet >= 2:
                break
        waited = time.monotonic() - t0
        print(f"{waited:.1f} {waited if quiet < 2 or quiet_from is None else quiet_from:.1f}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
