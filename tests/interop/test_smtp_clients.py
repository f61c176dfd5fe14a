"""Real SMTP clients against a real dakiya: Python smtplib, swaks, curl, and raw sockets for BDAT.

The server (see conftest.py) is `mx.test`, local domain example.test with mailboxes alice, bob,
carol, jose, josé, and the alias team@example.test -> alice, bob.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest

from mailutil import Delivered, RawSMTP, build_message, queue_id_from_reply, tag, to_lf

SENDER = "sender@client.test"


def read_delivered(path) -> Delivered:
    raw = path.read_bytes()
    assert b"\r" not in raw, f"{path}: Maildir file has CR bytes; dakiya stores LF line endings: {raw[:300]!r}"
    return Delivered(raw, path)


def assert_trace_headers(msg: Delivered, *, sender: str, rcpt: str, queue_id: str | None = None):
    """The headers a delivering MTA adds: Return-Path, Delivered-To, Received."""
    assert msg.one("Return-Path") == f"<{sender}>"
    assert msg.one("Delivered-To").lower() == rcpt.lower()
    received = msg.all("Received")
    assert received, f"no Received: header in\n{msg.header_block.decode('utf-8', 'replace')}"
    # Ours is the topmost Received: (trace fields are prepended).
    assert "mx.test" in received[0], f"Received: header lacks the server's hostname mx.test: {received[0]!r}"
    if queue_id is not None:
        assert queue_id in received[0], f"Received: header lacks queue ID {queue_id!r}: {received[0]!r}"


def expected_body(body: str) -> bytes:
    return to_lf(body).encode("utf-8")


def send_with_queue_id(dakiya, sender: str, rcpts: list[str], message: str) -> str:
    """One transaction with smtplib's low-level calls; returns the ID from `250 ... queued as ID`."""
    with dakiya.smtp() as s:
        code, reply = s.ehlo("client.test")
        assert code == 250, reply
        code, reply = s.mail(sender)
        assert code == 250, reply
        for r in rcpts:
            code, reply = s.rcpt(r)
            assert code == 250, f"RCPT TO:<{r}> -> {code} {reply!r}"
        code, reply = s.data(message)
        assert code == 250, f"end of DATA -> {code} {reply!r}"
        return queue_id_from_reply(reply)


# --------------------------------------------------------------------------------------------
# smtplib
# --------------------------------------------------------------------------------------------


def test_smtplib_several_recipients_and_alias_deduplicated(dakiya):
    """alice and bob directly plus team (-> alice, bob): one copy per final mailbox."""
    subject = f"several recipients {tag()}"
    body = (
        "Hello alice and bob.\r\n"
        ".a line that starts with a dot (smtplib dot-stuffs it, dakiya must unstuff it)\r\n"
        "..two dots\r\n"
        "\r\n"
        "trailing spaces kept   \r\n"
        "last line\r\n"
    )
    message = build_message(SENDER, "alice@example.test, bob@example.test, team@example.test", subject, body)
    queue_id = send_with_queue_id(dakiya, SENDER, ["alice@example.test", "bob@example.test", "team@example.test"], message)

    dakiya.wait_for_log(rf"accepted queue_id={re.escape(queue_id)}\b")
    for mailbox in ("alice", "bob"):
        files = dakiya.wait_for_delivery(mailbox, count=1, settle=1.0)
        assert len(files) == 1, f"{mailbox} should get exactly one copy (direct + via alias deduplicated), got {len(files)}: {files}"
        msg = read_delivered(files[0])
        assert msg.body == expected_body(body)
        assert msg.one("Subject") == subject
        assert_trace_headers(msg, sender=SENDER, rcpt=f"{mailbox}@example.test", queue_id=queue_id)
    assert dakiya.new_files("carol") == []


def test_smtplib_alias_only(dakiya):
    subject = f"alias only {tag()}"
    body = "Only the alias team@ was named.\r\n"
    queue_id = send_with_queue_id(dakiya, SENDER, ["team@example.test"], build_message(SENDER, "team@example.test", subject, body))
    for mailbox in ("alice", "bob"):
        files = dakiya.wait_for_delivery(mailbox, count=1, settle=1.0)
        assert len(files) == 1, files
        msg = read_delivered(files[0])
        assert msg.body == expected_body(body)
        assert msg.one("Subject") == subject
        assert_trace_headers(msg, sender=SENDER, rcpt=f"{mailbox}@example.test", queue_id=queue_id)
    assert dakiya.new_files("carol") == []


