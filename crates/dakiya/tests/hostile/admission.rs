//! Admission: a few hostile addresses holding every connection slot cannot lock out a new
//! client; limits per address and per network.

use crate::common::{Client, TestServer, raw_from, wait_log};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Opens up to `per_address` connections from each of `addresses` and keeps them alive by
/// dripping a byte now and then (never a whole command); returns the sockets still open and
/// a stop flag for the dripper.
fn hold(
    server: &TestServer,
    addresses: &[String],
    per_address: usize,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let mut socks: Vec<TcpStream> = Vec::new();
    for ip in addresses {
        for _ in 0..per_address {
            let mut s = raw_from(ip, server.addr);
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut greeting = [0u8; 4];
            if s.read_exact(&mut greeting).is_ok() && &greeting == b"220 " {
                socks.push(s);
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let dripper = std::thread::spawn(move || {
        let held = socks.len();
        while !flag.load(Ordering::Relaxed) {
            for s in &mut socks {
                let _ = s.write_all(b"N");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        held
    });
    (stop, dripper)
}

fn hostile_addresses(n: usize) -> Vec<String> {
    // Twenty addresses in twenty different /24s: per-network limits alone do not help.
    (1..=n).map(|i| format!("127.1.{i}.1")).collect()
}

#[test]
fn twenty_hostile_addresses_with_default_limits_cannot_lock_out_a_new_client() {
    // The defaults: 1000 connections in all, 50 per address, 100 per network.
    let server = TestServer::start("");
    let (stop, dripper) = hold(&server, &hostile_addresses(20), 50);
    // Held sessions become candidates after a second without progress.
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    let mut c = Client::connect(server.addr, Some("127.0.0.9"));
    let greeted = start.elapsed();
    eprintln!("new client greeted after {greeted:?} while 20 addresses held the server");
    assert!(c.cmd("EHLO newcomer.test").starts_with("250"));
    let reply = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: still served\r\n\r\nhi\r\n");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    stop.store(true, Ordering::Relaxed);
    let held = dripper.join().unwrap();
    assert_eq!(held, 1000, "the hostile addresses should have filled the server");
    assert!(server.log().contains("closed the longest idle session to make room"));
}

#[test]
fn per_address_and_per_network_limits_refuse_with_421() {
    let server = TestServer::start("[limits]\nmax_connections_per_ip = 2\nmax_connections_per_network = 3\n");
    let _a = Client::connect(server.addr, Some("127.2.0.1"));
    let _b = Client::connect(server.addr, Some("127.2.0.1"));
    let mut third = raw_from("127.2.0.1", server.addr);
    let mut got = String::new();
    third.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("421 4.7.0"), "{got}");
    let _c = Client::connect(server.addr, Some("127.2.0.2"));
    let mut fourth = raw_from("127.2.0.3", server.addr);
    let mut got = String::new();
    fourth.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("421 4.7.0"), "{got}");
    // Another /24 is not affected.
    let mut other = Client::connect(server.addr, Some("127.2.1.1"));
    assert!(other.cmd("NOOP").starts_with("250"));
    assert!(wait_log(&server, "limit=per client network", 5));
}

#[test]
fn an_evicted_session_is_told_why() {
    let server = TestServer::start("[limits]\nmax_connections = 2\n");
    let mut idle = Client::connect(server.addr, Some("127.3.0.1"));
    let mut active = Client::connect(server.addr, Some("127.3.1.1"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(active.cmd("EHLO active.test").starts_with("250"));
    let mut newcomer = Client::connect(server.addr, Some("127.3.2.1"));
    assert!(newcomer.cmd("NOOP").starts_with("250"));
    // The idle session made room, the one that just spoke did not.
    let got = idle.read_to_end();
    assert!(got.starts_with("421 4.4.2"), "{got:?}");
    assert!(active.cmd("NOOP").starts_with("250"));
    assert!(wait_log(&server, "ending=evicted", 5));
}
