"""The spam-controls scenario of scripts/bench (`scripts/bench spam`), for report.py.

RESULTS_DIR/spam/meta.json describes the scenario; RESULTS_DIR/spam/order lists the
measurements (CFG-ROUND, CFG off or on) in run order; RESULTS_DIR/spam/runs/CFG-ROUND/ holds
each one's meta.json, warmup/kept/conn.json (smtp-source: messages, seconds, rspamd's CPU ticks,
DNS queries), cpu-*.json (memstat run: dakiya's CPU), listed.json and prepass.json (the
checks, "on" only), extra.json (refusals and milter failures in dakiya's log), delivered.
RESULTS_DIR/spam/idle-off/ and idle-on/ hold the idle-memory phase (idle.json).
"""
import json
import os

from jsonfiles import load_json as _load, per_msg as _per_msg, read_order

LOADS = [("kept", "kept connections (-d)"), ("conn", "a connection per message")]
CFGS = [("off", "everything off"), ("lists", "lists + greylisting"), ("on", "lists + greylisting + rspamd")]


def _run(d, key):
    r = _load(os.path.join(d, "meta.json")) or {"case": key}
    for part in ("warmup", "kept", "conn", "listed", "prepass", "extra", "error"):
        v = _load(os.path.join(d, part + ".json"))
        if v is not None:
            r[part] = v
    try:
        r["delivered"] = int(open(os.path.join(d, "delivered")).read().strip())
    except (OSError, ValueError):
        pass
    problems, notes = [], []
    if r.get("error"):
        problems.append(r["error"].get("error", "error"))
    accepted = (r.get("extra") or {}).get("prepass_messages", 0)
    for load in ("warmup", "kept", "conn"):
        v = r.get(load)
        if v is None:
            continue
        if v.get("rc"):
            problems.append(f"{load}: smtp-source rc={v['rc']}: {v.get('error')}")
            continue
        accepted += v.get("messages") or 0
        if load == "warmup":
            continue
        cpu = _load(os.path.join(d, f"cpu-{load}.json")) or {}
        v["cpu"] = cpu
        n = v.get("messages")
        v["dakiya_cpu_ms_per_msg"] = _per_msg(cpu.get("server_cpu_s"), n)
        v["client_cpu_ms_per_msg"] = _per_msg(cpu.get("client_cpu_s"), n)
        if v.get("rspamd_cpu_ticks") is not None and v.get("clk_tck"):
            v["rspamd_cpu_ms_per_msg"] = _per_msg(v["rspamd_cpu_ticks"] / v["clk_tck"], n)
        if cpu.get("other_cpu_s", 0) > 0.25 * cpu.get("wall_s", 0) * (os.cpu_count() or 1):
            notes.append(f"{load}: {cpu['other_cpu_s']} CPU-s of {cpu['machine_cpu_s']} went "
                         "to other processes or the kernel (the figures are low)")
    x = r.get("extra") or {}
    if x.get("greylisted_in_log", 0) > (0 if r.get("case") == "off" else 1):
        problems.append(f"{x['greylisted_in_log']} greylisted in the log (1 expected: the pre-pass)")
    if x.get("milter_failed_in_log"):
        problems.append(f"{x['milter_failed_in_log']} milter failures in the log")
    if "delivered" in r and not problems:
        r["accepted"] = accepted
        if r["delivered"] != accepted:
            problems.append(f"delivered {r['delivered']} of {accepted} accepted")
    if r.get("case") != "off" and not r.get("error"):
        for check in ("listed", "prepass"):
            if check not in r:
                problems.append(f"check {check} missing")
    for check in ("listed", "prepass"):
        if check in r and not r[check].get("ok"):
            problems.append(f"check {check} failed: {r[check]}")
    r["problems"] = problems
    r["notes"] = notes
    return r


def _rng(vals):
    vals = [v for v in vals if v is not None]
    return [min(vals), max(vals)] if vals else None


def spam_phase(res_dir):
    d = os.path.join(res_dir, "spam")
    meta = _load(os.path.join(d, "meta.json"))
    if meta is None:
        return None
    out = dict(meta)
    order = read_order(d)
    out["runs"] = [_run(os.path.join(d, "runs", k), k) for k in order]
    out["idle"] = {c: _load(os.path.join(d, f"idle-{c}", "idle.json")) for c, _ in CFGS}
    summary = {}
    for load, _ in LOADS:
        for cfg, _ in CFGS:
            rs = [r[load] for r in out["runs"] if r.get("case") == cfg and (r.get(load) or {}).get("msgs_per_s")
                  and not (r.get(load) or {}).get("rc")]
            if not rs:
                continue
            summary[f"{load}-{cfg}"] = {
                "runs": len(rs),
                "msgs_per_s": _rng([v["msgs_per_s"] for v in rs]),
                "dakiya_cpu_ms_per_msg": _rng([v.get("dakiya_cpu_ms_per_msg") for v in rs]),
                "rspamd_cpu_ms_per_msg": _rng([v.get("rspamd_cpu_ms_per_msg") for v in rs]),
                "dns_queries": [v.get("dns_queries") for v in rs],
            }
        off = summary.get(f"{load}-off")
        for cfg in ("lists", "on"):
            on = summary.get(f"{load}-{cfg}")
            if off and on and off["dakiya_cpu_ms_per_msg"] and on["dakiya_cpu_ms_per_msg"]:
                mid = lambda v: sum(v) / 2
                on["extra_dakiya_cpu_ms_per_msg_midpoints"] = round(
                    mid(on["dakiya_cpu_ms_per_msg"]) - mid(off["dakiya_cpu_ms_per_msg"]), 3)
                on["rate_vs_off_midpoints"] = round(mid(on["msgs_per_s"]) / mid(off["msgs_per_s"]), 3)
    out["summary"] = summary
    return out


