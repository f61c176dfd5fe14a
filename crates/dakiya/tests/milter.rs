//! Milters over real sockets: a scripted milter (tests/milter/fake.rs) takes every action
//! and every failure; each is checked on the SMTP reply and on the delivered copy or the
//! queue. rspamd, the real filter, is in tests/rspamd.rs.

mod common;
#[path = "milter/fake.rs"]
mod fake;

use common::{Client, TestServer};
use fake::{Answer, FakeMilter, at, one};
use std::time::Duration;

/// A second mx listener (listeners[1]) that asks the milter `m`.
fn server_with(m: &FakeMilter, settings: &str) -> TestServer {
    let extra = format!(
        "[[milter]]\nname = \"m\"\naddress = \"inet:{}\"\n{settings}\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\nmilters = [\"m\"]\n",
        m.addr
    );
    TestServer::start(&extra)
}

fn filtered(s: &TestServer) -> Client {
    Client::connect(s.listeners[1].0, None)
}

const MAIL: &str = "From: a@remote.test\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nThe body.";

/// MAIL, RCPT and DATA expected to pass; returns the reply to the end of data.
fn send(c: &mut Client) -> String {
    c.send_mail("a@remote.test", &["bob@example.test"], MAIL)
}

fn sent_codes(m: &FakeMilter) -> Vec<u8> {
    m.seen.lock().unwrap().iter().map(|(c, _)| *c).collect()
}

#[test]
fn a_clean_message_goes_through_every_stage_with_macros() {
    let m = fake::start(0, |code, _| if code == b'E' { one(b'a', b"") } else { one(b'c', b"") });
    let s = server_with(&m, "");
    let mut c = filtered(&s);
    let r = send(&mut c);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    let codes: String = sent_codes(&m).into_iter().filter(|c| *c != b'D').map(char::from).collect();
    // Negotiation, connect, HELO, MAIL, RCPT, DATA, 4 header fields (ours included), end
    // of headers, body, end of message.
    assert_eq!(codes, "OCHMRTLLLLNBE");
    let seen = m.seen.lock().unwrap();
    let text = |code: u8| {
        seen.iter()
            .filter(|(c, _)| *c == code)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .collect::<Vec<_>>()
    };
    assert!(text(b'C')[0].starts_with("unknown\x004"), "{:?}", text(b'C'));
    assert_eq!(text(b'H'), ["client.test\0"]);
    assert_eq!(text(b'M'), ["<a@remote.test>\0"]);
    assert_eq!(text(b'R'), ["<bob@example.test>\0"]);
    let macros = text(b'D').join("|");
    for needle in [
        "Cj\0mx.example.test\0",
        "{client_addr}\x00127.0.0.1\0",
        "{daemon_name}\0mx\0",
        "{mail_addr}\0a@remote.test\0",
        "{rcpt_addr}\0bob@example.test\0",
        "Ti\0",
    ] {
        assert!(macros.contains(needle), "{needle:?} not in {macros:?}");
    }
    assert!(text(b'L').iter().any(|h| h == "Subject\0hello\0"), "{:?}", text(b'L'));
    assert_eq!(text(b'B'), ["The body.\r\n"]);
}

#[test]
fn the_listener_without_milters_is_not_filtered() {
    let m = fake::start(0, |_, _| one(b'r', b""));
    let s = server_with(&m, "");
    let mut c = s.connect();
    assert!(send(&mut c).starts_with("250"));
    assert_eq!(*m.connections.lock().unwrap(), 0, "an unfiltered listener never opens the milter");
}

#[test]
fn reject_and_tempfail_at_each_stage() {
    // The milter's own reply at the end of message.
    let m = fake::start(0, at(b'E', || one(b'y', b"554 5.7.1 Spam detected, go away\0")));
    let s = server_with(&m, "");
    let r = send(&mut filtered(&s));
    assert_eq!(r, "554 5.7.1 Spam detected, go away\r\n");
    // A plain reject at MAIL: ours. A tempfail at RCPT refuses that recipient only.
    let m2 = fake::start(0, |code, data| match code {
        b'M' if data.starts_with(b"<bad@") => one(b'r', b""),
        b'R' if data.starts_with(b"<carol@") => one(b't', b""),
        b'E' => one(b'a', b""),
        _ => one(b'c', b""),
    });
    let s2 = server_with(&m2, "");
    let mut c = filtered(&s2);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<bad@remote.test>"), "550 5.7.1 Message rejected by content filter\r\n");
    assert!(c.cmd("MAIL FROM:<good@remote.test>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<carol@example.test>"), "451 4.7.1 Content filter says try again later\r\n");
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: x\r\n\r\nok\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    assert_eq!(s2.wait_for("bob", 1).len(), 1);
    assert!(s2.messages("carol").is_empty());
    // The refused MAIL was aborted for the milter; the session's one connection served both.
    assert!(sent_codes(&m2).contains(&b'A'));
    assert_eq!(*m2.connections.lock().unwrap(), 1);
    // An invalid reply code from the milter still rejects, with our text.
    let m3 = fake::start(0, at(b'E', || one(b'y', b"250 fine\0")));
    let s3 = server_with(&m3, "");
    assert_eq!(send(&mut filtered(&s3)), "550 5.7.1 Message rejected by content filter\r\n");
}

