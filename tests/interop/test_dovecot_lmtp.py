"""LMTP delivery to a real Dovecot (docs/dovecot.md, "Mailboxes", method = "lmtp").

Dovecot (imap + lmtp, the guide's snippets, its quota plugin at 4096 bytes) delivers what
dakiya hands it; bob's mailbox is already full, so of a message to alice and bob, alice's
copy is delivered (and read back over IMAP with dakiya's password) while bob's is deferred
(quota_full_tempfail = yes: 452 4.2.2) or bounced (no: 552 5.2.2), as Dovecot's reply for
him says. Also reports a rough LMTP delivery rate.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

import dovecotdoc
from conftest import LOOPBACK
from mailutil import build_message, tag

PASSWORD = "lmtp user password 9"


def add_users(dakiya_bin: str, data, users) -> None:
    """`dakiya user add` before the server starts (Dovecot's passdb must exist first, and
    dakiya's config needs Dovecot's socket path): a throwaway config naming the same data_dir."""
    conf = data.parent / "users-only.toml"
    conf.write_text(f'data_dir = "{data}"\n[[listen]]\naddress = "{LOOPBACK}:0"\nrole = "mx"\n')
    for user in users:
        r = subprocess.run([dakiya_bin, "user", "--config", str(conf), "add", user], input=PASSWORD + "\n",
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr


def dakiya_with_dovecot(dakiya_bin, dakiya_factory, dovecot, work_dir, extra: str = "", quota: bool = True):
    data = work_dir / "dakiya" / "data"
    (data / "mail").mkdir(parents=True)
    # One passdb for all: dakiya's users file, as docs/dovecot.md sets it up.
    add_users(dakiya_bin, data, ["alice@example.test", "bob@example.test", "carol@example.test"])
    # bob is already over Dovecot's 4096-byte quota: one hand-made message of 5000 bytes.
    bob = data / "mail" / "example.test" / "bob"
    for sub in ("tmp", "new", "cur"):
        (bob / sub).mkdir(parents=True)
    (bob / "new" / f"{int(time.time())}.M1P{os.getpid()}.filler").write_bytes(b"Subject: big\n\n" + b"x" * 4985 + b"\n")
    server = dovecot(
        data,
        passwd_file=data / "users",
        extra="\n".join([dovecotdoc.snippet("dovecot-lmtp"), dovecotdoc.snippet("dovecot-quota") if quota else "", extra]),
    )
    lmtp = dovecotdoc.snippet("dakiya-lmtp", run_dir=server.run_dir)
    d = dakiya_factory(tables=lmtp)
    assert d.data_dir == data
    return d, server


def send(d, rcpts: list[str], subject: str) -> None:
    with d.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("sender@client.test")[0] == 250
        for r in rcpts:
            code, reply = s.rcpt(r)
            assert code == 250, reply
        code, reply = s.data(build_message("sender@client.test", ", ".join(rcpts), subject, "Hello over LMTP.\r\n"))
        assert code == 250, reply


def imap_subjects(server, user: str, password: str) -> list[bytes]:
    conn = server.imap(user, password)
    try:
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [p[1].strip() for p in data if isinstance(p, tuple)]
    finally:
        conn.logout()


@pytest.mark.parametrize("tempfail", [True, False], ids=["full-deferred", "full-bounced"])
def test_lmtp_one_delivered_one_refused(dakiya_bin, dakiya_factory, dovecot, work_dir, tempfail):
    d, server = dakiya_with_dovecot(dakiya_bin, dakiya_factory, dovecot, work_dir, "" if tempfail else "quota_full_tempfail = no")
    subject = f"over lmtp {tag()}"
    send(d, ["alice@example.test", "bob@example.test"], subject)
    d.wait_for_log(r"rcpt=alice@example\.test result=delivered via=unix:")
    if tempfail:
        m = d.wait_for_log(r"rcpt=bob@example\.test result=deferred via=unix:\S+ error=(.*)")
        assert "452" in m.group(1) and "4.2.2" in m.group(1), m.group(0)
    else:
        m = d.wait_for_log(r"rcpt=bob@example\.test result=failed via=unix:\S+ error=(.*)")
        assert "552" in m.group(1) and "5.2.2" in m.group(1), m.group(0)
        # The bounce to the sender names Dovecot's reply (queued for remote delivery).
        d.wait_for_log(r"queued delivery status notification")

    # The user added with `dakiya user add` reads alice's copy in Dovecot with that password.
    assert imap_subjects(server, "alice@example.test", PASSWORD) == [f"Subject: {subject}".encode()]
    assert server.errors() == [], server.errors()


def test_lmtp_reuses_its_session_and_reports_a_rate(dakiya_bin, dakiya_factory, dovecot, work_dir):
    d, server = dakiya_with_dovecot(dakiya_bin, dakiya_factory, dovecot, work_dir, quota=False)
    n = 30
    start = time.monotonic()
    with d.smtp() as s:
        s.ehlo("client.test")
        for i in range(n):
            assert s.mail("sender@client.test")[0] == 250
            assert s.rcpt("carol@example.test")[0] == 250
            assert s.data(build_message("sender@client.test", "carol@example.test", f"rate {i}", "x\r\n"))[0] == 250
    deadline = time.monotonic() + 60
    while len(re.findall(r"rcpt=carol@example\.test result=delivered", d.log())) < n:
        assert time.monotonic() < deadline, d.log()[-3000:]
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    print(f"\nLMTP to Dovecot: {n} messages in {elapsed:.2f} s, about {n / elapsed:.0f} messages/s (rough, debug build)")
    # Sessions were kept: far fewer LMTP connections than messages.
    connects = len(re.findall(r"lmtp\(\d+\): Info: Connect from local", server.log()))
    assert 1 <= connects < n, (connects, server.log()[-2000:])
    assert server.errors() == []
