//! Socket tests: the real binary on a loopback port, driven over TCP.

mod common;
use common::{Client, TestServer, queue_id};

#[test]
fn full_transaction_is_delivered_with_trace_headers() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let r = c.send_mail("sender@remote.test", &["alice@example.test"], "Subject: hello\r\n\r\nHi Alice.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let id = queue_id(&r);
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    let msgs = s.wait_for("alice", 1);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert!(m.starts_with("Return-Path: <sender@remote.test>\nDelivered-To: alice@example.test\nReceived: from client.test ([127.0.0.1])\n"), "{m}");
    assert!(m.contains(&format!("with ESMTP id {id}")), "{m}");
    assert!(m.contains("for <alice@example.test>;"), "{m}");
    assert!(m.ends_with("Subject: hello\n\nHi Alice.\n"), "{m}");
    // The "delivered" line is written just after the file appears: wait for it.
    assert!(common::wait_log(&s, "result=delivered", 10) || s.log().contains("result=\"delivered\""), "{}", s.log());
    let log = s.log();
    assert!(log.contains(&format!("queue_id={id}")) && log.contains("accepted"), "{log}");
}

#[test]
fn pipelined_transaction() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n");
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    let codes: Vec<&str> = replies.iter().map(|r| &r[..9]).collect();
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 2.0.0"]);
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    assert!(c.reply().starts_with("221"));
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    assert_eq!(s.wait_for("carol", 1).len(), 1);
}

#[test]
fn bdat_transaction() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME");
    c.cmd("RCPT TO:<alice@example.test>");
    let part1 = "Subject: chunked\r\n\r\n";
    let part2 = ".first line starts with a dot\r\nlast\r\n";
    c.send(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes());
    assert!(c.reply().starts_with("250 2.0.0"));
    c.send(format!("BDAT {} LAST\r\n{part2}", part2.len()).as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    let m = &s.wait_for("alice", 1)[0];
    assert!(m.ends_with("Subject: chunked\n\n.first line starts with a dot\nlast\n"), "{m}");
}

#[test]
fn several_recipients_and_an_alias_one_copy_each() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let r = c.send_mail(
        "a@remote.test",
        &["alice@example.test", "team@example.test", "Carol@Example.TEST"],
        "Subject: all\r\n\r\nx",
    );
    assert!(r.starts_with("250"), "{r}");
    // alice is reached directly and through the alias: one copy.
    assert_eq!(s.wait_for("alice", 1).len(), 1);
    assert_eq!(s.wait_for("bob", 1).len(), 1);
    assert_eq!(s.wait_for("carol", 1).len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(s.messages("alice").len(), 1);
    let bob = &s.messages("bob")[0];
    assert!(bob.contains("Delivered-To: bob@example.test\n"), "{bob}");
    assert!(!bob.contains("\tfor <"), "several recipients: no 'for' clause\n{bob}");
}

#[test]
fn plus_addressing_delivers_to_the_base_mailbox() {
    let s = TestServer::start("");
    let mut c = s.connect();
    assert!(c.send_mail("a@remote.test", &["bob+lists@example.test"], "x").starts_with("250"));
    assert_eq!(s.wait_for("bob", 1).len(), 1);
}

#[test]
fn alias_with_remote_target_stays_queued_for_the_remote_part() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let r = c.send_mail("a@remote.test", &["fwd@example.test"], "Subject: fwd\r\n\r\nx");
    let id = queue_id(&r);
    assert_eq!(s.wait_for("alice", 1).len(), 1);
    // The remote copy waits in the spool for outbound delivery.
    let spooled = s.spooled_envelopes().iter().any(|line| line.contains(&format!("\"id\":\"{id}\"")));
    assert!(spooled, "message {id} should still be in the spool");
}

#[test]
fn unknown_user_and_relaying_are_refused_at_rcpt() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@remote.test>");
    assert!(c.cmd("RCPT TO:<nobody@example.test>").starts_with("550 5.1.1"));
    assert!(c.cmd("RCPT TO:<victim@elsewhere.test>").starts_with("550 5.7.1"));
    assert!(c.cmd("RCPT TO:<alice@[127.0.0.1]>").starts_with("550 5.7.1"));
    assert!(c.cmd("RCPT TO:<postmaster>").starts_with("250 2.1.5"));
    assert!(c.cmd("DATA").starts_with("354"));
}

#[test]
fn recipient_limit() {
    let s = TestServer::start("[limits]\nmax_recipients = 2\n");
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@remote.test>");
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<carol@example.test>").starts_with("452 4.5.3"));
}

