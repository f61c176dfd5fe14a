"""Submission with TLS and AUTH against real clients: swaks, Python smtplib, curl, openssl
s_client, and raw sockets for what real clients won't do (command injection, relay tricks,
connecting from another loopback address).

Every test starts its own dakiya (conftest `dakiya_factory`) with three listeners on 127.0.0.1:0
— mx, submission (STARTTLS) and submissions (implicit TLS) — the local domain example.test
(mailboxes alice, bob, carol, jose, josé; alias team -> alice, bob), the generated self-signed
certificate in DATA/tls/cert.pem, and the user alice@example.test added with
`dakiya user --config FILE add` (password on stdin).

Loopback only: 127.0.0.1 is the usual client; 127.0.0.2 (a socket bound to it before connect)
is a second client address for per-IP behaviour (relay control, brute-force lockout).
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from mailutil import Delivered, RawSMTP, build_message, queue_id_from_reply, spool_messages, tag, to_lf

ALICE = "alice@example.test"
BOB = "bob@example.test"
REMOTE = "carol@elsewhere.test"
# The test's own constants. Assertion messages may show them; the server must never log them.
PASSWORD = "Interop-Secret-7f3a"
WRONG_PASSWORD = "Wrong-Guess-91c2"

HOST = "127.0.0.1"
OTHER_IP = "127.0.0.2"
LISTENERS = [(f"{HOST}:0", "mx"), (f"{HOST}:0", "submission"), (f"{HOST}:0", "submissions")]

BRUTE_FORCE_AUTH = """\
[auth]
max_failures = 3
failure_window = "10m"
lockout = "10m"
failure_delay = "1s"
"""

# TLS 1.3 suites dakiya offers (docs/tls.md), by their IANA names (OpenSSL uses the same ones).
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
# OpenSSL name -> IANA name for the TLS 1.2 suites usable with the generated ECDSA certificate.
TLS12_IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def start(dakiya_factory, top: str = "", tables: str = ""):
    server = dakiya_factory(listeners=LISTENERS, top=top, tables=tables)
    assert set(server.ports) == {"mx", "submission", "submissions"}, server.listeners
    assert len({p for _h, p, _r in server.listeners}) == 3, server.listeners
    server.add_user(ALICE, PASSWORD)
    return server


@pytest.fixture
def sub(dakiya_factory):
    """dakiya with mx, submission and submissions listeners and the user alice."""
    return start(dakiya_factory)


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def trusting_context(server) -> ssl.SSLContext:
    """Verifies the server against its generated certificate (SANs include 127.0.0.1)."""
    assert server.cert_path.is_file(), f"no generated certificate at {server.cert_path}"
    return ssl.create_default_context(cafile=str(server.cert_path))


def plain_response(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def read_delivered(path) -> Delivered:
    return Delivered(path.read_bytes(), path)


def delivered_with(server, mailbox: str, marker: str) -> Delivered:
    """The one message in the mailbox whose Subject contains `marker`."""
    files = server.wait_for_delivery(mailbox)
    found = [m for m in (read_delivered(p) for p in files) if any(marker in s for s in m.all("Subject"))]
    assert len(found) == 1, f"{mailbox}: expected one message with {marker!r} in Subject:, found {len(found)} among {[p.name for p in files]}"
    return found[0]


def top_received(msg: Delivered) -> str:
    received = msg.all("Received")
    assert received, f"no Received: header in\n{msg.header_block.decode('utf-8', 'replace')}"
    return received[0]


def assert_received_submission(received: str, *, version: str, cipher: str | None = None, user: str = ALICE):
    """dakiya's Received: for a message submitted over TLS after AUTH (RFC 3848 ESMTPSA)."""
    m = re.search(r"\(using (TLSv1\.[23]) with cipher (\S+)\)", received)
    assert m, f"Received: does not record the TLS version and cipher: {received!r}"
    assert m.group(1) == version, f"Received: says {m.group(1)}, the client negotiated {version}: {received!r}"
    if cipher is not None:
        assert m.group(2) == cipher, f"Received: says cipher {m.group(2)}, the client negotiated {cipher}: {received!r}"
    assert f"(authenticated as {user})" in received, f"Received: does not name the authenticated user: {received!r}"
    assert re.search(r"\bwith ESMTPSA\b", received), f"Received: protocol is not ESMTPSA: {received!r}"
    assert "by mx.test (dakiya)" in received, received


