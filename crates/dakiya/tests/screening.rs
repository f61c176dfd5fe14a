//! Connection screening over real sockets (docs/screening.md): DNS block and allow lists
//! served by a loopback DNS server, the answer cache, greet delay and unoffered pipelining,
//! FCrDNS in `Received:`, HELO checks, and a flood of silent clients against admission.

mod common;

use common::{Client, TestServer, raw_from, wait_log};
use dakiya_route::testdns::{TestDns, Zone};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A DNS server on loopback with its own runtime, alive as long as this value.
struct Dns {
    server: TestDns,
    _rt: tokio::runtime::Runtime,
}

fn dns(zone: Zone) -> Dns {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = rt.block_on(TestDns::start(zone));
    Dns { server, _rt: rt }
}

impl Dns {
    /// How many times `name` was asked for (type A).
    fn asked(&self, name: &str) -> usize {
        let q = format!("{name}. A");
        self.server.queries().iter().filter(|x| **x == q).count()
    }
}

/// `[outbound]` naming the test DNS server, then `[screen]` with `screen` (keys and zones).
fn config(dns: &Dns, screen: &str) -> String {
    format!("[outbound]\nnameservers = [\"{}\"]\n\n[screen]\n{screen}\n", dns.server.addr)
}

/// The block list most tests use: `bl.test` lists 127.0.0.2 (code 127.0.0.2).
const BL: &str = "[[screen.zone]]\nname = \"bl.test\"\ncodes = [\"127.0.0.2-127.0.0.11\"]\n";

/// The first reply a client from `ip` gets, and whether the server then closed.
fn first_reply(ip: &str, addr: SocketAddr) -> (String, bool) {
    let mut s = raw_from(ip, addr);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    // read_to_string ends at EOF (closed) or the timeout (a greeting with the session open).
    let closed = s.read(&mut [0u8; 1]).map(|n| n == 0).unwrap_or(false);
    (all, closed)
}

#[test]
fn listed_client_is_refused_at_connect_and_a_miss_is_greeted() {
    let dns = dns(Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 2].into()));
    let server = TestServer::start(&config(&dns, BL));
    let mut s = raw_from("127.0.0.2", server.addr);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test\r\n");
    let mut c = Client::connect(server.addr, Some("127.0.0.3"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(dns.asked("3.0.0.127.bl.test"), 1);
    assert!(wait_log(&server, "client refused by screening: DNS list", 5), "{}", server.log());
}

#[test]
fn listed_client_is_refused_at_rcpt_but_reaches_postmaster() {
    let dns = dns(Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 4].into()));
    let server = TestServer::start(&config(&dns, &format!("action = \"reject-at-rcpt\"\n{BL}")));
    let mut c = Client::connect(server.addr, Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<someone@elsewhere.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@example.test>");
    assert_eq!(r, "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test\r\n");
    assert!(c.cmd("RCPT TO:<postmaster@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<Postmaster>").starts_with("250"));
}

#[test]
fn an_answer_outside_the_codes_does_not_count() {
    let dns = dns(Zone::new().a("2.0.0.127.bl.test", [127, 255, 255, 254].into()));
    let server = TestServer::start(&config(&dns, BL));
    let mut c = Client::connect(server.addr, Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(wait_log(&server, "not configured to count", 5), "{}", server.log());
    assert!(server.log().contains("answer=127.255.255.254"), "{}", server.log());
}

#[test]
fn an_allow_list_lowers_the_score_and_flags_the_client() {
    let zone =
        Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 2].into()).a("2.0.0.127.allow.test", [127, 0, 0, 2].into());
    let dns = dns(zone);
    let allow = "[[screen.zone]]\nname = \"allow.test\"\nweight = -1\n";
    let server = TestServer::start(&config(&dns, &format!("{BL}{allow}")));
    let mut c = Client::connect(server.addr, Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(wait_log(&server, "allow_listed=true", 5), "{}", server.log());
    assert!(server.log().contains("score=0"), "{}", server.log());
}

#[test]
fn ipv6_clients_are_asked_by_nibbles() {
    let name = format!("1.{}bl.test", "0.".repeat(31));
    let dns = dns(Zone::new().a(&name, [127, 0, 0, 2].into()));
    let extra = format!("{}[[listen]]\naddress = \"[::1]:0\"\nrole = \"mx\"\n", config(&dns, BL));
    let server = TestServer::start(&extra);
    let v6 = server.listeners.iter().find(|(a, _)| a.is_ipv6()).unwrap().0;
    let mut s = TcpStream::connect(v6).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "554 5.7.1 Service unavailable; client [::1] blocked using bl.test\r\n");
    assert_eq!(dns.asked(&name), 1);
}

