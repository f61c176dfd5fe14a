//! Outbound delivery end to end: one dakiya relays to a second dakiya acting as the remote
//! MX (on another loopback port), via a static route or via MX records from a DNS server the
//! test runs on loopback. Retries, expiry, delay notices and bounces (DSN) are checked in the
//! sender's Maildir, parsed with mail-parser.

mod common;

use common::{Client, TestServer, queue_id, wait_files};
use dakiya_route::testdns::{TestDns, Zone};
use mail_parser::{MessageParser, MimeHeaders};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The remote MX: domain `remote.test` with mailboxes bob and dave only (anyone else gets
/// 550 5.1.1 at RCPT).
fn remote(extra: &str) -> TestServer {
    TestServer::start(&format!("{extra}\n[domains.\"remote.test\"]\nmailboxes = [\"bob\", \"dave\"]\n"))
}

/// The sending dakiya: trusts 127.0.0.1 to relay, retries every second.
fn sender(extra_top: &str, tables: &str) -> TestServer {
    TestServer::start(&sender_config(extra_top, tables))
}

fn sender_config(extra_top: &str, tables: &str) -> String {
    format!("trusted_networks = [\"127.0.0.1/32\"]\n{extra_top}\n[delivery]\nretry_schedule = [\"1s\"]\n{tables}")
}

fn route_to(port: u16, tls: &str) -> String {
    format!(
        "[outbound]\nhelo_name = \"sender.test\"\n[outbound.routes.\"remote.test\"]\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"{tls}\"\n"
    )
}

fn remote_box(server: &TestServer, mailbox: &str) -> PathBuf {
    server.data().join("mail").join("remote.test").join(mailbox).join("new")
}

/// Waits up to 30 s for `cond`.
fn wait_until(what: &str, server: &TestServer, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n--- log ---\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A message as sent on the wire: its last line starts with a dot, so it is dot-stuffed here
/// and must arrive as `.leading dot` after two SMTP hops.
fn message(subject: &str) -> String {
    format!("From: alice@example.test\r\nTo: someone\r\nSubject: {subject}\r\n\r\nHello there.\r\n..leading dot\r\n")
}

/// A port with nothing listening on it (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `message/delivery-status` part of a DSN, as text.
fn delivery_status(raw: &str) -> String {
    let msg = MessageParser::default().parse(raw.as_bytes()).expect("DSN parses");
    let ct = msg.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let part = msg
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("delivery-status")))
        .expect("a message/delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}

#[test]
fn relays_to_a_second_dakiya_over_required_tls_and_reuses_the_connection() {
    let b = remote("");
    let a = sender("", &route_to(b.addr.port(), "require"));
    let mut c = a.connect();
    let r = c.send_mail("alice@example.test", &["bob@remote.test"], &message("one"));
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(wait_files(&remote_box(&b, "bob"), 1).len(), 1, "A log:\n{}", a.log());
    // The second message finds the first one's connection idle and reuses it.
    let r = c.send_mail("alice@example.test", &["dave@remote.test", "bob@remote.test"], &message("two"));
    assert!(r.starts_with("250"), "{r}");
    let bob = wait_files(&remote_box(&b, "bob"), 2);
    assert_eq!(bob.len(), 2, "A log:\n{}\nB log:\n{}", a.log(), b.log());
    let dave = wait_files(&remote_box(&b, "dave"), 1);
    assert_eq!(dave.len(), 1);
    for m in bob.iter().chain(&dave) {
        // B's trace header shows the TLS session A opened, and A's EHLO name.
        assert!(m.contains("from sender.test"), "{m}");
        assert!(m.contains("using TLSv1.3"), "{m}");
        assert!(m.contains("\n.leading dot\n"), "dot-stuffing undone: {m}");
    }
    assert_eq!(b.log().matches("connection opened").count(), 1, "B log:\n{}", b.log());
    assert_eq!(b.log().matches("TLS established").count(), 1);
    // Nothing left in A's queue, no bounce.
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert!(a.messages("alice").is_empty());
}

#[test]
fn verify_mode_checks_the_certificate_against_the_configured_ca() {
    let b = remote("");
    let ca = b.data().join("tls").join("cert.pem");
    // Without the CA the self-signed certificate is refused: the message stays deferred.
    let unverified = sender("", &route_to(b.addr.port(), "verify"));
    let r = unverified.connect().send_mail("alice@example.test", &["bob@remote.test"], &message("unverified"));
    assert!(r.starts_with("250"), "{r}");
    wait_until("a deferral", &unverified, || unverified.log().contains("result=deferred"));
    assert!(remote_box(&b, "bob").read_dir().map(|d| d.count()).unwrap_or(0) == 0);
    // With B's certificate as trust anchor the same route verifies (SAN 127.0.0.1).
    let tables = route_to(b.addr.port(), "verify").replace(
        "helo_name = \"sender.test\"",
        &format!("helo_name = \"sender.test\"\ntls_ca_file = {:?}", ca.display().to_string()),
    );
    let verified = sender("", &tables);
    let r = verified.connect().send_mail("alice@example.test", &["dave@remote.test"], &message("verified"));
    assert!(r.starts_with("250"), "{r}");
    let dave = wait_files(&remote_box(&b, "dave"), 1);
    assert_eq!(dave.len(), 1, "{}", verified.log());
    assert!(dave[0].contains("using TLSv1.3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mx_lookup_through_the_test_dns_server() {
    let b = remote("");
    let port = b.addr.port();
    let zone = Zone::new()
        .mx("remote.test", 10, "mx1.remote.test")
        .a("mx1.remote.test", Ipv4Addr::LOCALHOST)
        // No MX: the domain's own address (implicit MX, RFC 5321 §5.1).
        .a("implicit.test", Ipv4Addr::LOCALHOST)
        .null_mx("nomail.test");
    let dns = TestDns::start(zone).await;
    let tables =
        format!("[outbound]\nnameservers = [\"{}\"]\nsmtp_port = {port}\nip_preference = \"ipv4_only\"\n", dns.addr);
    let a = tokio::task::spawn_blocking(move || sender("", &tables)).await.unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || {
        let mut c = a.connect();
        let r = c.send_mail("alice@example.test", &["bob@remote.test"], &message("via MX"));
        assert!(r.starts_with("250"), "{r}");
        let r = c.send_mail("alice@example.test", &["nobody@nomail.test"], &message("null MX"));
        assert!(r.starts_with("250"), "{r}");
        (a, b)
    })
    .await
    .unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || {
        let bob = wait_files(&remote_box(&b, "bob"), 1);
        assert_eq!(bob.len(), 1, "{}", a.log());
        // Null MX (RFC 7505): an immediate bounce with 5.1.10, no retries.
        let bounces = wait_files(&a.maildir("alice"), 1);
        assert_eq!(bounces.len(), 1, "{}", a.log());
        let status = delivery_status(&bounces[0]);
        assert!(status.contains("Action: failed"), "{status}");
        assert!(status.contains("Status: 5.1.10"), "{status}");
        assert!(status.contains("Final-Recipient: rfc822; nobody@nomail.test"), "{status}");
        (a, b)
    })
    .await
    .unwrap();
    let queries = dns.queries();
    assert!(queries.iter().any(|q| q == "remote.test. MX"), "{queries:?}");
    assert!(queries.iter().any(|q| q == "mx1.remote.test. A"), "{queries:?}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_mx_falls_back_to_the_domains_address() {
    let b = TestServer::start("[domains.\"implicit.test\"]\nany_mailbox = true\n");
    let port = b.addr.port();
    let dns = TestDns::start(Zone::new().a("implicit.test", Ipv4Addr::LOCALHOST)).await;
    let tables =
        format!("[outbound]\nnameservers = [\"{}\"]\nsmtp_port = {port}\nip_preference = \"ipv4_only\"\n", dns.addr);
    tokio::task::spawn_blocking(move || {
        let a = sender("", &tables);
        let r = a.connect().send_mail("alice@example.test", &["erin@implicit.test"], &message("implicit"));
        assert!(r.starts_with("250"), "{r}");
        let dir = b.data().join("mail").join("implicit.test").join("erin").join("new");
        assert_eq!(wait_files(&dir, 1).len(), 1, "{}", a.log());
    })
    .await
    .unwrap();
    assert!(dns.queries().iter().any(|q| q == "implicit.test. MX"));
}

#[test]
fn mixed_result_gives_one_bounce_for_the_failed_recipients() {
    let b = remote("");
    let a = sender("", &route_to(b.addr.port(), "opportunistic"));
    let mut c = a.connect();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<alice@example.test> RET=HDRS ENVID=env-42").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@remote.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<nosuch@remote.test> ORCPT=rfc822;NoSuch@Remote.test").starts_with("250"));
    assert!(c.cmd("RCPT TO:<other@remote.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("mixed").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    let id = queue_id(&r);
    assert_eq!(wait_files(&remote_box(&b, "bob"), 1).len(), 1);
    let bounces = wait_files(&a.maildir("alice"), 1);
    assert_eq!(bounces.len(), 1, "{}", a.log());
    let dsn = &bounces[0];
    let parsed = MessageParser::default().parse(dsn.as_bytes()).unwrap();
    assert!(dsn.starts_with("Return-Path: <>\n"), "sent from the null reverse-path: {dsn}");
    assert!(parsed.subject().unwrap().contains("Undelivered"));
    let status = delivery_status(dsn);
    assert!(status.contains("Reporting-MTA: dns; mx.example.test"), "{status}");
    assert!(status.contains("Original-Envelope-Id: env-42"), "{status}");
    assert!(status.contains(&format!("X-Dakiya-Queue-ID: {id}")), "{status}");
    assert!(status.contains("Final-Recipient: rfc822; nosuch@remote.test"), "{status}");
    assert!(status.contains("Original-Recipient: rfc822; NoSuch@Remote.test"), "{status}");
    assert!(status.contains("Final-Recipient: rfc822; other@remote.test"), "{status}");
    assert!(!status.contains("bob@remote.test"), "the delivered recipient is not reported: {status}");
    assert_eq!(status.matches("Action: failed").count(), 2, "{status}");
    assert!(status.contains("Status: 5.1.1"), "{status}");
    assert!(status.contains("Remote-MTA: dns; 127.0.0.1"), "{status}");
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{status}");
    // RET=HDRS: the original's header section comes back, not its body.
    assert!(parsed.parts.iter().any(|p| p.content_type().is_some_and(|c| c.subtype() == Some("rfc822-headers"))));
    assert!(dsn.contains("Subject: mixed"));
    assert!(!dsn.contains("Hello there."));
    // One notice only, and the original left the queue.
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert_eq!(a.messages("alice").len(), 1);
}

#[test]
fn null_sender_failures_are_never_bounced() {
    let b = remote("");
    let a = sender("", &route_to(b.addr.port(), "none"));
    let r = a.connect().send_mail("", &["nosuch@remote.test"], &message("bounce of a bounce"));
    assert!(r.starts_with("250"), "{r}");
    wait_until("the failure", &a, || a.log().contains("result=bounced"));
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert!(a.messages("alice").is_empty());
    assert!(a.messages("postmaster").is_empty());
}

#[test]
fn unreachable_host_is_retried_across_a_restart_then_delivered() {
    let port = closed_port();
    // A process, to be killed (SIGKILL) in the middle of retrying.
    let a = TestServer::spawn(&sender_config("", &route_to(port, "opportunistic")));
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &message("patience"));
    assert!(r.starts_with("250"), "{r}");
    wait_until("two deferrals", &a, || a.log().matches("result=deferred").count() >= 2);
    // Restart in the middle of retrying: the attempt count and next attempt are on disk.
    let dir = a.kill();
    let status_logs: Vec<String> = std::fs::read_dir(dir.path().join("data/spool/queue"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".status"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(status_logs.iter().any(|l| l.contains("\"deferred\"") && l.contains("4.4.1")), "{status_logs:?}");
    let tables = format!("[delivery]\nretry_schedule = [\"1s\"]\n{}", route_to(port, "opportunistic"));
    let a = TestServer::start_in(dir, &format!("trusted_networks = [\"127.0.0.1/32\"]\n{tables}"));
    // The remote comes up on the port the route names.
    let b = remote(&format!("[[listen]]\naddress = \"127.0.0.1:{port}\"\nrole = \"mx\"\nverify = false\n"));
    let bob = wait_files(&remote_box(&b, "bob"), 1);
    assert_eq!(bob.len(), 1, "A log:\n{}", a.log());
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert!(a.messages("alice").is_empty(), "no bounce for a message that got through");
}

#[test]
fn expired_message_bounces_with_4_4_7() {
    let port = closed_port();
    let a = TestServer::start(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"1s\"]\nmax_age = \"2s\"\n{}",
        route_to(port, "opportunistic")
    ));
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &message("too late"));
    assert!(r.starts_with("250"), "{r}");
    let bounces = wait_files(&a.maildir("alice"), 1);
    assert_eq!(bounces.len(), 1, "{}", a.log());
    let status = delivery_status(&bounces[0]);
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 4.4.7"), "{status}");
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
}

#[test]
fn delay_notice_is_sent_once_while_retrying() {
    let port = closed_port();
    let a = TestServer::start(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"1s\"]\ndelay_notice = \"1s\"\n{}",
        route_to(port, "opportunistic")
    ));
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &message("slow"));
    assert!(r.starts_with("250"), "{r}");
    let notices = wait_files(&a.maildir("alice"), 1);
    assert_eq!(notices.len(), 1, "{}", a.log());
    let status = delivery_status(&notices[0]);
    assert!(status.contains("Action: delayed"), "{status}");
    assert!(status.contains("Will-Retry-Until:"), "{status}");
    assert!(notices[0].contains("Delayed Mail"));
    // Further retries send no second notice, and the message is still queued.
    wait_until("more deferrals", &a, || a.log().matches("result=deferred").count() >= 4);
    assert_eq!(a.messages("alice").len(), 1);
    assert_eq!(a.spooled_envelopes().len(), 1);
}

