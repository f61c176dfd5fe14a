"""The message-authentication scenario of scripts/bench (`scripts/bench auth`), for report.py.

RESULTS_DIR/auth/meta.json describes the scenario; RESULTS_DIR/auth/order lists the
measurements (CASE-ROUND) in run order; RESULTS_DIR/auth/runs/CASE-ROUND/ holds each one's
meta.json, load.json (loadgen), cpu-load.json (memstat run), warmup.json, check.json (the
delivered copy's headers), extra.json (DNS queries and CPU, refusals in the log), delivered.
"""
import os

from jsonfiles import load_json as _load, per_msg as _per_msg, read_order

# Case name -> what the table calls it, in table order.
CASES = [
    ("baseline", "verify off (baseline)"),
    ("verify-spf", "verify: SPF+DMARC, unsigned"),
    ("verify-dkim-rsa", "verify: DKIM rsa-sha256 signed"),
    ("verify-dkim-ed25519", "verify: DKIM ed25519-sha256 signed"),
    ("trusted-nokey", "trusted client, no key"),
    ("sign-rsa", "sign: RSA 2048"),
    ("sign-ed25519", "sign: Ed25519"),
]


def auth_phase(res_dir):
    d = os.path.join(res_dir, "auth")
    meta = _load(os.path.join(d, "meta.json"))
    if meta is None:
        return None
    out = dict(meta)
    order = read_order(d)
    runs = []
    for key in order:
        rd = os.path.join(d, "runs", key)
        r = _load(os.path.join(rd, "meta.json")) or {"case": key}
        for part in ("load", "warmup", "check", "extra", "error"):
            v = _load(os.path.join(rd, part + ".json"))
            if v is not None:
                r[part] = v
        cpu = _load(os.path.join(rd, "cpu-load.json"))
        if cpu is not None:
            r["cpu"] = cpu
        try:
            r["delivered"] = int(open(os.path.join(rd, "delivered")).read().strip())
        except (OSError, ValueError):
            pass
        lg, c, x = r.get("load") or {}, r.get("cpu") or {}, r.get("extra") or {}
        n = lg.get("messages_incl_warmup")
        r["msgs_per_s"] = lg.get("msgs_per_s")
        r["server_cpu_ms_per_msg"] = _per_msg(c.get("server_cpu_s"), n)
        r["client_cpu_ms_per_msg"] = _per_msg(c.get("client_cpu_s"), n)
        if x.get("dns_cpu_ticks") is not None and x.get("clk_tck"):
            r["dns_server_cpu_s"] = round(x["dns_cpu_ticks"] / x["clk_tck"], 3)
        if x.get("dns_queries_after") is not None and x.get("dns_queries_before") is not None:
            # Minus the stats request itself: none (SIGUSR1 is not a query).
            r["dns_queries"] = x["dns_queries_after"] - x["dns_queries_before"]
        w = (r.get("warmup") or {}).get("messages_incl_warmup") or 0
        if "delivered" in r and n is not None:
            r["accepted"] = n + w
        problems = []
        if r.get("error"):
            problems.append(r["error"].get("error", "error"))
        if lg.get("error") or lg.get("errors"):
            problems.append(f"loadgen errors={lg.get('errors')} first={lg.get('first_error') or lg.get('error')}")
        if lg and lg.get("count") and n is not None and n < lg["count"]:
            problems.append(f"only {n} of {lg['count']} accepted")
        if x.get("refused_in_log"):
            problems.append(f"{x['refused_in_log']} refused by policy (log)")
        ck = r.get("check") or {}
        if not ck.get("ok"):
            problems.append(f"check failed: {ck.get('why')}")
        if "accepted" in r and r["delivered"] != r["accepted"]:
            problems.append(f"delivered {r['delivered']} of {r['accepted']} accepted")
        r["problems"] = problems
        runs.append(r)
    out["runs"] = runs

    # Per case: ranges over the rounds, and the CPU per message over the baseline.
    summary = {}
    for case, label in CASES:
        rs = [r for r in runs if r.get("case") == case and r.get("msgs_per_s") is not None]
        if not rs:
            continue
        rates = [r["msgs_per_s"] for r in rs]
        cpus = [r["server_cpu_ms_per_msg"] for r in rs if r.get("server_cpu_ms_per_msg") is not None]
        p50 = [r["load"]["latency_ms"]["p50"] for r in rs]
        p99 = [r["load"]["latency_ms"]["p99"] for r in rs]
        summary[case] = {
            "label": label,
            "runs": len(rs),
            "msgs_per_s": [min(rates), max(rates)],
            "server_cpu_ms_per_msg": [min(cpus), max(cpus)] if cpus else None,
            "p50_ms": [min(p50), max(p50)],
            "p99_ms": [min(p99), max(p99)],
            "dns_queries": [r.get("dns_queries") for r in rs],
            "checks_ok": all((r.get("check") or {}).get("ok") for r in rs),
            "problems": sorted({p for r in rs for p in r["problems"]}),
        }
    base = summary.get("baseline")
    if base and base["server_cpu_ms_per_msg"]:
        b_mid = sum(base["server_cpu_ms_per_msg"]) / 2
        b_rate = sum(base["msgs_per_s"]) / 2
        for case, s in summary.items():
            if case == "baseline" or not s["server_cpu_ms_per_msg"]:
                continue
            lo, hi = s["server_cpu_ms_per_msg"]
            # The extra CPU per message over the baseline, from the two ranges' extremes.
            s["extra_cpu_ms_per_msg_vs_baseline"] = [round(lo - base["server_cpu_ms_per_msg"][1], 3),
                                                     round(hi - base["server_cpu_ms_per_msg"][0], 3)]
            s["extra_cpu_ms_per_msg_midpoints"] = round((lo + hi) / 2 - b_mid, 3)
            s["rate_vs_baseline_midpoints"] = round((sum(s["msgs_per_s"]) / 2) / b_rate, 3)
    out["summary"] = summary
    return out


