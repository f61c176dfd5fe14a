//! A queue without a server: a temporary data directory with a real spool and real Maildirs,
//! a clock the test sets, and outbound delivery routed to loopback only.
#![allow(dead_code)]

use dakiya_auth::UserStore;
use dakiya_config::Config;
use dakiya_outbound::{Outbound, OutboundConfig, TlsMode};
use dakiya_queue::{Clock, Ctx};
use dakiya_route::{HostPort, RouteConfig};
use dakiya_spool::{BodyType, Envelope, Notify, QueueId, Recipient, Spool};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When the test messages arrive, in unix seconds.
pub const T0: u64 = 1_700_000_000;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Ctx>,
    pub spool: Arc<Spool>,
    time: Arc<AtomicU64>,
}

impl Env {
    /// A queue for the local domain `example.test` (mailboxes alice and bob), with
    /// `remote.test` routed to 127.0.0.1:`port` without TLS, and `delivery` as the
    /// `[delivery]` table.
    pub fn new(port: u16, delivery: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let toml = format!(
            "data_dir = {:?}\nhostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n\
             [domains.\"example.test\"]\n\
             mailboxes = [\"alice\", \"bob\"]\n[delivery]\n{delivery}\n",
            data.display().to_string()
        );
        let cfg = Arc::new(Config::parse(&toml, "test.toml").unwrap());
        let spool = Arc::new(Spool::open(&data.join("spool")).unwrap());
        let users = Arc::new(UserStore::open(&dir.path().join("users")).unwrap());
        let time = Arc::new(AtomicU64::new(T0));
        let clock = {
            let time = time.clone();
            Clock::new(move || time.load(Ordering::SeqCst))
        };
        let ctx = Ctx::new(cfg, spool.clone(), users, Outbound::new(outbound(port)).unwrap()).with_clock(clock);
        Env { dir, ctx: Arc::new(ctx), spool, time }
    }

    /// Sets the clock.
    pub fn set_time(&self, t: u64) {
        self.time.store(t, Ordering::SeqCst);
    }

    /// Commits a message from `sender` to `rcpts` (address, NOTIFY), received at [`T0`].
    /// Recipients in `example.test` are local.
    pub fn commit(&self, sender: &str, rcpts: &[(&str, Option<Notify>)], message: &str) -> QueueId {
        let recipients = rcpts
            .iter()
            .map(|(address, notify)| {
                let (local, domain) = address.split_once('@').unwrap();
                let mailbox = (domain == "example.test").then(|| (domain.to_string(), local.to_string()));
                Recipient {
                    address: address.to_string(),
                    original: address.to_string(),
                    orcpt: None,
                    notify: *notify,
                    mailbox,
                }
            })
            .collect();
        let envelope = Envelope {
            id: self.spool.new_id(),
            received_at: T0,
            sender: sender.into(),
            client_ip: "127.0.0.1".into(),
            helo: "client.test".into(),
            body: BodyType::SevenBit,
            smtputf8: false,
            require_tls: false,
            dsn_ret: None,
            dsn_envid: None,
            recipients,
            prepend: None,
        };
        let mut writer = self.spool.writer(envelope).unwrap();
        writer.write(message.as_bytes()).unwrap();
        writer.commit().unwrap()
    }

    /// The messages in a local mailbox's `new/`, oldest name first.
    pub fn mailbox(&self, name: &str) -> Vec<String> {
        let dir = self.maildir(name);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort_by_key(|p| delivery_order(p));
        paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    pub fn maildir(&self, name: &str) -> PathBuf {
        self.data().join("mail").join("example.test").join(name).join("new")
    }

    pub fn data(&self) -> &Path {
        self.ctx.cfg.data_dir.as_path()
    }

    /// Whether the spool still holds `id`.
    pub fn queued(&self, id: &QueueId) -> bool {
        self.spool.load(id).is_ok()
    }
}

/// Outbound settings: `remote.test` goes to 127.0.0.1:`port`, in clear text; no DNS is
/// asked (the name server is a closed loopback port).
fn outbound(port: u16) -> OutboundConfig {
    let host = HostPort::new("127.0.0.1".to_string(), Some(port));
    let route = RouteConfig {
        nameservers: vec!["127.0.0.1:9".parse().unwrap()],
        static_routes: BTreeMap::from([("remote.test".to_string(), vec![host])]),
        ..RouteConfig::default()
    };
    OutboundConfig {
        helo_name: "mx.example.test".into(),
        route,
        default_tls: TlsMode::None,
        route_tls: BTreeMap::from([("remote.test".to_string(), TlsMode::None)]),
        relay: None,
        extra_roots: Vec::new(),
        dnssec_trust_anchor: None,
        connect_timeout: Duration::from_secs(5),
        max_connections: 4,
        max_per_destination: 2,
        idle_timeout: Duration::from_secs(1),
    }
}

/// A port with nothing listening on it (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines kept by the [`sink`], shared with its thread.
pub type Kept = Arc<Mutex<Vec<String>>>;

/// A minimal SMTP server on loopback without the DSN extension that accepts everything but
/// `nobody@` and keeps what it was sent: (its port, the messages, the commands).
pub fn sink() -> (u16, Kept, Kept) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (messages, commands) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (m, c) = (messages.clone(), commands.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut out) = stream else { return };
            let mut input = BufReader::new(out.try_clone().unwrap());
            let _ = out.write_all(b"220 sink.test ESMTP\r\n");
            let mut line = String::new();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                c.lock().unwrap().push(line.trim_end().to_string());
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-sink.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("DATA") {
                    let _ = out.write_all(b"354 go ahead\r\n");
                    let mut body = String::new();
                    while input.read_line(&mut body).is_ok_and(|n| n > 0) && !body.ends_with("\r\n.\r\n") {}
                    m.lock().unwrap().push(body);
                    b"250 2.0.0 taken\r\n"
                } else if cmd.starts_with("RCPT") && cmd.contains("NOBODY@") {
                    b"550 5.1.1 no such user\r\n"
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
    (port, messages, commands)
}

/// The `message/delivery-status` part of a DSN, as text.
pub fn delivery_status(raw: &str) -> String {
    use mail_parser::MimeHeaders;
    let msg = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("DSN parses");
    let part = msg
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("delivery-status")))
        .expect("a message/delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}

pub const MESSAGE: &str = "From: alice@example.test\r\nTo: someone\r\nSubject: hello\r\n\r\nHello there.\r\n";

/// Maildir names (`<secs>.M<micros>P<pid>Q<counter>.<host>`) in delivery order: the
/// microseconds are not zero-padded, so a plain string sort is not the order of delivery.
fn delivery_order(path: &std::path::Path) -> (u64, u64, u64, String) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let field = |tag: char| -> u64 {
        name.split('.')
            .nth(1)
            .and_then(|mid| {
                let at = mid.find(tag)? + 1;
                mid[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
            })
            .unwrap_or(0)
    };
    let secs = name.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (secs, field('M'), field('Q'), name.clone())
}