def _fmt(v, f):
    if not v:
        return "-"
    lo, hi = f(v[0]), f(v[1])
    return lo if lo == hi else f"{lo}-{hi}"


def _table(cols, rows):
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    for r in [cols] + rows:
        print("  ".join(str(x).ljust(widths[i]) for i, x in enumerate(r)).rstrip())


def print_spam_table(a):
    print()
    if a.get("status") != "ok":
        print(f"spam controls: {a.get('status')}: {a.get('reason')}")
        return
    s = a.get("summary") or {}
    print(f"dakiya spam controls: {a.get('messages')} messages (kept connections) and "
          f"{a.get('conn_messages')} (a connection each) x {a.get('size')} B per run, "
          f"{a.get('sessions')} smtp-source sessions, fresh server + {a.get('warmup_messages')} "
          f"warm-up messages per run, {a.get('rounds')} rounds of off, lists, on (ranges over the rounds)")
    rows = []
    for load, llabel in LOADS:
        for cfg, clabel in CFGS:
            c = s.get(f"{load}-{cfg}")
            if c is None:
                continue
            extra = c.get("extra_dakiya_cpu_ms_per_msg_midpoints")
            rows.append([
                llabel, clabel,
                _fmt(c["msgs_per_s"], lambda x: f"{x:.0f}"),
                "-" if c.get("rate_vs_off_midpoints") is None else f"{c['rate_vs_off_midpoints']:.2f}x",
                _fmt(c["dakiya_cpu_ms_per_msg"], lambda x: f"{x:.3f}"),
                "-" if extra is None else f"{extra:+.3f}",
                _fmt(c["rspamd_cpu_ms_per_msg"], lambda x: f"{x:.3f}") if cfg == "on" else "-",
                ",".join("?" if q is None else str(q) for q in c["dns_queries"]),
            ])
    _table(["load", "config", "msgs/s", "vs-off", "dakiya-cpu-ms/msg", "extra", "rspamd-cpu-ms/msg", "dns-q"], rows)
    print()
    print("Every run, in run order:")
    rows = []
    for r in a.get("runs", []):
        for load, _ in LOADS:
            v = r.get(load) or {}
            rows.append([f"{r.get('case')}-{r.get('round')}", load,
                         "-" if v.get("msgs_per_s") is None else f"{v['msgs_per_s']:.0f}",
                         "-" if v.get("dakiya_cpu_ms_per_msg") is None else f"{v['dakiya_cpu_ms_per_msg']:.3f}",
                         "-" if v.get("rspamd_cpu_ms_per_msg") is None or r.get("case") != "on"
                         else f"{v['rspamd_cpu_ms_per_msg']:.3f}",
                         "-" if v.get("dns_queries") is None else str(v["dns_queries"]),
                         "FAIL" if r.get("problems") else "ok"])
    _table(["run", "load", "msgs/s", "dakiya-cpu-ms/msg", "rspamd-cpu-ms/msg", "dns-q", "check"], rows)
    idle = a.get("idle") or {}
    parts = []
    for cfg, _ in CFGS:
        i = idle.get(cfg) or {}
        if i.get("pss_per_conn") is not None:
            parts.append(f"{cfg}: {i['pss_per_conn']} B PSS, {i['rss_per_conn']} B RSS per connection "
                         f"({i.get('opened')} of {i.get('conns')} opened)")
        elif i.get("error"):
            parts.append(f"{cfg}: {i['error']}")
    if parts:
        print(f"idle connections after EHLO: {'; '.join(parts)}")
    print()
    print("msgs/s = messages / smtp-source's run time; dakiya-cpu-ms/msg = dakiya's CPU over the run / "
          "messages; extra = on's mid-range minus off's; rspamd-cpu-ms/msg = rspamd's process tree over "
          "the same run / messages; dns-q = queries the loopback DNS server answered during the run; "
          "check = the listed client was refused, the triplet pre-passed, nothing else greylisted, no "
          "milter failure, every accepted message delivered.")
    for r in a.get("runs", []):
        for p in r.get("problems", []):
            print(f"FAIL: {r.get('case')}-{r.get('round')}: {p}")
        for n in r.get("notes", []):
            print(f"note: {r.get('case')}-{r.get('round')}: {n}")
