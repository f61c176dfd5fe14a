"""POP3 against real clients: Python poplib (STLS and POP3_SSL), curl pop3s://, fetchmail, and
Dovecot's own POP3 server reading the same Maildir (UIDL compatibility).

Every test starts its own dakiya (conftest `dakiya_factory`) with mx, pop3 (STLS) and pop3s
(implicit TLS) listeners on 127.0.0.1:0, the generated self-signed certificate in
DATA/tls/cert.pem, and the user alice@example.test. Mail reaches the Maildir the real way: over
SMTP to the mx listener, then local delivery.
"""

from __future__ import annotations

import os
import poplib
import re
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from mailutil import build_message, tag

ALICE = "alice@example.test"
PASSWORD = "Pop3-Interop-Secret-51d0"
HOST = "127.0.0.1"
LISTENERS = [(f"{HOST}:0", "mx"), (f"{HOST}:0", "pop3"), (f"{HOST}:0", "pop3s")]


def start(dakiya_factory, tables: str = ""):
    server = dakiya_factory(listeners=LISTENERS, tables=tables)
    assert set(server.ports) == {"mx", "pop3", "pop3s"}, server.listeners
    server.add_user(ALICE, PASSWORD)
    return server


@pytest.fixture
def pop(dakiya_factory):
    return start(dakiya_factory)


def trusting_context(server) -> ssl.SSLContext:
    """Verifies the server against its generated certificate (SANs include 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(server.cert_path))


def send(server, subject: str, body: str = "Hello from the POP3 interop test.\r\n") -> None:
    """Sends a message to alice over SMTP (the mx listener)."""
    msg = build_message("bob@example.test", [ALICE], subject, body)
    with smtplib.SMTP(HOST, server.port_of("mx"), local_hostname="client.test", timeout=10) as s:
        s.sendmail("bob@example.test", [ALICE], msg)


def mail_files(server) -> list[str]:
    """Message files in alice's Maildir, new/ and cur/."""
    md = server.maildir("alice")
    out = []
    for sub in ("new", "cur"):
        d = md / sub
        if d.is_dir():
            out += [f"{sub}/{p.name}" for p in d.iterdir() if not p.name.startswith(".")]
    return sorted(out)


