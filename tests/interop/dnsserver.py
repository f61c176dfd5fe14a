"""A small authoritative DNS server for the interop tests, on 127.0.0.1 only (UDP and TCP on the
same free port), built on dnslib's socket servers.

It serves a zone given as a dict:

    {
        "sender.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"], "A": ["127.0.0.1"],
                        "MX": [(10, "mx.sender.test")]},
        "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
        "s1._domainkey.sender.test": {"TXT": ["v=DKIM1; k=rsa; p=MIIB..."]},
    }

- a TXT value is a str (split into character-strings of at most 255 octets, RFC 1035
  §3.3.14; receivers join them again, RFC 7208 §3.3 / RFC 6376 §3.6.2.2) or a list of str,
  sent as exactly those character-strings; a name may have several TXT records;
- A / AAAA values are address strings, MX values (preference, exchange) pairs, SRV values
  (priority, weight, port, target) tuples, CNAME values target names;
- names in `servfail` get SERVFAIL (rcode 2) for every type, names in `drop` get no answer at
  all (a timeout);
- a name in the zone without records of the asked type gets an empty NOERROR answer (NODATA);
  any other name gets NXDOMAIN.

Answers are authoritative (AA). Over UDP, an answer larger than the client's EDNS buffer size
(512 octets without EDNS) is sent truncated (TC, question only) so the client retries over
TCP, as a real server does. Every query is recorded in `queries` as (name, type, protocol).
The zone can be changed while the server runs (`set`, `add`, `remove`, `servfail`).

Names compare case-insensitively, with or without the trailing dot.
"""

from __future__ import annotations

import socket
import socketserver
import threading

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, SRV, TXT, A, DNSHeader, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

LOOPBACK = "127.0.0.1"


def norm(name: str) -> str:
    return str(name).rstrip(".").lower()


def txt_strings(value) -> list[bytes]:
    """One TXT record's character-strings: a str is split every 255 octets (UTF-8); a list is
    taken as it is (each item at most 255 octets)."""
    if isinstance(value, (list, tuple)):
        parts = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in value]
        for p in parts:
            assert len(p) <= 255, f"a TXT character-string longer than 255 octets: {p[:40]!r}..."
        return parts or [b""]
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


class _Resolver:
    def __init__(self, server: "TestDNS"):
        self.server = server

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        return self.server._answer(request, handler.protocol)


class _Handler(DNSHandler):
    def handle(self):
        if self.server.socket_type == socket.SOCK_STREAM:
            self.protocol = "tcp"
            self._handle_tcp()
            return
        self.protocol = "udp"
        data, sock = self.request
        try:
            rdata = self.get_reply(data)
        except _Drop:
            return
        except Exception:  # a malformed query: no answer
            return
        sock.sendto(rdata, self.client_address)

    def _handle_tcp(self):
        """Answers queries on one connection (each with its 2-octet length) until it closes."""
        conn = self.request
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                    chunk = conn.recv(65535)
                    if not chunk:
                        return
                    buf += chunk
                length = int.from_bytes(buf[:2], "big")
                data, buf = buf[2:2 + length], buf[2 + length:]
                try:
                    rdata = self.get_reply(data)
                except _Drop:
                    continue
                conn.sendall(len(rdata).to_bytes(2, "big") + rdata)
        except OSError:
            return

    def get_reply(self, data):
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        if reply is None:
            raise _Drop()
        rdata = reply.pack()
        if self.protocol == "udp":
            limit = 512
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(512, rr.rclass)  # an OPT record's class is the UDP payload size
            if len(rdata) > limit:
                truncated = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, tc=1, rd=request.header.rd), q=request.q)
                self.server.dns.truncated += 1
                rdata = truncated.pack()
        return rdata