#[test]
fn header_body_and_envelope_edits_land_in_the_delivered_copy() {
    let m = fake::start(
        0,
        at(b'E', || {
            let idx = |i: u32, rest: &[u8]| [i.to_be_bytes().as_slice(), rest].concat();
            Answer::Send(vec![
                (b'h', b"X-Filter\0checked\0".to_vec()),
                (b'm', idx(1, b"Subject\0edited\0")),
                (b'i', idx(0, b"X-First\0top\0")),
                (b'b', b"Replaced body.\n".to_vec()),
                (b'e', b"<new-sender@remote.test>\0".to_vec()),
                (b'+', b"<carol@example.test>\0".to_vec()),
                (b'-', b"<bob@example.test>\0".to_vec()),
                (b'a', vec![]),
            ])
        }),
    );
    let s = server_with(&m, "");
    let mut c = filtered(&s);
    let r = c.send_mail("a@remote.test", &["bob@example.test", "alice@example.test"], MAIL);
    assert!(r.starts_with("250"), "{r}");
    let alice = s.wait_for("alice", 1);
    let carol = s.wait_for("carol", 1);
    assert_eq!((alice.len(), carol.len()), (1, 1));
    assert!(s.messages("bob").is_empty(), "bob was removed by the milter");
    // Maildir copies have LF line ends.
    let msg = &alice[0];
    assert!(msg.starts_with("Return-Path: <new-sender@remote.test>\n"), "{msg}");
    assert!(msg.contains("\nDelivered-To: alice@example.test\nX-First: top\nReceived: "), "{msg}");
    assert!(msg.contains("\nSubject: edited\n") && !msg.contains("hello"), "{msg}");
    assert!(msg.ends_with("\nX-Filter: checked\n\nReplaced body.\n"), "{msg}");
}

#[test]
fn discard_answers_250_and_keeps_nothing() {
    let m = fake::start(0, at(b'E', || one(b'd', b"")));
    let s = server_with(&m, "");
    let r = send(&mut filtered(&s));
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(common::wait_log(&s, "discarded by milter", 5), "{}", s.log());
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.messages("bob").is_empty());
    assert!(s.spooled_envelopes().is_empty());
    // The history has its arrival and its end.
    let id = common::queue_id(&r);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let history = loop {
        let text = history(&s);
        if text.contains("\"discarded\"") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ours: Vec<&str> = history.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(ours.len(), 2, "{history}");
    assert!(ours[0].contains("\"received\"") && ours[1].contains("\"discarded\""), "{history}");
}

#[test]
fn discard_at_rcpt_drops_the_whole_message() {
    let m = fake::start(0, at(b'R', || one(b'd', b"")));
    let s = server_with(&m, "");
    let r = send(&mut filtered(&s));
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(common::wait_log(&s, "discarded by milter", 5), "{}", s.log());
    assert!(s.messages("bob").is_empty() && s.spooled_envelopes().is_empty());
    assert!(!sent_codes(&m).contains(&b'T'), "a discarding milter is not shown the message");
}

#[test]
fn a_submission_listener_filters_authenticated_users_with_their_macros() {
    let m = fake::start(0, at(b'E', || one(b'a', b"")));
    let extra = format!(
        "[auth]\nplaintext_on_loopback = true\n\n[[milter]]\nname = \"m\"\naddress = \"inet:{}\"\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\nmilters = [\"m\"]\n",
        m.addr
    );
    let s = TestServer::start(&extra);
    s.add_user("alice@example.test", "correct horse");
    let mut c = Client::connect(s.addr_of("submission"), None);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    // base64 of "\0alice@example.test\0correct horse".
    assert!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl").starts_with("235"));
    let r = c.send_mail("alice@example.test", &["bob@example.test"], MAIL);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    let seen = m.seen.lock().unwrap();
    let macros: String =
        seen.iter().filter(|(c, _)| *c == b'D').map(|(_, d)| String::from_utf8_lossy(d).into_owned()).collect();
    assert!(macros.contains("{auth_type}\0PLAIN\0{auth_authen}\0alice@example.test\0"), "{macros:?}");
    assert!(macros.contains("{daemon_name}\0submission\0"), "{macros:?}");
}

