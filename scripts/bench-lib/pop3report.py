"""The POP3 scenario's part of scripts/bench's report (report.py calls it): RESULTS_DIR/pop3/
{meta.json, runs.jsonl} (written by pop3.sh) into one dict for results.json, and its table.

    python3 pop3report.py RESULTS_DIR    prints the table alone (for a kept run)
"""

import json
import os
import statistics
import sys

from jsonfiles import load_json as _load


def pop3_phase(res_dir):
    """RESULTS_DIR/pop3 as {"meta", "runs", "summary"}, or None when the scenario did not run."""
    d = os.path.join(res_dir, "pop3")
    meta = _load(os.path.join(d, "meta.json"))
    if meta is None:
        return None
    runs = []
    try:
        with open(os.path.join(d, "runs.jsonl")) as f:
            runs = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    summary = {}
    for kind, keys in (("retr", ("msgs_per_s", "mb_per_s", "server_cpu_us_per_msg", "client_cpu_us_per_msg")),
                       ("lmtp", ("msgs_per_s", "mta_cpu_us_per_msg", "dovecot_cpu_us_per_msg"))):
        for server in sorted({r["server"] for r in runs if r["kind"] == kind}):
            ok = [r for r in runs if r["kind"] == kind and r["server"] == server and not r.get("error")
                  and (kind != "lmtp" or r.get("reached"))]
            if ok:
                summary[f"{kind}/{server}"] = {k: statistics.median(r[k] for r in ok) for k in keys if all(k in r for r in ok)}
    return {"meta": meta, "runs": runs, "summary": summary}


def _f(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def print_pop3_table(p):
    meta = p["meta"]
    print()
    if meta.get("status") != "ok":
        print(f"POP3 scenario {meta.get('status')}: {meta.get('reason')}")
        return
    runs = p["runs"]
    print(f"POP3 RETR: {meta['messages']} messages of {meta['size']} B in one Maildir ({meta['maildir_mb']} MB), "
          f"log in + UIDL + LIST + RETR all (window {meta['window']} when PIPELINING), no DELE; A B A B, fresh server each")
    cols = ["server", "round", "s", "msgs/s", "MB/s", "server cpu µs/msg", "client cpu µs/msg", "pipelined"]
    rows = []
    notes = []
    for r in runs:
        if r["kind"] != "retr":
            continue
        if r.get("error"):
            notes.append(f"retr {r['server']} round {r['round']}: {r['error']}")
            continue
        rows.append([r["server"], str(r["round"]), _f(r["seconds"], 2), _f(r["msgs_per_s"]), _f(r["mb_per_s"], 1),
                     _f(r["server_cpu_us_per_msg"]), _f(r["client_cpu_us_per_msg"]),
                     f"yes ({r['window']})" if r.get("pipelining") else "no"])
    _table(cols, rows)
    print(f"\nidle POP3 connections (greeting + CAPA, then wait), {meta['idle_conns']} each:")
    cols = ["server", "opened", "procs before/after", "PSS before", "PSS after", "PSS/conn", "RSS/conn"]
    rows = []
    for r in runs:
        if r["kind"] != "idle":
            continue
        if r.get("error"):
            notes.append(f"idle {r['server']}: {r['error']}")
            continue
        rows.append([r["server"], str(r["opened"]), f"{r['procs_before']}/{r['procs_after']}",
                     _f(r["pss_before"] / 1e6, 1) + " MB", _f(r["pss_after"] / 1e6, 1) + " MB",
                     _f(r.get("pss_per_conn", 0) / 1e3, 1) + " KB", _f(r.get("rss_per_conn", 0) / 1e3, 1) + " KB"])
        if r.get("failed"):
            notes.append(f"idle {r['server']}: {r['failed']} connections failed")
    _table(cols, rows)
    print(f"\nLMTP delivery to Dovecot: {meta['lmtp_messages']} messages of {meta['size']} B, smtp-source "
          f"{meta['sessions']} sessions; from its start to the N-th file in the Maildir; A B A B")
    cols = ["MTA", "round", "s", "msgs/s", "first s", "inject s", "MTA cpu µs/msg", "Dovecot cpu µs/msg",
            "smtp-source cpu µs/msg"]
    rows = []
    for r in runs:
        if r["kind"] != "lmtp":
            continue
        if r.get("error") or not r.get("reached"):
            notes.append(f"lmtp {r['server']} round {r['round']}: {r.get('error') or r.get('delivered')} "
                         f"of {r.get('target')} delivered {r.get('inject_error', '')}")
            if r.get("error"):
                continue
        rows.append([r["server"], str(r["round"]), _f(r["seconds"], 2), _f(r["msgs_per_s"]), _f(r.get("first_s"), 2),
                     _f(r.get("inject_s"), 2), _f(r.get("mta_cpu_us_per_msg")), _f(r.get("dovecot_cpu_us_per_msg")),
                     _f(r.get("client_cpu_us_per_msg"))])
    _table(cols, rows)
    for n in notes:
        print(f"note: pop3: {n}")


def _table(cols, rows):
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    phase = pop3_phase(sys.argv[1])
    if phase is None:
        sys.exit(f"no pop3 results in {sys.argv[1]}")
    print_pop3_table(phase)