class _Drop(Exception):
    pass


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    # No SO_REUSEADDR: on Linux it would let two UDP sockets share a port.
    allow_reuse_address = False
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class TestDNS:
    """The running server: `port`, `address` ("127.0.0.1:PORT" for dakiya's nameservers)."""

    __test__ = False  # not a pytest test class

    def __init__(self, records: dict | None = None, servfail=(), drop=(), ttl: int = 60, log_path=None):
        """`log_path`: a file to append one line per query to (for failure reports)."""
        self.ttl = ttl
        self.log_path = log_path
        self.lock = threading.Lock()
        self.zone: dict[str, dict[str, list]] = {}
        self.servfail_names: set[str] = {norm(n) for n in servfail}
        self.drop_names: set[str] = {norm(n) for n in drop}
        self.queries: list[tuple[str, str, str]] = []
        self.truncated = 0
        for name, rrsets in (records or {}).items():
            for rtype, values in rrsets.items():
                for v in values:
                    self.add(name, rtype, v)
        self.servers: list[DNSServer] = []
        self.port = self._bind()

    # -- the zone --
    def add(self, name: str, rtype: str, value) -> None:
        rtype = rtype.upper()
        assert rtype in ("TXT", "A", "AAAA", "MX", "SRV", "CNAME"), f"unsupported record type {rtype}"
        with self.lock:
            self.zone.setdefault(norm(name), {}).setdefault(rtype, []).append(value)

    def txt(self, name: str, value) -> "TestDNS":
        self.add(name, "TXT", value)
        return self

    def set(self, name: str, rtype: str, values: list) -> None:
        """Replaces `name`'s records of this type."""
        with self.lock:
            self.zone.setdefault(norm(name), {})[rtype.upper()] = list(values)

    def remove(self, name: str) -> None:
        with self.lock:
            self.zone.pop(norm(name), None)

    def servfail(self, name: str) -> None:
        with self.lock:
            self.servfail_names.add(norm(name))

    def queried(self, name: str, rtype: str | None = None) -> list[tuple[str, str, str]]:
        with self.lock:
            return [q for q in self.queries if q[0] == norm(name) and (rtype is None or q[1] == rtype.upper())]

    # -- answering --
    def _answer(self, request: DNSRecord, protocol: str) -> DNSRecord | None:
        qname = norm(request.q.qname)
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        with self.lock:
            self.queries.append((qname, str(qtype), protocol))
            reply = self._lookup(request, qname, qtype)
            if self.log_path is not None:
                outcome = "dropped" if reply is None else f"{RCODE.get(reply.header.rcode)} {len(reply.rr)} answer(s)"
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(f"{protocol} {qtype} {qname} -> {outcome}\n")
            return reply

    def _lookup(self, request: DNSRecord, qname: str, qtype: str) -> DNSRecord | None:
        """The reply to a query (None: no reply at all). Called with the lock held."""
        if qname in self.drop_names:
            return None
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, rd=request.header.rd), q=request.q)
        if qname in self.servfail_names:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        rrsets = self.zone.get(qname)
        if rrsets is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in rrsets.get(qtype, []):
            if qtype == "TXT":
                rdata = TXT(txt_strings(value))
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            elif qtype == "SRV":
                priority, weight, port, target = value
                rdata = SRV(priority, weight, port, target)
            elif qtype == "CNAME":
                rdata = CNAME(value)
            else:
                pref, exchange = value
                rdata = MX(exchange, pref)
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=self.ttl))
        return reply

    # -- sockets --
    def _bind(self) -> int:
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False, logf=lambda *_: None)
        last_error = None
        for _attempt in range(20):
            # UDP on a free port, then TCP on the same number (taken meanwhile: try another).
            servers = []
            try:
                udp = DNSServer(_Resolver(self), address=LOOPBACK, port=0, logger=logger, handler=_Handler, server=_UDPServer)
                servers.append(udp)
                port = udp.server.server_address[1]
                servers.append(DNSServer(_Resolver(self), address=LOOPBACK, port=port, logger=logger, handler=_Handler, server=_TCPServer))
            except OSError as e:
                last_error = e
                for s in servers:
                    s.server.server_close()
                continue
            for s in servers:
                s.server.dns = self
                s.start_thread()
            self.servers = servers
            return port
        raise RuntimeError(f"cannot bind a DNS server on {LOOPBACK}: {last_error}")

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        for s in self.servers:
            try:
                s.server.shutdown()
                s.server.server_close()
            except OSError:
                pass
        self.servers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def dakiya_dns_table(dns: TestDNS) -> str:
    """The `[outbound]` table that points dakiya at this server."""
    return f'[outbound]\nnameservers = ["{dns.address}"]\n'