def assert_no_secret_in_log(server):
    """docs/auth.md: never log the AUTH line, the decoded SASL response or the password."""
    log = server.log()
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in log, "a password appears in the server log"
        for user in (ALICE, "nobody@example.test"):
            assert plain_response(user, secret) not in log, "an AUTH PLAIN response appears in the server log"
        assert base64.b64encode(secret.encode()).decode() not in log, "an AUTH LOGIN password appears in the server log"


def submission_smtp(server, *, source: str | None = None, timeout: float = 15.0) -> smtplib.SMTP:
    """smtplib to the submission port, EHLO'd and upgraded with STARTTLS (no verification)."""
    s = smtplib.SMTP(HOST, server.port_of("submission"), local_hostname="client.test", timeout=timeout,
                     source_address=(source, 0) if source else None)
    s.ehlo()
    assert s.has_extn("starttls"), f"submission EHLO does not offer STARTTLS: {s.esmtp_features}"
    code, reply = s.starttls(context=insecure_context())
    assert code == 220, (code, reply)
    s.ehlo()
    return s


def run(cmd, *, input=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)


def spool_remote_messages(server) -> list[dict]:
    """Envelopes in the queue with at least one non-local recipient (mailbox null)."""
    return [env for _p, env in spool_messages(server.data_dir) if any(r.get("mailbox") is None for r in env["recipients"])]


# --------------------------------------------------------------------------------------------
# swaks
# --------------------------------------------------------------------------------------------


def swaks(server, port: int, *tls_args: str, mechanism: str, subject: str, body: str) -> subprocess.CompletedProcess:
    cmd = [
        "swaks", "--server", f"{HOST}:{port}", *tls_args,
        "--auth", mechanism, "--auth-user", ALICE, "--auth-password", PASSWORD, "--auth-hide-password",
        "--from", ALICE, "--to", BOB, "--ehlo", "client.test",
        "--header", f"Subject: {subject}", "--body", body, "--timeout", "20",
    ]  # fmt: skip
    return run(cmd)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_delivers(sub, mechanism):
    subject = f"swaks starttls {mechanism} {tag()}"
    body = f"sent with swaks --tls --auth {mechanism}"
    r = swaks(sub, sub.port_of("submission"), "--tls", mechanism=mechanism, subject=subject, body=body)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"swaks exited {r.returncode}:\n{out}"
    assert re.search(r"TLS started with cipher TLSv1\.3:", out), f"swaks did not negotiate TLS 1.3:\n{out}"
    assert re.search(rf"~> AUTH {mechanism}\b", out), f"swaks did not use AUTH {mechanism}:\n{out}"
    assert "235 2.7.0" in out, out
    queue_id = queue_id_from_reply(out)

    msg = delivered_with(sub, "bob", subject)
    assert body.encode() in msg.body, msg.body
    assert msg.one("Return-Path") == f"<{ALICE}>"
    received = top_received(msg)
    assert queue_id in received, received
    assert_received_submission(received, version="TLSv1.3")
    assert_no_secret_in_log(sub)


def test_swaks_implicit_tls_on_submissions(sub):
    subject = f"swaks tlsc {tag()}"
    body = "sent with swaks --tlsc (implicit TLS, RFC 8314)"
    r = swaks(sub, sub.port_of("submissions"), "--tlsc", mechanism="PLAIN", subject=subject, body=body)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"swaks exited {r.returncode}:\n{out}"
    assert re.search(r"TLS started with cipher TLSv1\.3:", out), out
    assert "~> STARTTLS" not in out, f"swaks used STARTTLS on the implicit-TLS port:\n{out}"
    assert "235 2.7.0" in out, out

    msg = delivered_with(sub, "bob", subject)
    assert body.encode() in msg.body
    assert_received_submission(top_received(msg), version="TLSv1.3")


# --------------------------------------------------------------------------------------------
# smtplib
# --------------------------------------------------------------------------------------------


