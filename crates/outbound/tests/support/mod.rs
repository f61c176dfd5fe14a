//! Test helpers: a scripted fake SMTP server on 127.0.0.1 (STARTTLS with a self-signed
//! certificate, AUTH PLAIN, chosen replies, counters and the received messages), and an
//! `OutboundConfig` whose DNS is the loopback test DNS server.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use dakiya_outbound::{OutboundConfig, RelaySettings, TlsMode};
use dakiya_proto::address::{ReversePath, parse_path};
use dakiya_proto::client::{AuthCredentials, Job};
use dakiya_route::testdns::TestDns;
use dakiya_route::{HostPort, RouteConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How the fake server behaves. `Script::default()` is a plain, accepting server.
#[derive(Clone, Default)]
pub struct Script {
    /// The greeting; default `220 fake.test ESMTP`.
    pub greeting: Option<String>,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After 220 to STARTTLS, send garbage instead of a TLS handshake.
    pub broken_tls: bool,
    /// TLS from the first octet (with `tls`), no STARTTLS.
    pub implicit_tls: bool,
    /// Offer AUTH PLAIN (over TLS only) and accept these credentials.
    pub auth: Option<(String, String)>,
    /// Offer PIPELINING.
    pub pipelining: bool,
    /// The reply to MAIL instead of 250.
    pub mail_reply: Option<String>,
    /// Replies to RCPT for these addresses instead of 250.
    pub rcpt_replies: Vec<(String, String)>,
    /// The reply after the content instead of 250.
    pub end_reply: Option<String>,
    /// Close the connection after the first content octets, without a reply.
    pub close_mid_data: bool,
    /// Close the connection (no 421) right after answering the content.
    pub close_after_message: bool,
    /// Wait this long before answering the content (so that deliveries overlap).
    pub end_delay: Duration,
    /// Offer REQUIRETLS (RFC 8689) over TLS.
    pub requiretls: bool,
}

/// A message the fake server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    /// The MAIL command line as sent, parameters included.
    pub mail_line: String,
    pub rcpts: Vec<String>,
    /// The octets between 354 and the reply: dot-stuffed, terminator included.
    pub wire: Vec<u8>,
    /// The content with dot-stuffing undone and without the terminator.
    pub content: Vec<u8>,
    pub tls: bool,
    pub authenticated: bool,
}

/// What the fake server saw.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub quits: AtomicUsize,
    pub auth_failures: AtomicUsize,
    pub messages: Mutex<Vec<Received>>,
}

impl Stats {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }
    pub fn quits(&self) -> usize {
        self.quits.load(Ordering::SeqCst)
    }
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }
}

/// A running fake server; dropping it stops it and its connections.
pub struct FakeSmtp {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    pub async fn start(script: Script) -> FakeSmtp {
        FakeSmtp::start_at(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), script).await
    }

    /// Listens at `addr` (another loopback address, a given port).
    pub async fn start_at(addr: SocketAddr, script: Script) -> FakeSmtp {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let script = Arc::new(script);
        let task = tokio::spawn(accept(listener, script, stats.clone()));
        FakeSmtp { addr, stats, task }
    }

    /// This server as a route target.
    pub fn host_port(&self) -> HostPort {
        HostPort::from(self.addr)
    }
}