def wait_mail(server, n: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(mail_files(server)) < n:
        assert time.monotonic() < deadline, f"{len(mail_files(server))} of {n} messages delivered; log:\n{server.log()[-3000:]}"
        time.sleep(0.05)
    return mail_files(server)


def stls_login(server) -> poplib.POP3:
    p = poplib.POP3(HOST, server.port_of("pop3"), timeout=15)
    p.stls(trusting_context(server))
    p.user(ALICE)
    p.pass_(PASSWORD)
    return p


def ssl_login(server) -> poplib.POP3_SSL:
    p = poplib.POP3_SSL(HOST, server.port_of("pop3s"), context=trusting_context(server), timeout=15)
    p.user(ALICE)
    p.pass_(PASSWORD)
    return p


def text_of(lines: list[bytes]) -> str:
    return "\r\n".join(l.decode() for l in lines)


# --------------------------------------------------------------------------------------------
# poplib
# --------------------------------------------------------------------------------------------


def test_poplib_stls_downloads_a_message_sent_over_smtp(pop):
    subject = f"stls {tag()}"
    send(pop, subject)
    wait_mail(pop, 1)
    p = poplib.POP3(HOST, pop.port_of("pop3"), timeout=15)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps, caps
    p.stls(trusting_context(pop))
    caps = p.capa()
    assert {"USER", "UIDL", "TOP", "SASL"} <= set(caps) and caps["SASL"] == ["PLAIN"], caps
    p.user(ALICE)
    p.pass_(PASSWORD)
    count, size = p.stat()
    assert count == 1
    resp, lines, octets = p.retr(1)
    text = text_of(lines)
    assert f"Subject: {subject}" in text and "Hello from the POP3 interop test." in text, text
    assert "Return-Path: <bob@example.test>" in text
    # RFC 1939 §5: the size counts CRLF line ends; poplib's octets include them too.
    assert resp.startswith(f"+OK {size} octets".encode()), resp
    # poplib counts each line plus CRLF, after undoing dot-stuffing: exactly the size.
    assert octets == size, (octets, size)
    p.quit()
    assert mail_files(pop)[0].startswith("cur/") and mail_files(pop)[0].endswith(":2,")


def test_poplib_ssl_dele_quit_removes_and_dropped_connection_does_not(pop):
    send(pop, f"one {tag()}")
    wait_mail(pop, 1)
    send(pop, f"two {tag()}")
    wait_mail(pop, 2)
    # DELE, then the connection drops without QUIT: nothing is removed.
    p = ssl_login(pop)
    assert p.stat()[0] == 2
    p.dele(1)
    p.dele(2)
    p.sock.close()
    time.sleep(0.3)
    assert len(mail_files(pop)) == 2
    p = None
    for _ in range(50):
        try:
            p = ssl_login(pop)
            break
        except poplib.error_proto as e:
            assert b"[IN-USE]" in e.args[0], e
            time.sleep(0.1)
    assert p is not None
    assert p.stat()[0] == 2
    p.dele(1)
    p.quit()
    files = mail_files(pop)
    assert len(files) == 1, files
    p = ssl_login(pop)
    assert "two" in text_of(p.top(1, 0)[1])
    p.quit()


def test_auth_plain_with_initial_response_and_continuation(pop):
    send(pop, f"sasl {tag()}")
    wait_mail(pop, 1)
    import base64

    ir = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    p = poplib.POP3_SSL(HOST, pop.port_of("pop3s"), context=trusting_context(pop), timeout=15)
    assert p._shortcmd(f"AUTH PLAIN {ir}").startswith(b"+OK Logged in, 1 messages")
    p.quit()
    p = poplib.POP3_SSL(HOST, pop.port_of("pop3s"), context=trusting_context(pop), timeout=15)
    p._putcmd("AUTH PLAIN")
    assert p._getline()[0] == b"+ "
    assert p._shortcmd(ir).startswith(b"+OK Logged in")
    p.quit()


def test_uidl_is_stable_across_a_restart(dakiya_factory):
    server = start(dakiya_factory)
    send(server, f"uidl {tag()}")
    wait_mail(server, 1)
    p = ssl_login(server)
    before = p.uidl()[1]
    p.quit()
    uid = before[0].split()[1].decode()
    assert (server.maildir("alice") / "cur" / f"{uid}:2,").is_file(), (uid, mail_files(server))
    # Restart: the same binary, configuration and data directory.
    server.proc.terminate()
    server.proc.wait(timeout=15)
    with open(server.log_path, "ab") as log:
        proc = subprocess.Popen([server.binary, "serve", "--config", str(server.config_path)], stdout=log, stderr=log,
                                cwd=server.workdir, start_new_session=True)  # fmt: skip
    # The factory's teardown stops (and checks) the restarted process.
    server.proc = proc
    port = None
    deadline = time.monotonic() + 20
    while port is None:
        found = re.findall(r"listening address=(\S+) role=pop3s", server.log())
        if len(found) >= 2:
            port = int(found[-1].rpartition(":")[2])
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    p = poplib.POP3_SSL(HOST, port, context=trusting_context(server), timeout=15)
    p.user(ALICE)
    p.pass_(PASSWORD)
    assert p.uidl()[1] == before
    p.quit()


def test_second_session_gets_in_use(pop):
    send(pop, f"lock {tag()}")
    wait_mail(pop, 1)
    first = ssl_login(pop)
    second = poplib.POP3_SSL(HOST, pop.port_of("pop3s"), context=trusting_context(pop), timeout=15)
    second.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        second.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value
    first.quit()
    second.close()


def test_clear_text_login_is_refused(pop):
    p = poplib.POP3(HOST, pop.port_of("pop3"), timeout=15)
    with pytest.raises(poplib.error_proto) as e:
        p.user(ALICE)
    assert e.value.args[0].startswith(b"-ERR [AUTH] Plaintext authentication is not allowed without TLS"), e.value
    assert "pop3" not in re.findall(r'protocol="?(\w+)', pop.log()), "no password check happened"
    p.quit()


def test_bad_input_and_brute_force(dakiya_factory):
    server = start(dakiya_factory, tables='[auth]\nmax_failures = 3\nfailure_delay = "10ms"\n')
    ctx = trusting_context(server)
    with socket.create_connection((HOST, server.port_of("pop3s")), timeout=15) as raw:
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")

        def cmd(line: bytes) -> bytes:
            s.sendall(line + b"\r\n")
            return f.readline()

        assert cmd(b"X" * 300) == b"-ERR Line too long (at most 255 octets, RFC 2449)\r\n"
        assert cmd(b"HELO") == b"-ERR Unknown command\r\n"
        assert cmd(b"RETR 1") == b"-ERR Not allowed before login\r\n"
        assert cmd(b"\x00\x01\xfe\xff") == b"-ERR Invalid characters in command\r\n"
        for _ in range(3):
            assert cmd(b"USER " + ALICE.encode()).startswith(b"+OK")
            assert cmd(b"PASS wrong") == b"-ERR [AUTH] Authentication failed\r\n"
        cmd(b"USER " + ALICE.encode())
        assert cmd(b"PASS " + PASSWORD.encode()) == b"-ERR [SYS/TEMP] Too many failed logins; try again later\r\n"
    # The server is still alive and serving.
    p = poplib.POP3(HOST, server.port_of("pop3"), timeout=15)
    assert p.capa()
    p.quit()


# --------------------------------------------------------------------------------------------
# curl, fetchmail
# --------------------------------------------------------------------------------------------


def test_curl_pop3s_retrieves(pop, work_dir):
    subject = f"curl {tag()}"
    send(pop, subject)
    wait_mail(pop, 1)
    url = f"pop3s://{HOST}:{pop.port_of('pop3s')}/1"
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--cacert", str(pop.cert_path), "-u", f"{ALICE}:{PASSWORD}", url],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert f"Subject: {subject}".encode() in r.stdout, r.stdout
    # LIST through curl too (the URL without a message number).
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-k", "-u", f"{ALICE}:{PASSWORD}", url[:-2]], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(b"1 "), (r.stdout, r.stderr)


@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_fetchmail_downloads_and_deletes(pop, work_dir, mode):
    subjects = [f"fetchmail {mode} {i} {tag()}" for i in range(2)]
    for i, s in enumerate(subjects):
        send(pop, s, body=f"line one\r\n.dotted line\r\nmessage {i}\r\n")
        wait_mail(pop, i + 1)
    out = work_dir / "fetched.mbox"
    port = pop.port_of("pop3s" if mode == "pop3s" else "pop3")
    ssl_opt = "ssl" if mode == "pop3s" else "sslproto tls1.2+"
    # fetchmail matches the certificate against the host name only, not IP addresses: the
    # name it should expect is the generated certificate's (the configured hostname).
    rc = work_dir / "fetchmailrc"
    rc.write_text(
        f'poll {HOST} service {port} protocol POP3 uidl\n'
        f'  user "{ALICE}" password "{PASSWORD}" is root here\n'
        f'  {ssl_opt} sslcertck sslcertfile "{pop.cert_path}" sslcommonname "mx.test"\n'
        f'  mda "/bin/sh -c \'cat >> {out}\'"\n'
    )  # fmt: skip
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(work_dir))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "-v", "--pidfile", str(work_dir / "fm.pid")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=work_dir)  # fmt: skip
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    fetched = out.read_text()
    for s in subjects:
        assert f"Subject: {s}" in fetched, fetched
    # Dot-stuffing undone by the client: the line is back as it was sent.
    assert "\n.dotted line" in fetched.replace("\r\n", "\n")
    # fetchmail deletes what it fetched (no `keep`): DELE + QUIT removed them.
    assert mail_files(pop) == [], mail_files(pop)
    if mode == "stls":
        assert "STLS" in log, log


