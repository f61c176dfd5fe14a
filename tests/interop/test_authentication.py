"""Message authentication against independent implementations: dkimpy (its `dkim` API and its
`dkimsign` / `dkimverify` commands) signs and verifies DKIM, and a DNS server of the tests'
own (dnsserver.py, conftest `dns_server`, built on dnslib) publishes keys, SPF and DMARC
records on 127.0.0.1.

- dakiya's signatures (keys made by `dakiya dkim generate`, mail submitted with AUTH or from
  trusted_networks) must verify in dkimpy, from the Maildir copy as delivered.
- dkimpy's signatures, and the committed real-world samples in samples/ (made by
  scripts/make-auth-samples, verdicts in samples/manifest.json), must get the right verdicts
  on a verifying mx listener (conftest role "mx-verify"): the `Authentication-Results:` field
  dakiya puts on top of the delivered message (authserv-id = its hostname, mx.test).
- SPF verdicts and DMARC policies (reject → 550 5.7.1, quarantine → X-Spam-Flag, none,
  alignment relaxed and strict, DNS trouble → 451) through dakiya.

The client is 127.0.0.1 (not in trusted_networks unless a test says so); it claims whatever
HELO and MAIL FROM a case needs. Sender domains are *.test names that exist only in the test
DNS server. Nothing leaves loopback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailutil import Delivered, build_message, tag

try:
    import dkim
    import dkim.util
except ImportError as e:  # reported by every test (a collection error would stop the whole run)
    dkim = None
    DKIM_MISSING = str(e)

HOST = "127.0.0.1"
AUTHSERV = "mx.test"  # conftest's hostname: dakiya's authserv-id
ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "Auth-Interop-Secret-3b8e"
SAMPLES = Path(__file__).resolve().parent / "samples"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))
SAMPLE_TXT = MANIFEST["dns"]["TXT"]

# Test keys from samples/keys (TEST-ONLY, committed), re-published under the test domains'
# selectors: the DNS record is what binds a key to a domain.
RSA_KEY = (SAMPLES / "keys" / "rsa2025.author.test.pem").read_bytes()
RSA_RECORD = SAMPLE_TXT["rsa2025._domainkey.author.test"][0]
ED_KEY = (SAMPLES / "keys" / "ed2026.author.test.ed25519").read_bytes().strip()
ED_RECORD = SAMPLE_TXT["ed2026._domainkey.author.test"][0]

RELAXED = (b"relaxed", b"relaxed")
SIGN_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]

MX_VERIFY = [(f"{HOST}:0", "mx-verify")]


@pytest.fixture(autouse=True)
def _need_dkimpy():
    if dkim is None:
        pytest.fail(f"dkimpy is not installed ({DKIM_MISSING}): scripts/test installs it")


# --------------------------------------------------------------------------------------------
# helpers: DNS, servers, SMTP
# --------------------------------------------------------------------------------------------


def nameservers(dns) -> str:
    return f'[outbound]\nnameservers = ["{dns.address}"]\n'


def verifying_server(dakiya_factory, dns, *, listen_extra: str = "", top: str = "", tables: str = ""):
    """A dakiya whose only listener is an mx listener with verify = true, asking `dns`."""
    listeners = [(f"{HOST}:0", "mx-verify", listen_extra)] if listen_extra else MX_VERIFY
    return dakiya_factory(listeners=listeners, top=top, tables=tables + "\n" + nameservers(dns))


@dataclass
class Outcome:
    mail: tuple[int, str]
    end: tuple[int, str] | None

    def __str__(self):
        return f"MAIL -> {self.mail}, end of data -> {self.end}"


def send(server, data: bytes, mail_from: str, rcpt: str = ALICE, *, helo: str = "client.test", eight_bit: bool = False,
         port: int | None = None) -> Outcome:  # fmt: skip
    """One transaction with smtplib (which dot-stuffs): EHLO `helo`, MAIL FROM `mail_from` ("" for
    <>), RCPT `rcpt`, DATA `data` (CRLF bytes). Stops after a MAIL that is not 250."""
    with smtplib.SMTP(HOST, port or server.port_of("mx"), local_hostname=helo, timeout=60) as s:
        code, _ = s.ehlo(helo)
        assert code == 250, f"EHLO {helo}: {code}"
        options = ["BODY=8BITMIME"] if eight_bit else []
        mail = s.mail(mail_from, options)
        mail = (mail[0], mail[1].decode("utf-8", "replace"))
        if mail[0] != 250:
            return Outcome(mail, None)
        code, text = s.rcpt(rcpt)
        assert code == 250, f"RCPT TO:<{rcpt}>: {code} {text!r}"
        try:
            code, text = s.data(data)
        except smtplib.SMTPDataError as e:  # a refusal of DATA itself (not expected)
            code, text = e.smtp_code, e.smtp_error
        return Outcome(mail, (code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))


def message(from_addr: str, subject: str, body: str = "Hello.\r\n", extra_headers: str = "", to: str = ALICE) -> bytes:
    return build_message(from_addr, to, subject, body, extra_headers).encode("utf-8")


def dkimpy_sign(msg: bytes, domain: str, selector: str, algorithm: str = "ed25519", canon=RELAXED, key: bytes | None = None,
                headers=SIGN_HEADERS) -> bytes:  # fmt: skip
    """`msg` with a DKIM-Signature by dkimpy's API on top."""
    alg = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256", "rsa-sha1": b"rsa-sha1"}[algorithm]
    key = key or (ED_KEY if algorithm == "ed25519" else RSA_KEY)
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key, canonicalize=canon, signature_algorithm=alg,
                    include_headers=headers)
    return sig + msg


