#!/usr/bin/env python3
"""Assemble scripts/bench's per-phase fragments into a table and results.json.

    report.py RESULTS_DIR OUT_JSON key=value...

RESULTS_DIR/order lists the servers in run order; RESULTS_DIR/<server>/{meta,idle,smtp_source,
loadgen}.json are the fragments. The key=value pairs describe the run.
"""
import datetime
import json
import os
import platform
import subprocess
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_rate(x):
    return "-" if x is None else f"{x:.0f}"


def fmt_ms(x):
    return "-" if x is None else (f"{x:.2f}ms" if x < 10 else f"{x:.1f}ms")


def fmt_bytes(x):
    return "-" if x is None else str(x)


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
    try:
        order = [l.strip() for l in open(os.path.join(res_dir, "order")) if l.strip()]
    except OSError:
        order = []

    servers = []
    for name in order:
        d = os.path.join(res_dir, name)
        s = load(os.path.join(d, "meta.json")) or {"name": name, "status": "unknown"}
        for phase in ("idle", "smtp_source", "loadgen"):
            v = load(os.path.join(d, phase + ".json"))
            if v is not None:
                s[phase] = v
        quiet = {}
        for fn in sorted(os.listdir(d)):
            if fn.startswith("quiet-") and fn.endswith(".json"):
                v = load(os.path.join(d, fn))
                if v is not None:
                    quiet[fn[len("quiet-"):-len(".json")]] = v
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
    print()
    print(line(cols))
    for r in rows:
        print(line(r) if len(r) == len(cols) else f"{r[0].ljust(widths[0])}  {r[1]}")
    print()
    print(f"{run.get('mode')} run, {run.get('seconds')} s; {run.get('sessions')} sessions x "
          f"{run.get('size')} B; latency = MAIL FROM to the 250 after the final dot (loadgen); "
          f"idle = per connection after EHLO, {run.get('idle_conns')} connections "
          "(bytes = summed RSS delta, pss = summed PSS delta); cpu-ms/msg = the server's CPU "
          "time per message during the smtp-source run.")
    fb, fa = run.get("fsync_before") or {}, run.get("fsync_after") or {}
    if fb:
        print(f"disk: 5 KB create+write+fsync {fb.get('mean_ms')} ms mean before the run, "
              f"{fa.get('mean_ms', '?')} ms after.")
    for n in notes:
        print(f"note: {n}")
    print(f"raw numbers: {out_json}")


if __name__ == "__main__":
    main()
