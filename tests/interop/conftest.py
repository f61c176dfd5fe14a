"""Fixtures for the interop tests.

* `dakiya`  — a real dakiya server (`$DAKIYA_BIN serve --config FILE`) on 127.0.0.1:<ephemeral>,
  with its own data_dir under the test's work_dir. Killed at teardown; its log is attached to the
  report of a failing test, and a crash or panic during the test is an error.
* `dovecot` — a factory that starts a real Dovecot (IMAP only, loopback, plaintext login) whose
  mail_location is `maildir:<data_dir>/mail/%d/%n`, i.e. it reads dakiya's Maildirs.
* `work_dir` — a per-test directory that unprivileged processes can traverse (pytest's own tmp
  dirs are 0700, but Dovecot's auth and mail processes don't run as root).

Everything lives under one session directory in $TMPDIR, removed at the end of the run unless
DAKIYA_TEST_KEEP=1 is set. Failing tests get the server logs attached to their report.

Everything listens on loopback only.
"""

from __future__ import annotations

import grp
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import dovecotdoc

LOOPBACK = "127.0.0.1"
DOMAIN = "example.test"
# `josé` exercises Unicode mailbox names (SMTPUTF8); `jose` stays a separate mailbox.
MAILBOXES = ["alice", "bob", "carol", "jose", "josé"]
ALIASES = {"team@example.test": ["alice@example.test", "bob@example.test"]}

STARTUP_TIMEOUT = 20.0
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LISTEN_RE = re.compile(r"listening address=(\S+)")
# The role is optional so that a log line without it still counts as a listener (an mx one).
LISTEN_ROLE_RE = re.compile(r"listening address=(\S+)(?: role=(\S+))?")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def tail(text: str, lines: int = 200) -> str:
    parts = text.splitlines()
    if len(parts) > lines:
        parts = [f"... ({len(parts) - lines} earlier lines omitted)"] + parts[-lines:]
    return "\n".join(parts)


