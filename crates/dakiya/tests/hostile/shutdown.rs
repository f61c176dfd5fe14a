//! Graceful shutdown: a transaction in progress finishes with 250; an idle session is told
//! at once.

use crate::common::{Client, TestServer, sigterm, wait_log};
use std::time::{Duration, Instant};

#[test]
fn sigterm_mid_data_lets_the_message_finish() {
    let server = TestServer::spawn("");
    let mut idle = Client::connect(server.addr, None);
    assert!(idle.cmd("EHLO idle.test").starts_with("250"));
    let mut c = Client::connect(server.addr, None);
    c.begin("a@remote.test", "alice@example.test");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    sigterm(&server);
    // The idle session is closed at once with 421 4.3.2.
    let start = Instant::now();
    let got = idle.read_to_end();
    assert!(got.starts_with("421 4.3.2"), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The message in flight finishes: 250, then 421 4.3.2 and the end.
    std::thread::sleep(Duration::from_millis(500));
    c.send(b"second half\r\n.\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("250 2.0.0"), "{reply:?}");
    let rest = c.read_to_end();
    assert!(rest.starts_with("421 4.3.2"), "{rest:?}");
    // Nothing was lost: the message is delivered or still in the spool.
    assert!(wait_log(&server, "accepted queue_id=", 5));
    let log = server.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_transaction_that_outlives_the_grace_is_cut() {
    let server = TestServer::spawn("[timeouts]\nshutdown_grace = \"2s\"\n");
    let mut c = Client::connect(server.addr, None);
    assert!(c.cmd("EHLO slow.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
    let start = Instant::now();
    sigterm(&server);
    let got = c.read_to_end();
    assert!(got.starts_with("421 4.3.2"), "{got:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "{took:?}");
}

/// The log's lines are gathered in memory and written at most 10 ms late (logging/batched.rs):
/// the last ones, logged as the server stops, must still reach stderr before it exits.
#[test]
fn the_last_lines_logged_at_a_stop_are_written_before_exit() {
    let server = TestServer::spawn("");
    let mut idle = Client::connect(server.addr, None);
    assert!(idle.cmd("EHLO idle.test").starts_with("250"));
    sigterm(&server);
    assert!(idle.read_to_end().starts_with("421 4.3.2"));
    // The summary is the last line the server logs before `run` returns and the process
    // exits: well within the 10 ms that a line may wait to be written.
    assert!(wait_log(&server, "sessions ended and connections refused since the last summary", 10), "{}", server.log());
    let log = server.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("since the last summary") && last.contains("shutdown=1"), "{log}");
}
