//! Socket tests for submission, AUTH and relay control that need no TLS client: AUTH over
//! plaintext is allowed here only because the test config turns `plaintext_on_loopback` on.
//! The TLS paths are exercised with real clients in tests/interop/test_submission.py.

mod common;
use common::{Client, TestServer};

const SUBMISSION: &str = r#"
[[listen]]
address = "127.0.0.1:0"
role = "submission"
"#;

/// base64 of "\0alice@example.test\0correct horse".
const GOOD: &str = "AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl";
/// base64 of "\0alice@example.test\0wrong".
const BAD: &str = "AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==";

fn server(extra: &str) -> TestServer {
    let s = TestServer::start(&format!("{extra}\n{SUBMISSION}"));
    s.add_user("alice@example.test", "correct horse");
    s
}

fn submit(s: &TestServer, bind: Option<&str>) -> Client {
    let mut c = Client::connect(s.addr_of("submission"), bind);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    c
}

#[test]
fn auth_requires_tls_and_mail_requires_auth() {
    let s = server("");
    let mut c = submit(&s, None);
    assert!(!c.cmd("EHLO client.test").contains("AUTH"), "AUTH must not be offered in clear");
    assert!(c.cmd(&format!("AUTH PLAIN {GOOD}")).starts_with("530 5.7.0 Must issue a STARTTLS command first"));
    assert!(c.cmd("MAIL FROM:<alice@example.test>").starts_with("530 5.7.0 Authentication required"));
    assert!(!s.log().contains("correct horse"));
}

#[test]
fn auth_plain_login_and_wrong_password() {
    let s = server("[auth]\nplaintext_on_loopback = true\n");
    let mut c = submit(&s, None);
    assert!(c.cmd("EHLO client.test").contains("AUTH PLAIN LOGIN"));
    assert!(c.cmd(&format!("AUTH PLAIN {BAD}")).starts_with("535 5.7.8"));
    assert!(c.cmd("AUTH PLAIN not*base64").starts_with("501 5.5.2"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd("YWxpY2VAZXhhbXBsZS50ZXN0").starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd("Y29ycmVjdCBob3JzZQ==").starts_with("235 2.7.0"));
    assert!(c.cmd(&format!("AUTH PLAIN {GOOD}")).starts_with("503"));
    // Sender rules: alice may not pretend to be bob.
    assert!(c.cmd("MAIL FROM:<bob@example.test>").starts_with("553 5.7.1"));
    assert!(c.cmd("MAIL FROM:<alice+list@example.test>").starts_with("250"));
    // An authenticated user may relay: the remote copy waits in the spool.
    assert!(c.cmd("RCPT TO:<friend@elsewhere.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hi\r\n\r\nfrom alice\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    let bob = &s.wait_for("bob", 1)[0];
    assert!(bob.contains("authenticated as alice@example.test"), "{bob}");
    assert!(bob.contains("with ESMTPA id"), "{bob}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let spooled = s.spooled_envelopes();
    assert!(spooled.iter().any(|e| e.contains("friend@elsewhere.test")), "{spooled:?}");
    let log = s.log();
    assert!(log.contains("mechanism=PLAIN") || log.contains("mechanism=\"PLAIN\""), "{log}");
    assert!(
        !log.contains("correct horse") && !log.contains(GOOD) && !log.contains("Y29ycmVjdCBob3JzZQ"),
        "secrets in the log"
    );
}

#[test]
fn users_are_mailboxes_and_changes_apply_without_restart() {
    let s = server("");
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<someone@remote.test>");
    // dave is no mailbox in the config; adding the user makes it one, live.
    assert!(c.cmd("RCPT TO:<dave@example.test>").starts_with("550 5.1.1"));
    s.add_user("dave@example.test", "pw for dave");
    assert!(c.cmd("RCPT TO:<dave@example.test>").starts_with("250"));
}

#[test]
fn brute_force_is_throttled_per_ip() {
    let s = server("[auth]\nplaintext_on_loopback = true\nmax_failures = 3\nfailure_delay = \"1ms\"\n");
    let mut c = submit(&s, None);
    for _ in 0..3 {
        assert!(c.cmd(&format!("AUTH PLAIN {BAD}")).starts_with("535 5.7.8"));
    }
    // Locked out: even the right password is not checked.
    assert!(c.cmd(&format!("AUTH PLAIN {GOOD}")).starts_with("454 4.7.0"));
    let mut again = submit(&s, None);
    assert!(again.cmd(&format!("AUTH PLAIN {GOOD}")).starts_with("454 4.7.0"));
    // Another client address (still loopback, so plaintext AUTH is allowed) is not affected.
    let mut other = submit(&s, Some("127.0.0.2"));
    assert!(other.cmd(&format!("AUTH PLAIN {GOOD}")).starts_with("235"));
}

#[test]
fn relaying_denied_outside_trusted_networks_allowed_inside() {
    let s = TestServer::start("trusted_networks = [\"127.0.0.1/32\"]\n");
    let mut outside = Client::connect(s.addr, Some("127.0.0.2"));
    outside.cmd("EHLO client.test");
    outside.cmd("MAIL FROM:<x@remote.test>");
    assert!(outside.cmd("RCPT TO:<victim@elsewhere.test>").starts_with("550 5.7.1 Relaying denied"));
    let mut inside = Client::connect(s.addr, None);
    let r = inside.send_mail("app@example.test", &["customer@elsewhere.test"], "Subject: receipt\r\n\r\nthanks");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(s.spooled_envelopes().iter().any(|e| e.contains("customer@elsewhere.test")));
}

/// Every classic relay trick from an untrusted client is refused, and nothing for a
/// non-local domain is ever queued.
#[test]
fn open_relay_tricks_are_refused() {
    let s = server("trusted_networks = [\"127.0.0.1/32\"]\n[domains.\"localhost\"]\nany_mailbox = true\n");
    let tricks = [
        "<user%elsewhere.test@example.test>",
        "<@example.test:user@elsewhere.test>",
        "<@example.test,@other.test:user@elsewhere.test>",
        "<\"user@elsewhere.test\"@example.test>",
        "<elsewhere.test!user@example.test>",
        "<user@[127.0.0.1]>",
        "<user@[IPv6:::1]>",
        "<user@elsewhere.test>",
        "<user%elsewhere.test@localhost>",
        "<elsewhere.test!user@localhost>",
        "<\"user@elsewhere.test\"@localhost>",
    ];
    for sender in ["<>", "<x@remote.test>"] {
        for t in tricks {
            // One connection per trick: refused recipients count towards the error limit.
            let mut c = Client::connect(s.addr, Some("127.0.0.2"));
            c.cmd("EHLO relay.test");
            assert!(c.cmd(&format!("MAIL FROM:{sender}")).starts_with("250"));
            let r = c.cmd(&format!("RCPT TO:{t}"));
            assert!(r.starts_with("550"), "{t} from {sender}: {r}");
            assert!(c.cmd("DATA").starts_with("554"));
        }
    }
    // Failed AUTH does not open the relay either.
    let mut c = Client::connect(s.addr_of("submission"), Some("127.0.0.2"));
    c.cmd("EHLO relay.test");
    c.cmd(&format!("AUTH PLAIN {BAD}"));
    assert!(c.cmd("MAIL FROM:<x@remote.test>").starts_with("530"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(s.spooled_envelopes().is_empty(), "{:?}", s.spooled_envelopes());
}
