"""Dovecot as the real reader of dakiya's Maildirs (mail_location = maildir:DATA/mail/%d/%n)."""

from __future__ import annotations

import imaplib
import os
import time

import pytest

from mailutil import build_message, queue_id_from_reply, tag, to_lf


def crlf(data: bytes) -> bytes:
    """IMAP serves messages with CRLF line endings."""
    return to_lf(data).replace(b"\n", b"\r\n")


def fetch_one(conn: imaplib.IMAP4, seq: str, item: str) -> bytes:
    typ, data = conn.fetch(seq, f"({item})")
    assert typ == "OK", (typ, data)
    parts = [p for p in data if isinstance(p, tuple)]
    assert len(parts) == 1, f"FETCH {seq} ({item}) returned {data!r}"
    return parts[0][1]


def select_inbox(conn: imaplib.IMAP4) -> int:
    typ, data = conn.select("INBOX", readonly=True)
    assert typ == "OK", (typ, data)
    return int(data[0])


def test_dovecot_fixture_reads_handmade_maildir(dovecot, work_dir):
    """Proves the Dovecot fixture on its own, independent of dakiya: a hand-written Maildir file
    in new/ is served over IMAP, and a wrong password is refused."""
    data = work_dir / "data"
    maildir = data / "mail" / "example.test" / "alice"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    subject = f"hand-made {tag()}"
    body = b"Hello from a hand-made Maildir.\nSecond line.\n"
    message = f"From: someone@client.test\nTo: alice@example.test\nSubject: {subject}\n\n".encode() + body
    (maildir / "new" / f"{int(time.time())}.M1P{os.getpid()}.handmade").write_bytes(message)

    server = dovecot(data)

    conn = server.imap("alice@example.test")
    try:
        assert select_inbox(conn) == 1
        assert fetch_one(conn, "1", "BODY.PEEK[TEXT]") == crlf(body)
        assert fetch_one(conn, "1", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]").strip() == f"Subject: {subject}".encode()
        assert fetch_one(conn, "1", "BODY.PEEK[]") == crlf(message)
    finally:
        conn.logout()

    # bob's Maildir doesn't exist: Dovecot must show an empty INBOX, not alice's mail.
    conn = server.imap("bob@example.test")
    try:
        assert select_inbox(conn) == 0
    finally:
        conn.logout()

    # Authentication is real (last: a failure makes Dovecot delay that client's next logins).
    with pytest.raises(imaplib.IMAP4.error):
        server.imap("alice@example.test", "wrong-password")
    assert server.errors() == []


def test_message_sent_through_dakiya_is_read_by_dovecot(dakiya, dovecot):
    sender = "sender@client.test"
    subject = f"via dakiya to dovecot {tag()}"
    body = "Dear Alice,\r\n\r\n.this line started with a dot on the wire\r\nRegards,\r\nthe interop suite\r\n"
    message = build_message(sender, "alice@example.test", subject, body)

    with dakiya.smtp() as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        code, reply = s.rcpt("alice@example.test")
        assert code == 250, reply
        code, reply = s.data(message)
        assert code == 250, reply
        queue_id = queue_id_from_reply(reply)

    [path] = dakiya.wait_for_delivery("alice", count=1)
    on_disk = path.read_bytes()

    server = dovecot(dakiya.data_dir)
    conn = server.imap("alice@example.test")
    try:
        assert select_inbox(conn) == 1
        assert fetch_one(conn, "1", "BODY.PEEK[TEXT]") == body.encode()
        assert fetch_one(conn, "1", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]").strip() == f"Subject: {subject}".encode()
        # Dovecot serves the whole file as dakiya wrote it (with the trace headers dakiya added).
        whole = fetch_one(conn, "1", "BODY.PEEK[]")
        assert whole == crlf(on_disk)
        assert queue_id.encode() in fetch_one(conn, "1", "BODY.PEEK[HEADER.FIELDS (RECEIVED)]")
        # RFC822.SIZE is computed by Dovecot, or taken from the ,W= (CRLF size) in dakiya's file
        # name; either way it must equal the size of the message as served.
        typ, data = conn.fetch("1", "(RFC822.SIZE)")
        assert typ == "OK"
        assert f"RFC822.SIZE {len(whole)}".encode() in data[0], data
    finally:
        conn.logout()

    conn = server.imap("bob@example.test")
    try:
        assert select_inbox(conn) == 0
    finally:
        conn.logout()
    # e.g. a wrong ,S=size in a Maildir file name shows up here as "Maildir ... wrong S value".
    assert server.errors() == []