def test_smtplib_starttls_login_local_and_remote_recipient(sub):
    subject = f"smtplib local+remote {tag()}"
    body = "one local and one remote recipient\r\n"
    message = build_message(ALICE, f"{BOB}, {REMOTE}", subject, body)
    with submission_smtp(sub) as s:
        assert s.sock.version() == "TLSv1.3", s.sock.version()
        assert "auth" in s.esmtp_features, f"AUTH not offered after STARTTLS: {s.esmtp_features}"
        code, _ = s.login(ALICE, PASSWORD)
        assert code == 235
        refused = s.sendmail(ALICE, [BOB, REMOTE], message)
        assert refused == {}, refused

    # Local copy delivered.
    msg = delivered_with(sub, "bob", subject)
    assert msg.body == to_lf(body).encode()
    # The remote copy is queued for outbound delivery; the tests' resolver is a closed loopback
    # port, so its MX lookup fails temporarily and it stays in the spool, deferred.
    remote = spool_remote_messages(sub)
    assert len(remote) == 1, f"expected one queued message with a remote recipient, got {remote!r}"
    env = remote[0]
    assert env["sender"] == ALICE, env
    assert env["client_ip"] == HOST, env
    addresses = [r["address"] for r in env["recipients"] if r["mailbox"] is None]
    assert addresses == [REMOTE], env["recipients"]
    # The queued copy carries the same Received: with the TLS and AUTH details.
    path = next(p for p, e in spool_messages(sub.data_dir) if e["id"] == env["id"])
    raw = path.read_bytes()
    assert f"Subject: {subject}".encode() in raw
    assert b"with ESMTPSA" in raw and f"(authenticated as {ALICE})".encode() in raw
    # (The resolver gives up after its timeouts: 2 attempts of 5 s.)
    sub.wait_for_log(rf"queue_id={env['id']} rcpt={re.escape(REMOTE)} result=deferred", timeout=40)


def test_smtplib_smtp_ssl_on_submissions_verifies_generated_cert(sub):
    """Implicit TLS; the client verifies the certificate dakiya generated (CN/SAN 127.0.0.1)."""
    port = sub.port_of("submissions")
    subject = f"smtp_ssl {tag()}"
    message = build_message(ALICE, BOB, subject, "over implicit TLS\r\n")
    with smtplib.SMTP_SSL(HOST, port, local_hostname="client.test", context=trusting_context(sub), timeout=15) as s:
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        assert version == "TLSv1.3", version
        s.ehlo()
        assert "starttls" not in s.esmtp_features, f"STARTTLS offered inside implicit TLS: {s.esmtp_features}"
        assert "auth" in s.esmtp_features and "PLAIN" in s.esmtp_features["auth"].upper().split(), s.esmtp_features
        s.login(ALICE, PASSWORD)
        assert s.sendmail(ALICE, [BOB], message) == {}
    msg = delivered_with(sub, "bob", subject)
    assert_received_submission(top_received(msg), version=version, cipher=cipher)

    # A plaintext client on the implicit-TLS port gets no SMTP greeting.
    with socket.create_connection((HOST, port), timeout=5) as raw:
        raw.settimeout(1.0)
        try:
            first = raw.recv(100)
        except socket.timeout:
            first = b""
        assert not first.startswith(b"220"), f"plaintext greeting on the submissions port: {first!r}"


@pytest.mark.parametrize("tls_version", ["TLSv1.3", "TLSv1.2"])
def test_received_header_records_tls_and_auth(sub, tls_version):
    ctx = insecure_context()
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, tls_version.replace(".", "_"))
    subject = f"received {tls_version} {tag()}"
    with smtplib.SMTP(HOST, sub.port_of("submission"), local_hostname="client.test", timeout=15) as s:
        s.starttls(context=ctx)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        assert version == tls_version
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [BOB], build_message(ALICE, BOB, subject, "trace\r\n"))
    if tls_version == "TLSv1.3":
        assert cipher in TLS13_SUITES, cipher
        iana = cipher
    else:
        assert cipher in TLS12_IANA, f"unexpected TLS 1.2 suite {cipher}"
        iana = TLS12_IANA[cipher]
    received = top_received(delivered_with(sub, "bob", subject))
    assert_received_submission(received, version=tls_version, cipher=iana)
    assert received.startswith("from client.test ([127.0.0.1])"), received
    assert f"for <{BOB}>" in received, received