def test_smtplib_two_messages_one_session(dakiya):
    """Two transactions on one connection (RSET-free, back to back) give two separate files."""
    subjects = [f"first {tag()}", f"second {tag()}"]
    with dakiya.smtp() as s:
        for subj in subjects:
            refused = s.sendmail(SENDER, ["carol@example.test"], build_message(SENDER, "carol@example.test", subj, f"body of {subj}\r\n"))
            assert refused == {}
    files = dakiya.wait_for_delivery("carol", count=2, settle=1.0)
    assert len(files) == 2, files
    got = sorted(read_delivered(f).one("Subject") for f in files)
    assert got == sorted(subjects)
    for f in files:
        msg = read_delivered(f)
        assert msg.body == f"body of {msg.one('Subject')}\n".encode()


UTF8_SENDER = "rené@client.test"
UTF8_RCPT = "josé@example.test"


def test_smtplib_smtputf8_sendmail(dakiya):
    subject = f"Grüße aus Köln ✉ {tag()}"
    body = "Ünïcödé body: naïve café, 日本語, emoji 📬\r\n"
    message = (
        f"From: {UTF8_SENDER}\r\n"
        f"To: {UTF8_RCPT}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{tag()}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{body}"
    ).encode("utf-8")
    with dakiya.smtp() as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8"), f"EHLO does not advertise SMTPUTF8: {s.esmtp_features}"
        assert s.has_extn("8bitmime"), f"EHLO does not advertise 8BITMIME: {s.esmtp_features}"
        refused = s.sendmail(UTF8_SENDER, [UTF8_RCPT], message, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}

    [path] = dakiya.wait_for_delivery("josé", count=1)
    assert path.parent.parent.name == "josé"
    raw = path.read_bytes()
    assert b"\r" not in raw
    assert f"\nSubject: {subject}\n".encode("utf-8") in raw
    assert f"Return-Path: <{UTF8_SENDER}>\n".encode("utf-8") in raw
    assert f"Delivered-To: {UTF8_RCPT}\n".encode("utf-8") in raw
    assert raw.endswith(b"\n\n" + to_lf(body).encode("utf-8"))
    # `jose` is a different mailbox from `josé`.
    assert dakiya.new_files("jose") == []


