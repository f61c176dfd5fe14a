"""Outbound delivery against a real remote MX: Postfix's `smtp-sink` (conftest `smtp_sink`).

Every test starts its own smtp-sink on 127.0.0.1:<free port> and a dakiya (conftest
`dakiya_factory`) whose `[outbound.routes."sink.test"]` sends mail for sink.test there
(plain SMTP, `tls = "none"`); `nameservers` points at a closed loopback port, so a stray DNS
lookup fails instead of leaving the machine. The client at 127.0.0.1 is in trusted_networks
(it may relay), or authenticates on the submission port. Bounces (DSNs, RFC 3464) go back to
the sender alice@example.test, a local mailbox: they are read from her Maildir with Python's
`email` package.

smtp-sink behaviour is chosen per test: `-r CMD` answers CMD with a 4xx, `-f CMD` with a 5xx
(`-b`/`-B` give the reply text); its `-v` log tells which commands and sessions it saw, and
`-D` dumps every message it took into one file.

Waits are bounded polls (up to WAIT seconds); nothing asserts how fast anything happens.
"""

from __future__ import annotations

import email
import email.message
import re
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mailutil import (
    SinkDump,
    build_message,
    queue_id_from_reply,
    spool_messages,
    split_leading_received,
    status_records,
    tag,
    to_lf,
)

ALICE = "alice@example.test"
BOB = "bob@sink.test"
CAROL = "carol@sink.test"
PASSWORD = "Outbound-Secret-5e1d"

HOST = "127.0.0.1"
HELO = "dakiya.test"
TRUSTED = 'trusted_networks = ["127.0.0.1/32"]'

# Bounded waits: a message through the queue to the sink, a DSN into the Maildir.
WAIT = 30.0
# After the last expected event, how long to keep watching for one that must not happen
# (a second DSN, a DSN to <>, one more attempt).
SETTLE = 3.0