#[test]
fn oversize_message_is_refused_and_nothing_stored() {
    let s = TestServer::start("[limits]\nmax_message_size = 10000\n");
    let mut c = s.connect();
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("250-SIZE 10000\r\n"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<a@remote.test> SIZE=20000").starts_with("552 5.3.4"));
    c.cmd("MAIL FROM:<a@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("DATA");
    let line = "x".repeat(998);
    for _ in 0..30 {
        c.send(format!("{line}\r\n").as_bytes());
    }
    c.send(b".\r\n");
    assert!(c.reply().starts_with("552 5.3.4"));
    // The session is still usable.
    assert!(c.cmd("NOOP").starts_with("250"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(s.messages("alice").is_empty());
}

#[test]
fn bad_sequences() {
    let s = TestServer::start("");
    let mut c = s.connect();
    assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("503 5.5.1"));
    assert!(c.cmd("FROB").starts_with("500 5.5.1"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("503 5.5.1"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1"));
    assert!(c.cmd("MAIL FROM:a@remote.test").starts_with("501 5.5.2"));
    assert!(c.cmd("MAIL FROM:<a@remote.test> FOO=BAR").starts_with("555 5.5.4"));
    assert!(c.cmd("VRFY alice").starts_with("252"));
    assert!(c.cmd("HELP").starts_with("214"));
}

#[test]
fn too_many_errors_close_the_connection() {
    let s = TestServer::start("");
    let mut c = s.connect();
    for _ in 0..10 {
        assert!(c.cmd("FROB").starts_with("500"));
    }
    c.send(b"FROB\r\n");
    let rest = c.read_to_end();
    assert!(rest.contains("421 4.7.0"), "{rest}");
}

#[test]
fn over_long_command_line() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let long = format!("NOOP {}", "a".repeat(1000));
    assert!(c.cmd(&long).starts_with("500 5.5.6"));
    assert!(c.cmd("NOOP").starts_with("250"));
}

/// SMTP smuggling over a real socket: the bogus terminators neither end the first message nor
/// let the text after them run as commands; the connection is closed and nothing delivered.
#[test]
fn smuggling_variants_are_refused() {
    let s = TestServer::start("");
    for sep in ["\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n"] {
        let mut c = s.connect();
        c.cmd("EHLO client.test");
        c.cmd("MAIL FROM:<a@remote.test>");
        c.cmd("RCPT TO:<alice@example.test>");
        c.cmd("DATA");
        let attack = format!(
            "Subject: first\r\n\r\nfirst{sep}MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
        );
        c.send(attack.as_bytes());
        let rest = c.read_to_end();
        assert!(rest.starts_with("521 5.5.2"), "{sep:?}: {rest}");
        assert!(!rest.contains("250"), "{sep:?}: {rest}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(s.messages("alice").is_empty());
    assert!(s.messages("bob").is_empty());
}

#[test]
fn connection_limit_per_ip() {
    let s = TestServer::start("[limits]\nmax_connections_per_ip = 2\n");
    let _a = s.connect();
    let _b = s.connect();
    let mut third = std::net::TcpStream::connect(s.addr).unwrap();
    third.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut buf = String::new();
    std::io::Read::read_to_string(&mut third, &mut buf).unwrap();
    assert!(buf.starts_with("421 4.7.0"), "{buf}");
    // Another client IP is not affected.
    let mut other = Client::connect(s.addr, Some("127.0.0.2"));
    assert!(other.cmd("NOOP").starts_with("250"));
}

#[test]
fn http_request_gets_closed() {
    let s = TestServer::start("");
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let rest = c.read_to_end();
    assert!(rest.starts_with("221 2.7.0"), "{rest}");
}

#[test]
fn timeout_closes_idle_session() {
    let s = TestServer::start("[timeouts]\ncommand = \"1s\"\n");
    let mut c = s.connect();
    let rest = c.read_to_end();
    assert!(rest.starts_with("421 4.4.2"), "{rest}");
}

/// A temporary delivery failure (here: the mailbox path is blocked by a file, as a full or
/// broken disk would block it) keeps the message queued; it is retried on the schedule and
/// delivered once the problem is gone.
#[test]
fn temporary_delivery_failure_is_retried_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("data").join("mail").join("example.test");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("alice"), b"not a maildir").unwrap();
    let s = TestServer::start_in(dir, "[delivery]\nretry_schedule = [\"1s\"]\n");
    let mut c = s.connect();
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: retry\r\n\r\nx");
    let id = queue_id(&r);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.log().contains("result=deferred") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(s.log().contains("result=deferred"), "{}", s.log());
    assert!(s.spooled_envelopes().iter().any(|e| e.contains(&id)), "still queued while failing");
    std::fs::remove_file(s.data().join("mail/example.test/alice")).unwrap();
    let msgs = s.wait_for("alice", 1);
    assert_eq!(msgs.len(), 1, "{}", s.log());
    assert!(msgs[0].contains(&format!("id {id}")));
}

#[test]
fn check_config_prints_effective_config_or_names_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dakiya")).arg("check-config").arg(&good).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hostname = \"mx.example.test\"") && text.contains("max_recipients = 100"), "{text}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "hostname = \"mx.example.test\"\n[limits]\nmax_recipients = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dakiya")).arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml") && err.contains("line 3") && err.contains("limits.max_recipients"), "{err}");
}

/// Maildir++ quota (docs/dovecot.md, "Quota"): a message that does not fit is accepted and
/// deferred as 4.2.2 (maildirsize untouched); once `maildirsize` says the mailbox is full,
/// RCPT is refused with 452 4.2.2; an alias is refused only when all its mailboxes are full.
#[test]
fn quota_defers_at_delivery_and_refuses_at_rcpt_when_full() {
    let s = TestServer::start("[domains.\"example.test\".mailbox_quota]\nalice = 1000\n");
    let mut c = s.connect();
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: small\r\n\r\nx");
    assert!(r.starts_with("250"), "{r}");
    let first = s.wait_for("alice", 1);
    let size = std::fs::read_to_string(s.maildir("alice").with_file_name("maildirsize")).unwrap();
    assert_eq!(size, format!("1000S,0C\n0 0\n{} 1\n", first[0].len()));
    let big = format!("Subject: big\r\n\r\n{}", "y".repeat(1000));
    assert!(c.send_mail("a@remote.test", &["alice@example.test"], &big).starts_with("250"));
    assert!(common::wait_log(&s, "mailbox full", 10), "{}", s.log());
    assert_eq!(s.messages("alice").len(), 1);
    assert_eq!(std::fs::read_to_string(s.maildir("alice").with_file_name("maildirsize")).unwrap(), size);
    // Another agent (Dovecot) fills the rest.
    let used: usize = first[0].len();
    let mut f =
        std::fs::OpenOptions::new().append(true).open(s.maildir("alice").with_file_name("maildirsize")).unwrap();
    std::io::Write::write_all(&mut f, format!("{} 1\n", 1000 - used).as_bytes()).unwrap();
    c.cmd("RSET");
    c.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(c.cmd("RCPT TO:<alice@example.test>"), "452 4.2.2 Mailbox full\r\n");
    assert!(c.cmd("RCPT TO:<team@example.test>").starts_with("250"), "bob has room");
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"), "no quota");
}

/// RFC 5321 §6.3: the delivery run's loop check counts our own `Received:` field too. The
/// count now comes from the session (counted as the message arrived), not from re-reading
/// the spool: 99 fields from the client plus ours (100) are delivered, 100 plus ours (101)
/// fail with 5.4.6 and the sender gets the notice.
#[test]
fn the_loop_check_counts_our_received_field_from_the_session() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let hops = |n: usize| "Received: from a.test by b.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(n);
    let ok = c.send_mail("bob@example.test", &["alice@example.test"], &format!("{}Subject: 100\r\n\r\nx", hops(99)));
    assert!(ok.starts_with("250"), "{ok}");
    assert!(s.wait_for("alice", 1).len() == 1, "100 Received: fields are not a loop: {}", s.log());
    let looping =
        c.send_mail("bob@example.test", &["alice@example.test"], &format!("{}Subject: 101\r\n\r\nx", hops(100)));
    assert!(looping.starts_with("250"), "{looping}");
    let bounces = s.wait_for("bob", 1);
    assert_eq!(bounces.len(), 1, "{}", s.log());
    assert!(bounces[0].contains("Status: 5.4.6"), "{}", bounces[0]);
    assert!(s.log().contains("received=101"), "{}", s.log());
    assert_eq!(s.messages("alice").len(), 1, "the looping message was not delivered");
}