def test_plaintext_on_loopback_allows_auth_without_tls(dakiya_factory):
    """plaintext_on_loopback = true: AUTH offered and accepted in plaintext from 127.0.0.1;
    the Received: header then says ESMTPA and records no TLS."""
    server = start(dakiya_factory, tables="[auth]\nplaintext_on_loopback = true\n")
    subject = f"plaintext loopback {tag()}"
    with smtplib.SMTP(HOST, server.port_of("submission"), local_hostname="client.test", timeout=15) as s:
        s.ehlo()
        assert "auth" in s.esmtp_features, f"AUTH not offered in plaintext on loopback: {s.esmtp_features}"
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [BOB], build_message(ALICE, BOB, subject, "no TLS\r\n"))
    received = top_received(delivered_with(server, "bob", subject))
    assert re.search(r"\bwith ESMTPA\b", received), received
    assert "using TLS" not in received, received
    assert f"(authenticated as {ALICE})" in received, received


# --------------------------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------------------------


def test_curl_ssl_reqd_auth_delivers(sub, work_dir):
    subject = f"curl {tag()}"
    body = "sent with curl --ssl-reqd\r\n"
    f = work_dir / "curl-message.eml"
    f.write_bytes(build_message(ALICE, BOB, subject, body).encode())
    r = run([
        "curl", "-sS", "-v", "--ssl-reqd", "-k", "--max-time", "30",
        "--user", f"{ALICE}:{PASSWORD}",
        f"smtp://{HOST}:{sub.port_of('submission')}",
        "--mail-from", ALICE, "--mail-rcpt", BOB, "--upload-file", str(f),
    ])  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"curl exited {r.returncode}:\n{out}"
    assert "> STARTTLS" in out and "< 235 " in out, out
    msg = delivered_with(sub, "bob", subject)
    assert msg.body == to_lf(body).encode()
    assert_received_submission(top_received(msg), version="TLSv1.3")


# --------------------------------------------------------------------------------------------
# openssl s_client: versions and session tickets
# --------------------------------------------------------------------------------------------


def s_client(port: int, *args: str, starttls: bool = True, timeout: float = 20) -> tuple[int, str]:
    """openssl s_client; sends EHLO and QUIT after the handshake (-ign_eof: stdin's end does
    not close early, and a line starting with Q is sent, not taken as "quit"), so it reads
    application data — which any post-handshake NewSessionTicket would precede."""
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-crlf", "-ign_eof", *args]
    if starttls:
        cmd[2:2] = ["-starttls", "smtp"]
    r = run(cmd, input="EHLO probe.test\nQUIT\n", timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def sess_text(path) -> str:
    r = run(["openssl", "sess_id", "-in", str(path), "-text", "-noout"])
    assert r.returncode == 0, r.stderr
    return r.stdout


def ticket_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "NewSessionTicket" in ln or "New Session Ticket" in ln]