def read_text(path: Path) -> str:
    try:
        return strip_ansi(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process we started, then SIGKILL its process group if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # The process was started in its own session, so its group holds only what it spawned.
    # Only once per process: afterwards its id may be reused.
    if not getattr(proc, "_group_killed", False):
        proc._group_killed = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def attach_log(request, title: str, path: Path) -> None:
    """Have the failure report of the current test include this log file."""
    logs = getattr(request.node, "_interop_logs", None)
    if logs is None:
        logs = request.node._interop_logs = []
    logs.append((title, path))


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # scripts/test runs pytest under `timeout`: on SIGTERM, unwind like Ctrl-C so fixture
    # teardown still stops the servers (they run in their own sessions).
    signal.signal(signal.SIGTERM, _terminate)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for title, path in getattr(item, "_interop_logs", []):
            rep.sections.append((f"{title} ({rep.when})", tail(read_text(Path(path)))))


@pytest.fixture(scope="session")
def interop_root():
    root = Path(tempfile.mkdtemp(prefix="dakiya-interop-"))
    root.chmod(0o711)
    yield root
    if os.environ.get("DAKIYA_TEST_KEEP"):
        print(f"\ninterop test directories kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def work_dir(interop_root, request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    path = Path(tempfile.mkdtemp(prefix=name + "-", dir=interop_root))
    path.chmod(0o711)
    return path


# --------------------------------------------------------------------------------------------
# dakiya
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dakiya_bin() -> str:
    path = os.environ.get("DAKIYA_BIN")
    if not path:
        pytest.fail("DAKIYA_BIN is not set: run the suite through scripts/test, or set it to target/debug/dakiya")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"DAKIYA_BIN={path!r} is not an executable file")
    return os.path.abspath(path)


def toml_str(s: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(s, ensure_ascii=False)


def render_config(
    data_dir: Path,
    listen: str = f"{LOOPBACK}:0",
    *,
    listeners: list[tuple[str, str]] | None = None,
    top: str = "",
    tables: str = "",
) -> str:
    """The server's config file.

    `listeners`: [(address, role), ...] instead of the single mx listener on `listen`; an item
    may have a third element, extra keys for that [[listen]] table (e.g. "spf_reject = true").
    `top`: extra top-level keys (e.g. `trusted_networks = [...]`), placed before any table.
    `tables`: extra tables (e.g. an `[auth]` section), appended at the end.
    """
    if listeners is None:
        listeners = [(listen, "mx")]
    lines = [
        'hostname = "mx.test"',
        f"data_dir = {toml_str(str(data_dir))}",
        # The tests may run as root, which `dakiya serve` refuses otherwise.
        "allow_root = true",
    ]
    if top:
        lines += [top.strip()]
    for address, role, *extra in listeners:
        # mx listeners verify SPF/DKIM/DMARC by default, which needs DNS: tests get it off
        # unless they ask for role "mx-verify" (an mx listener with verify = true).
        verify = role == "mx-verify"
        role = "mx" if verify else role
        lines += ["", "[[listen]]", f"address = {toml_str(address)}", f"role = {toml_str(role)}"]
        if role == "mx":
            lines.append(f"verify = {'true' if verify else 'false'}")
        lines += [e.strip() for e in extra if e.strip()]
    lines += [
        "",
        f"[domains.{toml_str(DOMAIN)}]",
        "mailboxes = [" + ", ".join(toml_str(m) for m in MAILBOXES) + "]",
        "",
        "[aliases]",
    ]
    for alias, targets in ALIASES.items():
        lines.append(f"{toml_str(alias)} = [" + ", ".join(toml_str(t) for t in targets) + "]")
    if tables:
        lines += ["", tables.strip()]
    # Tests never ask the system's DNS: unless a test names its own name servers, outbound
    # lookups go to a loopback port where nothing answers (a temporary failure, so mail for
    # other domains stays queued).
    if "nameservers" not in tables:
        nowhere = f'nameservers = ["{LOOPBACK}:9"]'
        if "[outbound]" in lines[-1].splitlines():
            lines[-1] = lines[-1].replace("[outbound]", "[outbound]\n" + nowhere, 1)
        else:
            lines += ["", "[outbound]", nowhere]
    return "\n".join(lines) + "\n"


class Dakiya:
    """A running dakiya server."""

    def __init__(self, proc, host, port, workdir: Path, data_dir: Path, config_path: Path, log_path: Path, listeners=None, binary: str | None = None):
        self.proc = proc
        self.host = host
        self.port = port
        self.workdir = workdir
        self.data_dir = data_dir
        self.config_path = config_path
        self.log_path = log_path
        # Every listener as (host, port, role), in the order they were logged.
        self.listeners: list[tuple[str, int, str]] = listeners or [(host, port, "mx")]
        self.binary = binary

    # -- listeners --
    def port_of(self, role: str) -> int:
        """The port of the first listener with this role ("mx", "submission", "submissions")."""
        for _host, port, r in self.listeners:
            if r == role:
                return port
        raise AssertionError(f"no {role} listener; listeners: {self.listeners}")

    @property
    def ports(self) -> dict[str, int]:
        """role -> port of the first listener of that role."""
        out: dict[str, int] = {}
        for _host, port, role in self.listeners:
            out.setdefault(role, port)
        return out

    # -- users --
    def add_user(self, address: str, password: str) -> None:
        """`dakiya user --config FILE add ADDRESS`, the password on stdin (never in argv)."""
        assert self.binary, "Dakiya.binary is not set"
        r = subprocess.run(
            [self.binary, "user", "--config", str(self.config_path), "add", address],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
        )
        assert r.returncode == 0 and "added" in r.stdout, f"`dakiya user add {address}` exited {r.returncode}: stdout {r.stdout!r} stderr {r.stderr!r}"

    @property
    def cert_path(self) -> Path:
        """The self-signed certificate dakiya generates when [tls] names none."""
        return self.data_dir / "tls" / "cert.pem"

    # -- logs --
    def log(self) -> str:
        return read_text(self.log_path)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s; log:\n{tail(self.log(), 60)}")
            time.sleep(0.05)

    # -- mail on disk --
    def maildir(self, mailbox: str, domain: str = DOMAIN) -> Path:
        return self.data_dir / "mail" / domain.lower() / mailbox.lower()

    def new_files(self, mailbox: str, domain: str = DOMAIN) -> list[Path]:
        new = self.maildir(mailbox, domain) / "new"
        try:
            files = [p for p in new.iterdir() if p.is_file() and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def wait_for_delivery(self, mailbox: str, domain: str = DOMAIN, count: int = 1, timeout: float = 15.0, settle: float = 0.5) -> list[Path]:
        """Poll `<data>/mail/<domain>/<mailbox>/new/` until it holds at least `count` files.

        Then wait `settle` seconds more and return the files found, so a caller asserting an
        exact count also catches late duplicates.
        """
        deadline = time.monotonic() + timeout
        while True:
            files = self.new_files(mailbox, domain)
            if len(files) >= count:
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"dakiya exited with status {self.proc.returncode} while waiting for delivery; log:\n{tail(self.log(), 60)}")
            if time.monotonic() > deadline:
                listing = sorted(str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*")) if self.data_dir.exists() else []
                raise AssertionError(
                    f"{mailbox}@{domain}: {len(files)} of {count} message(s) in {self.maildir(mailbox, domain) / 'new'} after {timeout}s\n"
                    f"data_dir contents: {listing[:50]}\nlog:\n{tail(self.log(), 60)}"
                )
            time.sleep(0.05)
        if settle:
            time.sleep(settle)
            files = self.new_files(mailbox, domain)
        return files

    # -- clients --
    def smtp(self, timeout: float = 10.0) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, local_hostname="client.test", timeout=timeout)


def start_dakiya(binary: str, workdir: Path, request, *, listeners: list[tuple[str, str]] | None = None, top: str = "", tables: str = "",
                 prepare=None) -> Dakiya:  # fmt: skip
    """Starts dakiya; `listeners`, `top` and `tables` go to render_config. `prepare(config_path,
    data_dir)`, when given, runs after the config file is written and before the server starts
    (e.g. `dakiya dkim generate`, whose keys a running server only picks up within 30 s).
    Returns once every configured listener has logged its `listening address=IP:PORT
    role=ROLE` line."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o711)
    data_dir = workdir / "data"
    config_path = workdir / "dakiya.toml"
    config_path.write_text(render_config(data_dir, listeners=listeners, top=top, tables=tables), encoding="utf-8")
    want_listeners = len(listeners) if listeners else 1
    log_path = workdir / "dakiya.log"
    attach_log(request, "dakiya log", log_path)
    if prepare is not None:
        prepare(config_path, data_dir)

    env = dict(os.environ)
    env["RUST_LOG"] = os.environ.get("DAKIYA_TEST_RUST_LOG", "info")
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_BACKTRACE", "1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        text = read_text(log_path)
        found = [(m.group(1), m.group(2)) for m in LISTEN_ROLE_RE.finditer(text)]
        if len(found) >= want_listeners:
            break
        if proc.poll() is not None:
            pytest.fail(f"dakiya exited with status {proc.returncode} before listening; config:\n{config_path.read_text()}\nlog:\n{tail(read_text(log_path), 60)}")
        if time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"{len(found)} of {want_listeners} 'listening address=' log line(s) within {STARTUP_TIMEOUT}s; log:\n{tail(read_text(log_path), 60)}")
        time.sleep(0.05)

    parsed = []
    for address, role in found:
        host, _, port = address.rpartition(":")
        parsed.append((host.strip("[]"), int(port), role or "mx"))
    host, port, _role = parsed[0]
    return Dakiya(proc, host, port, workdir, data_dir, config_path, log_path, listeners=parsed, binary=binary)


@pytest.fixture
def dakiya(dakiya_bin, work_dir, request):
    server = start_dakiya(dakiya_bin, work_dir / "dakiya", request)
    try:
        yield server
    finally:
        status = server.proc.poll()
        stop_process(server.proc)
    problems = []
    if status is not None:
        problems.append(f"dakiya exited during the test with status {status}")
    if "panicked at" in server.log():
        problems.append("dakiya panicked during the test")
    if problems:
        pytest.fail("; ".join(problems) + f"\nlog:\n{tail(server.log(), 80)}")


@pytest.fixture
def dakiya_factory(dakiya_bin, work_dir, request):
    """Factory: dakiya_factory(listeners=[(address, role), ...], top="...", tables="...",
    prepare=None) starts a dakiya with extra configuration (see render_config, start_dakiya).
    Servers are stopped at teardown, with the same exit/panic checks as the `dakiya` fixture."""
    servers: list[Dakiya] = []

    def start(**kwargs) -> Dakiya:
        server = start_dakiya(dakiya_bin, work_dir / f"dakiya{len(servers) or ''}", request, **kwargs)
        servers.append(server)
        return server

    statuses = []
    try:
        yield start
    finally:
        for server in servers:
            statuses.append(server.proc.poll())
            stop_process(server.proc)
    problems = []
    for server, status in zip(servers, statuses):
        if status is not None:
            problems.append(f"dakiya ({server.workdir.name}) exited during the test with status {status}")
        if "panicked at" in server.log():
            problems.append(f"dakiya ({server.workdir.name}) panicked during the test")
    if problems:
        pytest.fail("; ".join(problems) + "".join(f"\nlog:\n{tail(s.log(), 80)}" for s in servers))


# --------------------------------------------------------------------------------------------
# Dovecot
# --------------------------------------------------------------------------------------------

DOVECOT_PASSWORD = "interop-secret"


def dovecot_binary() -> str:
    path = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
    if not path:
        pytest.fail("dovecot is not installed (scripts/test installs dovecot-imapd)")
    return path


def dovecot_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", out)
    assert m, f"cannot parse `dovecot --version` output {out!r}"
    return tuple(int(x) for x in m.groups() if x is not None)


def render_dovecot_conf(version, base: Path, run_dir: Path, port: int, data_dir: Path, uid: int, gid: int, passwd: Path,
                        *, passdb: str | None = None, userdb: str | None = None, protocols: str = "imap", extra: str = "") -> str:  # fmt: skip
    """A self-contained config (no /etc/dovecot includes) for `dovecot -F -c FILE`.

    `passdb`: a passdb block instead of the plaintext one reading `passwd` (docs/dovecot.md's,
    for dakiya's users file); `userdb`: the userdb block and mail_location; `protocols`: e.g. "imap lmtp"; `extra`: more settings appended
    (quota, listeners)."""
    common = f"""\
base_dir = {run_dir}
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = {protocols}
listen = {LOOPBACK}
ssl = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
first_valid_uid = {uid}
first_valid_gid = {gid}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
    plain_passdb = f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {passwd}\n}}"
    static_userdb = f"userdb {{\n  driver = static\n  args = uid={uid} gid={gid}\n}}\nmail_location = maildir:{data_dir}/mail/%d/%n"
    if version >= (2, 4):
        # Dovecot 2.4 (Debian trixie) renamed most of these settings and the %-variables.
        # Not exercised on Debian bookworm, which ships 2.3.
        return f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {data_dir}/mail/%{{user|domain}}/%{{user|username}}
passdb passwd-file {{
  passwd_file_path = {passwd}
}}
userdb static {{
  fields {{
    uid = {uid}
    gid = {gid}
  }}
}}
"""
    return f"""\
{common}
disable_plaintext_auth = no
{passdb or plain_passdb}
{userdb or static_userdb}
{extra}
"""


class Dovecot:
    def __init__(self, proc, port: int, base: Path, run_dir: Path, log_path: Path, version):
        self.proc = proc
        self.run_dir = run_dir
        self.host = LOOPBACK
        self.port = port
        self.base = base
        self.log_path = log_path
        self.version = version

    def log(self) -> str:
        return read_text(self.log_path)

    def imap(self, user: str, password: str = DOVECOT_PASSWORD) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(user, password)
        return conn

    def errors(self) -> list[str]:
        """Lines Dovecot logged at error level or worse."""
        return [ln for ln in self.log().splitlines() if re.search(r"\b(Error|Fatal|Panic):", ln)]


def mail_owner(data_dir: Path) -> tuple[int, int]:
    """The uid/gid Dovecot's mail processes run as: the owner of the Maildir tree.

    Dovecot never accesses mail as root (a userdb uid 0 is refused: "userdb returned 0 as uid";
    mail_uid=0 is refused: "Mail access not allowed for root"). dakiya runs as root in CI, so a
    root-owned tree is handed to the unprivileged `mail` user first (contents untouched), and
    data_dir is made traversable.
    """
    mail_root = data_dir / "mail"
    st = mail_root.stat()
    if st.st_uid != 0:
        return st.st_uid, st.st_gid
    try:
        pw = pwd.getpwnam("mail")
    except KeyError:
        pw = pwd.getpwnam("nobody")
    uid, gid = pw.pw_uid, pw.pw_gid
    os.chown(mail_root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(mail_root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    data_dir.chmod(data_dir.stat().st_mode | 0o111)
    return uid, gid


def start_dovecot(data_dir: Path, users, work_dir: Path, request, *, passwd_file: Path | None = None, protocols: str = "imap",
                  extra: str = "") -> Dovecot:  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("the Dovecot fixture runs Dovecot as root (as CI does); not root here")
    binary = dovecot_binary()
    version = dovecot_version(binary)
    base = Path(tempfile.mkdtemp(prefix="dovecot-", dir=work_dir))
    base.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the passwd file here
    # base_dir holds Dovecot's unix sockets: keep its path well under the 108-byte limit.
    run_dir = Path(tempfile.mkdtemp(prefix="dkv-", dir="/tmp" if os.path.isdir("/tmp") else None))
    run_dir.chmod(0o755)  # Dovecot wants it world-readable
    request.addfinalizer(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    if passwd_file is None:
        passwd = base / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{DOVECOT_PASSWORD}::::::\n" for u in users))
        passwd.chmod(0o644)
        passdb = userdb = None
    else:
        # dakiya's users file, as docs/dovecot.md sets it up: group dovecot may read it.
        passwd = Path(passwd_file)
        os.chown(passwd, -1, grp.getgrnam("dovecot").gr_gid)
        passwd.chmod(0o640)
        passdb = dovecotdoc.snippet("passdb").replace("/var/lib/dakiya/users", str(passwd))
    uid, gid = mail_owner(data_dir)
    if passwd_file is not None:
        # uid=mail: mail_owner() hands a root-owned tree to `mail`; an unprivileged tree
        # keeps its owner.
        userdb = dovecotdoc.snippet("userdb", data_dir=data_dir).replace("uid=mail gid=mail", f"uid={uid} gid={gid}")
    log_path = base / "dovecot.log"
    attach_log(request, "dovecot log", log_path)
    stdio_path = base / "dovecot.stdio"
    attach_log(request, "dovecot stdout/stderr", stdio_path)
    conf = base / "dovecot.conf"

    for _attempt in range(3):  # the free port could be taken between probing and binding
        port = free_loopback_port()
        conf.write_text(render_dovecot_conf(version, base, run_dir, port, data_dir, uid, gid, passwd, passdb=passdb, userdb=userdb, protocols=protocols, extra=extra))
        with open(stdio_path, "ab") as out:
            proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        server = Dovecot(proc, port, base, run_dir, log_path, version)
        request.addfinalizer(lambda proc=proc: stop_process(proc))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((LOOPBACK, port), timeout=2) as s:
                    s.settimeout(5)
                    greeting = s.recv(512)
                if greeting.startswith(b"* OK"):
                    return server
            except OSError:
                pass
            time.sleep(0.1)
        stop_process(proc)
        if "Address already in use" not in read_text(log_path) + read_text(stdio_path):
            break
    pytest.fail(
        f"Dovecot did not come up on {LOOPBACK}:{port} (exit status {proc.poll()})\n"
        f"config:\n{conf.read_text()}\nlog:\n{tail(read_text(log_path), 40)}\nstdio:\n{tail(read_text(stdio_path), 40)}"
    )


@pytest.fixture
def dovecot(request, work_dir):
    """Factory: dovecot(data_dir, users=[...]) starts Dovecot reading data_dir/mail/%d/%n.

    Keywords: passwd_file (dakiya's users file as the passdb, scheme ARGON2ID), protocols
    ("imap lmtp"), extra (settings appended). Its unix sockets (auth-client, lmtp) are in
    `server.run_dir`.

    data_dir must be inside work_dir (or otherwise traversable by unprivileged users)."""
    servers = []

    def start(data_dir: Path, users=("alice@example.test", "bob@example.test"), **kwargs) -> Dovecot:
        server = start_dovecot(Path(data_dir), users, work_dir, request, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_process(server.proc)


# --------------------------------------------------------------------------------------------
# smtp-sink: Postfix's test SMTP server, the remote MX of the outbound tests
# --------------------------------------------------------------------------------------------

# smtp-sink -v logs one line per event on stderr: "/usr/sbin/smtp-sink: connect (AF_INET
# 127.0.0.1)", then each command line as the client sent it ("ehlo dakiya.test", "mail
# FROM:<a@b>", "rcpt TO:<c@d>", "data", ".", "quit"), then "disconnect". Message content is
# not logged.
SINK_LOG_RE = re.compile(r"^\S*smtp-sink: (.*)$")
SINK_VERBS = {"helo", "ehlo", "lhlo", "mail", "rcpt", "data", ".", "rset", "noop", "quit", "vrfy",
              "expn", "etrn", "help", "starttls", "auth", "xclient", "xforward", "bdat"}  # fmt: skip
# Written (-S) before each message in the shared dump file, to split it into messages.
SINK_SEPARATOR = b"=====smtp-sink-message-7c9e1f=====\n"


def smtp_sink_binary() -> str:
    path = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)
    if not path:
        pytest.fail("smtp-sink is not installed (scripts/test installs Debian's postfix for it)")
    return path


class SmtpSink:
    """A running `smtp-sink` on 127.0.0.1:port.

    Each message it takes is appended, once its end of data (".") has been read, to one dump
    file (`-D`), behind a separator line (`-S`); an aborted transaction leaves nothing there.
    smtp-sink dumps a message whose "." it rejects (`-f .`) too. The SMTP conversation is
    logged (`-v`). The readiness probe opens one session of its own (QUIT only, no EHLO):
    count a client's sessions by its EHLO name (`ehlo_count`)."""

    def __init__(self, proc, port: int, base: Path, dump_path: Path, log_path: Path, argv: list[str]):
        self.proc = proc
        self.host = LOOPBACK
        self.port = port
        self.base = base
        self.dump_path = dump_path
        self.log_path = log_path
        self.argv = argv

    def log(self) -> str:
        return read_text(self.log_path)

    def stop(self) -> None:
        stop_process(self.proc)

    # -- the conversation --
    def commands(self, verb: str | None = None) -> list[tuple[str, str]]:
        """Every command received, as (lowercase verb, argument text), in order; only `verb`'s
        when given (e.g. "rcpt" -> [("rcpt", "TO:<bob@sink.test>"), ...])."""
        out = []
        for line in self.log().splitlines():
            m = SINK_LOG_RE.match(line)
            if not m:
                continue
            word, _, args = m.group(1).partition(" ")
            word = word.lower()
            if word in SINK_VERBS and (verb is None or word == verb.lower()):
                out.append((word, args))
        return out

    def connections(self) -> int:
        """Sessions accepted so far, the readiness probe's included."""
        return sum(1 for line in self.log().splitlines() if re.search(r"smtp-sink: connect \(", line))

    def ehlo_count(self, name: str) -> int:
        """EHLO/HELO commands with this argument: the number of sessions a client that greets
        once per session (no STARTTLS) opened."""
        return sum(1 for verb, args in self.commands() if verb in ("ehlo", "helo") and args.strip().lower() == name.lower())

    def rcpt_count(self, address: str) -> int:
        rx = re.compile(rf"^TO:\s*<{re.escape(address)}>", re.IGNORECASE)
        return sum(1 for _v, args in self.commands("rcpt") if rx.match(args))

    def wait_for_commands(self, verb: str, count: int = 1, timeout: float = 30.0, match: str | None = None) -> list[tuple[str, str]]:
        """Polls until at least `count` `verb` commands (whose arguments match the regex
        `match`, if given) were received."""
        rx = re.compile(match, re.IGNORECASE) if match else None
        deadline = time.monotonic() + timeout
        while True:
            found = [(v, a) for v, a in self.commands(verb) if rx is None or rx.search(a)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink on port {self.port}: {len(found)} of {count} {verb.upper()} command(s)"
                                     f"{f' matching {match!r}' if match else ''} within {timeout}s; its log:\n{tail(self.log(), 60)}")
            time.sleep(0.1)

    # -- what it took --
    def messages(self) -> list:
        """The dumped messages so far, oldest first, as mailutil.SinkDump. Only complete ones:
        smtp-sink appends a message before it logs the "." that ends it, so the last one is
        left out while there are more dumps than logged "." commands."""
        from mailutil import SinkDump

        try:
            raw = self.dump_path.read_bytes()
        except FileNotFoundError:
            return []
        chunks = raw.split(SINK_SEPARATOR)
        assert chunks[0] == b"", f"{self.dump_path} does not start with the separator: {raw[:200]!r}"
        chunks = chunks[1:]
        complete = min(len(chunks), len(self.commands(".")))
        return [SinkDump(c, self.dump_path) for c in chunks[:complete]]

    def wait_for_messages(self, count: int = 1, timeout: float = 30.0) -> list:
        """Polls until at least `count` messages were dumped; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink on port {self.port}: {len(found)} of {count} message(s) dumped to {self.dump_path} "
                                     f"within {timeout}s; its log:\n{tail(self.log(), 60)}")
            time.sleep(0.1)


def start_smtp_sink(work_dir: Path, request, *, port: int | None = None, reject_soft=(), reject_hard=(),
                    soft_reply: str | None = None, hard_reply: str | None = None, hostname: str = "sink.test",
                    extra_args=()) -> SmtpSink:  # fmt: skip
    """Starts `smtp-sink -v -D DUMP -S SEPARATOR [-u nobody] 127.0.0.1:PORT 64` and waits for
    its 220 greeting.

    reject_soft / reject_hard: commands answered with a 4xx (`-r`) / 5xx (`-f`) reply, e.g.
    ["RCPT"], ["MAIL"], ["."] (the end of data); either turns PIPELINING off. soft_reply /
    hard_reply replace the default replies ("450 4.3.0 Error: command failed" / "500 5.3.0
    Error: command failed"; `-b` / `-B`). port: this port (to restart a sink in place), else a
    free one. As root, smtp-sink insists on `-u USER`, whose privileges it takes after binding:
    `nobody`, which owns the dump directory."""
    binary = smtp_sink_binary()
    base = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir=work_dir))
    base.chmod(0o711)
    dump_dir = base / "dump"
    dump_dir.mkdir()
    dump_path = dump_dir / "messages"
    log_path = base / "smtp-sink.log"
    attach_log(request, f"smtp-sink log ({base.name})", log_path)

    # smtp-sink expands strftime(3) % sequences and C escapes in these.
    separator = SINK_SEPARATOR.decode().replace("\n", "\\n")
    argv = [binary, "-v", "-h", hostname, "-D", str(dump_path).replace("%", "%%"), "-S", separator]
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("nobody")
        except KeyError:
            pw = pwd.getpwnam("root")
        os.chown(dump_dir, pw.pw_uid, pw.pw_gid)
        argv += ["-u", pw.pw_name]
    if reject_soft:
        argv += ["-r", ",".join(reject_soft)]
    if reject_hard:
        argv += ["-f", ",".join(reject_hard)]
    if soft_reply:
        argv += ["-b", soft_reply]
    if hard_reply:
        argv += ["-B", hard_reply]
    argv += list(extra_args)

    for _attempt in range(3 if port is None else 1):  # a free port could be taken meanwhile
        use_port = port if port is not None else free_loopback_port()
        cmd = argv + [f"inet:{LOOPBACK}:{use_port}", "64"]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        request.addfinalizer(lambda proc=proc: stop_process(proc))
        sink = SmtpSink(proc, use_port, base, dump_path, log_path, cmd)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((LOOPBACK, use_port), timeout=2) as s:
                    s.settimeout(5)
                    greeting = s.recv(512)
                    if greeting.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        s.recv(512)
                        return sink
            except OSError:
                pass
            time.sleep(0.1)
        stop_process(proc)
        if "Address already in use" not in read_text(log_path):
            break
    pytest.fail(f"smtp-sink did not come up on {LOOPBACK}:{use_port} (exit status {proc.poll()})\n"
                f"command: {cmd}\nlog:\n{tail(read_text(log_path), 40)}")


@pytest.fixture
def smtp_sink(work_dir, request):
    """Factory: smtp_sink(port=None, reject_soft=(), reject_hard=(), soft_reply=None,
    hard_reply=None, ...) starts a Postfix `smtp-sink` on loopback (see start_smtp_sink);
    each is stopped at teardown. To change a sink's behaviour in place: `sink.stop()`, then
    `smtp_sink(port=sink.port, ...)`."""
    sinks: list[SmtpSink] = []

    def start(**kwargs) -> SmtpSink:
        sink = start_smtp_sink(work_dir, request, **kwargs)
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()


# --------------------------------------------------------------------------------------------
# DNS: an authoritative test server on loopback (tests/interop/dnsserver.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def dns_server(request, work_dir):
    """Factory: dns_server(records={name: {"TXT": [...], "A": [...], "MX": [(pref, host)]}},
    servfail=[names], drop=[names]) starts a dnsserver.TestDNS on 127.0.0.1 (UDP and TCP, one
    free port); point dakiya at it with `[outbound] nameservers = [dns.address]`. Stopped at
    teardown; a failing test's report lists the queries it answered."""
    try:
        from dnsserver import TestDNS
    except ImportError as e:
        pytest.fail(f"cannot import the test DNS server ({e}): scripts/test installs dnslib")
    servers = []

    def start(records=None, servfail=(), drop=()):
        log_path = work_dir / f"dns{len(servers) or ''}.log"
        attach_log(request, f"test DNS queries ({log_path.name})", log_path)
        server = TestDNS(records, servfail=servfail, drop=drop, log_path=log_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