async fn accept(listener: TcpListener, script: Arc<Script>, stats: Arc<Stats>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                stats.connections.fetch_add(1, Ordering::SeqCst);
                let active = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
                stats.max_active.fetch_max(active, Ordering::SeqCst);
                connections.spawn(connection(tcp, script.clone(), stats.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Counts the connection as active until dropped or released (before the QUIT reply, so
/// that a client that saw the reply never finds it still counted).
struct Active(Option<Arc<Stats>>);

impl Active {
    fn release(&mut self) {
        if let Some(stats) = self.0.take() {
            stats.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.release();
    }
}

#[derive(Default)]
struct Session {
    mail_line: String,
    tls: bool,
    authenticated: bool,
    from: Option<String>,
    rcpts: Vec<String>,
}

enum End {
    Closed,
    StartTls,
}

async fn connection(tcp: TcpStream, script: Arc<Script>, stats: Arc<Stats>) {
    let mut active = Active(Some(stats.clone()));
    let mut session = Session::default();
    if script.implicit_tls {
        // RFC 8314: TLS first, then the greeting inside it.
        let Some(config) = script.tls.clone() else { return };
        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else { return };
        session.tls = true;
        let mut io = BufReader::new(tls);
        if greet(&mut io, &script).await {
            let _ = dialog(&mut io, &script, &stats, &mut session, &mut active).await;
        }
        return;
    }
    let mut io = BufReader::new(tcp);
    if !greet(&mut io, &script).await {
        return;
    }
    let Ok(End::StartTls) = dialog(&mut io, &script, &stats, &mut session, &mut active).await else { return };
    let tcp = io.into_inner();
    if script.broken_tls {
        let mut tcp = tcp;
        let _ = tcp.write_all(b"this is not TLS\r\n").await;
        return;
    }
    let Some(config) = script.tls.clone() else { return };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else { return };
    session.tls = true;
    let mut io = BufReader::new(tls);
    let _ = dialog(&mut io, &script, &stats, &mut session, &mut active).await;
}

/// Sends the greeting; false if the dialog should not go on (not a 220).
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>, script: &Script) -> bool {
    let greeting = script.greeting.clone().unwrap_or_else(|| "220 fake.test ESMTP".into());
    reply(io, &greeting).await.is_ok() && greeting.starts_with("220")
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>, text: &str) -> std::io::Result<()> {
    io.get_mut().write_all(format!("{text}\r\n").as_bytes()).await?;
    io.get_mut().flush().await
}

/// One line, CRLF removed; `None` at the end of the stream or on an overlong line.
async fn line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut buf = Vec::new();
    let n = (&mut *io).take(4096).read_until(b'\n', &mut buf).await.ok()?;
    if n == 0 || !buf.ends_with(b"\r\n") {
        return None;
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).ok()
}

fn angle(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_string()
}

async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    script: &Script,
    stats: &Stats,
    session: &mut Session,
    active: &mut Active,
) -> std::io::Result<End> {
    while let Some(line) = line(io).await {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let mut lines =
                    vec!["fake.test greets you".to_string(), "8BITMIME".into(), "ENHANCEDSTATUSCODES".into()];
                if script.pipelining {
                    lines.push("PIPELINING".into());
                }
                if script.tls.is_some() && !session.tls {
                    lines.push("STARTTLS".into());
                }
                if script.auth.is_some() && session.tls {
                    lines.push("AUTH PLAIN".into());
                }
                if script.requiretls && session.tls {
                    lines.push("REQUIRETLS".into());
                }
                let last = lines.len() - 1;
                let text: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                    .collect();
                reply(io, &text.join("\r\n")).await?;
            }
            "HELO" => reply(io, "250 fake.test").await?,
            "STARTTLS" if script.tls.is_some() && !session.tls => {
                reply(io, "220 2.0.0 ready to start TLS").await?;
                return Ok(End::StartTls);
            }
            "AUTH" if script.auth.is_some() && session.tls => {
                let (user, pass) = script.auth.clone().unwrap();
                let given =
                    line.split(' ').nth(2).and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                if given.as_deref() == Some(format!("\0{user}\0{pass}").as_bytes()) {
                    session.authenticated = true;
                    reply(io, "235 2.7.0 authenticated").await?;
                } else {
                    stats.auth_failures.fetch_add(1, Ordering::SeqCst);
                    reply(io, "535 5.7.8 bad credentials").await?;
                }
            }
            "MAIL" => match &script.mail_reply {
                Some(r) => reply(io, r).await?,
                None => {
                    session.from = Some(angle(&line));
                    session.mail_line = line.clone();
                    session.rcpts.clear();
                    reply(io, "250 2.1.0 ok").await?;
                }
            },
            "RCPT" if session.from.is_none() => reply(io, "503 5.5.1 MAIL first").await?,
            "RCPT" => {
                let addr = angle(&line);
                match script.rcpt_replies.iter().find(|(a, _)| *a == addr) {
                    Some((_, r)) => reply(io, r).await?,
                    None => {
                        session.rcpts.push(addr);
                        reply(io, "250 2.1.5 ok").await?;
                    }
                }
            }
            "DATA" if session.rcpts.is_empty() => reply(io, "554 5.5.1 no valid recipients").await?,
            "DATA" => {
                reply(io, "354 go ahead").await?;
                if script.close_mid_data {
                    let mut some = [0u8; 8];
                    let _ = io.read(&mut some).await;
                    return Ok(End::Closed);
                }
                let (wire, content) = read_content(io).await?;
                tokio::time::sleep(script.end_delay).await;
                let end = script.end_reply.clone().unwrap_or_else(|| "250 2.0.0 queued as FAKE".into());
                if end.starts_with('2') {
                    stats.messages.lock().unwrap().push(Received {
                        from: session.from.clone().unwrap_or_default(),
                        mail_line: session.mail_line.clone(),
                        rcpts: std::mem::take(&mut session.rcpts),
                        wire,
                        content,
                        tls: session.tls,
                        authenticated: session.authenticated,
                    });
                }
                session.from = None;
                session.rcpts.clear();
                reply(io, &end).await?;
                if script.close_after_message {
                    return Ok(End::Closed);
                }
            }
            "RSET" => {
                session.from = None;
                session.rcpts.clear();
                reply(io, "250 2.0.0 reset").await?;
            }
            "NOOP" => reply(io, "250 2.0.0 ok").await?,
            "QUIT" => {
                stats.quits.fetch_add(1, Ordering::SeqCst);
                active.release();
                reply(io, "221 2.0.0 bye").await?;
                return Ok(End::Closed);
            }
            _ => reply(io, "502 5.5.2 not implemented").await?,
        }
    }
    Ok(End::Closed)
}