def dkimpy_command(name: str) -> str:
    """A dkimpy command (dkimsign, dkimverify): next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"dkimpy's `{name}` command is not installed (scripts/test installs dkimpy)")
    return found


def delivered(server, mailbox: str, marker: str) -> Delivered:
    """The one message in the mailbox whose Subject contains `marker`."""
    files = server.wait_for_delivery(mailbox, settle=0.2)
    found = [Delivered(p.read_bytes(), p) for p in files]
    found = [m for m in found if any(marker in s for s in m.all("Subject"))]
    assert len(found) == 1, f"{mailbox}: expected one message with {marker!r} in Subject:, found {len(found)} among {[p.name for p in files]}"
    return found[0]


def maildir_messages_with(server, mailbox: str, marker: str) -> list[Path]:
    return [p for p in server.new_files(mailbox) if marker.encode() in p.read_bytes()]


# --------------------------------------------------------------------------------------------
# helpers: Authentication-Results (RFC 8601)
# --------------------------------------------------------------------------------------------


@dataclass
class ResInfo:
    method: str  # spf, dkim, dmarc, arc, ...
    result: str  # pass, fail, ...
    props: dict  # ptype.property -> value, e.g. "header.d" -> "example.test"
    text: str  # the resinfo as it was (comments included)

    @property
    def domain(self) -> str | None:
        """header.d, or the domain of header.i (RFC 8601 allows either for DKIM)."""
        if "header.d" in self.props:
            return self.props["header.d"].lower()
        if "header.i" in self.props:
            return self.props["header.i"].rpartition("@")[2].lower()
        return None


def strip_comments(value: str) -> str:
    """RFC 5322 comments (nested parentheses, outside quoted strings) removed."""
    out, depth, quoted, escaped = [], 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def split_resinfos(value: str) -> list[tuple[str, str]]:
    """[(resinfo without comments, resinfo as written)], the authserv-id part first."""
    raw_parts, depth, quoted, cur = [], 0, False, []
    for ch in value:
        if ch == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        if ch == ";" and depth == 0 and not quoted:
            raw_parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    raw_parts.append("".join(cur))
    return [(" ".join(strip_comments(p).split()), " ".join(p.split())) for p in raw_parts]


class AuthResults:
    """dakiya's Authentication-Results field of a delivered message, parsed."""

    def __init__(self, value: str):
        self.value = value
        parts = split_resinfos(value)
        self.authserv_id = parts[0][0].split()[0] if parts[0][0] else ""
        self.results: list[ResInfo] = []
        for clean, raw in parts[1:]:
            if not clean or clean.lower() == "none":
                continue
            tokens = clean.split()
            method, eq, result = tokens[0].partition("=")
            assert eq, f"malformed resinfo {raw!r} in Authentication-Results: {value}"
            props = {}
            for t in tokens[1:]:
                k, eq, v = t.partition("=")
                if eq:
                    props[k.lower()] = v.strip('"')
            self.results.append(ResInfo(method.lower(), result.lower(), props, raw))

    def of(self, method: str) -> list[ResInfo]:
        return [r for r in self.results if r.method == method]

    def one(self, method: str) -> ResInfo:
        found = self.of(method)
        assert len(found) == 1, f"expected one {method}= result, got {[r.text for r in found]} in: {self.value}"
        return found[0]

    def verdict(self, method: str) -> str:
        return self.one(method).result

    def dkim(self) -> list[tuple[str, str | None, str | None]]:
        """[(result, signing domain, selector)] in the order dakiya lists them."""
        return [(r.result, r.domain, r.props.get("header.s")) for r in self.of("dkim")]

    def __str__(self):
        return self.value


def our_results(msg: Delivered) -> AuthResults:
    """The one Authentication-Results field by dakiya (authserv-id mx.test). It must come before
    the message's own header fields: dakiya puts it on top, under Return-Path/Delivered-To."""
    ours = [AuthResults(v) for v in msg.all("Authentication-Results")]
    ours = [a for a in ours if a.authserv_id.lower() == AUTHSERV]
    assert len(ours) == 1, f"expected one Authentication-Results by {AUTHSERV}, got {len(ours)} in:\n{msg.header_block.decode('utf-8', 'replace')}"
    names = [n.lower() for n in msg.names()]
    first_ar = names.index("authentication-results")
    assert "from" not in names[:first_ar], f"Authentication-Results is not on top:\n{msg.header_block.decode('utf-8', 'replace')}"
    return ours[0]


def assert_refused(outcome: Outcome, code: int, enhanced: str, *, at: str = "end"):
    got = outcome.end if at == "end" else outcome.mail
    assert got is not None and got[0] == code and got[1].startswith(enhanced), \
        f"expected {code} {enhanced} at {'end of data' if at == 'end' else 'MAIL'}; {outcome}"


def assert_accepted(outcome: Outcome):
    assert outcome.mail[0] == 250 and outcome.end is not None and outcome.end[0] == 250, f"expected the message accepted; {outcome}"


# --------------------------------------------------------------------------------------------
# the test DNS server itself
# --------------------------------------------------------------------------------------------


def test_dns_server_answers_like_an_authoritative_server(dns_server):
    """dnsserver.TestDNS, checked with dnspython: TXT (a >255-octet value split into strings and
    joined again), A, MX, NODATA, NXDOMAIN, SERVFAIL, and UDP truncation with TCP retry."""
    try:
        import dns.flags
        import dns.message
        import dns.query
        import dns.rcode
        import dns.resolver as resolver_mod
    except ImportError as e:
        pytest.fail(f"dnspython is not installed ({e}): scripts/test installs it")

    long_value = "v=DKIM1; k=rsa; p=" + "A" * 600
    server = dns_server({
        "a.test": {"TXT": ["v=spf1 -all", long_value], "A": ["127.0.0.1"], "MX": [(10, "mx.a.test")]},
        "b.test": {"A": ["127.0.0.2"]},
    }, servfail=["broken.test"])  # fmt: skip
    r = resolver_mod.Resolver(configure=False)
    r.nameservers = [HOST]
    r.port = server.port
    r.lifetime = 5
    txt = sorted(b"".join(rr.strings).decode() for rr in r.resolve("A.TEST.", "TXT"))
    assert txt == sorted(["v=spf1 -all", long_value])
    strings = [rr.strings for rr in r.resolve("a.test.", "TXT") if len(rr.strings) > 1][0]
    assert [len(s) for s in strings] == [255, 255, len(long_value) - 510]
    assert [str(rr) for rr in r.resolve("a.test.", "A")] == ["127.0.0.1"]
    assert [(rr.preference, str(rr.exchange)) for rr in r.resolve("a.test.", "MX")] == [(10, "mx.a.test.")]
    # The TXT answer exceeds 512 octets: dnspython got it over TCP after a truncated UDP reply.
    assert ("a.test", "TXT", "tcp") in server.queries and server.truncated >= 1, server.queries
    for name, rtype, rcode, answers in [("b.test", "TXT", "NOERROR", 0), ("nx.test", "A", "NXDOMAIN", 0),
                                        ("broken.test", "TXT", "SERVFAIL", 0), ("b.test", "A", "NOERROR", 1)]:  # fmt: skip
        resp = dns.query.udp(dns.message.make_query(name, rtype), HOST, port=server.port, timeout=5)
        assert dns.rcode.to_text(resp.rcode()) == rcode, (name, rtype, resp)
        assert sum(len(a) for a in resp.answer) == answers, (name, rtype, resp)
        assert resp.flags & dns.flags.AA, "answers are authoritative"