#[test]
fn a_zone_that_never_answers_is_a_miss_within_the_timeout() {
    let dns = dns(Zone::new().no_answer("2.0.0.127.slow.test").a("2.0.0.127.bl.test", [127, 0, 0, 2].into()));
    // The silent zone alone would block (weight 2); bl.test alone does not (threshold 3).
    let zones = "threshold = 3\ntimeout = \"1s\"\n[[screen.zone]]\nname = \"slow.test\"\nweight = 2\n\
                 [[screen.zone]]\nname = \"bl.test\"\n";
    let server = TestServer::start(&config(&dns, zones));
    let mut c = Client::connect(server.addr, Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(dns.asked("2.0.0.127.slow.test") >= 1);
}

#[test]
fn answers_are_cached_by_ttl() {
    let dns = dns(Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 2].into()));
    let server = TestServer::start(&config(&dns, BL));
    for _ in 0..2 {
        let (got, closed) = first_reply("127.0.0.2", server.addr);
        assert!(got.starts_with("554 5.7.1") && closed, "{got}");
        let mut c = Client::connect(server.addr, Some("127.0.0.3"));
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    // One query each: the second connection of each client was answered from the cache,
    // positive and negative (NXDOMAIN, remembered for the SOA's negative TTL).
    assert_eq!(dns.asked("2.0.0.127.bl.test"), 1);
    assert_eq!(dns.asked("3.0.0.127.bl.test"), 1);
}

#[test]
fn answers_with_ttl_zero_are_not_cached() {
    let dns = dns(Zone::new().ttl(0).a("2.0.0.127.bl.test", [127, 0, 0, 2].into()));
    let server = TestServer::start(&config(&dns, BL));
    for _ in 0..2 {
        let (got, _) = first_reply("127.0.0.2", server.addr);
        assert!(got.starts_with("554 5.7.1"), "{got}");
    }
    assert_eq!(dns.asked("2.0.0.127.bl.test"), 2);
}

#[test]
fn submission_listeners_skip_screening() {
    let dns = dns(Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 2].into()));
    let extra = format!("{}[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n", config(&dns, BL));
    let server = TestServer::start(&extra);
    let mut c = Client::connect(server.addr_of("submission"), Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(dns.asked("2.0.0.127.bl.test"), 0);
}

/// A server whose second listener (mx) waits `delay` before its greeting.
fn delayed(delay: &str) -> TestServer {
    TestServer::start(&format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\ngreet_delay = \"{delay}\"\n"
    ))
}

#[test]
fn a_client_that_speaks_before_the_greeting_is_refused() {
    let mut server = delayed("1s");
    let slow = server.listeners[1].0;
    let mut s = raw_from("127.0.0.7", slow);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"EHLO early.test\r\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "554 5.5.1 Protocol error: commands sent before their reply\r\n");
    // A client that waits is greeted after the delay.
    let mut c = Client::connect(slow, Some("127.0.0.8"));
    assert!(c.cmd("EHLO patient.test").starts_with("250"));
    drop(c);
    server.shutdown();
    assert!(server.log().contains("pregreet=1"), "{}", server.log());
}

#[test]
fn pipelining_where_it_was_not_offered_is_refused() {
    let dns = dns(Zone::new());
    let mut server = TestServer::start(&config(&dns, ""));
    // After HELO: no PIPELINING.
    let mut c = Client::connect(server.addr, Some("127.0.0.7"));
    assert!(c.cmd("HELO client.test").starts_with("250"));
    c.send(b"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\n");
    assert_eq!(c.read_to_end(), "554 5.5.1 Protocol error: commands sent before their reply\r\n");
    // Before the EHLO reply.
    let mut c = Client::connect(server.addr, Some("127.0.0.7"));
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@elsewhere.test>\r\n");
    assert_eq!(c.read_to_end(), "554 5.5.1 Protocol error: commands sent before their reply\r\n");
    // After the EHLO reply offered it: fine.
    let mut c = Client::connect(server.addr, Some("127.0.0.7"));
    assert!(c.cmd("EHLO client.test").contains("PIPELINING"));
    c.send(b"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\n");
    assert!(c.reply().starts_with("250") && c.reply().starts_with("250"));
    drop(c);
    server.shutdown();
    assert!(server.log().contains("pipelining=2"), "{}", server.log());
}