def _rng(v, fmt):
    if not v:
        return "-"
    lo, hi = v
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def print_auth_table(a):
    print()
    if a.get("status") != "ok":
        print(f"message authentication: {a.get('status')}: {a.get('reason')}")
        return
    s = a.get("summary") or {}
    print(f"dakiya message authentication: {a.get('messages')} messages x {a.get('message_bytes')} B per run, "
          f"{a.get('sessions')} sessions, fresh server + {a.get('warmup_messages')} warm-up messages per run, "
          f"{a.get('rounds')} rounds (ranges over the rounds)")
    cols = ["case", "msgs/s", "vs-base", "p50", "p99", "server-cpu-ms/msg", "extra-cpu-ms/msg", "dns-q", "check"]
    rows = []
    for case, label in CASES:
        c = s.get(case)
        if c is None:
            continue
        extra = c.get("extra_cpu_ms_per_msg_midpoints")
        rows.append([
            label,
            _rng(c["msgs_per_s"], lambda x: f"{x:.0f}"),
            "-" if c.get("rate_vs_baseline_midpoints") is None else f"{c['rate_vs_baseline_midpoints']:.2f}x",
            _rng(c["p50_ms"], lambda x: f"{x:.2f}"),
            _rng(c["p99_ms"], lambda x: f"{x:.1f}"),
            _rng(c["server_cpu_ms_per_msg"], lambda x: f"{x:.3f}"),
            "-" if extra is None else f"{extra:+.3f}",
            ",".join("?" if q is None else str(q) for q in c["dns_queries"]),
            "ok" if c["checks_ok"] and not c["problems"] else "FAIL",
        ])
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    for r in [cols] + rows:
        print("  ".join(str(x).ljust(widths[i]) for i, x in enumerate(r)).rstrip())
    print()
    print("msgs/s = messages / (start to last 250); vs-base = mid-range rate over the baseline's; "
          "p50/p99 in ms (MAIL FROM to the 250 after the dot); server-cpu-ms/msg = dakiya's CPU "
          "over the run / messages; extra = mid-range minus the baseline's mid-range; dns-q = "
          "queries the loopback DNS server answered during each measured run (the warm-up filled "
          "the resolver's cache); check = the delivered copy carries the expected "
          "Authentication-Results (spf/dkim/dmarc=pass) or DKIM-Signature, and nothing was "
          "refused or lost.")
    for case, c in s.items():
        for p in c["problems"]:
            print(f"note: {case}: {p}")
    for r in a.get("runs", []):
        c = r.get("cpu") or {}
        if c.get("other_cpu_s", 0) > 0.25 * c.get("wall_s", 0) * (os.cpu_count() or 1):
            print(f"note: {r.get('case')} round {r.get('round')}: {c['other_cpu_s']} CPU-s of "
                  f"{c['machine_cpu_s']} went to other processes or the kernel during the run")
