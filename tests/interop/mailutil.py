"""Small helpers shared by the interop tests: building messages, reading delivered Maildir
files, and a raw SMTP client for what the real clients can't do (BDAT).

Delivered Maildir files use LF line endings (dakiya converts CRLF), so everything read back
from disk is compared against the LF form of what was sent.
"""

from __future__ import annotations

import re
import socket
import uuid

QUEUED_AS_RE = re.compile(r"queued as (\S+)", re.IGNORECASE)


def tag() -> str:
    """A short unique marker to tell messages apart."""
    return uuid.uuid4().hex[:12]


def build_message(sender: str, to: str, subject: str, body: str, extra_headers: str = "") -> str:
    """An RFC 5322 message with CRLF line endings. `body` uses CRLF already or plain LF."""
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return (
        f"From: {sender}\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{tag()}@client.test>\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"{extra_headers}"
        "\r\n"
        f"{body}"
    )


def to_lf(data: str | bytes):
    if isinstance(data, bytes):
        return data.replace(b"\r\n", b"\n")
    return data.replace("\r\n", "\n")


def queue_id_from_reply(reply: bytes | str) -> str:
    """The queue ID from a `250 ... queued as ID` reply; fails the test when absent."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    m = QUEUED_AS_RE.search(text)
    assert m, f"250 reply to end of data has no 'queued as ID': {text!r}"
    return m.group(1).strip("<>()[].,;")


class Delivered:
    """One delivered Maildir file, split into header fields and body (LF line endings)."""

    def __init__(self, raw: bytes, path=None):
        self.raw = raw
        self.path = path
        head, sep, body = raw.partition(b"\n\n")
        assert sep, f"delivered file {path} has no header/body separator: {raw[:500]!r}"
        self.header_block = head + b"\n"
        self.body = body
        self.fields: list[tuple[str, str]] = []
        for line in head.decode("utf-8", "replace").split("\n"):
            if line[:1] in (" ", "\t") and self.fields:
                name, value = self.fields[-1]
                self.fields[-1] = (name, value + " " + line.strip())
            else:
                name, colon, value = line.partition(":")
                assert colon, f"malformed header line {line!r} in {path}"
                self.fields.append((name, value.strip()))

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name.lower()]

    def one(self, name: str) -> str:
        values = self.all(name)
        assert len(values) == 1, f"expected exactly one {name}: header, got {values!r} in:\n{self.header_block.decode('utf-8', 'replace')}"
        return values[0]

    def names(self) -> list[str]:
        return [n for n, _ in self.fields]


class RawSMTP:
    """A minimal SMTP client on a plain socket: send exact bytes, read replies."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None):
        """`source`: a local address to connect from (e.g. "127.0.0.2"), any port."""
        source_address = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
        self.buf = b""
        self.transcript: list[str] = []

    def starttls(self, context, server_hostname: str | None = None):
        """Wraps the socket in TLS (after the server's 220 to STARTTLS, or at once for implicit
        TLS). Input the server sent before the handshake and we had not read yet is an error:
        it would be plaintext the server sent outside TLS."""
        assert not self.buf, f"unread plaintext before the TLS handshake: {self.buf!r}; transcript:\n" + "\n".join(self.transcript)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.transcript.append(f"-- TLS established: {self.sock.version()} {self.sock.cipher()[0]}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.transcript.append(f"C: {data[:200]!r}{'...' if len(data) > 200 else ''}")
        self.sock.sendall(data)

    def _readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"server closed the connection; unread {self.buf!r}; transcript:\n" + "\n".join(self.transcript))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: (code, [text of each line])."""
        lines = []
        while True:
            line = self._readline()
            self.transcript.append(f"S: {line!r}")
            assert len(line) >= 3 and line[:3].isdigit() and line[3:4] in (b"", b" ", b"-"), f"malformed reply line {line!r}"
            lines.append(line)
            if line[3:4] != b"-":
                break
        codes = {ln[:3] for ln in lines}
        assert len(codes) == 1, f"multi-line reply with mixed codes: {lines!r}"
        return int(lines[0][:3]), [ln[4:].decode("utf-8", "replace") for ln in lines]

    def cmd(self, line: str) -> tuple[int, list[str]]:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def expect(self, want: int, line: str | None = None) -> list[str]:
        code, text = self.cmd(line) if line is not None else self.reply()
        assert code == want, f"{line or '<reply>'}: expected {want}, got {code} {text!r}; transcript:\n" + "\n".join(self.transcript)
        return text


def spool_messages(data_dir) -> list[tuple[object, dict]]:
    """The queued messages in DATA/spool/queue/: [(batch path, envelope dict)].

    docs/spool-format.md: a batch file `NAME.msg` starts with `DAKIYA-SPOOL 3 <count> <crc32>`
    (a commit round's sealed batch) or `DAKIYA-SPOOL 2 <count>` (a spilled message); a slot
    `slot-N.msg` with `DAKIYA-SPOOL 4 <count> <crc32> <length>` (records up to the length,
    stale bytes after them) or, when free, a first line of zeros; each
    record is `M <id> <envelope length> <body length> <envelope JSON>\n` then the body. A
    message with a `{"id":…,"state":"done"}` record in `NAME.status` has left the queue. A
    sealed batch whose CRC-32 does not match yet is a round still being written (it is renamed
    into queue/ before its fsync, or written over a free slot): nothing of it is committed,
    so it is skipped."""
    import json
    import zlib
    from pathlib import Path

    queue = Path(data_dir) / "spool" / "queue"
    out = []
    if not queue.is_dir():
        return out
    for path in sorted(queue.glob("*.msg")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # The server removed the batch (its last message left the queue) between the
            # listing and the read: nothing of it is queued any more.
            continue
        if data[:1] == b"\0":
            # A free slot (docs/spool-slots.md): its first line is zeros, it holds no batch.
            continue
        header, _, rest = data.partition(b"\n")
        if header.startswith(b"DAKIYA-SPOOL 4 "):
            # A slot's batch: the records are the header's length, the rest is stale.
            rest = rest[:int(header.split()[4])]
            if int(header.split()[3], 16) != zlib.crc32(rest):
                continue
        elif header.startswith(b"DAKIYA-SPOOL 3 "):
            if int(header.split()[3], 16) != zlib.crc32(rest):
                continue
        else:
            assert header.startswith(b"DAKIYA-SPOOL 2 "), f"{path}: unexpected version line {header!r}"
        done = set()
        status = path.with_suffix(".status")
        try:
            status_lines = status.read_bytes().split(b"\n")[1:]
        except FileNotFoundError:
            status_lines = []
        if status_lines:
            for line in status_lines:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("state") == "done":
                    done.add(rec.get("id"))
        pos = 0
        for _ in range(int(header.split()[2])):
            fields = rest[pos:pos + 61].split(b" ")
            assert fields[0] == b"M", f"{path}: bad record line at {pos}"
            env_len, body_len = int(fields[2]), int(fields[3])
            env = json.loads(rest[pos + 61:pos + 61 + env_len])
            assert env.get("id") == fields[1].decode(), f"{path}: envelope id differs from the record"
            pos += 61 + env_len + 1 + body_len
            if env["id"] not in done:
                out.append((path, env))
    return out
    for path in sorted(queue.glob("*.msg")):
        with open(path, "rb") as f:
            version = f.readline()
            envelope = f.readline()
        assert version.startswith(b"DAKIYA-SPOOL 1 "), f"{path}: unexpected version line {version!r}"
        env = json.loads(envelope)
        assert env.get("id") == path.stem, f"{path}: envelope id {env.get('id')!r} differs from the file name"
        out.append((path, env))
    return out


class SinkDump:
    """One message dumped by Postfix's `smtp-sink -d` (LF line endings).

    The file holds smtp-sink's own header lines (X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, one X-Rcpt-Args per RCPT), its three-line `Received:` field, then the message
    as received (dot-unstuffed), then one empty line. `message` is the message alone."""

    def __init__(self, raw: bytes, path=None):
        self.raw = raw
        self.path = path
        lines = raw.split(b"\n")
        self.fields: list[tuple[str, str]] = []
        i = 0
        while True:
            assert i < len(lines), f"smtp-sink dump {path} has no Received: line: {raw[:500]!r}"
            line = lines[i]
            i += 1
            if line.startswith(b"Received:"):
                while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                    i += 1
                break
            name, colon, value = line.partition(b":")
            assert colon and name.startswith(b"X-"), f"unexpected line {line!r} in smtp-sink's headers of {path}"
            self.fields.append((name.decode(), value.strip().decode("utf-8", "replace")))
        rest = b"\n".join(lines[i:])
        assert rest.endswith(b"\n"), f"smtp-sink dump {path} does not end with its empty line: {raw[-200:]!r}"
        self.message = rest[:-1]

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name.lower()]

    @property
    def client_addr(self) -> str:
        return self.all("X-Client-Addr")[0]

    @property
    def helo(self) -> str | None:
        values = self.all("X-Helo-Args")
        return values[0] if values else None

    @property
    def mail_from(self) -> str:
        """The MAIL FROM path with its angle brackets, e.g. "<alice@example.test>" ("<>")."""
        return self.all("X-Mail-Args")[0].split()[0]

    @property
    def rcpt_to(self) -> list[str]:
        """The RCPT TO paths, in order, e.g. ["<bob@sink.test>"] (parameters dropped)."""
        return [v.split()[0] for v in self.all("X-Rcpt-Args")]


def split_leading_received(message: bytes) -> tuple[list[str], bytes]:
    """Splits the Received: fields at the top of a message (LF line endings) from the rest:
    ([unfolded values, topmost first], the message from its first other line on)."""
    lines = message.split(b"\n")
    received: list[str] = []
    i = 0
    while i < len(lines) and lines[i][:9].lower() == b"received:":
        value = lines[i][9:].decode("utf-8", "replace").strip()
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            value += " " + lines[i].decode("utf-8", "replace").strip()
            i += 1
        received.append(value)
    return received, b"\n".join(lines[i:])


def status_records(data_dir, queue_id: str | None = None) -> list[dict]:
    """The records of the queue's status logs (DATA/spool/queue/NAME.status, docs/spool-format.md),
    in file order: e.g. {"id": …, "rcpt": 0, "state": "deferred", "attempts": 1, …}; only
    `queue_id`'s when given. Unparsable lines (a torn last line) are skipped."""
    import json
    from pathlib import Path

    queue = Path(data_dir) / "spool" / "queue"
    out = []
    if not queue.is_dir():
        return out
    for path in sorted(queue.glob("*.status")):
        try:
            lines = path.read_bytes().split(b"\n")[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and (queue_id is None or rec.get("id") == queue_id):
                out.append(rec)
    return out