#[test]
fn notify_never_and_success_are_honoured() {
    let b = remote("");
    let a = sender("", &route_to(b.addr.port(), "none"));
    let mut c = a.connect();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<carol@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<nosuch@remote.test> NOTIFY=NEVER").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("notify").as_bytes());
    assert!(c.cmd(".").starts_with("250"));
    // The local delivery asked for a success notice; the failure asked for nothing.
    let notices = wait_files(&a.maildir("carol"), 1);
    assert_eq!(notices.len(), 1, "{}", a.log());
    let status = delivery_status(&notices[0]);
    assert!(status.contains("Action: delivered"), "{status}");
    assert!(status.contains("Final-Recipient: rfc822; bob@example.test"), "{status}");
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert_eq!(a.messages("carol").len(), 1);
}

#[test]
fn a_looping_message_fails_with_5_4_6() {
    let b = remote("");
    let a = sender("", &route_to(b.addr.port(), "none"));
    let mut body = String::new();
    for i in 0..101 {
        body.push_str(&format!("Received: from hop{i}.test by hop{}.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n", i + 1));
    }
    body.push_str(&message("loop"));
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &body);
    assert!(r.starts_with("250"), "{r}");
    let bounces = wait_files(&a.maildir("alice"), 1);
    assert_eq!(bounces.len(), 1, "{}", a.log());
    assert!(delivery_status(&bounces[0]).contains("Status: 5.4.6"));
    assert!(remote_box(&b, "bob").read_dir().map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn relayed_local_alias_target_is_delivered_remotely() {
    // `fwd@example.test` forwards to a local mailbox and to someone@elsewhere.test; an
    // untrusted client may send to it (it is a local address), and the remote copy goes out.
    let b = TestServer::start("[domains.\"elsewhere.test\"]\nany_mailbox = true\n");
    let tables =
        format!("[outbound.routes.\"elsewhere.test\"]\nhosts = [\"127.0.0.1:{}\"]\ntls = \"require\"\n", b.addr.port());
    let a = TestServer::start(&tables);
    let mut c = Client::connect(a.addr, Some("127.0.0.2"));
    let r = c.send_mail("stranger@outside.test", &["fwd@example.test"], &message("forwarded"));
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(a.wait_for("alice", 1).len(), 1);
    let dir = b.data().join("mail").join("elsewhere.test").join("someone").join("new");
    assert_eq!(wait_files(&dir, 1).len(), 1, "{}", a.log());
    let _: SocketAddr = a.addr;
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_servfail_is_a_temporary_failure() {
    let dns = TestDns::start(Zone::new().servfail("broken.test")).await;
    let tables = format!("[outbound]\nnameservers = [\"{}\"]\n", dns.addr);
    tokio::task::spawn_blocking(move || {
        let a = sender("", &tables);
        let r = a.connect().send_mail("alice@example.test", &["x@broken.test"], &message("servfail"));
        assert!(r.starts_with("250"), "{r}");
        wait_until("two deferrals", &a, || a.log().matches("result=deferred").count() >= 2);
        assert!(a.log().contains("4.4.3"), "{}", a.log());
        // Still queued, nobody told yet (the delay notice comes after 4 hours by default).
        assert_eq!(a.spooled_envelopes().len(), 1);
        assert!(a.messages("alice").is_empty());
    })
    .await
    .unwrap();
}

/// A minimal SMTP server without the DSN extension: accepts everything, one command at a
/// time. Returns its port.
fn plain_sink() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut out) = stream else { return };
            let mut input = BufReader::new(out.try_clone().unwrap());
            let _ = out.write_all(b"220 sink.test ESMTP\r\n");
            let mut line = String::new();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-sink.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("DATA") {
                    let _ = out.write_all(b"354 go ahead\r\n");
                    let mut body = String::new();
                    while input.read_line(&mut body).is_ok_and(|n| n > 0) && !body.ends_with("\r\n.\r\n") {}
                    b"250 2.0.0 taken\r\n"
                } else if cmd.starts_with("QUIT") {
                    let _ = out.write_all(b"221 2.0.0 bye\r\n");
                    break;
                } else {
                    b"250 2.0.0 ok\r\n"
                };
                let _ = out.write_all(reply);
                line.clear();
            }
        }
    });
    port
}