/// Reads the content up to `.` CRLF: the wire octets, and the content un-stuffed.
async fn read_content<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut wire, mut content) = (Vec::new(), Vec::new());
    loop {
        let mut buf = Vec::new();
        if io.read_until(b'\n', &mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        wire.extend_from_slice(&buf);
        if buf == b".\r\n" {
            return Ok((wire, content));
        }
        content.extend_from_slice(buf.strip_prefix(b".").unwrap_or(&buf));
    }
}

/// A self-signed certificate for `names` and a server configuration serving it.
pub fn self_signed(names: &[&str]) -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (cert, Arc::new(config))
}

/// A configuration whose name server is `dns`, opportunistic TLS, reuse on.
pub fn config(dns: &TestDns) -> OutboundConfig {
    OutboundConfig {
        helo_name: "client.test".into(),
        route: RouteConfig {
            nameservers: vec![dns.addr],
            dns_timeout: Duration::from_secs(2),
            dns_attempts: 1,
            ..RouteConfig::default()
        },
        default_tls: TlsMode::Opportunistic,
        route_tls: BTreeMap::new(),
        relay: None,
        extra_roots: Vec::new(),
        dnssec_trust_anchor: None,
        connect_timeout: Duration::from_secs(10),
        max_connections: 10,
        max_per_destination: 5,
        idle_timeout: Duration::from_secs(60),
    }
}

/// A configuration sending everything to `relay`, TLS required, AUTH as `user`.
pub fn relay_config(dns: &TestDns, relay: &FakeSmtp, password: &str) -> OutboundConfig {
    let mut cfg = config(dns);
    cfg.route.relay_host = Some(relay.host_port());
    let credentials = AuthCredentials { username: "user".into(), password: password.into() };
    cfg.relay = Some(RelaySettings { tls: TlsMode::Require, implicit_tls: false, credentials: Some(credentials) });
    cfg
}

/// `cfg` with a static route for `domain` to `hosts`.
pub fn route(mut cfg: OutboundConfig, domain: &str, hosts: Vec<HostPort>) -> OutboundConfig {
    cfg.route.static_routes.insert(domain.to_string(), hosts);
    cfg
}

/// A job from `from@sender.test` to `rcpts`.
pub fn job(rcpts: &[&str]) -> Job {
    let from = ReversePath::Mailbox(parse_path("<from@sender.test>").unwrap());
    Job::new(from, rcpts.iter().map(|r| parse_path(&format!("<{r}>")).unwrap()))
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap()
}

pub const MESSAGE: &[u8] =
    b"From: a@sender.test\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";
