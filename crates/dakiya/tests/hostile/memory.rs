//! Connection floods must give their memory back (issue #9, item 6): glibc's malloc kept
//! nearly all of what a flood of idle connections had taken, and more after every flood.

use crate::common::TestServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections per flood: enough that what they cost stands far above the noise of a
/// debug-build server (several MB), few enough to keep the test short.
const FLOOD: usize = 2000;
const FLOODS: usize = 3;
/// How long a flood's memory may take to go back: jemalloc purges freed pages gradually over
/// its decay time (10 s).
const GIVE_BACK: Duration = Duration::from_secs(45);

const LIMITS: &str = "[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\n";

/// Resident memory of a process, in bytes (/proc/PID/smaps_rollup, as scripts/flood).
fn rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    let line = text.lines().find(|l| l.starts_with("Rss:")).expect("Rss line");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Sockets the process has open.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// Reads until a line starting with `code` and a space (the last line of a reply).
fn expect_reply(s: &mut TcpStream, code: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let end = format!("{code} ");
    loop {
        let n = s.read(&mut buf).expect("read reply");
        assert!(n > 0, "closed while waiting for {code}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.ends_with("\r\n") && text.lines().any(|l| l.starts_with(&end)) {
            return;
        }
    }
}

/// Opens `n` idle sessions (greeting read, EHLO answered), each from its own loopback
/// address 127.x.y.1 (one per /24, so no per-address or per-network limit refuses them).
fn flood(rt: &tokio::runtime::Runtime, addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(127, 1 + (i / 250) as u8, 1 + (i % 250) as u8, 1);
            let mut s = rt.block_on(async {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddr::new(ip.into(), 0)).unwrap();
                sock.connect(addr).await.unwrap().into_std().unwrap()
            });
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            expect_reply(&mut s, "220");
            s.write_all(b"EHLO flood.test\r\n").unwrap();
            expect_reply(&mut s, "250");
            s
        })
        .collect()
}

/// Waits until `cond` holds (checked every 100 ms) or `max` passes; returns whether it held.
fn wait_until(max: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + max;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three floods of 2,000 idle connections, each closed at once: after each, the server's
/// resident memory comes back to within half of what the first flood took (glibc kept
/// over 90% of it, and more with every flood).
#[test]
fn connection_floods_give_memory_back() {
    // Each flood holds FLOOD sockets here and FLOOD in the server, which inherits our limit.
    let want = (2 * FLOOD + 512) as u64;
    let limit = rlimit::increase_nofile_limit(want).expect("raise the open-files limit");
    assert!(limit >= want, "open-files limit {limit} < {want}: raise the hard limit (ulimit -Hn)");
    let server = TestServer::spawn(LIMITS);
    let pid = server.pid();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A first connection, so that everything the server sets up once is in the baseline.
    drop(flood(&rt, server.addr, 1));
    std::thread::sleep(Duration::from_millis(500));
    let idle_sockets = sockets(pid);
    let base = rss(pid);
    let mut taken = 0;
    let mut report = format!("baseline {} KB", base / 1024);
    for k in 1..=FLOODS {
        let conns = flood(&rt, server.addr, FLOOD);
        std::thread::sleep(Duration::from_millis(500));
        let peak = rss(pid);
        if k == 1 {
            taken = peak.saturating_sub(base);
            assert!(taken > (FLOOD as u64) * 1024, "the flood took only {taken} bytes: nothing to measure");
        }
        drop(conns);
        assert!(wait_until(Duration::from_secs(15), || sockets(pid) <= idle_sockets), "server kept connections");
        let bound = base + taken / 2;
        let t = Instant::now();
        let back = wait_until(GIVE_BACK, || rss(pid) <= bound);
        let after = rss(pid);
        report.push_str(&format!(
            "; flood {k}: peak {} KB, after {} KB in {:.1} s",
            peak / 1024,
            after / 1024,
            t.elapsed().as_secs_f64()
        ));
        assert!(back, "flood {k} was not given back (bound {} KB): {report}", bound / 1024);
    }
    eprintln!("{report}");
}
