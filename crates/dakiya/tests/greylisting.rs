//! Greylisting (RFC 6647) over real sockets: first 451, too-early 451, later 250; state kept
//! across a restart; who is exempt; auto-allow; the bound on entries. Client networks are
//! loopback addresses: 127.0.0.x is one /24, 127.0.1.x another.

mod common;
use common::{Client, TestServer};
use std::time::Duration;

/// Greylisting on, with a short minimum delay (the decision's edges to the second are unit
/// tests in crates/limits).
const GREY: &str = "[greylist]\nenabled = true\nmin_delay = \"2s\"\nauto_allow_after = 0\n";

/// Longer than `min_delay`, measured from after the first attempt (times are whole seconds).
const PAST_MIN_DELAY: Duration = Duration::from_millis(2200);

/// MAIL and RCPT from `bind`; returns the RCPT reply and the client (for DATA).
fn rcpt(s: &TestServer, bind: &str, from: &str, to: &str) -> (String, Client) {
    let mut c = Client::connect(s.addr, Some(bind));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let reply = c.cmd(&format!("RCPT TO:<{to}>"));
    (reply, c)
}

fn is_greylisted(reply: &str) -> bool {
    reply.starts_with("451 4.7.1 Greylisted, please try again in ")
}

#[test]
fn first_attempt_is_greylisted_early_retry_too_and_a_later_retry_is_delivered() {
    let s = TestServer::start(GREY);
    let (first, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(first.starts_with("451 4.7.1 Greylisted, please try again in 2 seconds"), "{first}");
    // Unknown users are refused outright, not greylisted.
    let (unknown, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "nobody@example.test");
    assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
    // Too early, from another address of the same /24, other case: the same triplet, deferred.
    let (early, _) = rcpt(&s, "127.0.0.3", "Sender@REMOTE.test", "bob@example.test");
    assert!(is_greylisted(&early), "{early}");
    std::thread::sleep(PAST_MIN_DELAY);
    let (later, mut c) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(later.starts_with("250"), "{later}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: grey\r\n\r\nretried\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    // Remembered now: no delay for the next message of the triplet.
    let (again, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(again.starts_with("250"), "{again}");
    // Another sender, recipient or network is a new triplet.
    let (other, _) = rcpt(&s, "127.0.1.2", "sender@remote.test", "bob@example.test");
    assert!(is_greylisted(&other), "{other}");
    assert!(common::wait_log(&s, "greylisted peer=127.0.0.2", 5), "{}", s.log());
}

#[test]
fn greylist_state_survives_a_restart() {
    let s = TestServer::start(GREY);
    let (first, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(is_greylisted(&first), "{first}");
    let dir = s.stop();
    let state = std::fs::read_to_string(dir.path().join("data/greylist.state")).unwrap();
    assert!(state.contains("sender@remote.test\tbob@example.test"), "{state}");
    std::thread::sleep(PAST_MIN_DELAY);
    let s = TestServer::start_in(dir, GREY);
    // Passes: the first attempt was remembered across the restart.
    let (later, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(later.starts_with("250"), "{later}\n{}", s.log());
    let dir = s.stop();
    // And the pass itself is saved at shutdown.
    let s = TestServer::start_in(dir, GREY);
    let (known, _) = rcpt(&s, "127.0.0.2", "sender@remote.test", "bob@example.test");
    assert!(known.starts_with("250"), "{known}");
}

#[test]
fn authenticated_trusted_and_exempt_clients_are_not_greylisted() {
    let extra = format!(
        "trusted_networks = [\"127.0.0.5\"]\n{}exempt = [\"postmaster@example.test\", \"friendly.test\", \"127.0.3.0/24\"]\n\
         [auth]\nplaintext_on_loopback = true\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n",
        GREY
    );
    let s = TestServer::start(&extra);
    s.add_user("alice@example.test", "correct horse");
    // Authenticated (submission: never greylisted).
    let mut c = Client::connect(s.addr_of("submission"), Some("127.0.0.2"));
    assert!(c.cmd("EHLO client.test").contains("AUTH"));
    // base64 of "\0alice@example.test\0correct horse".
    assert!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl").starts_with("235"));
    assert!(c.cmd("MAIL FROM:<alice@example.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<bob@example.test>");
    assert!(r.starts_with("250"), "{r}");
    // Trusted network on mx.
    let (r, _) = rcpt(&s, "127.0.0.5", "app@example.test", "bob@example.test");
    assert!(r.starts_with("250"), "{r}");
    // Exempt recipient, sender domain, client network.
    let (r, _) = rcpt(&s, "127.0.0.2", "x@remote.test", "postmaster@example.test");
    assert!(r.starts_with("250"), "{r}");
    let (r, _) = rcpt(&s, "127.0.0.2", "x@friendly.test", "bob@example.test");
    assert!(r.starts_with("250"), "{r}");
    let (r, _) = rcpt(&s, "127.0.3.9", "x@remote.test", "bob@example.test");
    assert!(r.starts_with("250"), "{r}");
    // Everyone else is.
    let (r, _) = rcpt(&s, "127.0.0.2", "x@remote.test", "bob@example.test");
    assert!(is_greylisted(&r), "{r}");
}

#[test]
fn a_network_that_passed_is_auto_allowed() {
    let s = TestServer::start(&GREY.replace("auto_allow_after = 0", "auto_allow_after = 1"));
    let (r, _) = rcpt(&s, "127.0.0.2", "a@remote.test", "bob@example.test");
    assert!(is_greylisted(&r), "{r}");
    std::thread::sleep(PAST_MIN_DELAY);
    let (r, _) = rcpt(&s, "127.0.0.2", "a@remote.test", "bob@example.test");
    assert!(r.starts_with("250"), "{r}");
    // A new triplet from that /24 passes at once; from another /24 it waits.
    let (r, _) = rcpt(&s, "127.0.0.3", "new@other.test", "carol@example.test");
    assert!(r.starts_with("250"), "{r}");
    let (r, _) = rcpt(&s, "127.0.1.3", "new@other.test", "carol@example.test");
    assert!(is_greylisted(&r), "{r}");
}

#[test]
fn cycling_senders_cannot_grow_the_greylist_past_max_entries() {
    let s = TestServer::start(&format!("{GREY}max_entries = 16\n"));
    for i in 0..200 {
        // One session each: refused recipients count towards a session's `max_errors`.
        let (r, _) = rcpt(&s, "127.0.0.2", &format!("spam{i}@forged.test"), "bob@example.test");
        assert!(is_greylisted(&r), "{r}");
    }
    let dir = s.stop();
    let state = std::fs::read_to_string(dir.path().join("data/greylist.state")).unwrap();
    let entries = state.lines().skip(1).count();
    assert!((1..=16).contains(&entries), "{entries} entries:\n{state}");
    // The newest attempt is among those kept.
    assert!(state.contains("spam199@forged.test"), "{state}");
}
