#!/usr/bin/env python3
"""Messages and checks for `scripts/bench auth` (docs/benchmark.md, "Message authentication").

    authmsg.py make OUT FROM TO [SIZE]   -> writes the scenario's message (CRLF): From, To,
                                            Subject, Date, Message-ID, MIME-Version,
                                            Content-Type, then a SIZE-byte body (default 5120)
                                            of 80-byte lines, like loadgen's and smtp-source's
    authmsg.py strip IN OUT              -> a delivered Maildir copy made sendable again: drops
                                            the Return-Path and Delivered-To fields that
                                            delivery added, converts LF to CRLF; prints JSON
                                            {"dkim_signature": "<its a= and s= tags>"} or fails
                                            if the copy has no DKIM-Signature
    authmsg.py check FILE KIND [ZONE.json]
                                         -> prints JSON {"ok": bool, "why": ..., ...}: does this
                                            delivered message carry what KIND expects?
                                              none          no Authentication-Results, no DKIM-Signature
                                              spf           Authentication-Results with spf=pass,
                                                            dkim=none, dmarc=pass
                                              dkim          ... spf=pass, dkim=pass, dmarc=pass
                                              sign-rsa      a DKIM-Signature with a=rsa-sha256
                                              sign-ed25519  ... a=ed25519-sha256
                                            With ZONE.json and dkimpy installed, a sign-* message's
                                            signature is also verified with dkimpy against the
                                            zone's key ("dkimpy": true/false; null without dkimpy).
"""
import email.utils
import json
import re
import sys


def headers(raw):
    """The unfolded header fields of a message, as (name, value) pairs."""
    text = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
        elif ":" in line:
            n, _, v = line.partition(":")
            fields.append([n.strip(), v.strip()])
    return fields


def make(out, frm, to, size=5120):
    body = bytearray()
    n = 0
    while len(body) < size:
        ll = min(80, size - len(body))
        n += 1
        tag = str(n % 10).encode()
        body += tag + b"X" * max(0, ll - 2 - len(tag)) + b"\r\n"
    dom = frm.rpartition("@")[2]
    hdr = (f"From: Bench Sender <{frm}>\r\nTo: <{to}>\r\nSubject: dakiya auth bench\r\n"
           f"Date: {email.utils.formatdate(localtime=True)}\r\n"
           f"Message-ID: <auth-bench.1@{dom}>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    with open(out, "wb") as f:
        f.write(hdr + bytes(body))


def strip(inp, out):
    raw = open(inp, "rb").read().replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    lines, skip = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                lines.append(line)
            continue
        skip = line.lower().startswith((b"return-path:", b"delivered-to:"))
        if not skip:
            lines.append(line)
    msg = b"\n".join(lines) + sep + body
    sig = [v for n, v in headers(msg) if n.lower() == "dkim-signature"]
    if not sig:
        sys.exit(f"authmsg: {inp} has no DKIM-Signature")
    with open(out, "wb") as f:
        f.write(msg.replace(b"\n", b"\r\n"))
    tags = dict(re.findall(r"\b([as])=([^;\s]+)", sig[0]))
    print(json.dumps({"dkim_signature": f"a={tags.get('a')} s={tags.get('s')}", "bytes": len(msg)}))


def dkimpy_verify(raw, zone_file):
    try:
        import dkim  # dkimpy
        if b"ed25519-sha256" in raw:
            import nacl  # noqa: F401 - dkimpy's Ed25519 needs PyNaCl
    except ImportError:
        return None
    zone = {k.rstrip(".").lower(): v for k, v in json.load(open(zone_file)).items() if not k.startswith("@")}

    def dnsfunc(name, timeout=5):
        n = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        txt = (zone.get(n) or {}).get("TXT") or [None]
        return txt[0].encode() if txt[0] else None

    try:
        return bool(dkim.verify(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), dnsfunc=dnsfunc))
    except Exception:  # noqa: BLE001 - any failure is "did not verify"
        return False


def check(path, kind, zone_file=None):
    raw = open(path, "rb").read()
    hs = headers(raw)
    ar = [v for n, v in hs if n.lower() == "authentication-results"]
    sig = [v for n, v in hs if n.lower() == "dkim-signature"]
    r = {"file": path, "kind": kind, "authentication_results": ar, "dkim_signature": [s[:120] for s in sig]}
    why = None
    if kind == "none":
        if ar or sig:
            why = "unexpected Authentication-Results or DKIM-Signature"
    elif kind in ("spf", "dkim"):
        want = ["spf=pass", "dkim=none" if kind == "spf" else "dkim=pass", "dmarc=pass"]
        if len(ar) != 1:
            why = f"{len(ar)} Authentication-Results fields"
        else:
            missing = [w for w in want if not re.search(r"(^|[;\s])" + re.escape(w) + r"\b", ar[0])]
            if missing:
                why = "missing " + ", ".join(missing)
    elif kind in ("sign-rsa", "sign-ed25519"):
        alg = "rsa-sha256" if kind == "sign-rsa" else "ed25519-sha256"
        if len(sig) != 1 or not re.search(r"\ba=" + re.escape(alg) + r"\b", sig[0]):
            why = f"expected one DKIM-Signature with a={alg}, found {len(sig)}"
        elif zone_file:
            r["dkimpy"] = dkimpy_verify(raw, zone_file)
            if r["dkimpy"] is False:
                why = "dkimpy says the signature does not verify"
    else:
        why = f"unknown kind {kind}"
    r["ok"] = why is None
    r["why"] = why
    print(json.dumps(r))
    return 0 if why is None else 1


def main():
    a = sys.argv[1:]
    if a[:1] == ["make"] and len(a) in (4, 5):
        make(a[1], a[2], a[3], int(a[4]) if len(a) == 5 else 5120)
    elif a[:1] == ["strip"] and len(a) == 3:
        strip(a[1], a[2])
    elif a[:1] == ["check"] and len(a) in (3, 4):
        sys.exit(check(a[1], a[2], a[3] if len(a) == 4 else None))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