class TicketingStartTLSServer:
    """Control for the ticket check: a minimal STARTTLS responder whose TLS is Python's
    (OpenSSL), which sends two TLS 1.3 tickets by default. The same s_client invocation must
    see them, or the check proves nothing."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _line(sock) -> bytes:
        buf = b""
        while not buf.endswith(b"\r\n"):
            c = sock.recv(1)
            if not c:
                break
            buf += c
        return buf

    def _serve(self):
        self.listener.settimeout(20)
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(20)
            conn.sendall(b"220 control ESMTP\r\n")
            self._line(conn)
            conn.sendall(b"250-control\r\n250 STARTTLS\r\n")
            self._line(conn)
            conn.sendall(b"220 go ahead\r\n")
            tls = self.ctx.wrap_socket(conn, server_side=True)
            while line := self._line(tls):
                if line.upper().startswith(b"QUIT"):
                    tls.sendall(b"221 bye\r\n")
                    break
                tls.sendall(b"250 ok\r\n")
            tls.close()
        except OSError:
            pass
        finally:
            self.listener.close()


def test_openssl_starttls_tls13_and_no_session_ticket(sub, work_dir):
    port = sub.port_of("submission")
    rc, out = s_client(port, "-brief")
    assert rc == 0, out
    assert "Protocol version: TLSv1.3" in out, out
    assert "250 AUTH PLAIN LOGIN" in out and "221 2.0.0" in out, out

    # Control: the detector sees the tickets of a server that sends them.
    control = TicketingStartTLSServer(sub.cert_path, sub.data_dir / "tls" / "key.pem")
    control_sess = work_dir / "control.sess"
    _rc, cout = s_client(control.port, "-msg", "-sess_out", str(control_sess))
    control.thread.join(10)
    assert ticket_lines(cout), f"control server's tickets not detected; the check is broken:\n{cout}"
    assert control_sess.exists() and "TLS session ticket:" in sess_text(control_sess), "control session has no ticket"

    # dakiya: TLS 1.3 without NewSessionTicket (docs/tls.md: send_tls13_tickets = 0).
    sess = work_dir / "dakiya13.sess"
    rc, out = s_client(port, "-msg", "-sess_out", str(sess))
    assert rc == 0, out
    assert "New, TLSv1.3" in out, out
    assert "221 2.0.0" in out, f"the exchange after the handshake did not complete:\n{out}"
    assert not ticket_lines(out), "dakiya sent TLS 1.3 session tickets:\n" + "\n".join(ticket_lines(out))
    # s_client saves a TLS 1.3 session only when a ticket arrives; if one was saved, it has no ticket.
    if sess.exists():
        assert "TLS session ticket:" not in sess_text(sess), sess_text(sess)

    # Implicit TLS on the submissions port: the same.
    rc, out = s_client(sub.port_of("submissions"), "-msg", starttls=False)
    assert rc == 0 and "New, TLSv1.3" in out and "221 2.0.0" in out, out
    assert not ticket_lines(out), "\n".join(ticket_lines(out))


def test_openssl_tls12_works_without_tickets_and_resumes_by_session_id(sub, work_dir):
    port = sub.port_of("submission")
    sess = work_dir / "dakiya12.sess"
    rc, out = s_client(port, "-tls1_2", "-msg", "-sess_out", str(sess))
    assert rc == 0, out
    m = re.search(r"New, TLSv1\.2, Cipher is (\S+)", out)
    assert m, out
    assert m.group(1) in TLS12_IANA, f"unexpected TLS 1.2 suite {m.group(1)}"
    assert "250 AUTH PLAIN LOGIN" in out and "221 2.0.0" in out, out
    # No RFC 5077 ticket (no ticketer), but a session ID for stateful resumption.
    assert not ticket_lines(out), "\n".join(ticket_lines(out))
    text = sess_text(sess)
    assert "TLS session ticket:" not in text, text
    assert re.search(r"Session-ID: [0-9A-F]{16,}", text), text

    rc, out = s_client(port, "-tls1_2", "-sess_in", str(sess))
    assert rc == 0, out
    assert re.search(r"Reused, TLSv1\.2", out), f"TLS 1.2 session ID resumption did not happen (docs/tls.md):\n{out}"


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_openssl_tls11_refused_by_server(sub, role):
    # SECLEVEL=0 lets this OpenSSL offer TLS 1.1 at all; the refusal must come from the server.
    rc, out = s_client(sub.port_of(role), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-msg", starttls=(role == "submission"))
    assert rc != 0, out
    assert re.search(r">>> TLS 1\.1, Handshake \[length [0-9a-f]+\], ClientHello", out), f"the client did not offer TLS 1.1:\n{out}"
    assert re.search(r"<<< TLS 1\.[0-3], Alert \[length 0002\], fatal (protocol_version|handshake_failure)", out), f"no fatal alert from the server:\n{out}"
    assert "Cipher is (NONE)" in out and "250 AUTH" not in out, out


# --------------------------------------------------------------------------------------------
# AUTH errors and sender ownership
# --------------------------------------------------------------------------------------------


def test_wrong_password_gets_535(sub):
    with submission_smtp(sub) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(ALICE, WRONG_PASSWORD)
        assert e.value.smtp_code == 535, e.value
        assert e.value.smtp_error.startswith(b"5.7.8"), e.value.smtp_error
        code, reply = s.mail(ALICE)
        assert code == 530, (code, reply)
    # An unknown user gets the same answer (one attempt: each failure slows the next by 1 s).
    with submission_smtp(sub) as s:
        code, reply = s.docmd("AUTH", f"PLAIN {plain_response('nobody@example.test', PASSWORD)}")
        assert (code, reply) == (535, b"5.7.8 Authentication credentials invalid"), (code, reply)
    sub.wait_for_log(r"result=failed")
    assert_no_secret_in_log(sub)


def test_auth_before_starttls_on_submission_gets_530(sub):
    with RawSMTP(HOST, sub.port_of("submission")) as c:
        c.expect(220)
        ehlo = c.expect(250, "EHLO client.test")
        assert "STARTTLS" in ehlo, ehlo
        assert not any(ln.upper().startswith("AUTH") for ln in ehlo), f"AUTH advertised before TLS: {ehlo}"
        text = c.expect(530, f"AUTH PLAIN {plain_response(ALICE, PASSWORD)}")
        assert text[0].startswith("5.7.0"), text
        text = c.expect(530, "AUTH LOGIN")
        assert text[0].startswith("5.7.0"), text
        code, text = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert code == 530, (code, text)
    assert "result=ok" not in sub.log()


def test_mail_before_auth_gets_530(sub):
    with submission_smtp(sub) as s:
        code, reply = s.mail(ALICE)
        assert (code, reply) == (530, b"5.7.0 Authentication required"), (code, reply)
        code, reply = s.rcpt(BOB)
        assert code in (503, 530), (code, reply)
        # The trusted-networks default is empty, and in any case submission requires AUTH.
        s.login(ALICE, PASSWORD)
        code, reply = s.mail(ALICE)
        assert code == 250, (code, reply)


def test_sender_not_owned_gets_553(sub):
    with submission_smtp(sub) as s:
        s.login(ALICE, PASSWORD)
        code, reply = s.mail(BOB)
        assert code == 553, (code, reply)
        assert reply.startswith(b"5.7.1"), reply
        code, reply = s.mail("someone@elsewhere.test")
        assert code == 553, (code, reply)
        # Allowed (docs: own address, +tag variants, the null sender).
        for sender in (ALICE, "alice+lists@example.test", ""):
            code, reply = s.mail(sender)
            assert code == 250, (sender, code, reply)
            s.rset()
        # After a refused MAIL no transaction is open: RCPT needs MAIL first.
        code, _ = s.mail(BOB)
        assert code == 553
        code, reply = s.rcpt(BOB)
        assert code == 503, (code, reply)
    assert spool_messages(sub.data_dir) == []


# --------------------------------------------------------------------------------------------
# STARTTLS command injection (CVE-2011-0411)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["submission", "mx"])
def test_starttls_command_injection_discarded(sub, role):
    with RawSMTP(HOST, sub.port_of(role)) as c:
        c.expect(220)
        c.expect(250, "EHLO x")
        # STARTTLS and an injected command in one segment, as a man in the middle would.
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
        code, text = c.reply()
        assert code == 220, (code, text)
        # Nothing more in plaintext: the injected MAIL must not be answered before TLS.
        c.sock.settimeout(0.5)
        try:
            extra = c.sock.recv(100, socket.MSG_PEEK)
        except socket.timeout:
            extra = b""
        assert extra == b"", f"plaintext after 220 to STARTTLS: {extra!r}"
        c.sock.settimeout(10)
        c.starttls(insecure_context())

        c.send(b"EHLO x\r\n")
        code, text = c.reply()
        assert code == 250 and text[0].startswith("mx.test"), f"first reply after TLS is not the EHLO reply (injected command answered?): {code} {text}\n" + "\n".join(c.transcript)
        assert "STARTTLS" not in text, text
        if role == "submission":
            assert any(ln.startswith("AUTH ") for ln in text), f"AUTH not offered after STARTTLS: {text}"
        text = c.expect(250, "NOOP")
        assert text == ["2.0.0 Ok"], f"an extra reply was pending after the EHLO reply: {text}\n" + "\n".join(c.transcript)
        if role == "submission":
            code, text = c.cmd("MAIL FROM:<evil@x.test>")
            assert code == 530 and text[0].startswith("5.7.0"), (code, text)
        else:
            # No transaction was opened by the injected MAIL: a new one starts cleanly.
            c.expect(250, "MAIL FROM:<someone@x.test>")
            c.expect(250, f"RCPT TO:<{BOB}>")
            c.expect(250, "RSET")
        c.expect(221, "QUIT")
    assert spool_messages(sub.data_dir) == []


# --------------------------------------------------------------------------------------------
# brute force
# --------------------------------------------------------------------------------------------


def test_brute_force_lockout_per_client_ip(dakiya_factory):
    server = start(dakiya_factory, tables=BRUTE_FORCE_AUTH)
    bad, good = plain_response(ALICE, WRONG_PASSWORD), plain_response(ALICE, PASSWORD)
    with submission_smtp(server) as s:
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            code, reply = s.docmd("AUTH", f"PLAIN {bad}")
            took.append(time.monotonic() - t0)
            assert code == 535, (code, reply)
        # failure_delay = 1s per recent failure: the 2nd attempt waits >= 1 s, the 3rd >= 2 s.
        assert took[1] >= 0.9 and took[2] >= 1.9, f"failed attempts were not slowed down: {took}"
        t0 = time.monotonic()
        code, reply = s.docmd("AUTH", f"PLAIN {good}")
        assert (code, reply[:5]) == (454, b"4.7.0"), f"4th attempt (right password) after 3 failures: {code} {reply!r}"
        # Refused at once, without the 3 s a 4th checked attempt would wait.
        assert time.monotonic() - t0 < 2.5, "a locked-out client's attempt should be refused at once"

    # Locked per client IP, not per connection.
    with submission_smtp(server) as s:
        code, reply = s.docmd("AUTH", f"PLAIN {good}")
        assert (code, reply[:5]) == (454, b"4.7.0"), (code, reply)
        code, _ = s.mail(ALICE)
        assert code == 530

    # Another client address is not locked out.
    with submission_smtp(server, source=OTHER_IP) as s:
        assert s.sock.getsockname()[0] == OTHER_IP
        code, reply = s.docmd("AUTH", f"PLAIN {good}")
        assert code == 235, (code, reply)
        subject = f"from 127.0.0.2 {tag()}"
        assert s.sendmail(ALICE, [BOB], build_message(ALICE, BOB, subject, "not locked\r\n")) == {}
    received = top_received(delivered_with(server, "bob", subject))
    assert "([127.0.0.2])" in received, received
    server.wait_for_log(r"peer=127\.0\.0\.1 mechanism=\S+ user=alice@example\.test result=locked-out")
    assert_no_secret_in_log(server)


# --------------------------------------------------------------------------------------------
# relay control on the mx port
# --------------------------------------------------------------------------------------------

TRUSTED_LOCALHOST = 'trusted_networks = ["127.0.0.1/32"]'


def mx_transaction(server, rcpt: str, *, source: str | None = None, sender: str = "someone@client.test", before=None):
    """MAIL, RCPT, then DATA whatever the RCPT reply (so a wrongly accepted recipient would be
    queued and found in the spool). Returns (rcpt reply, DATA reply, end-of-data reply or None)."""
    with RawSMTP(HOST, server.port_of("mx"), source=source) as c:
        c.expect(220)
        ehlo = c.expect(250, "EHLO client.test")
        if before:
            before(c, ehlo)
        c.expect(250, f"MAIL FROM:<{sender}>")
        rcpt_reply = c.cmd(f"RCPT TO:<{rcpt}>")
        data_reply = c.cmd("DATA")
        end = None
        if data_reply[0] == 354:
            c.send(build_message(sender, rcpt, f"relay {tag()}", "relayed?\r\n").encode() + b".\r\n")
            end = c.reply()
        c.cmd("QUIT")
        return rcpt_reply, data_reply, end


def test_relay_control_on_mx(dakiya_factory):
    server = start(dakiya_factory, top=TRUSTED_LOCALHOST)
    # Untrusted client: no relay.
    (code, text), data, end = mx_transaction(server, "x@elsewhere.test", source=OTHER_IP)
    assert code == 550 and text[0].startswith("5.7.1"), (code, text)
    assert data[0] in (503, 554) and end is None, (data, end)
    # ...but local mail from it is fine.
    (code, text), data, end = mx_transaction(server, BOB, source=OTHER_IP)
    assert code == 250 and end and end[0] == 250, (code, text, data, end)
    server.wait_for_delivery("bob")
    assert spool_remote_messages(server) == []

    # Trusted client (127.0.0.1/32): relays; the message waits in the queue (the tests'
    # resolver is a closed loopback port, so its MX lookup is deferred).
    (code, text), data, end = mx_transaction(server, "x@elsewhere.test")
    assert code == 250, (code, text)
    assert end and end[0] == 250, (data, end)
    queue_id = queue_id_from_reply(end[1][0])
    remote = spool_remote_messages(server)
    assert [e["id"] for e in remote] == [queue_id], remote
    assert remote[0]["client_ip"] == HOST
    assert [r["address"] for r in remote[0]["recipients"]] == ["x@elsewhere.test"], remote[0]

    # trusted_networks is no substitute for AUTH on the submission port.
    with submission_smtp(server) as s:
        code, reply = s.mail(ALICE)
        assert (code, reply) == (530, b"5.7.0 Authentication required"), (code, reply)


OPEN_RELAY_TRICKS = [
    # (MAIL FROM, RCPT TO)
    ("someone@client.test", "user%elsewhere.test@example.test"),
    ("someone@client.test", "@example.test:user@elsewhere.test"),
    ("someone@client.test", '"user@elsewhere.test"@example.test'),
    ("someone@client.test", "elsewhere.test!user@example.test"),
    ("someone@client.test", "user@[127.0.0.1]"),
    ("", "user@elsewhere.test"),
    ("someone@client.test", "user@elsewhere.test"),
    ("someone@client.test", "user@elsewhere.test."),
    ("someone@client.test", "bob%elsewhere.test@example.test"),
    ("someone@client.test", '"bob@elsewhere.test"@[127.0.0.1]'),
]


def test_open_relay_tricks_refused_and_nothing_queued(dakiya_factory):
    server = start(dakiya_factory, top=TRUSTED_LOCALHOST)
    outcomes = []

    def failed_auth_on_mx(c, ehlo):
        assert not any(ln.upper().startswith("AUTH") for ln in ehlo), f"AUTH offered on the mx port: {ehlo}"
        code, text = c.cmd(f"AUTH PLAIN {plain_response(ALICE, WRONG_PASSWORD)}")
        assert code != 235 and code >= 500, (code, text)

    for label, before in (("plain", None), ("after failed AUTH", failed_auth_on_mx)):
        for sender, rcpt in OPEN_RELAY_TRICKS:
            (code, text), data, end = mx_transaction(server, rcpt, source=OTHER_IP, sender=sender, before=before)
            outcomes.append((label, sender, rcpt, code, text, data[0], end))
    bad = [o for o in outcomes if not (500 <= o[3] < 600) or o[6] is not None]
    assert not bad, "relay tricks not refused with 5xx at RCPT (or a message accepted):\n" + "\n".join(map(repr, bad))

    # On the submission port, after a failed AUTH over TLS: no MAIL, no RCPT, nothing queued.
    with submission_smtp(server, source=OTHER_IP) as s:
        code, _ = s.docmd("AUTH", f"PLAIN {plain_response(ALICE, WRONG_PASSWORD)}")
        assert code == 535
        code, reply = s.mail("someone@client.test")
        assert code == 530, (code, reply)
        code, reply = s.rcpt("user@elsewhere.test")
        assert 500 <= code < 600, (code, reply)
        code, reply = s.docmd("DATA")
        assert 500 <= code < 600, (code, reply)

    assert spool_messages(server.data_dir) == [], "messages queued from the untrusted client"
    assert "accepted queue_id=" not in server.log(), "a message was accepted from the untrusted client"

    # Control: the spool check does see a relayed message (trusted 127.0.0.1).
    (code, _), _, end = mx_transaction(server, "user@elsewhere.test")
    assert code == 250 and end and end[0] == 250
    remote = spool_remote_messages(server)
    assert len(remote) == 1 and remote[0]["client_ip"] == HOST, remote
    assert_no_secret_in_log(server)


# --------------------------------------------------------------------------------------------
# the user CLI
# --------------------------------------------------------------------------------------------


def test_user_add_before_first_start(dakiya_bin, work_dir):
    """The usual set-up order: write the config, add users, then start the server. The users
    file's directory (data_dir, by default) does not exist yet."""
    from conftest import render_config

    data_dir = work_dir / "fresh-data"
    config = work_dir / "fresh.toml"
    config.write_text(render_config(data_dir, listeners=LISTENERS))
    r = run([dakiya_bin, "user", "--config", str(config), "add", ALICE], input=PASSWORD + "\n")
    assert r.returncode == 0, f"exit {r.returncode}: stdout {r.stdout!r} stderr {r.stderr!r}"
    assert "added" in r.stdout
    text = (data_dir / "users").read_text()
    assert text.count(f"{ALICE}:$argon2id$") == 1 and PASSWORD not in text