#[test]
fn notify_success_via_a_next_hop_without_dsn_is_reported_as_relayed() {
    let sink = plain_sink();
    let b = remote("");
    let tables = format!(
        "{}[outbound.routes.\"nodsn.test\"]\nhosts = [\"127.0.0.1:{sink}\"]\ntls = \"none\"\n",
        route_to(b.addr.port(), "none")
    );
    let a = sender("", &tables);
    let mut c = a.connect();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<carol@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<x@nodsn.test> NOTIFY=SUCCESS,FAILURE").starts_with("250"));
    // B offers DSN: it is handed NOTIFY=SUCCESS and reports itself; we say nothing for it.
    assert!(c.cmd("RCPT TO:<bob@remote.test> NOTIFY=SUCCESS").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("relayed").as_bytes());
    assert!(c.cmd(".").starts_with("250"));
    let notices = wait_files(&a.maildir("carol"), 1);
    assert_eq!(notices.len(), 1, "{}", a.log());
    let status = delivery_status(&notices[0]);
    assert!(status.contains("Action: relayed"), "{status}");
    assert!(status.contains("Final-Recipient: rfc822; x@nodsn.test"), "{status}");
    assert!(!status.contains("bob@remote.test"), "{status}");
    wait_until("A's queue to empty", &a, || a.spooled_envelopes().is_empty());
    assert_eq!(a.messages("carol").len(), 1);
}