# --------------------------------------------------------------------------------------------
# Dovecot compatibility
# --------------------------------------------------------------------------------------------


def dovecot_pop3(maildir, work_dir, commands: bytes) -> str:
    """Runs Dovecot's pop3 process preauthenticated over stdin/stdout on `maildir`, with
    `pop3_uidl_format = %f`, as the (unprivileged) owner of the Maildir tree."""
    from conftest import dovecot_binary, dovecot_version, mail_owner

    if os.geteuid() != 0:
        pytest.skip("runs Dovecot's pop3 as the Maildir owner: needs root (as CI has)")
    version = dovecot_version(dovecot_binary())
    if version >= (2, 4):
        pytest.skip("the Dovecot 2.4 settings (mail_driver, %{...} variables) are not written here yet")
    pop3 = "/usr/lib/dovecot/pop3"
    assert os.access(pop3, os.X_OK), "dovecot-pop3d is not installed (scripts/test installs it)"
    data_dir = maildir.parents[2]
    uid, gid = mail_owner(data_dir)
    base = work_dir / "dovecot-pop3"
    base.mkdir()
    base.chmod(0o777)
    conf = base / "dovecot.conf"
    conf.write_text(
        f"base_dir = {base}/run\nstate_dir = {base}/state\nlog_path = {base}/dovecot.log\n"
        f"protocols = pop3\nssl = no\nmail_location = maildir:{maildir}\npop3_uidl_format = %f\n"
    )
    conf.chmod(0o644)
    env = {"USER": "alice", "HOME": str(base), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run([pop3, "-c", str(conf)], input=commands, capture_output=True, timeout=30, env=env, user=uid, group=gid,
                       extra_groups=[], cwd=base)  # fmt: skip
    assert r.returncode == 0, (r.stdout, r.stderr, (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else "")
    return r.stdout.decode()


def test_dovecot_pop3_shows_the_same_uidl_and_sizes(pop, work_dir):
    for i in range(3):
        send(pop, f"dovecot {i} {tag()}", body=f"line\r\n.dot\r\nmessage {i}\r\n")
        wait_mail(pop, i + 1)
    p = ssl_login(pop)
    ours_uidl = [l.decode() for l in p.uidl()[1]]
    ours_list = [l.decode() for l in p.list()[1]]
    p.quit()
    theirs = dovecot_pop3(pop.maildir("alice"), work_dir, b"UIDL\r\nLIST\r\nQUIT\r\n")
    blocks = theirs.split(".\r\n")
    their_uidl = [l for l in blocks[0].splitlines()[1:] if l]
    their_list = [l for l in blocks[1].splitlines()[1:] if l]
    assert len(ours_uidl) == 3
    # Same unique-ids (the Maildir base names) and the same CRLF sizes, message for message.
    assert sorted(ours_uidl) == sorted(their_uidl), (ours_uidl, theirs)
    assert sorted(l.split()[1] for l in ours_list) == sorted(l.split()[1] for l in their_list), (ours_list, theirs)