SINK_HARD_RCPT = "550 5.1.1 Sink-Says-No-Such-User"
SINK_HARD_DATA = "554 5.6.0 Sink-Refuses-This-Content"
SINK_SOFT = "451 4.3.2 Sink-Says-Try-Again-Later"
STATUS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (as far as anything on loopback can be sure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def outbound_config(routes: dict, *, retry=("1s",), max_age: str = "1h", delay_notice: str = "off",
                    idle_timeout: str = "30s") -> str:  # fmt: skip
    """[delivery] and [outbound] tables. `routes`: domain -> PORT (mail for it goes to
    127.0.0.1:PORT without TLS) or (PORT, TLS mode; None for the [outbound] default,
    "opportunistic")."""
    lines = [
        "[delivery]",
        "retry_schedule = [" + ", ".join(f'"{r}"' for r in retry) + "]",
        f'max_age = "{max_age}"',
        f'delay_notice = "{delay_notice}"',
        "",
        "[outbound]",
        f'helo_name = "{HELO}"',
        'tls = "opportunistic"',
        f'idle_timeout = "{idle_timeout}"',
        'connect_timeout = "10s"',
        # Only static routes are used; any DNS query would go to a closed loopback port.
        f'nameservers = ["{HOST}:{closed_loopback_port()}"]',
    ]
    for domain, route in routes.items():
        port, tls = route if isinstance(route, tuple) else (route, "none")
        lines += ["", f'[outbound.routes."{domain}"]', f'hosts = ["{HOST}:{port}"]']
        if tls is not None:
            lines.append(f'tls = "{tls}"')
    return "\n".join(lines) + "\n"


def start_relay(dakiya_factory, routes: dict, **kwargs):
    """dakiya on an mx listener, 127.0.0.1 trusted to relay, the given routes."""
    return dakiya_factory(top=TRUSTED, tables=outbound_config(routes, **kwargs))


def relay(server, sender: str, rcpts: list[str], message: str) -> str:
    """One SMTP transaction from the trusted client (all recipients must be accepted); returns
    the queue ID from the 250 reply to the end of data."""
    with server.smtp() as s:
        s.ehlo()
        code, reply = s.mail(sender)
        assert code == 250, (sender, code, reply)
        for rcpt in rcpts:
            code, reply = s.rcpt(rcpt)
            assert code == 250, f"RCPT TO:<{rcpt}> from the trusted client: {code} {reply!r}"
        code, reply = s.data(message)
        assert code == 250, (code, reply)
        queue_id = queue_id_from_reply(reply)
        s.quit()
    return queue_id


def wait_until(predicate, what: str, server, timeout: float = WAIT, sink=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if server.proc.poll() is not None:
            raise AssertionError(f"dakiya exited with status {server.proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            extra = f"\nsmtp-sink log:\n{sink.log()[-4000:]}" if sink else ""
            raise AssertionError(f"not within {timeout}s: {what}\ndakiya log:\n{server.log()[-6000:]}{extra}")
        time.sleep(0.1)


def wait_queue_empty(server, timeout: float = WAIT, sink=None):
    """Until no message is left in DATA/spool/queue (delivered, bounced, DSNs included)."""
    wait_until(lambda: not spool_messages(server.data_dir), "the queue to empty", server, timeout, sink)


def mail_files(server) -> list[Path]:
    """Every file in every Maildir under DATA/mail (new/, cur/, tmp/)."""
    root = server.data_dir / "mail"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur", "tmp"))


def dump_with(dumps: list[SinkDump], marker: str) -> SinkDump:
    found = [d for d in dumps if marker.encode() in d.message]
    assert len(found) == 1, f"expected one dumped message containing {marker!r}, found {len(found)} of {len(dumps)}"
    return found[0]


def assert_relayed_intact(dump: SinkDump, sent: str, queue_id: str, *, sender: str = ALICE, rcpts=(BOB,)):
    """The sink got exactly what the client sent, below dakiya's Received: field(s), with the
    original envelope, from dakiya's helo_name."""
    assert dump.client_addr == HOST, dump.fields
    assert dump.helo == HELO, f"EHLO name {dump.helo!r}, configured helo_name {HELO!r}"
    assert dump.mail_from == f"<{sender}>", dump.fields
    assert dump.rcpt_to == [f"<{r}>" for r in rcpts], dump.fields
    received, rest = split_leading_received(dump.message)
    assert received, f"no Received: field on top of the relayed message:\n{dump.message[:600]!r}"
    assert queue_id in received[0] and "by mx.test (dakiya)" in received[0], received[0]
    expected = to_lf(sent).encode()
    assert rest == expected, f"relayed message differs from the one sent\nsent:\n{expected!r}\nrelayed (below Received:):\n{rest!r}"


def one_line(value) -> str:
    return " ".join(str(value).split())


class Dsn:
    """A delivery status notification from a Maildir file, parsed with `email`."""

    def __init__(self, path: Path):
        self.path = path
        self.raw = path.read_bytes()
        self.msg = email.message_from_bytes(self.raw)
        assert self.msg.get_content_type() == "multipart/report", f"{path}: Content-Type {self.msg.get_content_type()}, not multipart/report:\n{self.head()}"
        assert self.msg.get_param("report-type") == "delivery-status", f"{path}: report-type {self.msg.get_param('report-type')!r}:\n{self.head()}"
        parts = self.msg.get_payload()
        assert isinstance(parts, list) and len(parts) >= 2, f"{path}: multipart/report with {len(parts) if isinstance(parts, list) else 0} parts"
        self.parts = parts
        # RFC 6522: the human-readable part first, the machine-readable report second.
        assert parts[0].get_content_maintype() == "text", f"{path}: first part is {parts[0].get_content_type()}"
        assert parts[1].get_content_type() == "message/delivery-status", f"{path}: second part is {parts[1].get_content_type()}"
        blocks = parts[1].get_payload()
        assert isinstance(blocks, list) and len(blocks) >= 2, f"{path}: message/delivery-status has {len(blocks)} field group(s), want per-message + per-recipient"
        self.per_message: email.message.Message = blocks[0]
        self.recipients: list[email.message.Message] = blocks[1:]

    def head(self) -> str:
        return self.raw[:3000].decode("utf-8", "replace")

    def recipient(self, address: str) -> email.message.Message:
        found = [r for r in self.recipients if one_line(r.get("Final-Recipient", "")).lower() == f"rfc822; {address}".lower()]
        assert len(found) == 1, f"{self.path}: {len(found)} per-recipient group(s) with Final-Recipient rfc822; {address}; groups: {[dict(r) for r in self.recipients]}"
        return found[0]

    def final_recipients(self) -> list[str]:
        return [one_line(r.get("Final-Recipient", "")) for r in self.recipients]

    def returned_headers(self) -> bytes:
        """The original message's header section (text/rfc822-headers or message/rfc822)."""
        assert len(self.parts) >= 3, f"{self.path}: no third part with the original message's headers:\n{self.head()}"
        part = self.parts[2]
        if part.get_content_type() == "text/rfc822-headers":
            return part.get_payload(decode=True)
        assert part.get_content_type() == "message/rfc822", f"{self.path}: third part is {part.get_content_type()}"
        return part.get_payload()[0].as_bytes()


def wait_for_dsns(server, count: int = 1, timeout: float = WAIT) -> list[Dsn]:
    """alice's Maildir after `count` messages arrived there and SETTLE seconds more."""
    files = server.wait_for_delivery("alice", count=count, timeout=timeout, settle=SETTLE)
    return [Dsn(p) for p in files]


def assert_dsn_envelope_and_headers(dsn: Dsn):
    """A DSN from the null sender (RFC 5321 §4.5.5, RFC 3464 §2), to alice, that autoresponders
    keep quiet about (RFC 3834)."""
    assert dsn.msg["Return-Path"] == "<>", f"DSN not sent with MAIL FROM:<> (Return-Path {dsn.msg['Return-Path']!r}):\n{dsn.head()}"
    assert ALICE in dsn.msg.get("To", ""), dsn.head()
    assert dsn.msg.get("Auto-Submitted", "").startswith("auto-replied"), dsn.head()
    reporting = one_line(dsn.per_message.get("Reporting-MTA", ""))
    assert reporting.lower().startswith("dns;") and reporting[4:].strip(), f"Reporting-MTA {reporting!r}"


def assert_failed_rcpt(dsn: Dsn, address: str, *, status_class: str, reply: str | None):
    group = dsn.recipient(address)
    assert one_line(group.get("Action", "")).lower() == "failed", dict(group)
    status = one_line(group.get("Status", ""))
    assert STATUS_RE.match(status) and status[0] in status_class, f"Status {status!r}, want class {status_class}: {dict(group)}"
    if reply is not None:
        code, enhanced = reply.split()[:2]
        if status_class == "5":
            # The remote's own enhanced status code is the one to report (RFC 3463, 3464).
            assert status == enhanced, f"Status {status!r}, the sink answered {reply!r}"
        remote = one_line(group.get("Remote-MTA", ""))
        assert remote.lower().startswith("dns;") and HOST in remote, f"Remote-MTA {remote!r} does not name the sink at {HOST}: {dict(group)}"
        diagnostic = one_line(group.get("Diagnostic-Code", ""))
        assert diagnostic.lower().startswith("smtp;") and one_line(reply) in diagnostic, f"Diagnostic-Code {diagnostic!r} lacks the sink's reply {reply!r}"


# --------------------------------------------------------------------------------------------
# the fixture itself
# --------------------------------------------------------------------------------------------


def test_smtp_sink_fixture(smtp_sink):
    """smtp-sink as the tests use it: dumps what it accepts, logs sessions and commands, and
    answers chosen commands with 4xx/5xx (no dakiya involved)."""
    sink = smtp_sink()
    t = tag()
    message = build_message(ALICE, BOB, f"sink self-test {t}", "first line\r\n.leading dot\r\n.\r\nlast line\r\n")
    with smtplib.SMTP(HOST, sink.port, local_hostname=HELO, timeout=10) as s:
        assert s.sendmail(ALICE, [BOB, CAROL], message) == {}
        assert s.sendmail("", [BOB], message) == {}
    [first, second] = sink.wait_for_messages(2)
    assert (first.client_addr, first.helo, first.mail_from, first.rcpt_to) == (HOST, HELO, f"<{ALICE}>", [f"<{BOB}>", f"<{CAROL}>"])
    assert (second.mail_from, second.rcpt_to) == ("<>", [f"<{BOB}>"])
    assert first.message == to_lf(message).encode(), first.message
    assert sink.ehlo_count(HELO) == 1 and sink.connections() == 2  # the readiness probe and ours
    assert sink.rcpt_count(BOB) == 2 and sink.rcpt_count(CAROL) == 1

    soft = smtp_sink(reject_soft=["RCPT"], soft_reply=SINK_SOFT)
    hard = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    for sink, reply in ((soft, SINK_SOFT), (hard, SINK_HARD_RCPT)):
        with smtplib.SMTP(HOST, sink.port, local_hostname=HELO, timeout=10) as s:
            assert s.mail(ALICE)[0] == 250
            code, text = s.rcpt(BOB)
            assert f"{code} {text.decode()}" == reply
        assert sink.messages() == []
    # Restarted in place, without the rejections.
    soft.stop()
    again = smtp_sink(port=soft.port)
    with smtplib.SMTP(HOST, again.port, local_hostname=HELO, timeout=10) as s:
        assert s.sendmail(ALICE, [BOB], message) == {}
    assert len(again.wait_for_messages(1)) == 1


# --------------------------------------------------------------------------------------------
# delivery
# --------------------------------------------------------------------------------------------

AWKWARD_BODY = (
    "Lines the SMTP client must dot-stuff, and other things to keep intact:\r\n"
    ".leading dot\r\n"
    "..two leading dots\r\n"
    ".\r\n"
    "\r\n"
    "trailing spaces   \r\n"
    "\ttab first\r\n"
    + "x" * 900 + "\r\n"
    + "From the start of a line\r\n"
    "last line\r\n"
)


def test_relay_to_sink_delivers_message_intact_over_one_connection(dakiya_factory, smtp_sink):
    sink = smtp_sink()
    server = start_relay(dakiya_factory, {"sink.test": sink.port}, idle_timeout="60s")
    sent = []
    for i in range(3):
        t = tag()
        message = build_message(ALICE, BOB, f"outbound {i} {t}", f"message {i} ({t})\r\n" + AWKWARD_BODY)
        queue_id = relay(server, ALICE, [BOB], message)
        sent.append((t, message, queue_id))
        sink.wait_for_messages(i + 1)
        # Delivered and recorded before the next one, so that an idle connection can be reused.
        wait_queue_empty(server, sink=sink)
        time.sleep(0.5)

    dumps = sink.messages()
    assert len(dumps) == 3, [d.fields for d in dumps]
    for t, message, queue_id in sent:
        assert_relayed_intact(dump_with(dumps, t), message, queue_id)
    # Three messages one after the other, within idle_timeout: one session (connection reuse).
    sessions = sink.ehlo_count(HELO)
    assert sessions == 1, f"{sessions} sessions for 3 messages sent one after the other within idle_timeout; sink log:\n{sink.log()[-3000:]}"
    assert len(sink.commands(".")) == 3
    assert mail_files(server) == [], "a delivered message produced mail (a DSN?) for the sender"


def test_swaks_submission_with_auth_relayed_to_sink(dakiya_factory, smtp_sink):
    sink = smtp_sink()
    server = dakiya_factory(listeners=[(f"{HOST}:0", "mx"), (f"{HOST}:0", "submission")],
                            tables=outbound_config({"sink.test": sink.port}))  # fmt: skip
    server.add_user(ALICE, PASSWORD)
    subject = f"swaks submission to a remote domain {tag()}"
    body = "sent with swaks --tls --auth PLAIN, relayed by dakiya to smtp-sink"
    r = subprocess.run(
        ["swaks", "--server", f"{HOST}:{server.port_of('submission')}", "--tls",
         "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD, "--auth-hide-password",
         "--from", ALICE, "--to", CAROL, "--ehlo", "client.test",
         "--header", f"Subject: {subject}", "--body", body, "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"swaks exited {r.returncode}:\n{out}"
    assert "235 2.7.0" in out, out
    queue_id = queue_id_from_reply(out)

    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)
    [dump] = sink.messages()
    assert (dump.helo, dump.mail_from, dump.rcpt_to) == (HELO, f"<{ALICE}>", [f"<{CAROL}>"]), dump.fields
    received, rest = split_leading_received(dump.message)
    assert received and queue_id in received[0], received
    assert "ESMTPSA" in received[0] and f"(authenticated as {ALICE})" in received[0], received[0]
    assert f"Subject: {subject}\n".encode() in rest, rest
    assert body.encode() in rest, rest
    assert mail_files(server) == []


def test_opportunistic_tls_delivers_in_clear_when_starttls_not_offered(dakiya_factory, smtp_sink):
    """smtp-sink offers no STARTTLS: opportunistic TLS (the default) sends in clear (RFC 7435)."""
    sink = smtp_sink()
    server = start_relay(dakiya_factory, {"sink.test": (sink.port, None)})
    t = tag()
    message = build_message(ALICE, BOB, f"opportunistic {t}", "no STARTTLS on offer\r\n")
    queue_id = relay(server, ALICE, [BOB], message)
    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)
    assert_relayed_intact(dump_with(sink.messages(), t), message, queue_id)
    assert sink.commands("starttls") == []


def test_required_tls_never_sends_in_clear(dakiya_factory, smtp_sink):
    """tls = "require" and a server without STARTTLS: the message is never handed over; it is
    retried until max_age and bounced."""
    sink = smtp_sink()
    server = start_relay(dakiya_factory, {"sink.test": (sink.port, "require")}, retry=("1s",), max_age="3s")
    message = build_message(ALICE, BOB, f"needs TLS {tag()}", "not in clear, please\r\n")
    relay(server, ALICE, [BOB], message)

    [dsn] = wait_for_dsns(server)
    wait_queue_empty(server, sink=sink)
    assert sink.ehlo_count(HELO) >= 1, f"dakiya never connected to the sink; its log:\n{sink.log()[-3000:]}"
    assert sink.commands("mail") == [] and sink.messages() == [], f"a transaction without TLS: {sink.commands()}"
    assert_dsn_envelope_and_headers(dsn)
    group = dsn.recipient(BOB)
    assert one_line(group.get("Action", "")).lower() == "failed", dict(group)
    status = one_line(group.get("Status", ""))
    assert STATUS_RE.match(status) and status[0] in "45", f"Status {status!r}: {dict(group)}"


EIGHT_BIT_BODY = "Grüße aus Köln — 8-bit text, sent as BODY=8BITMIME\r\n"


def send_8bit(server, subject: str) -> tuple[bytes, str]:
    """An 8-bit (UTF-8) body with an ASCII envelope and header, as BODY=8BITMIME; returns the
    message as sent and its queue ID."""
    message = build_message(ALICE, BOB, subject, EIGHT_BIT_BODY).encode("utf-8")
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("8bitmime"), s.esmtp_features
        assert s.mail(ALICE, ["BODY=8BITMIME"])[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, reply = s.data(message)
        assert code == 250, (code, reply)
        return message, queue_id_from_reply(reply)


def test_8bit_body_relayed_with_8bitmime(dakiya_factory, smtp_sink):
    sink = smtp_sink()
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    t = tag()
    message, queue_id = send_8bit(server, f"8bit {t}")
    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)
    [dump] = sink.messages()
    mail_args = dump.all("X-Mail-Args")[0]
    assert re.search(r"\bBODY=8BITMIME\b", mail_args, re.IGNORECASE), f"8-bit content relayed without BODY=8BITMIME: MAIL FROM:{mail_args}"
    _received, rest = split_leading_received(dump.message)
    assert rest == to_lf(message), f"relayed 8-bit message differs:\n{message!r}\n{rest!r}"


def test_8bit_body_to_server_without_8bitmime_bounces(dakiya_factory, smtp_sink):
    """smtp-sink -8 does not offer 8BITMIME: the 8-bit message must not be sent to it
    (RFC 6152 §3); dakiya does not convert, so it bounces (5.6.3)."""
    sink = smtp_sink(extra_args=["-8"])
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    send_8bit(server, f"8bit to a 7bit server {tag()}")
    [dsn] = wait_for_dsns(server)
    wait_queue_empty(server, sink=sink)
    assert sink.commands("data") == [] and sink.messages() == [], f"8-bit content sent to a server without 8BITMIME: {sink.commands()}"
    assert_dsn_envelope_and_headers(dsn)
    group = dsn.recipient(BOB)
    assert one_line(group.get("Action", "")).lower() == "failed", dict(group)
    status = one_line(group.get("Status", ""))
    assert status.startswith("5.6."), f"Status {status!r} (want 5.6.x, media/content error): {dict(group)}"


# --------------------------------------------------------------------------------------------
# permanent failures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, reply",
    [("RCPT", SINK_HARD_RCPT), (".", SINK_HARD_DATA)],
    ids=["5xx-to-RCPT", "5xx-to-end-of-data"],
)
def test_permanent_failure_one_dsn_for_both_recipients(dakiya_factory, smtp_sink, command, reply):
    sink = smtp_sink(reject_hard=[command], hard_reply=reply)
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    t = tag()
    subject = f"will bounce {t}"
    message = build_message(ALICE, f"{BOB}, {CAROL}", subject, "this message cannot be delivered\r\n")
    message_id = re.search(r"^Message-ID: (<[^>]+>)", message, re.MULTILINE).group(1)
    queue_id = relay(server, ALICE, [BOB, CAROL], message)

    [dsn] = wait_for_dsns(server)
    wait_queue_empty(server, sink=sink)
    assert_dsn_envelope_and_headers(dsn)
    assert sorted(r.lower() for r in dsn.final_recipients()) == sorted(f"rfc822; {a}" for a in (BOB, CAROL)), dsn.final_recipients()
    for rcpt in (BOB, CAROL):
        assert_failed_rcpt(dsn, rcpt, status_class="5", reply=reply)
    headers = dsn.returned_headers()
    assert f"Message-ID: {message_id}".encode() in headers and subject.encode() in headers, headers
    assert one_line(dsn.per_message.get("X-Dakiya-Queue-ID", "")) == queue_id, dict(dsn.per_message)
    # A permanent failure is not retried; nothing else was sent anywhere.
    assert sink.rcpt_count(BOB) == 1 and sink.rcpt_count(CAROL) == 1, sink.commands("rcpt")
    assert len(sink.commands("mail")) == 1, sink.commands("mail")
    assert len(mail_files(server)) == 1


def test_mixed_results_dsn_lists_only_the_failed_recipients(dakiya_factory, smtp_sink):
    good = smtp_sink()
    bad = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    server = start_relay(dakiya_factory, {"sink.test": good.port, "bad.test": bad.port})
    t = tag()
    failed = ["carol@bad.test", "dave@bad.test"]
    message = build_message(ALICE, ", ".join([BOB] + failed), f"partly delivered {t}", "one of three arrives\r\n")
    queue_id = relay(server, ALICE, [BOB] + failed, message)

    good.wait_for_messages(1)
    [dsn] = wait_for_dsns(server)
    wait_queue_empty(server, sink=bad)
    assert_relayed_intact(dump_with(good.messages(), t), message, queue_id)
    assert_dsn_envelope_and_headers(dsn)
    assert sorted(r.lower() for r in dsn.final_recipients()) == sorted(f"rfc822; {a}" for a in failed), dsn.final_recipients()
    for rcpt in failed:
        assert_failed_rcpt(dsn, rcpt, status_class="5", reply=SINK_HARD_RCPT)
    assert bad.messages() == []


def test_null_sender_permanent_failure_sends_no_dsn(dakiya_factory, smtp_sink):
    """A message from <> that bounces is dropped without a notice (RFC 5321 §4.5.5)."""
    sink = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    message = build_message("MAILER-DAEMON@client.test", BOB, f"a bounce that bounces {tag()}", "nobody to tell\r\n")
    relay(server, "", [BOB], message)

    sink.wait_for_commands("rcpt", 1)
    wait_queue_empty(server, sink=sink)
    time.sleep(SETTLE)
    assert mail_files(server) == [], f"mail delivered locally after a bounce from <>: {mail_files(server)}"
    assert spool_messages(server.data_dir) == []
    mails = sink.commands("mail")
    assert len(mails) == 1 and re.match(r"FROM:\s*<>", mails[0][1], re.IGNORECASE), f"the sink saw {mails}; only the original MAIL FROM:<> was expected"
    assert sink.rcpt_count(BOB) == 1


def test_dsn_for_a_remote_sender_is_relayed_with_null_sender(dakiya_factory, smtp_sink):
    """A bounce for a sender in another domain goes out like any message, from <>."""
    home = smtp_sink()
    bad = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    server = start_relay(dakiya_factory, {"sink.test": home.port, "bad.test": bad.port})
    sender = "someone@sink.test"
    message = build_message(sender, "carol@bad.test", f"bounce goes remote {tag()}", "to a bad place\r\n")
    queue_id = relay(server, sender, ["carol@bad.test"], message)

    [notice] = home.wait_for_messages(1)
    wait_queue_empty(server, sink=home)
    assert (notice.mail_from, notice.rcpt_to) == ("<>", [f"<{sender}>"]), notice.fields
    _received, rest = split_leading_received(notice.message)
    dsn = email.message_from_bytes(rest)
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status", rest[:1500]
    [status] = [part for part in dsn.walk() if part.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert one_line(blocks[0].get("X-Dakiya-Queue-ID", "")) == queue_id, dict(blocks[0])
    [group] = blocks[1:]
    assert one_line(group["Final-Recipient"]).lower() == "rfc822; carol@bad.test", dict(group)
    assert one_line(group["Action"]).lower() == "failed" and one_line(group["Status"]) == "5.1.1", dict(group)
    assert mail_files(server) == []


def test_dsn_parameters_passed_on_to_a_next_hop_that_offers_dsn(dakiya_factory, smtp_sink):
    """RFC 3461 §4: NOTIFY, ORCPT, RET and ENVID travel with the message; dakiya reports nothing
    itself when the next hop speaks DSN."""
    sink = smtp_sink()
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    t = tag()
    message = build_message(ALICE, BOB, f"dsn params {t}", "please tell me\r\n")
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("dsn"), s.esmtp_features
        assert s.mail(ALICE, ["RET=HDRS", f"ENVID=env-{t}"])[0] == 250
        assert s.rcpt(BOB, ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{BOB}"])[0] == 250
        code, reply = s.data(message)
        assert code == 250, (code, reply)
    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)
    time.sleep(SETTLE)
    [dump] = sink.messages()
    mail_args = dump.all("X-Mail-Args")[0].split()
    rcpt_args = dump.all("X-Rcpt-Args")[0].split()
    assert "RET=HDRS" in mail_args and f"ENVID=env-{t}" in mail_args, mail_args
    assert "NOTIFY=SUCCESS,FAILURE" in rcpt_args and f"ORCPT=rfc822;{BOB}" in rcpt_args, rcpt_args
    assert mail_files(server) == [], "a success notice although the next hop takes NOTIFY over"


def test_notify_success_to_a_next_hop_without_dsn_gets_relayed_notice(dakiya_factory, smtp_sink):
    """smtp-sink -N offers no DSN: dakiya itself reports `relayed` to a sender who asked for
    NOTIFY=SUCCESS (RFC 3461 §6.2.2), and passes no DSN parameters on."""
    sink = smtp_sink(extra_args=["-N"])
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    message = build_message(ALICE, BOB, f"relayed notice {tag()}", "did it get there?\r\n")
    with server.smtp() as s:
        s.ehlo()
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(BOB, ["NOTIFY=SUCCESS"])[0] == 250
        code, reply = s.data(message)
        assert code == 250, (code, reply)
    sink.wait_for_messages(1)
    [dsn] = wait_for_dsns(server)
    [dump] = sink.messages()
    assert "NOTIFY" not in dump.all("X-Rcpt-Args")[0].upper(), dump.fields
    assert_dsn_envelope_and_headers(dsn)
    group = dsn.recipient(BOB)
    assert one_line(group.get("Action", "")).lower() == "relayed", dict(group)
    assert one_line(group.get("Status", "")).startswith("2."), dict(group)


def test_notify_never_silences_the_bounce(dakiya_factory, smtp_sink):
    sink = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    server = start_relay(dakiya_factory, {"sink.test": sink.port})
    message = build_message(ALICE, BOB, f"notify never {tag()}", "don't tell me\r\n")
    with server.smtp() as s:
        s.ehlo()
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(BOB, ["NOTIFY=NEVER"])[0] == 250
        assert s.data(message)[0] == 250
    sink.wait_for_commands("rcpt", 1)
    wait_queue_empty(server, sink=sink)
    time.sleep(SETTLE)
    assert mail_files(server) == [], f"a notice despite NOTIFY=NEVER: {mail_files(server)}"
    rcpt_args = sink.commands("rcpt")[0][1]
    assert "NOTIFY=NEVER" in rcpt_args.upper(), f"NOTIFY=NEVER not passed on: RCPT {rcpt_args}"


# --------------------------------------------------------------------------------------------
# temporary failures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
def test_temporary_failure_retried_until_max_age_then_bounced(dakiya_factory, smtp_sink, command):
    sink = smtp_sink(reject_soft=[command], soft_reply=SINK_SOFT)
    server = start_relay(dakiya_factory, {"sink.test": sink.port}, retry=("1s",), max_age="3s")
    t = tag()
    message = build_message(ALICE, BOB, f"will expire {t}", "the sink never takes this one\r\n")
    relay(server, ALICE, [BOB], message)

    [dsn] = wait_for_dsns(server)
    wait_queue_empty(server, sink=sink)
    attempts = len(sink.commands(command))
    assert attempts >= 2, f"{attempts} {command} attempt(s) before the message expired; retry_schedule is 1s, max_age 3s; sink log:\n{sink.log()[-3000:]}"
    assert sink.messages() == []
    assert_dsn_envelope_and_headers(dsn)
    assert [r.lower() for r in dsn.final_recipients()] == [f"rfc822; {BOB}"], dsn.final_recipients()
    group = dsn.recipient(BOB)
    assert one_line(group.get("Action", "")).lower() == "failed", dict(group)
    status = one_line(group.get("Status", ""))
    assert STATUS_RE.match(status) and status[0] in "45", f"Status {status!r}: {dict(group)}"
    # The last answer is what the sender should read about (RFC 3464 §2.3.6).
    diagnostic = one_line(group.get("Diagnostic-Code", ""))
    assert diagnostic.lower().startswith("smtp;") and one_line(SINK_SOFT) in diagnostic, f"Diagnostic-Code {diagnostic!r} lacks the sink's last reply {SINK_SOFT!r}"
    # Given up: no more attempts.
    time.sleep(SETTLE)
    assert len(sink.commands(command)) == attempts, f"attempts went on after the bounce: {sink.commands(command)}"
    assert len(mail_files(server)) == 1


def test_temporary_failure_then_sink_recovers_delivers_without_dsn(dakiya_factory, smtp_sink):
    sink = smtp_sink(reject_soft=["RCPT"], soft_reply=SINK_SOFT)
    server = start_relay(dakiya_factory, {"sink.test": sink.port}, retry=("1s",), max_age="1h")
    t = tag()
    message = build_message(ALICE, BOB, f"deferred then delivered {t}", "patience\r\n" + AWKWARD_BODY)
    queue_id = relay(server, ALICE, [BOB], message)

    sink.wait_for_commands("rcpt", 1)
    assert [env for _p, env in spool_messages(server.data_dir) if env["id"] == queue_id], "the deferred message left the queue"
    sink.stop()
    recovered = smtp_sink(port=sink.port)
    recovered.wait_for_messages(1)
    wait_queue_empty(server, sink=recovered)
    time.sleep(SETTLE)
    [dump] = recovered.messages()
    assert_relayed_intact(dump, message, queue_id)
    assert sink.messages() == []
    assert mail_files(server) == [], f"a DSN (or other mail) for the sender of a delivered message: {mail_files(server)}"


def test_refused_connection_retried_until_sink_listens(dakiya_factory, smtp_sink, work_dir):
    """Nothing listens on the route's port at first (connection refused: a temporary failure);
    once a sink does, the queued message reaches it, and nobody is notified."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    server = start_relay(dakiya_factory, {"sink.test": port}, retry=("1s",), max_age="1h")
    t = tag()
    message = build_message(ALICE, BOB, f"refused first {t}", "knock knock\r\n")
    queue_id = relay(server, ALICE, [BOB], message)

    # Wait for a failed attempt: the queue's status log records the recipient as deferred.
    def deferred():
        return any(r.get("state") == "deferred" for r in status_records(server.data_dir, queue_id))
    wait_until(deferred, f"a deferred delivery attempt of {queue_id} (connection refused)", server)
    sink = smtp_sink(port=port)
    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)
    time.sleep(SETTLE)
    assert_relayed_intact(dump_with(sink.messages(), t), message, queue_id)
    assert len(sink.messages()) == 1
    assert mail_files(server) == []


def test_no_reply_to_end_of_data_is_retried(dakiya_factory, smtp_sink):
    """The sink takes the message but drops the connection instead of answering ".": dakiya
    cannot know it was delivered, so it tries again (RFC 5321 §6.1: a duplicate rather than
    a loss)."""
    sink = smtp_sink(extra_args=["-q", "."])
    server = start_relay(dakiya_factory, {"sink.test": sink.port}, retry=("1s",), max_age="1h")
    t = tag()
    message = build_message(ALICE, BOB, f"no reply to dot {t}", "did it arrive?\r\n")
    queue_id = relay(server, ALICE, [BOB], message)

    sink.wait_for_messages(1)
    sink.stop()
    recovered = smtp_sink(port=sink.port)
    recovered.wait_for_messages(1)
    wait_queue_empty(server, sink=recovered)
    time.sleep(SETTLE)
    assert_relayed_intact(dump_with(recovered.messages(), t), message, queue_id)
    assert mail_files(server) == [], f"a DSN (or other mail) for the sender of a delivered message: {mail_files(server)}"


def test_delay_notice_sent_once_while_retrying(dakiya_factory, smtp_sink):
    sink = smtp_sink(reject_soft=["RCPT"], soft_reply=SINK_SOFT)
    server = start_relay(dakiya_factory, {"sink.test": sink.port}, retry=("1s",), max_age="1h", delay_notice="2s")
    message = build_message(ALICE, BOB, f"delayed {tag()}", "still trying\r\n")
    queue_id = relay(server, ALICE, [BOB], message)

    [dsn] = wait_for_dsns(server)
    sink.wait_for_commands("rcpt", len(sink.commands("rcpt")) + 1)  # retrying goes on after the notice...
    time.sleep(SETTLE)
    assert len(mail_files(server)) == 1, f"more than one delay notice: {mail_files(server)}"  # ...without a second one
    assert [env["id"] for _p, env in spool_messages(server.data_dir)] == [queue_id]
    assert_dsn_envelope_and_headers(dsn)
    group = dsn.recipient(BOB)
    assert one_line(group.get("Action", "")).lower() == "delayed", dict(group)
    status = one_line(group.get("Status", ""))
    assert STATUS_RE.match(status) and status.startswith("4."), f"Status {status!r}: {dict(group)}"
    assert one_line(SINK_SOFT) in one_line(group.get("Diagnostic-Code", "")), dict(group)