def test_smtplib_smtputf8_send_message(dakiya):
    """send_message() with an EmailMessage: smtplib adds SMTPUTF8 + BODY=8BITMIME itself when
    addresses are non-ASCII, and generates raw UTF-8 headers."""
    subject = f"Привет, José {tag()}"
    body = "Čeština, Ελληνικά, हिन्दी.\n"
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = UTF8_SENDER
    msg["To"] = UTF8_RCPT
    msg["Subject"] = subject
    msg.set_content(body, cte="8bit")
    with dakiya.smtp() as s:
        # No mail_options here: send_message() adds SMTPUTF8 itself; passing it too would send
        # the parameter twice.
        refused = s.send_message(msg)
        assert refused == {}

    [path] = dakiya.wait_for_delivery("josé", count=1)
    raw = path.read_bytes()
    assert f"\nSubject: {subject}\n".encode("utf-8") in raw
    assert f"Return-Path: <{UTF8_SENDER}>\n".encode("utf-8") in raw
    assert raw.endswith(b"\n\n" + body.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Rejections as real clients see them
# --------------------------------------------------------------------------------------------


def test_unknown_mailbox_refused_with_550(dakiya):
    with dakiya.smtp() as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
            s.sendmail(SENDER, ["nobody@example.test"], build_message(SENDER, "nobody@example.test", "x", "x\r\n"))
        code, reply = excinfo.value.recipients["nobody@example.test"]
        assert code == 550, f"unknown mailbox: expected 550, got {code} {reply!r}"
        # The session is still usable after the refusal.
        assert s.sendmail(SENDER, ["carol@example.test"], build_message(SENDER, "carol@example.test", "after refusal", "still here\r\n")) == {}
    [path] = dakiya.wait_for_delivery("carol", count=1)
    assert read_delivered(path).body == b"still here\n"
    assert not dakiya.maildir("nobody").exists()


def test_non_local_domain_refused_with_550_relay_denied(dakiya):
    with dakiya.smtp() as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
            s.sendmail(SENDER, ["someone@elsewhere.example"], build_message(SENDER, "someone@elsewhere.example", "x", "x\r\n"))
    code, reply = excinfo.value.recipients["someone@elsewhere.example"]
    assert code == 550, f"relay attempt: expected 550 (relay denied), got {code} {reply!r}"
    assert not (dakiya.data_dir / "mail" / "elsewhere.example").exists()


def test_mixed_recipients_only_good_ones_delivered(dakiya):
    rcpts = ["alice@example.test", "nobody@example.test", "someone@elsewhere.example"]
    subject = f"mixed {tag()}"
    with dakiya.smtp() as s:
        refused = s.sendmail(SENDER, rcpts, build_message(SENDER, ", ".join(rcpts), subject, "for alice only\r\n"))
    assert set(refused) == {"nobody@example.test", "someone@elsewhere.example"}, refused
    assert all(code == 550 for code, _ in refused.values()), refused
    [path] = dakiya.wait_for_delivery("alice", count=1, settle=1.0)
    msg = read_delivered(path)
    assert msg.one("Subject") == subject
    assert msg.body == b"for alice only\n"


# --------------------------------------------------------------------------------------------
# swaks (pipelining)
# --------------------------------------------------------------------------------------------


def swaks(*args, timeout=60) -> subprocess.CompletedProcess:
    exe = shutil.which("swaks")
    if not exe:
        pytest.fail("swaks is not installed (scripts/test installs it)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_swaks_pipelining(dakiya, work_dir):
    subject = f"swaks pipelining {tag()}"
    body = "Sent by swaks with --pipeline.\n.leading dot (swaks quotes it)\nend\n"
    data = work_dir / "swaks-message.txt"
    # No final newline in the file: swaks appends "\r\n." itself (a trailing newline in the
    # file would become an extra empty last line).
    data.write_text(f"From: {SENDER}\nTo: alice@example.test, bob@example.test\nSubject: {subject}\nMessage-ID: <{tag()}@client.test>\n\n{body.rstrip(chr(10))}")
    r = swaks(
        "--server", dakiya.host, "--port", str(dakiya.port), "--helo", "client.test",
        "--from", SENDER, "--to", "alice@example.test,bob@example.test",
        "--pipeline", "--data", f"@{data}", "--timeout", "20",
    )
    transcript = r.stdout + r.stderr
    assert r.returncode == 0, f"swaks exited {r.returncode}:\n{transcript}"
    assert re.search(r"^<-\s+250[ -]PIPELINING\s*$", transcript, re.M), f"server did not advertise PIPELINING:\n{transcript}"
    # Pipelined: MAIL, both RCPTs and DATA go out before the first reply to them is read.
    lines = [ln for ln in transcript.splitlines() if re.match(r"^\s*(->|<-)", ln)]
    first_mail = next(i for i, ln in enumerate(lines) if re.match(r"^\s*->\s+MAIL FROM", ln))
    sent_then = [ln.split(None, 1)[1].split()[0] for ln in lines[first_mail:first_mail + 4]]
    assert sent_then == ["MAIL", "RCPT", "RCPT", "DATA"] and all(ln.lstrip().startswith("->") for ln in lines[first_mail:first_mail + 4]), (
        f"swaks did not pipeline MAIL/RCPT/RCPT/DATA:\n{transcript}"
    )

    for mailbox in ("alice", "bob"):
        [path] = dakiya.wait_for_delivery(mailbox, count=1)
        msg = read_delivered(path)
        assert msg.one("Subject") == subject
        assert msg.body == body.encode()
        assert_trace_headers(msg, sender=SENDER, rcpt=f"{mailbox}@example.test")


# --------------------------------------------------------------------------------------------
# BDAT / CHUNKING. swaks 20201014 (Debian bookworm) has no BDAT support (no --bdat option; the
# BDAT option came and went in other versions), so BDAT is driven from Python with raw commands.
# --------------------------------------------------------------------------------------------


def ehlo_raw(c: RawSMTP) -> set[str]:
    c.expect(220)
    lines = c.expect(250, "EHLO client.test")
    return {ln.split()[0].upper() for ln in lines[1:] if ln.split()}


def bdat_message(subject: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{tag()}@client.test>\r\n\r\n"
        "first body line\r\n"
        ".a leading dot is literal in BDAT (no dot-stuffing)\r\n"
        ".\r\n"
        "the line above was a lone dot, not the end of the message\r\n"
        "split here\r\n"
        "last line\r\n"
    ).encode()


def test_bdat_chunks_split_inside_header_and_crlf(dakiya):
    subject = f"BDAT chunks {tag()}"
    message = bdat_message(subject)
    cut1 = message.index(b"Subject") + 3  # inside a header name
    cut2 = message.index(b"split here\r") + len(b"split here\r")  # between CR and LF
    chunks = [message[:cut1], message[cut1:cut2], message[cut2:]]
    with RawSMTP(dakiya.host, dakiya.port) as c:
        caps = ehlo_raw(c)
        assert "CHUNKING" in caps, f"EHLO does not advertise CHUNKING: {caps}"
        c.expect(250, f"MAIL FROM:<{SENDER}>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        for chunk in chunks[:-1]:
            c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
            c.expect(250)
        c.send(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
        queue_id = queue_id_from_reply(" ".join(c.expect(250)))
        c.expect(221, "QUIT")

    [path] = dakiya.wait_for_delivery("alice", count=1)
    msg = read_delivered(path)
    assert msg.one("Subject") == subject
    assert msg.body == to_lf(message.split(b"\r\n\r\n", 1)[1])
    assert_trace_headers(msg, sender=SENDER, rcpt="alice@example.test", queue_id=queue_id)


def test_bdat_pipelined_whole_transaction(dakiya):
    """MAIL, two RCPTs and a single BDAT LAST in one write (RFC 2920 + RFC 3030)."""
    subject = f"BDAT pipelined {tag()}"
    message = bdat_message(subject)
    with RawSMTP(dakiya.host, dakiya.port) as c:
        caps = ehlo_raw(c)
        assert {"CHUNKING", "PIPELINING"} <= caps, caps
        c.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n".encode()
            + b"BDAT %d LAST\r\n" % len(message) + message
            + b"QUIT\r\n"
        )
        for _ in range(3):
            c.expect(250)
        queue_id = queue_id_from_reply(" ".join(c.expect(250)))
        c.expect(221)

    for mailbox in ("alice", "bob"):
        [path] = dakiya.wait_for_delivery(mailbox, count=1)
        msg = read_delivered(path)
        assert msg.one("Subject") == subject
        assert msg.body == to_lf(message.split(b"\r\n\r\n", 1)[1])
        assert_trace_headers(msg, sender=SENDER, rcpt=f"{mailbox}@example.test", queue_id=queue_id)


# --------------------------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------------------------


def test_curl_upload(dakiya, work_dir):
    curl = shutil.which("curl")
    if not curl:
        pytest.fail("curl is not installed (scripts/test installs it)")
    subject = f"curl upload {tag()}"
    body = "Uploaded with curl.\r\n.leading dot (curl escapes it)\r\nbye\r\n"
    msgfile = work_dir / "curl-message.txt"
    msgfile.write_bytes(build_message(SENDER, "alice@example.test, bob@example.test", subject, body).encode())
    r = subprocess.run(
        [
            curl, "--silent", "--show-error", "--verbose", "--max-time", "30",
            f"smtp://{dakiya.host}:{dakiya.port}/client.test",
            "--mail-from", SENDER,
            "--mail-rcpt", "alice@example.test",
            "--mail-rcpt", "bob@example.test",
            "--upload-file", str(msgfile),
        ],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"curl exited {r.returncode}:\n{r.stderr}"
    for mailbox in ("alice", "bob"):
        [path] = dakiya.wait_for_delivery(mailbox, count=1)
        msg = read_delivered(path)
        assert msg.one("Subject") == subject
        assert msg.body == expected_body(body)
        assert_trace_headers(msg, sender=SENDER, rcpt=f"{mailbox}@example.test")
