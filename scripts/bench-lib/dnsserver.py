#!/usr/bin/env python3
"""A tiny authoritative DNS server for `scripts/bench auth`, on 127.0.0.1 only.

    dnsserver.py --zone ZONE.json --port-file FILE [--stats FILE] [--ttl 3600]

Serves UDP and TCP on the same loopback port, picked at random in 20000-31999 where both are
free, and written to --port-file once both listen. ZONE.json maps names to records:

    {"sender.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"], "A": ["127.0.0.1"]},
     "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
     "s1._domainkey.sender.test": {"TXT": ["v=DKIM1; k=rsa; p=MIIB..."]},
     "@soa": ["sender.test", "bench.test"]}

A TXT value is split into character-strings of at most 255 octets (RFC 1035 §3.3.14;
verifiers join them, RFC 6376 §3.6.2.2). Names compare case-insensitively. A name in the zone
without records of the asked type gets NOERROR with no answer (NODATA), any other name
NXDOMAIN; both carry the SOA of the enclosing "@soa" zone (minimum = TTL) so that resolvers
cache the negative answer too (RFC 2308). Every answer is authoritative with TTL --ttl.

On SIGUSR1 it writes {"queries": N, "by_name": {"name TYPE proto": n, ...}} (counts since
the start) to --stats; on SIGTERM/SIGINT it does the same and exits. Needs dnslib (pip install dnslib). Only loopback, and it never forwards.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time

from dnslib import QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

HOST = "127.0.0.1"


def norm(name):
    return str(name).rstrip(".").lower()


class ZoneResolver(BaseResolver):
    def __init__(self, zone, ttl):
        self.ttl = ttl
        self.soa_zones = [norm(z) for z in zone.pop("@soa", [])]
        self.zone = {norm(k): v for k, v in zone.items()}
        self.lock = threading.Lock()
        self.counts = {}

    def _soa(self, qname):
        for z in self.soa_zones:
            if qname == z or qname.endswith("." + z):
                return RR(z + ".", QTYPE.SOA, ttl=self.ttl,
                          rdata=SOA(f"ns.{z}.", f"hostmaster.{z}.",
                                    (1, 3600, 600, 86400, self.ttl)))
        return None

    def resolve(self, request, handler):
        reply = request.reply()  # aa=1, ra=1
        q = request.q
        qname, qtype = norm(q.qname), QTYPE[q.qtype]
        with self.lock:
            key = f"{qname} {qtype} {handler.protocol}"
            self.counts[key] = self.counts.get(key, 0) + 1
        recs = self.zone.get(qname)
        if recs is None:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            for value in recs.get(qtype, []):
                if qtype == "TXT":
                    b = value.encode()
                    parts = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
                    reply.add_answer(RR(q.qname, QTYPE.TXT, ttl=self.ttl, rdata=TXT(parts)))
                elif qtype == "A":
                    reply.add_answer(RR(q.qname, QTYPE.A, ttl=self.ttl, rdata=A(value)))
        if not reply.rr:
            soa = self._soa(qname)
            if soa is not None:
                reply.add_auth(soa)
        return reply

    def stats(self):
        with self.lock:
            return {"queries": sum(self.counts.values()), "by_name": dict(sorted(self.counts.items()))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats")
    ap.add_argument("--ttl", type=int, default=3600)
    a = ap.parse_args()
    resolver = ZoneResolver(json.load(open(a.zone)), a.ttl)
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = None
    for _ in range(200):
        port = random.randrange(20000, 32000)
        try:
            udp = DNSServer(resolver, port=port, address=HOST, logger=logger)
        except OSError:
            continue
        try:
            tcp = DNSServer(resolver, port=port, address=HOST, tcp=True, logger=logger)
        except OSError:
            udp.server.server_close()
            continue
        servers = (udp, tcp)
        break
    if servers is None:
        sys.exit("dnsserver: no free loopback port (UDP and TCP)")
    for s in servers:
        s.start_thread()

    def dump(*_):
        if a.stats:
            with open(a.stats + ".tmp", "w") as f:
                json.dump(resolver.stats(), f)
            os.replace(a.stats + ".tmp", a.stats)

    def stop(*_):
        dump()
        for s in servers:
            s.server.shutdown()
            s.server.server_close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, dump)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.replace(a.port_file + ".tmp", a.port_file)
    # Bounded: a forgotten server goes away after 6 hours.
    deadline = time.time() + 6 * 3600
    while time.time() < deadline:
        time.sleep(1)
    stop()


if __name__ == "__main__":
    main()