/// The names in the spool's `queue/` directory.
fn queue_names(s: &TestServer) -> Vec<String> {
    let queue = s.data().join("spool/queue");
    let mut names: Vec<String> =
        std::fs::read_dir(&queue).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `[delivery] spool_slots` (docs/spool-slots.md): by default a commit round is written into a
/// slot; with 0 every round writes a batch file named after its first message, and the message
/// is queued all the same.
#[test]
fn spool_slots_zero_commits_into_batch_files() {
    for (extra, slots) in [("", true), ("[delivery]\nspool_slots = 0\n", false)] {
        let s = TestServer::start(extra);
        let mut c = s.connect();
        // An alias with a remote target: the remote copy stays queued (no route answers).
        let id = queue_id(&c.send_mail("a@remote.test", &["fwd@example.test"], "Subject: slots\r\n\r\nx"));
        assert_eq!(s.wait_for("alice", 1).len(), 1);
        assert!(s.spooled_envelopes().iter().any(|e| e.contains(&id)), "{id} queued ({extra:?})");
        let names = queue_names(&s);
        assert_eq!(names.iter().any(|n| n.starts_with("slot-") && n.ends_with(".msg")), slots, "{extra:?}: {names:?}");
        assert_eq!(names.contains(&format!("{id}.msg")), !slots, "{extra:?}: {names:?}");
    }
}