/// PTR and A records for two loopback clients: 127.0.0.5 confirmed, 127.0.0.6 not.
fn ptr_zone() -> Zone {
    Zone::new()
        .ptr("127.0.0.5".parse().unwrap(), "client5.example.test")
        .a("client5.example.test", [127, 0, 0, 5].into())
        .ptr("127.0.0.6".parse().unwrap(), "liar.example.test")
        .a("liar.example.test", [127, 0, 0, 99].into())
}

#[test]
fn a_forward_confirmed_name_is_recorded_in_received() {
    let dns = dns(ptr_zone());
    let server = TestServer::start(&config(&dns, ""));
    let mut c = Client::connect(server.addr, Some("127.0.0.5"));
    assert!(c.send_mail("a@elsewhere.test", &["alice@example.test"], "Subject: 5\r\n\r\nhi").starts_with("250"));
    let mut c = Client::connect(server.addr, Some("127.0.0.6"));
    assert!(c.send_mail("a@elsewhere.test", &["bob@example.test"], "Subject: 6\r\n\r\nhi").starts_with("250"));
    let alice = server.wait_for("alice", 1);
    let q = dns.server.queries();
    assert!(alice[0].contains("Received: from client.test (client5.example.test [127.0.0.5])"), "{}\n{q:?}", alice[0]);
    let bob = server.wait_for("bob", 1);
    assert!(bob[0].contains("Received: from client.test ([127.0.0.6])"), "{}", bob[0]);
    assert!(!bob[0].contains("liar"), "{}", bob[0]);
}

#[test]
fn require_fcrdns_defers_clients_without_a_confirmed_name() {
    let dns = dns(ptr_zone());
    let server = TestServer::start(&config(&dns, "require_fcrdns = true\n"));
    let mut c = Client::connect(server.addr, Some("127.0.0.6"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@elsewhere.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@example.test>");
    assert!(r.starts_with("450 4.7.25 "), "{r}");
    assert!(c.cmd("RCPT TO:<postmaster@example.test>").starts_with("250"));
    let mut c = Client::connect(server.addr, Some("127.0.0.5"));
    c.begin("a@elsewhere.test", "alice@example.test");
}

#[test]
fn helo_checks_refuse_at_mail() {
    let dns = dns(Zone::new());
    let server = TestServer::start(&config(&dns, "helo_checks = [\"bare-ip\", \"our-name\", \"our-address\"]\n"));
    let mut c = Client::connect(server.addr, Some("127.0.0.7"));
    for (helo, text) in [
        ("192.0.2.1", "an IP address must be an address literal"),
        ("mx.example.test", "that is my name"),
        ("[127.0.0.1]", "that is my address"),
    ] {
        assert!(c.cmd(&format!("EHLO {helo}")).starts_with("250"));
        let r = c.cmd("MAIL FROM:<a@elsewhere.test>");
        assert!(r.starts_with("550 5.7.1 HELO name refused: ") && r.contains(text), "{helo}: {r}");
    }
    assert!(c.cmd("EHLO [127.0.0.7]").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@elsewhere.test>").starts_with("250"));
}

#[test]
fn helo_checks_are_off_by_default() {
    let dns = dns(Zone::new());
    let server = TestServer::start(&config(&dns, ""));
    let mut c = Client::connect(server.addr, Some("127.0.0.7"));
    assert!(c.cmd("EHLO 192.0.2.1").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@elsewhere.test>").starts_with("250"));
}

#[test]
fn a_flood_of_silent_clients_in_the_greet_delay_stays_within_admission_limits() {
    let server = TestServer::start(
        "[limits]\nmax_connections = 8\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\n\
         greet_delay = \"3s\"\n",
    );
    let slow = server.listeners[1].0;
    // Eight silent clients fill the server while they wait for their greeting.
    let mut flood: Vec<BufReader<TcpStream>> =
        (0..8).map(|i| BufReader::new(raw_from(&format!("127.0.1.{}", i + 1), slow))).collect();
    std::thread::sleep(Duration::from_millis(1300));
    // A newcomer still gets in: the oldest waiting client counts as idle and makes room.
    let mut c = Client::connect(slow, Some("127.0.2.1"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let mut evicted = 0;
    for s in &mut flood {
        // Each gets its first line within the greet delay: 421 (closed to make room) or 220.
        s.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        let _ = s.read_line(&mut got);
        if got.starts_with("421 4.4.2") {
            evicted += 1;
        }
    }
    assert!(evicted >= 1, "no waiting client was closed to make room");
    assert!(wait_log(&server, "closed the longest idle session", 5), "{}", server.log());
}