# --------------------------------------------------------------------------------------------
# dakiya signs, dkimpy verifies
# --------------------------------------------------------------------------------------------


def dkim_cli(binary: str, config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "dkim", "--config", str(config), *args], capture_output=True, text=True, timeout=120)


def parse_records(out: str) -> dict[str, str]:
    """`name:  X` / `value: Y` pairs printed by `dakiya dkim generate|show`; also checks each
    `zone:` line splits the value into quoted strings of at most 255 octets."""
    records, name = {}, None
    for line in out.splitlines():
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("value:") and name:
            records[name] = line.split(":", 1)[1].strip()
        elif line.startswith("zone:") and name:
            strings = re.findall(r'"([^"]*)"', line)
            assert strings and all(len(s.encode()) <= 255 for s in strings), f"zone line with a string over 255 octets: {line!r}"
            assert "".join(strings) == records.get(name), f"zone line's strings don't join to the value: {line!r}"
            assert line.split(":", 1)[1].strip().startswith(f"{name}. IN TXT"), line
    return records


def generate_keys(dakiya_bin: str, algorithms: list[str], domain: str = "example.test"):
    """A `prepare` hook for dakiya_factory: `dakiya dkim generate` for each algorithm before the
    server starts; the printed records land in the returned dict."""
    records: dict[str, str] = {}

    def prepare(config_path: Path, data_dir: Path):
        for algorithm in algorithms:
            selector = f"{algorithm[:3]}{tag()[:6]}"
            r = dkim_cli(dakiya_bin, config_path, "generate", domain, "--selector", selector, "--algorithm", algorithm)
            assert r.returncode == 0, f"dakiya dkim generate exited {r.returncode}: {r.stdout}{r.stderr}"
            got = parse_records(r.stdout)
            name = f"{selector}._domainkey.{domain}"
            assert list(got) == [name], f"generate printed {got!r}:\n{r.stdout}"
            k = "rsa" if algorithm == "rsa" else "ed25519"
            assert re.fullmatch(rf"v=DKIM1; k={k}; p=[A-Za-z0-9+/]+=*", got[name]), got[name]
            key_file = data_dir / "dkim" / domain / f"{selector}.key"
            assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600, key_file
            records.update(got)
        shown = dkim_cli(dakiya_bin, config_path, "show", domain)
        assert shown.returncode == 0, shown.stderr
        assert parse_records(shown.stdout) == records, f"`dkim show` differs from what generate printed:\n{shown.stdout}"

    return records, prepare