/// Every history record written so far.
fn history(s: &TestServer) -> String {
    let Ok(dir) = std::fs::read_dir(s.data().join("history")) else { return String::new() };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
}

#[test]
fn trusted_and_authenticated_clients_are_filtered_unless_the_milter_skips_them() {
    let m = fake::start(0, at(b'M', || one(b'r', b"")));
    let trusted = "trusted_networks = [\"127.0.0.3/32\"]\n";
    let listener = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\nmilters = [\"m\"]\n";
    for (skip, expect) in [("false", "550"), ("true", "250")] {
        let extra = format!(
            "{trusted}[[milter]]\nname = \"m\"\naddress = \"inet:{}\"\nskip_authenticated = {skip}\n\n{listener}",
            m.addr
        );
        let s = TestServer::start(&extra);
        let mut c = Client::connect(s.listeners[1].0, Some("127.0.0.3"));
        assert!(c.cmd("EHLO client.test").starts_with("250"));
        let r = c.cmd("MAIL FROM:<a@remote.test>");
        assert!(r.starts_with(expect), "skip_authenticated = {skip}: {r}");
        // An untrusted client is filtered either way.
        let mut other = Client::connect(s.listeners[1].0, Some("127.0.0.4"));
        assert!(other.cmd("EHLO client.test").starts_with("250"));
        assert!(other.cmd("MAIL FROM:<a@remote.test>").starts_with("550"));
    }
}

#[test]
fn quarantine_accepts_and_holds() {
    let m = fake::start(0, at(b'E', || Answer::Send(vec![(b'q', b"looks odd\0".to_vec()), (b'c', vec![])])));
    let s = server_with(&m, "");
    let r = send(&mut filtered(&s));
    assert!(r.starts_with("250"), "{r}");
    assert!(common::wait_log(&s, "quarantined: held", 5), "{}", s.log());
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.messages("bob").is_empty(), "a quarantined message is not delivered");
    assert_eq!(s.spooled_envelopes().len(), 1, "it waits in the queue, held");
    let id = common::queue_id(&r);
    assert!(history(&s).lines().any(|l| l.contains(&id) && l.contains("\"hold\"")), "{}", history(&s));
}

#[test]
fn a_milter_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("milter.sock");
    let m =
        fake::start_unix(&path, 0, at(b'E', || Answer::Send(vec![(b'h', b"X-Unix\0yes\0".to_vec()), (b'c', vec![])])));
    let extra = format!(
        "[[milter]]\nname = \"m\"\naddress = \"unix:{}\"\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\nmilters = [\"m\"]\n",
        path.display()
    );
    let s = TestServer::start(&extra);
    let r = send(&mut filtered(&s));
    assert!(r.starts_with("250"), "{r}");
    let got = s.wait_for("bob", 1);
    assert!(got[0].contains("\nX-Unix: yes\n"), "{}", got[0]);
    assert_eq!(*m.connections.lock().unwrap(), 1);
}

#[test]
fn progress_keeps_a_slow_milter_alive() {
    let m = fake::start(0, at(b'E', || Answer::Later(Duration::from_millis(600), vec![(b'p', vec![])])));
    // Each packet within the 1 s command timeout, but the end of message never decides:
    // the 3 s end-of-message bound ends it.
    let s = server_with(&m, "command_timeout = \"1s\"\neom_timeout = \"3s\"\n");
    let _ = &m;
    let r = send(&mut filtered(&s));
    assert_eq!(r, "451 4.7.1 Content filter unavailable, try again later\r\n");
    let m2 =
        fake::start(0, at(b'E', || Answer::Later(Duration::from_millis(700), vec![(b'p', vec![]), (b'a', vec![])])));
    let s2 = server_with(&m2, "command_timeout = \"1s\"\n");
    assert!(send(&mut filtered(&s2)).starts_with("250"));
}

fn fails(answer: impl Fn() -> Answer + Send + Sync + 'static, stage: u8) {
    let m = fake::start(0, at(stage, answer));
    let s = server_with(&m, "command_timeout = \"1s\"\n");
    let mut c = filtered(&s);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    // The first refusal, whichever stage the milter failed at.
    let mut r = c.cmd("MAIL FROM:<a@remote.test>");
    if r.starts_with("250") {
        r = c.cmd("RCPT TO:<bob@example.test>");
    }
    if r.starts_with("250") {
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
        r = c.reply();
    }
    assert_eq!(r, "451 4.7.1 Content filter unavailable, try again later\r\n", "stage {}", char::from(stage));
    assert!(s.messages("bob").is_empty());
    assert!(common::wait_log(&s, "milter failed", 5), "{}", s.log());
}

