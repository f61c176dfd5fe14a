//! A DNS server for tests: an in-memory [`Zone`] served on 127.0.0.1, UDP and TCP.
//!
//! Tests give its address to whatever resolves names (the [`Router`](crate::Router) via
//! [`RouteConfig::nameservers`](crate::RouteConfig::nameservers)), so no test ever asks the
//! system resolver or any address off this machine:
//!
//! ```
//! # async fn demo() {
//! use dakiya_route::testdns::{TestDns, Zone};
//! let dns = TestDns::start(Zone::new().a("mx.example.test", [127, 0, 0, 2].into())).await;
//! let cfg = dakiya_route::RouteConfig { nameservers: vec![dns.addr], ..Default::default() };
//! # }
//! ```
//!
//! UDP answers longer than 512 octets are truncated (TC bit), so the client repeats the
//! query over TCP on the same port, as a real server makes it do. The server stops when the
//! [`TestDns`] is dropped.

pub mod signed;
mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

pub use zone::Zone;

/// The largest DNS message over UDP without EDNS (RFC 1035 §4.2.1); this server never
/// offers EDNS, so longer answers are truncated and fetched over TCP.
const UDP_LIMIT: usize = 512;

/// A running test DNS server; dropping it stops the server.
#[derive(Debug)]
pub struct TestDns {
    /// Where it listens: 127.0.0.1 and one port, for both UDP and TCP.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    zone: Mutex<Zone>,
    queries: Mutex<Vec<String>>,
}

impl TestDns {
    /// Starts serving `zone` on 127.0.0.1, on a port free for both UDP and TCP.
    ///
    /// # Panics
    /// If no such port is found, or outside a tokio runtime: this is test code.
    pub async fn start(zone: Zone) -> TestDns {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("test DNS: local address");
        let shared = Arc::new(Shared { zone: Mutex::new(zone), queries: Mutex::new(Vec::new()) });
        let tasks = vec![tokio::spawn(serve_udp(udp, shared.clone())), tokio::spawn(serve_tcp(tcp, shared.clone()))];
        TestDns { addr, shared, tasks }
    }

    /// Replaces the zone; later queries see the new one (resolver caches may still hold
    /// old answers: use [`Zone::ttl`] 0 or a fresh resolver).
    pub fn set_zone(&self, zone: Zone) {
        *self.shared.zone.lock().unwrap() = zone;
    }

    /// The queries received so far, in order, as `"name. TYPE"` (e.g. `"example.test. MX"`),
    /// names in lower case. A query repeated over TCP after truncation shows twice.
    pub fn queries(&self) -> Vec<String> {
        self.shared.queries.lock().unwrap().clone()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // Aborting the TCP task drops its JoinSet, which aborts every connection task.
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Shared {
    /// The encoded answer to one encoded query; `None` to stay silent (garbage, or a name
    /// configured not to answer).
    fn respond(&self, bytes: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
        let request = Message::from_vec(bytes).ok()?;
        for query in request.queries() {
            let line = format!("{} {}", query.name().to_lowercase().to_ascii(), query.query_type());
            self.queries.lock().unwrap().push(line);
        }
        let response = self.zone.lock().unwrap().answer(&request)?;
        let encoded = response.to_vec().ok()?;
        match limit {
            Some(limit) if encoded.len() > limit => response.truncate().to_vec().ok(),
            _ => Some(encoded),
        }
    }
}

/// A UDP socket and a TCP listener on the same loopback port. The UDP port comes from the
/// system; the TCP bind may lose a race for it, so a few ports are tried.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("test DNS: bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("test DNS: local address").port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return (udp, tcp);
        }
    }
    panic!("test DNS: no loopback port free for both UDP and TCP");
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else { continue };
        if let Some(reply) = shared.respond(&buf[..len], Some(UDP_LIMIT)) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_tcp_connection(stream, shared.clone()));
                }
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// DNS over TCP: each message has a two-octet length prefix (RFC 1035 §4.2.2).
async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(len) = stream.read_u16().await else { return };
        let mut message = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        let Some(reply) = shared.respond(&message, None) else { continue };
        let Ok(reply_len) = u16::try_from(reply.len()) else { continue };
        if stream.write_u16(reply_len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}