def submit(server, sender: str, rcpts: list[str], data: bytes, *, eight_bit: bool = False):
    """Submission with STARTTLS and AUTH (smtplib), as a mail program does."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(HOST, server.port_of("submission"), local_hostname="client.test", timeout=60) as s:
        s.starttls(context=ctx)
        s.login(sender, PASSWORD)
        refused = s.sendmail(sender, rcpts, data, mail_options=["BODY=8BITMIME"] if eight_bit else [])
        assert not refused, refused


def sitecustomize_dir(work_dir: Path, dns) -> Path:
    """A directory with a sitecustomize.py that points dnspython's default resolver at the
    test DNS server: how the `dkimverify` command (which has no resolver option and asks
    dnspython's default resolver, i.e. /etc/resolv.conf) is made to use it."""
    d = work_dir / "pysite"
    d.mkdir(exist_ok=True)
    (d / "sitecustomize.py").write_text(
        "import dns.resolver\n"
        "_r = dns.resolver.Resolver(configure=False)\n"
        f"_r.nameservers = [{HOST!r}]\n"
        f"_r.port = {dns.port}\n"
        "_r.lifetime = 10\n"
        "dns.resolver.default_resolver = _r\n"
    )
    return d


def dkimverify_cli(work_dir: Path, dns, data: bytes, index: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(sitecustomize_dir(work_dir, dns)) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([dkimpy_command("dkimverify"), "--index", str(index)], input=data, capture_output=True,
                          env=env, timeout=60)  # fmt: skip


def signature_tags(msg: bytes) -> list[dict[bytes, bytes]]:
    d = dkim.DKIM(msg)
    return [dkim.util.parse_tag_value(v) for k, v in d.headers if k.lower() == b"dkim-signature"]


def txt_dnsfunc(records: dict[str, str]):
    """A dkimpy dnsfunc answering from `records` (name -> TXT value)."""

    def dnsfunc(name, timeout=5):
        value = records.get(name.decode().rstrip(".").lower())
        return value.encode() if value is not None else None

    return dnsfunc


def dkimpy_verdicts(msg: bytes, dnsfunc) -> list[bool]:
    out = []
    for i in range(len(signature_tags(msg))):
        try:
            out.append(bool(dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.ValidationError:
            out.append(False)
    return out


def check_dakiya_signed(msg: Delivered, records: dict[str, str], dns, work_dir: Path, algorithms: list[str]):
    """The delivered copy carries one DKIM-Signature per key, each verifying in dkimpy (API with
    the records, and the dkimverify command through the test DNS server)."""
    names = [n.lower() for n in msg.names()]
    assert names[:2] == ["return-path", "delivered-to"], names[:6]
    assert names.count("dkim-signature") == len(algorithms), f"expected {len(algorithms)} DKIM-Signature(s):\n{msg.header_block.decode()}"
    crlf = msg.raw.replace(b"\n", b"\r\n")
    tags = signature_tags(crlf)
    want_algs = sorted({"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}[a] for a in algorithms)
    assert sorted(t[b"a"].decode() for t in tags) == want_algs, tags
    for t in tags:
        assert t[b"d"] == b"example.test", t
        assert t.get(b"c", b"simple/simple") == b"relaxed/relaxed", f"dakiya signs relaxed/relaxed: {t}"
        signed = [h.strip().lower() for h in t[b"h"].split(b":")]
        assert b"from" in signed, t
        # Return-Path and Delivered-To are added at delivery, above the signature: they must
        # not be signed (else any final delivery would break it).
        assert not {b"return-path", b"delivered-to"} & set(signed), f"h= covers delivery-time fields: {t[b'h']!r}"
        assert f"{t[b's'].decode()}._domainkey.example.test" in records, (t, records)

    dnsfunc = txt_dnsfunc(records)
    # As delivered (with Return-Path/Delivered-To on top), and without them: both verify.
    assert dkimpy_verdicts(crlf, dnsfunc) == [True] * len(tags), f"dkimpy fails dakiya's signature(s) on the delivered copy:\n{msg.raw.decode('utf-8', 'replace')}"
    stripped = b"".join(line for line in crlf.splitlines(keepends=True)[2:])
    assert stripped.lower().startswith(b"dkim-signature:"), stripped[:200]
    assert dkimpy_verdicts(stripped, dnsfunc) == [True] * len(tags)
    # The dkimverify command, asking the test DNS server over the network (dnspython).
    for i in range(len(tags)):
        r = dkimverify_cli(work_dir, dns, stripped, i)
        assert r.returncode == 0 and b"signature ok" in r.stdout, f"dkimverify --index {i}: exit {r.returncode}\nstdout {r.stdout!r}\nstderr {r.stderr.decode(errors='replace')}"
    assert dns.queried(f"{tags[0][b's'].decode()}._domainkey.example.test", "TXT"), f"dkimverify did not ask the test DNS server: {dns.queries}"


@pytest.mark.parametrize("algorithms", [["rsa"], ["ed25519"], ["rsa", "ed25519"]], ids=["rsa", "ed25519", "rsa+ed25519"])
def test_dakiya_signed_submission_verifies_with_dkimpy(dakiya_bin, dakiya_factory, dns_server, work_dir, algorithms):
    """Keys from `dakiya dkim generate` (before the server starts); alice submits with AUTH to
    bob, a local mailbox; the Maildir copy's signatures verify in dkimpy and dkimverify."""
    records, prepare = generate_keys(dakiya_bin, algorithms)
    server = dakiya_factory(listeners=[(f"{HOST}:0", "mx"), (f"{HOST}:0", "submission")], prepare=prepare)
    server.add_user(ALICE, PASSWORD)
    dns = dns_server({name: {"TXT": [value]} for name, value in records.items()})
    subject = f"signed {'+'.join(algorithms)} {tag()}"
    submit(server, ALICE, [BOB], message(ALICE, subject, "Signed by dakiya.\r\n", to=BOB))
    check_dakiya_signed(delivered(server, "bob", subject), records, dns, work_dir, algorithms)


def test_dakiya_signs_real_world_shapes_verifiably(dakiya_bin, dakiya_factory, dns_server, work_dir):
    """A message with long folded headers, an RFC 2047 display name, a References chain, an
    8-bit UTF-8 body (8BITMIME), lines starting with dots, trailing whitespace and trailing
    blank lines: dakiya's signature survives local delivery and verifies in dkimpy."""
    records, prepare = generate_keys(dakiya_bin, ["rsa"])
    server = dakiya_factory(listeners=[(f"{HOST}:0", "mx"), (f"{HOST}:0", "submission")], prepare=prepare)
    server.add_user(ALICE, PASSWORD)
    dns = dns_server({name: {"TXT": [value]} for name, value in records.items()})
    subject = f"shapes {tag()}"
    refs = "\r\n ".join(f"<{i:03d}.thread@mail.example.test>" for i in range(12))
    data = (
        "From: =?UTF-8?Q?Al=C3=ADce_Exampl=C3=A9?= <alice@example.test>\r\n"
        "To: \"Bob Example\" <bob@example.test>,\r\n\t\"Carol Example\" <carol@example.test>\r\n"
        f"Subject: Re: {subject} with a subject line that goes on and on well past\r\n the usual length\r\n"
        "Date: Thu, 15 Jan 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{tag()}@mail.example.test>\r\n"
        "In-Reply-To: <011.thread@mail.example.test>\r\n"
        f"References: {refs}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Grüße aus Köln — ελληνικά, русский, 日本語 📬   \r\n"
        ".a line starting with a dot\r\n"
        "..two dots\r\n"
        ".\ttab after a dot\r\n"
        "trailing tab\t\r\n"
        "\r\n\r\n\r\n"
    ).encode("utf-8")
    submit(server, ALICE, [BOB, "carol@example.test"], data, eight_bit=True)
    for mailbox in ("bob", "carol"):
        msg = delivered(server, mailbox, subject)
        assert "Grüße aus Köln".encode() in msg.body, "8-bit body kept as it was"
        check_dakiya_signed(msg, records, dns, work_dir, ["rsa"])


def test_trusted_network_mail_is_signed_not_checked(dakiya_bin, dakiya_factory, dns_server, work_dir):
    """A client in trusted_networks on a verifying mx listener: its mail from a local domain is
    signed (and verifies in dkimpy); it gets no Authentication-Results from dakiya."""
    records, prepare = generate_keys(dakiya_bin, ["ed25519"])
    dns = dns_server()  # before the server (its address goes into the config); records after
    server = dakiya_factory(listeners=MX_VERIFY, top='trusted_networks = ["127.0.0.1/32"]', tables=nameservers(dns), prepare=prepare)
    for name, value in records.items():
        dns.add(name, "TXT", value)
    subject = f"trusted {tag()}"
    assert_accepted(send(server, message(ALICE, subject, to=BOB), ALICE, BOB))
    msg = delivered(server, "bob", subject)
    assert not [v for v in msg.all("Authentication-Results") if v.lower().startswith(AUTHSERV)], msg.header_block.decode()
    check_dakiya_signed(msg, records, dns, work_dir, ["ed25519"])


# --------------------------------------------------------------------------------------------
# dkimpy signs, dakiya verifies
# --------------------------------------------------------------------------------------------

SIGNER_ZONE = {
    # signer.test: DKIM-signs, SPF does not cover 127.0.0.1, p=reject: DMARC rests on DKIM.
    "signer.test": {"TXT": ["v=spf1 ip4:192.0.2.10 -all"]},
    "_dmarc.signer.test": {"TXT": ["v=DMARC1; p=reject"]},
    "rsa1._domainkey.signer.test": {"TXT": [RSA_RECORD]},
    "ed1._domainkey.signer.test": {"TXT": [ED_RECORD]},
    "sha1._domainkey.signer.test": {"TXT": [RSA_RECORD]},
    "gone._domainkey.signer.test": {"TXT": ["v=DKIM1; k=rsa; p="]},
    # (missing._domainkey.signer.test: NXDOMAIN; flaky._domainkey.signer.test: SERVFAIL)
    # monitor.test: the same but p=none, so failing mail is delivered and its verdict shown.
    "monitor.test": {"TXT": ["v=spf1 ip4:192.0.2.10 -all"]},
    "_dmarc.monitor.test": {"TXT": ["v=DMARC1; p=none"]},
    "rsa1._domainkey.monitor.test": {"TXT": [RSA_RECORD]},
    "ed1._domainkey.monitor.test": {"TXT": [ED_RECORD]},
    "sha1._domainkey.monitor.test": {"TXT": [RSA_RECORD]},
    "gone._domainkey.monitor.test": {"TXT": ["v=DKIM1; k=rsa; p="]},
    # bulk.test: the envelope sender of most mail here, SPF pass, no DMARC record.
    "bulk.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
}
SIGNER_SERVFAIL = ["flaky._domainkey.signer.test", "flaky._domainkey.monitor.test"]


def dkimsign_cli(work_dir: Path, msg: bytes, domain: str, selector: str, algorithm: str) -> bytes:
    """dkimpy's `dkimsign` command (relaxed/relaxed): the signed message."""
    key_file = work_dir / f"{selector}.{domain}.key"
    key_file.write_bytes(RSA_KEY if algorithm == "rsa" else ED_KEY)
    alg = "rsa-sha256" if algorithm == "rsa" else "ed25519-sha256"
    r = subprocess.run([dkimpy_command("dkimsign"), selector, domain, str(key_file), "--hcanon", "relaxed", "--bcanon",
                        "relaxed", "--signalg", alg], input=msg, capture_output=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith(b"DKIM-Signature:"), f"dkimsign exited {r.returncode}: {r.stderr!r}"
    assert r.stdout.endswith(msg), "dkimsign output is the signature followed by the message"
    return r.stdout


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkimsign_signed_mail_passes_dkim_and_dmarc(dakiya_factory, dns_server, work_dir, algorithm):
    """Signed with the dkimsign command as signer.test (p=reject), sent with an envelope sender
    of another domain (SPF pass but not aligned): only the DKIM signature can pass DMARC."""
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"dkimsign {algorithm} {tag()}"
    selector = "rsa1" if algorithm == "rsa" else "ed1"
    data = dkimsign_cli(work_dir, message("news@signer.test", subject), "signer.test", selector, algorithm)
    assert_accepted(send(server, data, "bounce@bulk.test"))
    ar = our_results(delivered(server, "alice", subject))
    assert ar.dkim() == [("pass", "signer.test", selector)], ar
    assert ar.verdict("spf") == "pass", ar
    assert ar.verdict("dmarc") == "pass", ar
    assert dns.queried(f"{selector}._domainkey.signer.test", "TXT"), dns.queries


def test_dkimpy_api_signatures_of_two_domains_both_pass(dakiya_factory, dns_server):
    """dkim.sign twice: the author domain (RSA) and the sending service (Ed25519)."""
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"two signers {tag()}"
    data = dkimpy_sign(message("news@signer.test", subject), "signer.test", "rsa1", "rsa")
    data = dkimpy_sign(data, "monitor.test", "ed1", "ed25519")
    assert_accepted(send(server, data, "bounce@bulk.test"))
    ar = our_results(delivered(server, "alice", subject))
    assert sorted(ar.dkim()) == [("pass", "monitor.test", "ed1"), ("pass", "signer.test", "rsa1")], ar
    assert ar.verdict("dmarc") == "pass", ar


def tamper_body(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head + sep + body.replace(b"Hello.", b"Hello, altered in transit.")


def tamper_subject(data: bytes) -> bytes:
    return re.sub(rb"(\r\nSubject: )", rb"\1[EXTERNAL] ", data, count=1)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
@pytest.mark.parametrize("tamper", [tamper_body, tamper_subject], ids=["body", "subject"])
def test_tampered_mail_fails_dkim(dakiya_factory, dns_server, algorithm, tamper):
    """monitor.test (p=none): the message is delivered, with dkim=fail and dmarc=fail."""
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    marker = tag()
    subject = f"tampered {tamper.__name__} {algorithm} {marker}"
    selector = "rsa1" if algorithm == "rsa" else "ed1"
    data = tamper(dkimpy_sign(message("news@monitor.test", subject), "monitor.test", selector, algorithm))
    assert dkimpy_verdicts(data, txt_dnsfunc({f"{selector}._domainkey.monitor.test": RSA_RECORD if algorithm == "rsa" else ED_RECORD})) == [False]
    assert_accepted(send(server, data, "bounce@bulk.test"))
    msg = delivered(server, "alice", marker)
    ar = our_results(msg)
    assert ar.dkim() == [("fail", "monitor.test", selector)], f"a signature that does not verify (RFC 6376 §6.1.3, RFC 8601 §2.7.1: fail): {ar}"
    assert ar.verdict("dmarc") == "fail", ar
    assert not msg.all("X-Spam-Flag"), "p=none only reports"


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_tampered_body_under_p_reject_is_refused(dakiya_factory, dns_server, algorithm):
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"tampered reject {tag()}"
    selector = "rsa1" if algorithm == "rsa" else "ed1"
    data = tamper_body(dkimpy_sign(message("news@signer.test", subject), "signer.test", selector, algorithm))
    outcome = send(server, data, "bounce@bulk.test")
    assert_refused(outcome, 550, "5.7.1")
    assert "signer.test" in outcome.end[1], f"the reply names the domain whose policy refused it: {outcome}"
    assert not maildir_messages_with(server, "alice", subject)
    # The untampered message is accepted (the same signature and DNS).
    subject = f"untampered {tag()}"
    assert_accepted(send(server, dkimpy_sign(message("news@signer.test", subject), "signer.test", selector, algorithm), "bounce@bulk.test"))
    assert our_results(delivered(server, "alice", subject)).verdict("dmarc") == "pass"


@pytest.mark.parametrize("selector,want", [
    ("missing", {"permerror"}),  # no key record (NXDOMAIN): RFC 6376 §6.1.2 PERMFAIL
    ("gone", {"permerror", "fail"}),  # p= empty: the key was revoked (RFC 6376 §3.6.1)
    ("flaky", {"temperror"}),  # SERVFAIL: RFC 6376 §6.1.2 TEMPFAIL
    ("sha1", {"fail", "permerror", "neutral", "policy"}),  # rsa-sha1: RFC 8301 §3.1 MUST NOT be valid
    ("weak", {"fail", "permerror", "neutral", "policy"}),  # a 512-bit RSA key: RFC 8301 §3.2 MUST NOT be valid
], ids=["missing-key", "revoked-key", "key-servfail", "rsa-sha1", "rsa-512-bit"])  # fmt: skip
def test_dkim_key_trouble_verdicts(dakiya_factory, dns_server, work_dir, selector, want):
    """monitor.test (p=none), so each message is delivered and its dkim= verdict can be read."""
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"key {selector} {tag()}"
    key = None
    if selector == "weak":
        key, record = weak_rsa_key(work_dir)
        dns.add("weak._domainkey.monitor.test", "TXT", record)
    data = dkimpy_sign(message("news@monitor.test", subject), "monitor.test", selector, "rsa-sha1" if selector == "sha1" else "rsa", key=key)
    outcome = send(server, data, "bounce@bulk.test")
    if selector == "flaky":
        # A DKIM temperror under p=none: DMARC could only say none-policy fail; either accepted
        # with dkim=temperror or deferred (451) is right, never a pass or a 5xx.
        if outcome.end and outcome.end[0] == 451:
            assert outcome.end[1].startswith("4.7."), outcome
            return
    assert_accepted(outcome)
    ar = our_results(delivered(server, "alice", subject))
    got = ar.dkim()
    assert len(got) == 1 and got[0][0] in want and got[0][1:] == ("monitor.test", selector), f"want dkim= one of {sorted(want)}: {ar}"
    assert ar.verdict("dmarc") == "fail", ar


def weak_rsa_key(work_dir: Path) -> tuple[bytes, str]:
    """A 512-bit RSA key (openssl) and its DKIM record."""
    path = work_dir / "weak.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512", "-out", str(path)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"], check=True, capture_output=True,
                         timeout=60).stdout  # fmt: skip
    return path.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def test_dkim_temperror_under_p_reject_is_deferred(dakiya_factory, dns_server):
    """signer.test (p=reject), SPF not aligned, key lookup SERVFAIL: never 550 on a DNS hiccup,
    never a pass: 451 4.7.x."""
    dns = dns_server(SIGNER_ZONE, servfail=SIGNER_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"key servfail reject {tag()}"
    outcome = send(server, dkimpy_sign(message("news@signer.test", subject), "signer.test", "flaky", "rsa"), "bounce@bulk.test")
    assert_refused(outcome, 451, "4.7.")
    assert not maildir_messages_with(server, "alice", subject)


def test_unsigned_mail_says_dkim_none_and_arc_none(dakiya_factory, dns_server):
    dns = dns_server(SIGNER_ZONE)
    server = verifying_server(dakiya_factory, dns)
    subject = f"unsigned {tag()}"
    assert_accepted(send(server, message("someone@bulk.test", subject), "someone@bulk.test"))
    ar = our_results(delivered(server, "alice", subject))
    assert [r.result for r in ar.of("dkim")] == ["none"], ar
    assert ar.verdict("spf") == "pass", ar
    assert ar.verdict("dmarc") == "none", f"bulk.test publishes no DMARC record: {ar}"
    assert ar.verdict("arc") == "none", ar


def test_forged_results_claiming_dakiyas_name_are_removed(dakiya_factory, dns_server):
    """RFC 8601 §5: Authentication-Results fields arriving with our authserv-id are removed
    (any case, folded or not); other servers' fields stay."""
    dns = dns_server(SIGNER_ZONE)
    server = verifying_server(dakiya_factory, dns)
    subject = f"forged ar {tag()}"
    extra = ("Authentication-Results: mx.test; dkim=pass header.d=bank.test\r\n"
             "Authentication-Results: MX.TEST;\r\n\tdmarc=pass header.from=bank.test\r\n"
             "Authentication-Results: upstream.test; spf=pass smtp.mailfrom=bulk.test\r\n")  # fmt: skip
    data = message("someone@bulk.test", subject, extra_headers=extra)
    assert_accepted(send(server, data, "someone@bulk.test"))
    msg = delivered(server, "alice", subject)
    assert b"bank.test" not in msg.header_block, msg.header_block.decode()
    values = msg.all("Authentication-Results")
    assert len(values) == 2 and any(v.startswith("upstream.test;") for v in values), values
    our_results(msg)


# --------------------------------------------------------------------------------------------
# SPF
# --------------------------------------------------------------------------------------------

LONG_SPF = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(1, 40)) + " ip4:127.0.0.1 -all"
assert len(LONG_SPF) > 255
SPF_ZONE = {
    "pass.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all", "google-site-verification=abc123"]},
    "include.test": {"TXT": ["v=spf1 include:_spf.include.test -all"]},
    "_spf.include.test": {"TXT": ["v=spf1 a:out.include.test -all"]},
    "out.include.test": {"A": ["127.0.0.1"]},
    "mx-spf.test": {"TXT": ["v=spf1 mx -all"], "MX": [(10, "mx1.mx-spf.test")]},
    "mx1.mx-spf.test": {"A": ["127.0.0.1"]},
    "long.test": {"TXT": [LONG_SPF]},
    "fail.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "softfail.test": {"TXT": ["v=spf1 ip4:192.0.2.1 ~all"]},
    "neutral.test": {"TXT": ["v=spf1 ?all"]},
    "nospf.test": {"TXT": ["some-site-verification=xyz"], "A": ["127.0.0.1"]},
    "twospf.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all", "v=spf1 -all"]},
    "badsyntax.test": {"TXT": ["v=spf1 ip4:not-an-address -all"]},
    "badinclude.test": {"TXT": ["v=spf1 include:nowhere.test -all"]},
    "helo-pass.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "helo-fail.test": {"TXT": ["v=spf1 -all"]},
    # DMARC p=reject on a domain whose SPF lookup fails temporarily.
    "_dmarc.tempfail-reject.test": {"TXT": ["v=DMARC1; p=reject"]},
    "_dmarc.fail-reject.test": {"TXT": ["v=DMARC1; p=reject"]},
    "fail-reject.test": {"TXT": ["v=spf1 -all"]},
}
SPF_SERVFAIL = ["tempfail.test", "tempfail-reject.test"]

SPF_CASES = [
    ("pass.test", "pass"),
    ("include.test", "pass"),  # include: -> a:
    ("mx-spf.test", "pass"),  # mx
    ("long.test", "pass"),  # a record over 255 octets, split into strings
    ("fail.test", "fail"),
    ("softfail.test", "softfail"),
    ("neutral.test", "neutral"),
    ("nospf.test", "none"),  # TXT records, none of them SPF
    ("nxdomain.test", "none"),  # the domain does not exist
    ("tempfail.test", "temperror"),  # SERVFAIL
    ("twospf.test", "permerror"),  # two SPF records (RFC 7208 §4.5)
    ("badsyntax.test", "permerror"),
    ("badinclude.test", "permerror"),  # include: of a domain without SPF (RFC 7208 §5.2)
]


@pytest.mark.parametrize("domain,want", SPF_CASES, ids=[f"{w}-{d.split('.')[0]}" for d, w in SPF_CASES])
def test_spf_verdict(dakiya_factory, dns_server, domain, want):
    dns = dns_server(SPF_ZONE, servfail=SPF_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"spf {domain} {tag()}"
    sender = f"user@{domain}"
    outcome = send(server, message(sender, subject), sender)
    assert_accepted(outcome)
    ar = our_results(delivered(server, "alice", subject))
    spf = ar.one("spf")
    assert spf.result == want, f"SPF for {domain} from 127.0.0.1: want {want}: {ar}"
    mailfrom = spf.props.get("smtp.mailfrom", "")
    assert mailfrom.lower() in (sender, domain), f"spf= should name the MAIL FROM identity: {spf.text}"
    assert dns.queried(domain, "TXT"), f"dakiya never asked for {domain} TXT: {dns.queries}"


@pytest.mark.parametrize("helo,want", [("helo-pass.test", "pass"), ("helo-fail.test", "fail")])
def test_spf_of_null_sender_checks_the_helo_name(dakiya_factory, dns_server, helo, want):
    """MAIL FROM:<> (a bounce): SPF checks postmaster@<HELO name> (RFC 7208 §2.4)."""
    dns = dns_server(SPF_ZONE, servfail=SPF_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"bounce {helo} {tag()}"
    assert_accepted(send(server, message(f"mailer-daemon@{helo}", subject), "", helo=helo))
    ar = our_results(delivered(server, "alice", subject))
    assert ar.verdict("spf") == want, ar


def test_spf_reject_refuses_fail_at_mail_only(dakiya_factory, dns_server):
    """spf_reject = true: SPF fail -> 550 5.7.23 at MAIL; softfail, neutral, none are accepted;
    temperror is deferred (451 4.7.24), not refused."""
    dns = dns_server(SPF_ZONE, servfail=SPF_SERVFAIL)
    server = verifying_server(dakiya_factory, dns, listen_extra="spf_reject = true")
    assert_refused(send(server, b"", "user@fail.test"), 550, "5.7.23", at="mail")
    outcome = send(server, b"", "user@tempfail.test")
    assert_refused(outcome, 451, "4.7.24", at="mail")
    for domain in ("softfail.test", "neutral.test", "nospf.test", "pass.test"):
        subject = f"spf_reject {domain} {tag()}"
        assert_accepted(send(server, message(f"user@{domain}", subject), f"user@{domain}"))
        delivered(server, "alice", subject)


def test_spf_temperror_under_dmarc_reject_is_deferred(dakiya_factory, dns_server):
    """SERVFAIL for the SPF record of a p=reject domain, no DKIM: 451 4.7.x, not 550, nothing
    kept; the same with a definite SPF fail is a 550 5.7.1."""
    dns = dns_server(SPF_ZONE, servfail=SPF_SERVFAIL)
    server = verifying_server(dakiya_factory, dns)
    subject = f"tempfail reject {tag()}"
    outcome = send(server, message("user@tempfail-reject.test", subject), "user@tempfail-reject.test")
    assert outcome.mail[0] == 250, outcome
    assert_refused(outcome, 451, "4.7.")
    assert_refused(send(server, message("user@fail-reject.test", subject), "user@fail-reject.test"), 550, "5.7.1")
    assert not maildir_messages_with(server, "alice", subject)


# --------------------------------------------------------------------------------------------
# DMARC
# --------------------------------------------------------------------------------------------

DMARC_ZONE = {
    "reject.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "_dmarc.reject.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc@reject.test"]},
    "mail.reject.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "dkimonly.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.dkimonly.test": {"TXT": ["v=DMARC1; p=reject"]},
    "k1._domainkey.dkimonly.test": {"TXT": [ED_RECORD]},
    "quarantine.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.quarantine.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    "k1._domainkey.quarantine.test": {"TXT": [ED_RECORD]},
    "monitor.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.monitor.test": {"TXT": ["v=DMARC1; p=none"]},
    "norecord.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "org.test": {"TXT": ["v=spf1 -all"]},
    "_dmarc.org.test": {"TXT": ["v=DMARC1; p=reject"]},
    "k1._domainkey.org.test": {"TXT": [ED_RECORD]},
    "strictorg.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "_dmarc.strictorg.test": {"TXT": ["v=DMARC1; p=reject; adkim=s; aspf=s"]},
    "k1._domainkey.strictorg.test": {"TXT": [ED_RECORD]},
    "sp.test": {"TXT": ["v=spf1 -all"]},
    "_dmarc.sp.test": {"TXT": ["v=DMARC1; p=reject; sp=none"]},
    "esp3.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "k1._domainkey.esp3.test": {"TXT": [ED_RECORD]},
    "bulk.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
}


@dataclass
class DmarcCase:
    id: str
    from_addr: str
    mail_from: str
    signer: str | None  # the d= of an Ed25519 signature (selector k1), or none
    code: int  # 250, 550
    dmarc: str | None  # the dmarc= verdict of a delivered message
    quarantined: bool = False


DMARC_CASES = [
    DmarcCase("reject-aligned-spf", "a@reject.test", "a@reject.test", None, 250, "pass"),
    DmarcCase("reject-aligned-spf-subdomain", "a@reject.test", "bounce@mail.reject.test", None, 250, "pass"),
    DmarcCase("reject-aligned-dkim-spf-fails", "a@dkimonly.test", "a@dkimonly.test", "dkimonly.test", 250, "pass"),
    DmarcCase("reject-misaligned-spf", "a@reject.test", "bounce@bulk.test", None, 550, None),
    DmarcCase("reject-third-party-dkim", "a@reject.test", "bounce@bulk.test", "esp3.test", 550, None),
    DmarcCase("reject-spf-fail-unsigned", "a@dkimonly.test", "a@dkimonly.test", None, 550, None),
    DmarcCase("quarantine-misaligned", "a@quarantine.test", "bounce@bulk.test", None, 250, "fail", quarantined=True),
    DmarcCase("quarantine-aligned-dkim", "a@quarantine.test", "bounce@bulk.test", "quarantine.test", 250, "pass"),
    DmarcCase("none-misaligned", "a@monitor.test", "bounce@bulk.test", None, 250, "fail"),
    DmarcCase("no-record", "a@norecord.test", "a@norecord.test", None, 250, "none"),
    DmarcCase("relaxed-dkim-org-domain", "a@news.org.test", "bounce@bulk.test", "org.test", 250, "pass"),
    DmarcCase("strict-dkim-subdomain", "a@news.strictorg.test", "bounce@strictorg.test", "strictorg.test", 550, None),
    DmarcCase("subdomain-policy-sp-none", "a@sub.sp.test", "bounce@bulk.test", None, 250, "fail"),
]


@pytest.mark.parametrize("case", DMARC_CASES, ids=[c.id for c in DMARC_CASES])
def test_dmarc_policy(dakiya_factory, dns_server, case):
    dns = dns_server(DMARC_ZONE)
    server = verifying_server(dakiya_factory, dns)
    subject = f"dmarc {case.id} {tag()}"
    data = message(case.from_addr, subject)
    if case.signer:
        data = dkimpy_sign(data, case.signer, "k1", "ed25519")
    outcome = send(server, data, case.mail_from)
    from_domain = case.from_addr.split("@")[1]
    if case.code == 550:
        assert_refused(outcome, 550, "5.7.1")
        assert any(d in outcome.end[1] for d in (from_domain, from_domain.split(".", 1)[1])), f"the reply names the domain: {outcome}"
        assert not maildir_messages_with(server, "alice", subject)
        return
    assert_accepted(outcome)
    msg = delivered(server, "alice", subject)
    ar = our_results(msg)
    dmarc = ar.one("dmarc")
    assert dmarc.result == case.dmarc, ar
    if "header.from" in dmarc.props:
        assert dmarc.props["header.from"].lower() == from_domain, dmarc.text
    if case.quarantined:
        assert msg.all("X-Spam-Flag") == ["YES"] and msg.all("X-Dakiya-Quarantine") == ["dmarc"], msg.header_block.decode()
    else:
        assert not msg.all("X-Spam-Flag") and not msg.all("X-Dakiya-Quarantine"), msg.header_block.decode()
    if case.signer:
        assert ar.dkim() == [("pass", case.signer, "k1")], ar


def test_dmarc_record_servfail_defers_failing_mail(dakiya_factory, dns_server):
    """_dmarc lookup fails temporarily for unaligned mail: 451 4.7.x (the policy may be reject)."""
    dns = dns_server(DMARC_ZONE, servfail=["_dmarc.reject.test"])
    server = verifying_server(dakiya_factory, dns)
    subject = f"dmarc servfail {tag()}"
    assert_refused(send(server, message("a@reject.test", subject), "bounce@bulk.test"), 451, "4.7.")
    assert not maildir_messages_with(server, "alice", subject)


def test_dmarc_reject_off_marks_instead(dakiya_factory, dns_server):
    """dmarc_reject = false: p=reject failures are delivered with the quarantine marks."""
    dns = dns_server(DMARC_ZONE)
    server = verifying_server(dakiya_factory, dns, listen_extra="dmarc_reject = false")
    subject = f"dmarc_reject off {tag()}"
    assert_accepted(send(server, message("a@reject.test", subject), "bounce@bulk.test"))
    msg = delivered(server, "alice", subject)
    assert our_results(msg).verdict("dmarc") == "fail"
    assert msg.all("X-Spam-Flag") == ["YES"] and msg.all("X-Dakiya-Quarantine") == ["dmarc"], msg.header_block.decode()


# --------------------------------------------------------------------------------------------
# real-world samples (samples/, made by scripts/make-auth-samples)
# --------------------------------------------------------------------------------------------

SAMPLE_IDS = [s["file"].removesuffix(".eml") for s in MANIFEST["samples"]]


def test_samples_verify_in_dkimpy_as_the_manifest_says():
    """The committed samples are intact (no line-end conversion by git: samples/.gitattributes)
    and dkimpy agrees with every signature's verdict in the manifest."""
    dnsfunc = txt_dnsfunc({name: values[0] for name, values in SAMPLE_TXT.items()})
    for spec in MANIFEST["samples"]:
        data = (SAMPLES / spec["file"]).read_bytes()
        assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b""), f"{spec['file']}: not CRLF throughout"
        tags = signature_tags(data)
        assert [(t[b"d"].decode(), t[b"s"].decode()) for t in tags] == [(s["d"], s["s"]) for s in spec["signatures"]], spec["file"]
        want = [s["result"] == "pass" for s in spec["signatures"]]
        assert dkimpy_verdicts(data, dnsfunc) == want, spec["file"]


@pytest.mark.parametrize("spec", MANIFEST["samples"], ids=SAMPLE_IDS)
def test_sample_verdicts_match_manifest(dakiya_factory, dns_server, spec):
    dns = dns_server({name: {"TXT": values} for name, values in SAMPLE_TXT.items()})
    server = verifying_server(dakiya_factory, dns)
    data = (SAMPLES / spec["file"]).read_bytes()
    outcome = send(server, data, spec["mail_from"], MANIFEST["rcpt"], helo=spec["helo"], eight_bit=spec["eight_bit"])
    assert_accepted(outcome)
    files = server.wait_for_delivery("alice")
    assert len(files) == 1, files
    msg = Delivered(files[0].read_bytes(), files[0])
    # Delivered unchanged below dakiya's own fields (Return-Path, Delivered-To,
    # Authentication-Results, Received).
    assert msg.raw.endswith(data.replace(b"\r\n", b"\n")), "the message body and its header fields arrive unchanged"
    ar = our_results(msg)
    want = sorted((s["result"], s["d"], s["s"]) for s in spec["signatures"])
    assert sorted(ar.dkim()) == want, f"{spec['file']} ({spec['note']}):\nwant {want}\ngot  {ar}"
    assert ar.verdict("spf") == spec["spf"], ar
    assert ar.verdict("dmarc") == spec["dmarc"], ar
