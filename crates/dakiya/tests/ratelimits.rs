//! Rate limits over real sockets: exactly N allowed, N+1 refused with the right code, another
//! network or user unaffected, the window recovering. Client networks are loopback
//! addresses: 127.0.0.x is one /24, 127.0.1.x another.

mod common;
use common::{Client, TestServer, raw_from};
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A second mx listener using the profile `tight` (the base mx listener has no limits).
fn mx_with(profile: &str) -> TestServer {
    TestServer::start(&format!(
        "[rate_limits.tight]\n{profile}\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"tight\"\n"
    ))
}

fn tight(s: &TestServer) -> SocketAddr {
    s.listeners[1].0
}

/// The greeting of a new connection from `ip`.
fn greeting(addr: SocketAddr, ip: &str) -> String {
    let mut sock = raw_from(ip, addr);
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn connections_per_network_allows_exactly_n_then_421() {
    let s = mx_with("connections_per_network = \"3/1h\"");
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.2"] {
        let g = greeting(tight(&s), ip);
        assert!(g.starts_with("220 "), "{g}");
    }
    // The fourth from the same /24, whatever the address.
    let g = greeting(tight(&s), "127.0.0.4");
    assert!(g.starts_with("421 4.7.0 Too many connections from your network"), "{g}");
    // Another /24, and the listener without the profile, are unaffected.
    assert!(greeting(tight(&s), "127.0.1.2").starts_with("220 "));
    assert!(greeting(s.addr, "127.0.0.2").starts_with("220 "));
}

fn mail(c: &mut Client, from: &str) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    c.cmd("RSET");
    r
}

#[test]
fn messages_per_network_allows_exactly_n_then_450_and_recovers() {
    // Two a second: a burst of two, then one every half second.
    let s = mx_with("messages_per_network = \"2/1s\"");
    let mut c = Client::connect(tight(&s), Some("127.0.0.2"));
    c.cmd("EHLO client.test");
    assert!(mail(&mut c, "a@remote.test").starts_with("250"));
    assert!(mail(&mut c, "b@remote.test").starts_with("250"));
    let r = mail(&mut c, "c@remote.test");
    assert!(r.starts_with("450 4.7.1 Too many messages from your network, rate limit reached"), "{r}");
    let mut other = Client::connect(tight(&s), Some("127.0.1.2"));
    other.cmd("EHLO client.test");
    assert!(mail(&mut other, "a@remote.test").starts_with("250"));
    // The window recovers: a MAIL is accepted again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let r = mail(&mut c, "d@remote.test");
        if r.starts_with("250") {
            break;
        }
        assert!(r.starts_with("450 4.7.1"), "{r}");
        assert!(Instant::now() < deadline, "the limit never recovered");
    }
}

#[test]
fn messages_per_sender_domain_counts_the_domain_not_the_client() {
    let s = mx_with("messages_per_sender_domain = \"2/1h\"");
    for (ip, from) in [("127.0.0.2", "a@spammy.test"), ("127.0.1.2", "b@SPAMMY.test")] {
        let mut c = Client::connect(tight(&s), Some(ip));
        c.cmd("EHLO client.test");
        assert!(mail(&mut c, from).starts_with("250"));
    }
    let mut c = Client::connect(tight(&s), Some("127.0.2.2"));
    c.cmd("EHLO client.test");
    let r = mail(&mut c, "c@spammy.test");
    assert!(r.starts_with("450 4.7.1 Too many messages from this sender domain"), "{r}");
    assert!(mail(&mut c, "c@fine.test").starts_with("250"));
    // The null sender has no domain to count.
    assert!(mail(&mut c, "").starts_with("250"));
}

/// base64 of "\0alice@example.test\0correct horse" and "\0bob@example.test\0battery staple".
const ALICE: &str = "AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl";
const BOB: &str = "AGJvYkBleGFtcGxlLnRlc3QAYmF0dGVyeSBzdGFwbGU=";

fn submission(profile: &str) -> TestServer {
    let s = TestServer::start(&format!(
        "[auth]\nplaintext_on_loopback = true\n[rate_limits.users]\n{profile}\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\nrate_limits = \"users\"\n"
    ));
    s.add_user("alice@example.test", "correct horse");
    s.add_user("bob@example.test", "battery staple");
    s
}

fn login(s: &TestServer, creds: &str) -> Client {
    let mut c = Client::connect(s.addr_of("submission"), None);
    c.cmd("EHLO client.test");
    let r = c.cmd(&format!("AUTH PLAIN {creds}"));
    assert!(r.starts_with("235"), "{r}");
    c
}

#[test]
fn messages_per_user_allows_exactly_n_then_450_and_other_users_are_unaffected() {
    let s = submission("messages_per_user = \"2/1h\"");
    let mut alice = login(&s, ALICE);
    assert!(mail(&mut alice, "alice@example.test").starts_with("250"));
    assert!(mail(&mut alice, "alice@example.test").starts_with("250"));
    let r = mail(&mut alice, "alice@example.test");
    assert!(r.starts_with("450 4.7.1 Too many messages from this user, rate limit reached"), "{r}");
    // A new session of the same user is counted together.
    let mut again = login(&s, ALICE);
    assert!(mail(&mut again, "alice@example.test").starts_with("450 4.7.1"));
    let mut bob = login(&s, BOB);
    assert!(mail(&mut bob, "bob@example.test").starts_with("250"));
}

#[test]
fn recipients_per_user_allows_exactly_n_then_450() {
    let s = submission("recipients_per_user = \"3/1d\"");
    let mut alice = login(&s, ALICE);
    assert!(alice.cmd("MAIL FROM:<alice@example.test>").starts_with("250"));
    for to in ["bob", "carol", "friend@elsewhere.test"] {
        let to = if to.contains('@') { to.to_string() } else { format!("{to}@example.test") };
        let r = alice.cmd(&format!("RCPT TO:<{to}>"));
        assert!(r.starts_with("250"), "{r}");
    }
    let r = alice.cmd("RCPT TO:<postmaster@example.test>");
    assert!(r.starts_with("450 4.7.1 Too many recipients from this user, rate limit reached"), "{r}");
    // The accepted ones still go.
    assert!(alice.cmd("DATA").starts_with("354"));
    alice.send(b"Subject: hi\r\n\r\nthree\r\n.\r\n");
    assert!(alice.reply().starts_with("250"));
    let mut bob = login(&s, BOB);
    assert!(bob.cmd("MAIL FROM:<bob@example.test>").starts_with("250"));
    assert!(bob.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
}
