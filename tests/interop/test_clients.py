"""Client auto-configuration and DNS records against real clients (docs/clients.md,
docs/dns.md): the documents an `http`/`https` listener serves — Thunderbird autoconfig,
Microsoft Autodiscover, an Apple profile — are fetched and parsed, and every server, port and
TLS mode they name is used by Python's smtplib and poplib to log in and send or fetch mail;
the MTA-STS policy's id matches `dakiya dns`; `dakiya dns check` against a loopback DNS server
serving first the printed records (all ok) and then a broken zone (each difference named)."""

from __future__ import annotations

import hashlib
import json
import plistlib
import poplib
import smtplib
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from dnsserver import TestDNS
from mailutil import build_message

HOST = "127.0.0.1"
ALICE = "alice@example.test"
PASSWORD = "Clients-Interop-Secret-7a3f"
LISTENERS = [(f"{HOST}:0", r) for r in ("mx", "submission", "submissions", "pop3", "pop3s", "http", "https")]
# The generated certificate names "localhost": clients verify it against that name.
CLIENT = '[client]\nhost = "localhost"\n'
AD_NS = {"r": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}


def context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert_path))


def fetch(server, url: str, host: str | None = None, data: bytes | None = None):
    """(status, content type, body) of one request; TLS verified for https."""
    req = urllib.request.Request(url, data=data, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=15, context=context(server) if url.startswith("https") else None) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def send_with(server, host: str, port: int, implicit: bool, subject: str) -> None:
    """Logs in as alice and sends her a message, as a client told (host, port, TLS) would."""
    msg = build_message(ALICE, ALICE, subject, "configured automatically\r\n")
    if implicit:
        s = smtplib.SMTP_SSL(host, port, local_hostname="client.test", timeout=15, context=context(server))
    else:
        s = smtplib.SMTP(host, port, local_hostname="client.test", timeout=15)
        s.starttls(context=context(server))
    with s:
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [ALICE], msg)


def fetch_count(server, host: str, port: int, implicit: bool) -> int:
    """Logs in to POP3 as alice and returns how many messages she has."""
    if implicit:
        p = poplib.POP3_SSL(host, port, context=context(server), timeout=15)
    else:
        p = poplib.POP3(host, port, timeout=15)
        p.stls(context=context(server))
    try:
        p.user(ALICE)
        p.pass_(PASSWORD)
        return p.stat()[0]
    finally:
        p.quit()


@pytest.fixture
def server(dakiya_factory):
    s = dakiya_factory(listeners=LISTENERS, tables=CLIENT)
    s.add_user(ALICE, PASSWORD)
    return s


def test_autoconfig_servers_work_with_smtplib_and_poplib(server):
    url = f"https://localhost:{server.port_of('https')}/mail/config-v1.1.xml?emailaddress=alice%40example.test"
    status, ctype, body = fetch(server, url)
    assert status == 200 and ctype.startswith("application/xml"), (status, ctype, body)
    # The same document over plain HTTP, chosen by the Host header.
    plain = fetch(server, f"http://{HOST}:{server.port_of('http')}/mail/config-v1.1.xml", host="autoconfig.example.test")
    assert plain[2] == body
    provider = ET.fromstring(body).find("emailProvider")
    assert provider.get("id") == "example.test" and provider.findtext("domain") == "example.test"
    outgoing = [(s.findtext("hostname"), int(s.findtext("port")), s.findtext("socketType")) for s in provider.findall("outgoingServer")]
    incoming = [(s.get("type"), s.findtext("hostname"), int(s.findtext("port")), s.findtext("socketType")) for s in provider.findall("incomingServer")]
    assert outgoing == [("localhost", server.port_of("submissions"), "SSL"), ("localhost", server.port_of("submission"), "STARTTLS")]
    assert incoming == [("pop3", "localhost", server.port_of("pop3s"), "SSL"), ("pop3", "localhost", server.port_of("pop3"), "STARTTLS")]
    for s in provider.findall("*"):
        if s.tag.endswith("Server"):
            assert s.findtext("username") == "%EMAILADDRESS%" and s.findtext("authentication") == "password-cleartext"
    for i, (host, port, socket_type) in enumerate(outgoing):
        send_with(server, host, port, socket_type == "SSL", f"autoconfig {i}")
    server.wait_for_delivery("alice", count=len(outgoing))
    for _type, host, port, socket_type in incoming:
        assert fetch_count(server, host, port, socket_type == "SSL") == len(outgoing)


