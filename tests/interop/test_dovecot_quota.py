"""Maildir++ quota shared with Dovecot (docs/dovecot.md, "Quota").

dakiya delivers into alice's Maildir under a 4096-byte quota and keeps `maildirsize`; a
message that does not fit is deferred with 4.2.2; Dovecot (quota plugin, the guide's
snippet) appends to the same file through IMAP APPEND until the mailbox is exactly full;
then dakiya refuses alice at RCPT with 452 4.2.2, and Dovecot's GETQUOTAROOT reports the
usage both wrote.
"""

from __future__ import annotations

import re
import time

import dovecotdoc
from mailutil import build_message, tag

LIMIT = 4096


def send(d, to: str, body: str):
    with d.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("sender@client.test")[0] == 250
        code, reply = s.rcpt(to)
        if code != 250:
            return code, reply
        code, reply = s.data(build_message("sender@client.test", to, f"quota {tag()}", body))
        assert code == 250, reply
        return code, reply


def usage(maildirsize: str) -> int:
    lines = maildirsize.splitlines()
    assert lines[0] == f"{LIMIT}S,0C" or lines[0] == f"{LIMIT}S", lines
    return sum(int(line.split()[0]) for line in lines[1:])


def test_quota_shared_with_dovecot(dakiya_factory, dovecot):
    d = dakiya_factory(tables=dovecotdoc.snippet("dakiya-quota"))
    assert send(d, "alice@example.test", "small\r\n" * 20)[0] == 250
    [first] = d.wait_for_delivery("alice")
    size_file = d.maildir("alice") / "maildirsize"
    text = size_file.read_text()
    assert text == f"{LIMIT}S,0C\n0 0\n{first.stat().st_size} 1\n", text

    # Does not fit in what is left: accepted (not full yet), then deferred as mailbox full.
    assert send(d, "alice@example.test", "x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 60)[0] == 250
    d.wait_for_log(r"result=deferred.*mailbox full")
    assert len(d.new_files("alice")) == 1
    assert size_file.read_text() == text, "a refused message is not counted"

    # Dovecot fills the mailbox exactly, through its quota plugin, writing the same file.
    server = dovecot(d.data_dir, extra=dovecotdoc.snippet("dovecot-quota"))
    fill = LIMIT - usage(text)
    conn = server.imap("alice@example.test")
    try:
        # One line without a line end: imaplib turns LF into CRLF, which Dovecot's quota
        # check counts but its Maildir file (LF) does not; without one, both sizes are `fill`.
        message = b"X-Filler: " + b"z" * (fill - 10)
        assert len(message) == fill
        typ, data = conn.append("INBOX", None, None, message)
        assert typ == "OK", data
        typ, data = conn.getquotaroot("INBOX")
        assert typ == "OK", data
        # RFC 9208: STORAGE in units of 1024 octets, used and limit.
        assert b"(STORAGE 4 4)" in b" ".join(x for part in data for x in part if isinstance(x, bytes)), data
    finally:
        conn.logout()
    assert usage(size_file.read_text()) == LIMIT, size_file.read_text()

    # Known to be full now: refused at RCPT, before any data.
    code, reply = send(d, "alice@example.test", "one more\r\n")
    assert (code, reply) == (452, b"4.2.2 Mailbox full"), reply
    # bob has no quota.
    assert send(d, "bob@example.test", "hello\r\n")[0] == 250
    assert server.errors() == []