#[test]
fn smarthost_with_starttls_and_auth() {
    // B is the smart host: its submission port wants STARTTLS, then AUTH.
    let b = remote("[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n");
    b.add_user("alice@example.test", "relay-secret-1");
    let port = b.addr_of("submission").port();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("relay-password");
    std::fs::write(&password_file, "relay-secret-1\n").unwrap();
    let tables = format!(
        "[outbound]\nhelo_name = \"sender.test\"\n[outbound.relay_host]\nhost = \"127.0.0.1:{port}\"\nusername = \"alice@example.test\"\npassword_file = {:?}\n",
        password_file.display().to_string()
    );
    let a = sender("", &tables);
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &message("via smarthost"));
    assert!(r.starts_with("250"), "{r}");
    let bob = wait_files(&remote_box(&b, "bob"), 1);
    assert_eq!(bob.len(), 1, "A log:\n{}\nB log:\n{}", a.log(), b.log());
    assert!(bob[0].contains("(authenticated as alice@example.test)"), "{}", bob[0]);
    assert!(bob[0].contains("with ESMTPSA"), "{}", bob[0]);
    assert!(!a.log().contains("relay-secret-1"), "the relay password is never logged");

    // A wrong password is the operator's mistake: the mail is deferred (with the server's
    // 535 as the last error), not bounced, until the password is fixed.
    std::fs::write(&password_file, "wrong-password\n").unwrap();
    let a2 = sender("", &tables);
    let r = a2.connect().send_mail("alice@example.test", &["dave@remote.test"], &message("bad credentials"));
    assert!(r.starts_with("250"), "{r}");
    wait_until("a deferral", &a2, || a2.log().contains("result=deferred"));
    assert!(a2.log().contains("535"), "{}", a2.log());
    assert!(a2.messages("alice").is_empty(), "no bounce");
    assert_eq!(a2.spooled_envelopes().len(), 1);
    // Fixed and restarted, the queued message goes out.
    std::fs::write(&password_file, "relay-secret-1\n").unwrap();
    let dir = a2.stop();
    let a3 = TestServer::start_in(
        dir,
        &format!("trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"1s\"]\n{tables}"),
    );
    assert_eq!(wait_files(&remote_box(&b, "dave"), 1).len(), 1, "{}", a3.log());
}