def test_autodiscover_and_apple_profile_servers_work(server):
    request = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
        "<Request><EMailAddress>alice@example.test</EMailAddress>"
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()
    url = f"https://localhost:{server.port_of('https')}/autodiscover/autodiscover.xml"
    status, ctype, body = fetch(server, url, data=request)
    assert status == 200 and ctype.startswith("application/xml"), (status, body)
    protocols = {
        p.findtext("r:Type", namespaces=AD_NS): (p.findtext("r:Server", namespaces=AD_NS), int(p.findtext("r:Port", namespaces=AD_NS)), p.findtext("r:Encryption", namespaces=AD_NS), p.findtext("r:LoginName", namespaces=AD_NS))
        for p in ET.fromstring(body).iterfind(".//r:Account/r:Protocol", AD_NS)
    }
    assert set(protocols) == {"SMTP", "POP3"}, body
    host, port, enc, login = protocols["SMTP"]
    assert (port, enc, login) == (server.port_of("submissions"), "SSL", ALICE)
    send_with(server, host, port, enc == "SSL", "autodiscover")
    server.wait_for_delivery("alice", count=1)
    host, port, enc, login = protocols["POP3"]
    assert (port, enc) == (server.port_of("pop3s"), "SSL")
    assert fetch_count(server, host, port, enc == "SSL") == 1
    # Malformed and oversized requests are refused.
    assert fetch(server, url, data=b"<Autodiscover><Request>")[0] == 400
    # Oversized: answered from the declared length, before the body is sent (sending it
    # would race the server closing the connection).
    with socket.create_connection(("localhost", server.port_of("https")), timeout=15) as raw:
        with context(server).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 413 "), "oversized Autodiscover request not refused"

    profile_url = f"https://localhost:{server.port_of('https')}/apple/example.test.mobileconfig?emailaddress=alice%40example.test"
    status, ctype, raw = fetch(server, profile_url)
    assert status == 200 and ctype == "application/x-apple-aspen-config", (status, ctype)
    assert fetch(server, profile_url)[2] == raw, "the profile changes between downloads"
    profile = plistlib.loads(raw)
    assert profile["PayloadType"] == "Configuration" and len(profile["PayloadUUID"]) == 36
    mail = profile["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed" and mail["EmailAddress"] == ALICE
    assert mail["EmailAccountType"] == "EmailTypePOP" and mail["IncomingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerPortNumber"] == server.port_of("submissions")
    send_with(server, mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"], True, "apple")
    # The first message has moved to cur/ with the POP3 session above.
    server.wait_for_delivery("alice", count=1)
    assert mail["IncomingMailServerPortNumber"] == server.port_of("pop3s")
    assert fetch_count(server, mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"], True) == 2


def dns_json(server) -> list[dict]:
    r = subprocess.run([server.binary, "dns", "--format", "json", "--config", str(server.config_path), "example.test"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]["records"]


def test_mta_sts_policy_and_its_id(server):
    url = f"https://localhost:{server.port_of('https')}/.well-known/mta-sts.txt"
    status, ctype, body = fetch(server, url, host="mta-sts.example.test")
    assert status == 200 and ctype == "text/plain", (status, ctype)
    fields = [line.split(": ", 1) for line in body.decode().split("\r\n") if line]
    assert fields == [["version", "STSv1"], ["mode", "testing"], ["mx", "localhost"], ["max_age", "604800"]]
    assert fetch(server, url, host="mta-sts.other.test")[0] == 404
    assert fetch(server, url)[0] == 404  # Host: localhost
    record = next(r for r in dns_json(server) if r["name"] == "_mta-sts.example.test")
    assert record["value"] == f"v=STSv1; id={hashlib.sha256(body).hexdigest()[:32]}"


def serve(dns: TestDNS, records: list[dict]) -> None:
    for r in records:
        kind, value = r["type"], r["value"]
        if kind == "MX":
            pref, exchange = value.split()
            dns.add(r["name"], kind, (int(pref), exchange))
        elif kind == "SRV":
            prio, weight, port, target = value.split()
            dns.add(r["name"], kind, (int(prio), int(weight), int(port), target))
        else:
            dns.add(r["name"], kind, value)


def dns_check(server) -> tuple[int, str]:
    r = subprocess.run([server.binary, "dns", "--config", str(server.config_path), "check", "example.test"], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_dns_check_against_a_served_zone(dakiya_factory):
    dns = TestDNS()
    try:
        tables = CLIENT + f'[outbound]\nnameservers = ["{HOST}:{dns.port}"]\n'
        server = dakiya_factory(listeners=LISTENERS, tables=tables)
        gen = subprocess.run([server.binary, "dkim", "--config", str(server.config_path), "generate", "example.test", "-s", "s1"], capture_output=True, text=True, timeout=60)
        assert gen.returncode == 0, gen.stderr
        records = dns_json(server)
        dkim_record = next(r for r in records if r["name"] == "s1._domainkey.example.test")
        assert len(dkim_record["value"]) > 255  # split into several strings on the wire
        serve(dns, records)
        code, out = dns_check(server)
        assert code == 0, out
        assert out.count("\nok ") == len(records) and "all %d records are published" % len(records) in out, out

        # A broken zone: each difference named, exit status 1. Spacing and tag order alone
        # are not differences.
        dns.set("example.test", "TXT", ["v=spf1  a -all"])
        dns.set("_dmarc.example.test", "TXT", [])
        dns.set("_smtp._tls.example.test", "TXT", ["v=TLSRPTv1 ;rua=mailto:Postmaster@example.test;"])
        sts_id = next(r["value"] for r in records if r["name"] == "_mta-sts.example.test").split("id=")[1]
        dns.set("_mta-sts.example.test", "TXT", [f"v=STSv1;   id={sts_id}"])
        dns.set("example.test", "MX", [(10, "other.example.net.")])
        dns.set("_submissions._tcp.example.test", "SRV", [(0, 1, 1, "localhost.")])
        dns.set("autoconfig.example.test", "CNAME", [])
        value = dkim_record["value"]
        dns.set("s1._domainkey.example.test", "TXT", [value[:-8] + "AAAAAAAA"])
        code, out = dns_check(server)
        assert code == 1, out
        lines = out.splitlines()

        def line(prefix: str) -> str:
            found = [l for l in lines if l.startswith(prefix)]
            assert len(found) == 1, (prefix, out)
            return found[0]

        assert "published v=spf1  a -all" in line("different  example.test TXT")
        assert "published 10 other.example.net." in line("different  example.test MX")
        line("missing    _dmarc.example.test TXT")
        line("different  s1._domainkey.example.test TXT")
        line("different  _submissions._tcp.example.test SRV")
        line("missing    autoconfig.example.test CNAME")
        line("ok         _smtp._tls.example.test TXT")
        line("ok         _mta-sts.example.test TXT")
        assert "6 of %d records are not as expected" % len(records) in out, out
    finally:
        dns.stop()
