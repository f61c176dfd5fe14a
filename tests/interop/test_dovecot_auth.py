"""One set of users for SMTP and IMAP (docs/dovecot.md, "Users").

* backend = "file": a user added with `dakiya user add` logs in to a real Dovecot, whose
  passdb is docs/dovecot.md's passwd-file snippet over dakiya's users file, and reads mail
  dakiya delivered; `dakiya user passwd` changes the password for Dovecot too.
* backend = "dovecot": dakiya's SMTP AUTH asks Dovecot's auth-client socket; accepts and
  refusals are exactly Dovecot's passdb's, and a stopped Dovecot means 454 4.7.0. POP3 logins
  reach Dovecot as service=pop3 and SMTP AUTH as service=smtp: a passdb whose file depends on
  the service (`%s`) accepts each protocol's own password only.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import subprocess
import time

import pytest

import dovecotdoc
from conftest import DOVECOT_PASSWORD, LOOPBACK, stop_process, toml_str
from mailutil import build_message, tag

PASSWORD = "correct horse battery staple 7"


def deliver(d, to: str, subject: str) -> None:
    with d.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("sender@client.test")[0] == 250
        assert s.rcpt(to)[0] == 250
        code, reply = s.data(build_message("sender@client.test", to, subject, "Hello.\r\n"))
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


def test_dakiya_user_logs_in_to_dovecot_and_reads_its_mail(dakiya, dovecot):
    dakiya.add_user("alice@example.test", PASSWORD)
    subject = f"one password {tag()}"
    deliver(dakiya, "alice@example.test", subject)
    dakiya.wait_for_delivery("alice")

    server = dovecot(dakiya.data_dir, passwd_file=dakiya.data_dir / "users")
    assert imap_subjects(server, "Alice@Example.test", PASSWORD) == [f"Subject: {subject}".encode()]

    # A new password set by dakiya is Dovecot's at once (the rewrite keeps group read).
    new_password = "a different one 8"
    r = subprocess.run([dakiya.binary, "user", "--config", str(dakiya.config_path), "passwd", "alice@example.test"],
                       input=new_password + "\n", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # Dovecot looks at the file at most once a second (and compares mtime in seconds and size;
    # dakiya gives a same-size rewrite a distinct mtime, else it would never be seen).
    deadline = time.monotonic() + 5
    while True:
        try:
            subjects = imap_subjects(server, "alice@example.test", new_password)
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline, "Dovecot did not take the new password"
            time.sleep(0.5)
    assert subjects == [f"Subject: {subject}".encode()]
    # Last: a failure makes Dovecot delay this client's next logins.
    with pytest.raises(imaplib.IMAP4.error):
        server.imap("alice@example.test", PASSWORD)
    assert server.errors() == []


def smtp_login(port: int, user: str, password: str) -> tuple[int, bytes]:
    with smtplib.SMTP(LOOPBACK, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        try:
            return s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, e.smtp_error
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error


def test_smtp_auth_asks_dovecot(dakiya_factory, dovecot, work_dir):
    mail = work_dir / "dovecot-data" / "mail"
    mail.mkdir(parents=True)
    # Dovecot's own passdb (plaintext passwd-file) knows alice and bob; dakiya has no users.
    server = dovecot(mail.parent, extra=dovecotdoc.snippet("auth-client"))
    socket_path = server.run_dir / "auth-client"
    d = dakiya_factory(
        listeners=[(f"{LOOPBACK}:0", "submission")],
        tables=f'[auth]\nplaintext_on_loopback = true\nbackend = "dovecot"\nsocket = {toml_str(str(socket_path))}\n',
    )
    port = d.port_of("submission")
    code, _ = smtp_login(port, "alice@example.test", DOVECOT_PASSWORD)
    assert code == 235
    code, _ = smtp_login(port, "bob@example.test", DOVECOT_PASSWORD)
    assert code == 235
    code, text = smtp_login(port, "alice@example.test", "not-the-password")
    assert code == 535, text
    code, text = smtp_login(port, "carol@example.test", DOVECOT_PASSWORD)  # not in Dovecot's passdb
    assert code == 535, text
    assert "auth: passwd-file(carol@example.test" in server.log() or "unknown user" in server.log()

    stop_process(server.proc)
    code, text = smtp_login(port, "alice@example.test", DOVECOT_PASSWORD)
    assert (code, text) == (454, b"4.7.0 Temporary authentication failure"), text
    d.wait_for_log(r"password check failed.*dovecot auth unix:")


def pop3_login(port: int, user: str, password: str) -> bytes:
    """USER/PASS in clear (plaintext_on_loopback); the server's answer to PASS."""
    p = poplib.POP3(LOOPBACK, port, timeout=30)
    try:
        p.user(user)
        try:
            return p.pass_(password)
        except poplib.error_proto as e:
            return e.args[0]
    finally:
        p.quit()


def test_each_protocol_reaches_dovecot_as_its_service(dakiya_factory, dovecot, work_dir):
    mail = work_dir / "dovecot-data" / "mail"
    mail.mkdir(parents=True)
    # Dovecot's passdb file is chosen by the service (%s): alice has one password for smtp and
    # another for pop3. Had dakiya sent the wrong service, the other password would be right.
    passdbs = work_dir / "passdb-by-service"
    passdbs.mkdir()
    passdbs.chmod(0o755)
    for service in ("smtp", "pop3"):
        f = passdbs / f"{service}.passwd"
        f.write_text(f"alice@example.test:{{PLAIN}}only-for-{service}::::::\n")
        f.chmod(0o644)
    passdb = f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {passdbs}/%s.passwd\n}}\n"
    # users=(): the fixture's own passdb (tried first) knows nobody.
    server = dovecot(mail.parent, users=(), extra=dovecotdoc.snippet("auth-client") + passdb)
    socket_path = server.run_dir / "auth-client"
    d = dakiya_factory(
        listeners=[(f"{LOOPBACK}:0", "submission"), (f"{LOOPBACK}:0", "pop3")],
        tables=f'[auth]\nplaintext_on_loopback = true\nbackend = "dovecot"\nsocket = {toml_str(str(socket_path))}\n',
    )
    smtp, pop3 = d.port_of("submission"), d.port_of("pop3")
    assert pop3_login(pop3, "alice@example.test", "only-for-pop3").startswith(b"+OK"), server.log()
    assert pop3_login(pop3, "alice@example.test", "only-for-smtp").startswith(b"-ERR [AUTH]")
    assert smtp_login(smtp, "alice@example.test", "only-for-smtp")[0] == 235
    assert smtp_login(smtp, "alice@example.test", "only-for-pop3")[0] == 535


def test_guide_snippets_are_the_tested_ones():
    """Every snippet of docs/dovecot.md is used by some test (the test files name them)."""
    import pathlib

    here = pathlib.Path(__file__).parent
    sources = "".join(p.read_text() for p in here.glob("*.py"))
    for name in dovecotdoc.snippets():
        assert f'snippet("{name}"' in sources, f"docs/dovecot.md snippet {name!r} is not used by any test"
