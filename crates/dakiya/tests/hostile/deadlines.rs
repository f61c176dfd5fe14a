//! Deadlines, not idle timeouts: a byte now and then does not keep a session, and a client
//! that never reads is cut at the write deadline.

use crate::common::{Client, TestServer, wait_log};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SHORT: &str = "[timeouts]\ncommand = \"3s\"\ndata = \"3s\"\ndata_min_rate = \"1M\"\nwrite = \"2s\"\n";

/// Sends `bytes` one at a time, `gap` apart, until the server closes; returns what it sent
/// back and how long the drip lasted.
fn drip(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> (String, Duration) {
    let start = Instant::now();
    stream.set_read_timeout(Some(gap)).unwrap();
    let mut got = Vec::new();
    for &b in bytes.iter().cycle() {
        if stream.write_all(&[b]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[test]
fn byte_dripping_command_is_cut_at_the_command_deadline() {
    let server = TestServer::start(SHORT);
    let mut c = Client::connect(server.addr, None);
    assert!(c.cmd("EHLO drip.test").starts_with("250"));
    // One byte every second against a 3 s command deadline: each read is well within 3 s.
    let (got, took) = drip(&mut c.stream, b"NOOP NOOP NOOP NOOP NOOP NOOP", Duration::from_secs(1));
    assert!(got.contains("421 4.4.2"), "{got:?}");
    assert!(took < Duration::from_secs(10), "held for {took:?}");
    assert!(wait_log(&server, "ending=command-deadline", 5), "{}", server.log());
}

#[test]
fn byte_dripping_message_is_cut_at_the_data_deadline() {
    let server = TestServer::start(SHORT);
    let mut c = Client::connect(server.addr, None);
    c.begin("a@remote.test", "alice@example.test");
    assert!(c.cmd("DATA").starts_with("354"));
    let (got, took) = drip(&mut c.stream, b"Subject: slow\r\n\r\nxxxxxxxxxxxxxxxxxxxx", Duration::from_secs(1));
    assert!(got.contains("421 4.4.2"), "{got:?}");
    assert!(took < Duration::from_secs(10), "held for {took:?}");
    assert!(wait_log(&server, "ending=data-deadline", 5), "{}", server.log());
    assert!(server.messages("alice").is_empty());
}

#[test]
fn bdat_chunk_dripping_is_cut_at_the_data_deadline() {
    let server = TestServer::start(SHORT);
    let mut c = Client::connect(server.addr, None);
    c.begin("a@remote.test", "alice@example.test");
    c.send(b"BDAT 1000 LAST\r\n");
    let (got, took) = drip(&mut c.stream, b"x", Duration::from_secs(1));
    assert!(got.contains("421 4.4.2"), "{got:?}");
    assert!(took < Duration::from_secs(10), "held for {took:?}");
}

#[test]
fn a_slow_but_steady_message_within_the_rate_is_accepted() {
    // 2 s of data allowance plus 1 s per 64 bytes: 40-byte bursts every 0.5 s keep up.
    let server = TestServer::start("[timeouts]\ndata = \"2s\"\ndata_min_rate = 64\n");
    let mut c = Client::connect(server.addr, None);
    c.begin("a@remote.test", "alice@example.test");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: steady\r\n\r\n");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        c.send(&[b'y'; 38]);
        c.send(b"\r\n");
    }
    c.send(b".\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
}

#[test]
fn a_client_that_never_reads_is_cut_at_the_write_deadline() {
    let server = TestServer::start(SHORT);
    let mut c = Client::connect(server.addr, None);
    assert!(c.cmd("EHLO deaf.test").starts_with("250"));
    // Commands whose replies fill the socket buffers in both directions; we never read.
    let noops = b"NOOP\r\n".repeat(100_000);
    c.stream.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let start = Instant::now();
    let mut sent = 0usize;
    while start.elapsed() < Duration::from_secs(20) {
        match c.stream.write(&noops[sent % noops.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                if server.log().contains("ending=write-deadline") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(wait_log(&server, "ending=write-deadline", 10), "sent {sent} bytes; {}", server.log());
    // The server is still serving others.
    let mut other = Client::connect(server.addr, None);
    assert!(other.cmd("NOOP").starts_with("250"));
}
