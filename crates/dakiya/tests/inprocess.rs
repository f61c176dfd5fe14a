//! The in-process server itself (`dakiya::Server`, behind `TestServer::start`): servers in
//! one process keep their logs and log limits apart, every thread of a server logs into its
//! log, a start error comes back as an error, and `shutdown` drains as SIGTERM does.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, TestServer, write_config};
use std::io::Read;
use std::time::{Duration, Instant};

/// Polls `server`'s log until `done` holds for it, or panics after 20 s.
fn wait_log(server: &TestServer, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn servers_in_one_process_keep_their_logs_apart() {
    let a = TestServer::start("");
    let b = TestServer::start("");
    let r = a.connect().send_mail("x@remote.test", &["alice@example.test"], "Subject: to A\r\n\r\nhi");
    assert!(r.starts_with("250"), "{r}");
    let log_a = wait_log(&a, "A's accepted line", |l| l.contains(" accepted"));
    let log_b = b.log();
    assert!(log_a.contains(&format!("listening address={}", a.addr)), "{log_a}");
    assert!(!log_a.contains(&format!("listening address={}", b.addr)), "B's line in A's log:\n{log_a}");
    assert!(log_b.contains(&format!("listening address={}", b.addr)), "{log_b}");
    assert!(!log_b.contains(&format!("listening address={}", a.addr)), "A's line in B's log:\n{log_b}");
    assert!(!log_b.contains(" accepted"), "A's message in B's log:\n{log_b}");
    // The format of `dakiya serve`: an RFC 3339 time, the level, the message, the fields.
    let line = log_a.lines().find(|l| l.contains(" accepted")).unwrap();
    assert!(line.starts_with("20") && line.contains("Z  INFO accepted queue_id="), "{line}");
}

/// Refuses `n` connections of `server` (one held, `max_connections_per_ip = 1`).
fn refuse(server: &TestServer, n: usize) {
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("421 4.7.0"), "{reply}");
    }
}

#[test]
fn repeated_lines_are_limited_per_server() {
    // A flood refused by A uses up A's lines for the period, not B's: B still writes its
    // first refusals, and each server counts only its own.
    const FLOOD: usize = 12;
    let a = TestServer::start("[limits]\nmax_connections_per_ip = 1\n");
    let b = TestServer::start("[limits]\nmax_connections_per_ip = 1\n");
    let (_held_a, _held_b) = (a.connect(), b.connect());
    refuse(&a, FLOOD);
    refuse(&b, 3);
    let refused = "connection refused: too many connections";
    let log_a = wait_log(&a, "A's count line", |l| l.contains("more in the last 10 s"));
    let shown_a = log_a.lines().filter(|l| l.contains(refused) && l.contains("peer=")).count();
    assert_eq!(shown_a, 5, "{log_a}");
    assert!(log_a.contains(&format!("and {} more in the last 10 s more={}", FLOOD - 5, FLOOD - 5)), "{log_a}");
    let log_b = b.log();
    let shown_b = log_b.lines().filter(|l| l.contains(refused) && l.contains("peer=")).count();
    assert_eq!(shown_b, 3, "B's lines were held back by A's flood:\n{log_b}");
    assert!(!log_b.contains("more in the last"), "{log_b}");
}

#[test]
fn a_password_check_thread_logs_into_its_server_log() {
    // The users file changes under a running server; the next AUTH re-reads it on a
    // password check thread (crates/auth CheckPool), which logs the reload.
    let s = TestServer::start(
        "[auth]\nplaintext_on_loopback = true\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n",
    );
    let mut c = Client::connect(s.addr_of("submission"), None);
    assert!(c.cmd("EHLO client.test").contains("AUTH"));
    s.add_user("alice@example.test", "correct horse");
    assert!(!s.log().contains("users file reloaded"), "{}", s.log());
    let plain = B64.encode("\0alice@example.test\0correct horse");
    assert!(c.cmd(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    let log = wait_log(&s, "the reload line", |l| l.contains("users file reloaded"));
    assert!(log.contains("users=1"), "{log}");
}

#[test]
fn a_start_error_is_returned() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[[listen]]\naddress = \"{}\"\nrole = \"mx\"\n", taken.local_addr().unwrap());
    let cfg = dakiya_config::Config::from_file(&write_config(dir.path(), &extra)).unwrap();
    match dakiya::Server::start(cfg) {
        Err(dakiya::StartError::Bind { address, .. }) => assert_eq!(address, taken.local_addr().unwrap()),
        Err(e) => panic!("not a bind error: {e}"),
        Ok(s) => panic!("started on a taken address: {:?}", s.listeners()),
    }
}

#[test]
fn shutdown_drains_as_sigterm_does() {
    // As tests/hostile/shutdown.rs with SIGTERM: an idle session is told at once, a
    // transaction in flight finishes with 250, and `stop` returns once it has.
    let server = TestServer::start("");
    let mut idle = Client::connect(server.addr, None);
    assert!(idle.cmd("EHLO idle.test").starts_with("250"));
    let mut c = Client::connect(server.addr, None);
    c.begin("a@remote.test", "alice@example.test");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    let clients = std::thread::spawn(move || {
        let got = idle.read_to_end();
        assert!(got.starts_with("421 4.3.2"), "{got:?}");
        std::thread::sleep(Duration::from_millis(500));
        c.send(b"second half\r\n.\r\n");
        let reply = c.reply();
        assert!(reply.starts_with("250 2.0.0"), "{reply:?}");
        let rest = c.read_to_end();
        assert!(rest.starts_with("421 4.3.2"), "{rest:?}");
    });
    let mut server = server;
    server.shutdown();
    clients.join().unwrap();
    let log = server.log();
    assert!(log.contains("shutting down: no new connections; draining sessions"), "{log}");
    assert!(log.contains(" accepted queue_id="), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}
