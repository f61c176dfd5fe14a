#!/usr/bin/env python3
"""Checks for `scripts/bench spam`: that screening and greylisting are really on, before a
measurement. Loopback only; every wait is bounded.

    spamprobe.py listed --port P --source 127.0.0.2
        connects from SOURCE (a loopback address a block list lists) and expects
        "554" instead of the greeting. Prints JSON {"ok", "reply"}.
    spamprobe.py prepass --port P --from A --to B [--max-wait S]
        passes the greylisting triplet (127.0.0.1's network, A, B): the first RCPT must be
        refused with 451, then the same transaction is retried (each retry after the delay
        the 451 names, at most S seconds in all, default 30) until RCPT gets 250; that
        message is then sent (a few bytes). Prints JSON {"ok", "first", "retries", "waited_s",
        "final"}.
"""
import argparse
import json
import re
import smtplib
import socket
import sys
import time

HOST = "127.0.0.1"


def listed(a):
    s = socket.create_connection((HOST, a.port), timeout=10, source_address=(a.source, 0))
    try:
        s.settimeout(10)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    reply = data.decode("ascii", "replace").strip()
    return {"ok": reply.startswith("554 "), "reply": reply}


def attempt(a):
    """One transaction up to RCPT; on 250, DATA too. Returns (code, text)."""
    with smtplib.SMTP(HOST, a.port, local_hostname="probe.bench.test", timeout=15) as c:
        c.ehlo()
        code, msg = c.mail(a.sender)
        if code != 250:
            return code, msg.decode("ascii", "replace")
        code, msg = c.rcpt(a.to)
        text = msg.decode("ascii", "replace")
        if code == 250:
            body = (f"From: <{a.sender}>\r\nTo: <{a.to}>\r\nSubject: greylist pre-pass\r\n\r\n"
                    "pre-pass\r\n")
            code, msg = c.data(body.encode())
            text = msg.decode("ascii", "replace")
        return code, text


def prepass(a):
    t0 = time.monotonic()
    first = attempt(a)
    out = {"first": f"{first[0]} {first[1]}", "retries": 0}
    if first[0] != 451:
        out.update(ok=False, why="the first attempt was not greylisted (451)")
        return out
    last = first
    while time.monotonic() - t0 < a.max_wait:
        m = re.search(r"in (\d+) seconds", last[1])
        wait = int(m.group(1)) if m else 1
        time.sleep(min(wait + 0.2, max(0.0, a.max_wait - (time.monotonic() - t0))))
        last = attempt(a)
        out["retries"] += 1
        if last[0] != 451:
            break
    out["waited_s"] = round(time.monotonic() - t0, 2)
    out["final"] = f"{last[0]} {last[1]}"
    out["ok"] = last[0] == 250
    return out


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("listed")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source", required=True)
    p = sub.add_parser("prepass")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--max-wait", type=float, default=30)
    a = ap.parse_args()
    for addr in [getattr(a, "source", HOST)]:
        if not addr.startswith("127."):
            sys.exit("spamprobe: loopback addresses only")
    try:
        out = listed(a) if a.cmd == "listed" else prepass(a)
    except (OSError, smtplib.SMTPException) as e:
        out = {"ok": False, "why": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))
    sys.exit(0 if out.get("ok") else 1)


if __name__ == "__main__":
    main()