#[test]
fn failures_take_the_default_action_tempfail() {
    fails(|| Answer::Later(Duration::from_secs(3), vec![(b'c', vec![])]), b'E'); // hang
    fails(|| Answer::Close, b'B'); // closes mid-body
    fails(|| Answer::Raw(vec![0x7f, 0xff, 0xff, 0xff, b'h']), b'M'); // oversized packet
    fails(|| one(b'Z', b""), b'R'); // unknown reply
    fails(|| Answer::Raw(vec![0, 0, 0, 0]), b'H'); // zero length
    fails(|| one(b'h', b"X-Early\0no\0"), b'M'); // an edit before the end of message
}

#[test]
fn default_action_accept_lets_mail_through_when_the_milter_is_down() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = FakeMilter { addr: dead, seen: Default::default(), connections: Default::default() };
    let s = server_with(&down, "default_action = \"accept\"\nconnect_timeout = \"1s\"\n");
    assert!(send(&mut filtered(&s)).starts_with("250"));
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    let s2 = server_with(&down, "connect_timeout = \"1s\"\n");
    let mut c = filtered(&s2);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>"), "451 4.7.1 Content filter unavailable, try again later\r\n");
}

#[test]
fn no_reply_flags_and_skip_are_honoured() {
    // NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_HDR | NR_EOH, SKIP, NOHELO.
    let proto = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x400 | 0x2;
    let m = fake::start(proto, |code, _| match code {
        b'B' => one(b's', b""),
        b'E' => one(b'a', b""),
        // Any reply to a stage it said it would not answer would desynchronise: none is sent.
        _ => Answer::Nothing,
    });
    let s = server_with(&m, "command_timeout = \"2s\"\n");
    let mut c = filtered(&s);
    let big = format!("Subject: big\r\n\r\n{}", "x".repeat(78).repeat(2000).as_str());
    let r = c.send_mail("a@remote.test", &["bob@example.test"], &big);
    assert!(r.starts_with("250"), "{r}");
    let codes = sent_codes(&m);
    assert!(!codes.contains(&b'H'), "NOHELO");
    assert_eq!(codes.iter().filter(|c| **c == b'B').count(), 1, "SKIP after the first chunk");
}

#[test]
fn one_milter_connection_serves_the_session_and_idle_sessions_hold_none() {
    let m = fake::start(0, at(b'E', || one(b'a', b"")));
    let s = server_with(&m, "");
    let mut idle = filtered(&s);
    assert!(idle.cmd("EHLO idle.test").starts_with("250"));
    let mut c = filtered(&s);
    assert!(send(&mut c).starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<x@remote.test>").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    let r = c.cmd("MAIL FROM:<y@remote.test>");
    assert!(r.starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(*m.connections.lock().unwrap(), 1, "the idle session opened none");
    let codes = sent_codes(&m);
    assert!(codes.contains(&b'A'), "RSET after MAIL aborts the milter's transaction");
    assert_eq!(codes.last(), Some(&b'Q'));
}

#[test]
fn a_reload_changes_the_milter_for_the_next_transaction() {
    let refuses = fake::start(0, at(b'M', || one(b'r', b"")));
    let accepts = fake::start(0, at(b'E', || one(b'a', b"")));
    let s = server_with(&refuses, "");
    let mut before = filtered(&s);
    assert!(before.cmd("EHLO client.test").starts_with("250"));
    assert!(before.cmd("MAIL FROM:<a@remote.test>").starts_with("550 5.7.1"));
    let extra = format!(
        "[[milter]]\nname = \"m\"\naddress = \"inet:{}\"\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\nmilters = [\"m\"]\n",
        accepts.addr
    );
    s.rewrite_config(&extra);
    s.reload().unwrap();
    // The session open across the reload uses the new milter at its next MAIL.
    assert!(before.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
    assert!(send(&mut filtered(&s)).starts_with("250"));
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    // And a listener can drop its milters.
    s.rewrite_config("[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\n");
    s.reload().unwrap();
    let n = *accepts.connections.lock().unwrap();
    assert!(send(&mut filtered(&s)).starts_with("250"));
    assert_eq!(*accepts.connections.lock().unwrap(), n, "no milter asked after the reload");
}
