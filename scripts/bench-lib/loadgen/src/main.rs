//! SMTP load generator for `scripts/bench` (one OS thread per session or worker, blocking I/O).
//!
//! `loadgen load --addr 127.0.0.1:PORT [--sessions 20] [--duration 12] [--warmup 2]
//!               [--size 5120] [--from a@bench.test] [--to b@bench.test]
//!               [--starttls | --implicit-tls] [--auth USER:PASS]
//!               [--message FILE] [--count N]`
//!   Runs SESSIONS sessions, one TCP connection each, for WARMUP+DURATION seconds. Each session
//!   sets up once (banner, EHLO; with --starttls: STARTTLS, the TLS handshake, EHLO again; with
//!   --implicit-tls: the TLS handshake before the banner; with --auth: AUTH PLAIN once, after
//!   TLS), then runs MAIL/RCPT/DATA/body transactions back to back (no pipelining: every
//!   command waits for its reply, like smtp-source). A transaction's latency is the time from
//!   writing MAIL FROM to reading the 250 after the final dot. Transactions that complete during
//!   the warm-up are not counted. Prints one JSON object on stdout.
//!   --message FILE: every transaction sends the message in FILE as it is (headers and body:
//!   e.g. a DKIM-signed message; LF line ends become CRLF, lines starting with "." are
//!   dot-stuffed) instead of generated headers and a SIZE-byte body; --size is then ignored.
//!   --count N: stop once N transactions have been started (all sessions together) and have
//!   finished; --duration is then only a time limit, --warmup must be 0, and msgs_per_s is N
//!   (the completed ones) over the time from the start to the last completion (`elapsed_s`).
//!
//! `loadgen handshakes --addr 127.0.0.1:PORT [--sessions 8] [--duration 8] [--warmup 1] [--plain]`
//!   (also `loadgen --handshakes ...`) Each of SESSIONS workers repeats, until the deadline:
//!   connect, TLS handshake (implicit TLS, port 465 style), read the 220, QUIT, read the 221,
//!   wait for the server to close, close. Latency = from connect() to the 220 (TCP + TLS
//!   handshake + banner). With --plain there is no TLS: the same cycle in clear text, the
//!   baseline that the TLS handshake adds to. Prints one JSON object.
//!
//! `loadgen auth-rate --addr 127.0.0.1:PORT --auth USER:PASS [--sessions 4] [--duration 8]
//!                    [--warmup 1] [--starttls]`
//!   (also `loadgen --auth-rate ...`) Each worker repeats: connect over implicit TLS (or
//!   --starttls), EHLO, AUTH PLAIN, QUIT, close. Latency = from writing AUTH to reading the 235.
//!   A rejected AUTH (4xx/5xx) stops the whole run at once: the server's brute-force throttle
//!   would otherwise slow down and lock out everything after it.
//!
//! `loadgen idle --addr 127.0.0.1:PORT [--conns 1000] [--hold-max 120]`
//!   Opens CONNS connections, reads each banner, sends EHLO and reads the whole reply, then
//!   prints `READY opened=N failed=F` on stdout and holds them until a line (or EOF) arrives on
//!   stdin, or HOLD-MAX seconds pass. Then sends QUIT on each, closes them, and prints `DONE`.
//!   (--starttls / --implicit-tls / --auth apply here as well.)
//!
//! TLS: rustls with the ring provider, TLS 1.3 or 1.2 (`--tls-version 1.2|1.3` to pin one),
//! SNI `--server-name` (default bench.test), no session resumption (every handshake is a full
//! one). The server's certificate is NOT checked against any trust anchor or name: the
//! benchmark's server has a self-signed certificate and talks over loopback only. The
//! handshake signature is still verified, as a real client would, so the client does the same
//! public-key work a real one does.
//!
//! Only loopback addresses are accepted, and every loop is bounded in count and time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

const MAX_SESSIONS: usize = 1000;
const MAX_CONNS: usize = 20_000;
const MAX_DURATION_S: f64 = 600.0;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A session that hits this many failed transactions stops.
const MAX_ERRORS_PER_SESSION: u64 = 100;
/// A handshakes/auth-rate worker stops after this many failed cycles.
const MAX_ERRORS_PER_WORKER: u64 = 20;
/// The most cycles one handshakes/auth-rate worker runs, whatever the duration.
const MAX_CYCLES_PER_WORKER: usize = 2_000_000;

type Res<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("loadgen: {e}");
            2
        }
    };
    std::process::exit(code);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Plain,
    StartTls,
    ImplicitTls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::StartTls => "starttls",
            Transport::ImplicitTls => "implicit-tls",
        }
    }
}

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    sessions: Option<usize>,
    duration: Option<f64>,
    warmup: Option<f64>,
    size: usize,
    from: String,
    to: String,
    conns: usize,
    hold_max: f64,
    connect_threads: usize,
    transport: Option<Transport>,
    plain: bool,
    auth: Option<(String, String)>,
    server_name: String,
    tls_version: Option<String>,
    /// --message: the whole message, CRLF line ends, dot-stuffed, ending in CRLF.
    message: Option<Arc<Vec<u8>>>,
    /// --message: the file's name (for the JSON).
    message_file: Option<String>,
    count: Option<u64>,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        addr: "127.0.0.1:2525".parse().unwrap(),
        sessions: None,
        duration: None,
        warmup: None,
        size: 5120,
        from: "a@bench.test".into(),
        to: "b@bench.test".into(),
        conns: 1000,
        hold_max: 120.0,
        connect_threads: 8,
        transport: None,
        plain: false,
        auth: None,
        server_name: "bench.test".into(),
        tls_version: None,
        message: None,
        message_file: None,
        count: None,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let mut v = || it.next().cloned().ok_or_else(|| format!("{k} needs a value"));
        let num = |s: String| s.parse::<f64>().map_err(|_| format!("{k}: not a number: {s}"));
        let set_transport = |o: &mut Opts, t: Transport| -> Res<()> {
            match o.transport {
                Some(old) if old != t => Err("--starttls and --implicit-tls exclude each other".into()),
                _ => {
                    o.transport = Some(t);
                    Ok(())
                }
            }
        };
        match k.as_str() {
            "--addr" => {
                let s = v()?;
                o.addr = s
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {s}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--addr {s}: no address"))?;
            }
            "--sessions" | "--workers" => o.sessions = Some(num(v()?)? as usize),
            "--duration" => o.duration = Some(num(v()?)?),
            "--warmup" => o.warmup = Some(num(v()?)?),
            "--size" => o.size = num(v()?)? as usize,
            "--from" => o.from = v()?,
            "--to" => o.to = v()?,
            "--conns" => o.conns = num(v()?)? as usize,
            "--hold-max" => o.hold_max = num(v()?)?,
            "--connect-threads" => o.connect_threads = num(v()?)? as usize,
            "--starttls" => set_transport(&mut o, Transport::StartTls)?,
            "--implicit-tls" => set_transport(&mut o, Transport::ImplicitTls)?,
            "--plain" => o.plain = true,
            "--auth" => {
                let s = v()?;
                let (u, p) = s.split_once(':').ok_or("--auth wants USER:PASS")?;
                if u.is_empty() || p.is_empty() || s.contains('\0') {
                    return Err("--auth wants USER:PASS, both non-empty".into());
                }
                o.auth = Some((u.to_owned(), p.to_owned()));
            }
            "--server-name" => o.server_name = v()?,
            "--message" => {
                let f = v()?;
                let raw = std::fs::read(&f).map_err(|e| format!("--message {f}: {e}"))?;
                if raw.len() > 50_000_000 {
                    return Err(format!("--message {f}: too large"));
                }
                o.message = Some(Arc::new(smtp_data(&raw)));
                o.message_file = Some(f);
            }
            "--count" => {
                let n = num(v()?)?;
                if !(n >= 1.0 && n <= 10_000_000.0) {
                    return Err("--count must be 1..=10000000".into());
                }
                o.count = Some(n as u64);
            }
            "--tls-version" => {
                let s = v()?;
                if s != "1.2" && s != "1.3" {
                    return Err("--tls-version must be 1.2 or 1.3".into());
                }
                o.tls_version = Some(s);
            }
            _ => return Err(format!("unknown option {k}")),
        }
    }
    // Network rule: loopback only.
    if !o.addr.ip().is_loopback() {
        return Err(format!("refusing non-loopback address {}", o.addr));
    }
    if let Some(s) = o.sessions
        && (s == 0 || s > MAX_SESSIONS)
    {
        return Err(format!("--sessions must be 1..={MAX_SESSIONS}"));
    }
    if let Some(d) = o.duration
        && !(d > 0.0 && d <= MAX_DURATION_S)
    {
        return Err(format!("--duration must be in (0, {MAX_DURATION_S}] s"));
    }
    if let Some(w) = o.warmup
        && !(0.0..=MAX_DURATION_S).contains(&w)
    {
        return Err(format!("--warmup must be in [0, {MAX_DURATION_S}] s"));
    }
    if o.duration.unwrap_or(0.0) + o.warmup.unwrap_or(0.0) > MAX_DURATION_S {
        return Err(format!("--warmup + --duration must be at most {MAX_DURATION_S} s"));
    }
    if o.conns == 0 || o.conns > MAX_CONNS {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if !(o.hold_max > 0.0 && o.hold_max <= MAX_DURATION_S) {
        return Err(format!("--hold-max must be in (0, {MAX_DURATION_S}] s"));
    }
    if o.size > 50_000_000 {
        return Err("--size too large".into());
    }
    o.connect_threads = o.connect_threads.clamp(1, 64);
    Ok(o)
}

/// A message file as SMTP DATA content: CRLF line ends (a bare LF becomes CRLF), lines that
/// start with "." get another one (RFC 5321 §4.5.2), and a final CRLF.
fn smtp_data(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40 + 2);
    let mut at_line_start = true;
    for (i, &b) in raw.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn run(args: &[String]) -> Res<()> {
    let (cmd, rest) = args
        .split_first()
        .ok_or("usage: loadgen load|idle|handshakes|auth-rate [options] (see the source's header)")?;
    // `--handshakes` and `--auth-rate` are accepted as spellings of the commands.
    let cmd = cmd.trim_start_matches("--");
    let mut o = parse(rest)?;
    match cmd {
        "load" => {
            o.sessions.get_or_insert(20);
            o.duration.get_or_insert(12.0);
            if o.count.is_some() {
                if o.warmup.unwrap_or(0.0) != 0.0 {
                    return Err("--count needs --warmup 0 (run a warm-up as a separate run)".into());
                }
                o.warmup = Some(0.0);
                o.duration.get_or_insert(MAX_DURATION_S);
            }
            o.warmup.get_or_insert(2.0);
            load(&o)
        }
        "idle" => idle(&o),
        "handshakes" => {
            if o.auth.is_some() {
                return Err("handshakes: --auth makes no sense here (use auth-rate)".into());
            }
            if o.plain && o.transport.is_some() {
                return Err("handshakes: --plain excludes --starttls/--implicit-tls".into());
            }
            if o.transport == Some(Transport::StartTls) {
                return Err("handshakes: implicit TLS only (or --plain)".into());
            }
            o.transport = Some(if o.plain { Transport::Plain } else { Transport::ImplicitTls });
            o.sessions.get_or_insert(8);
            o.duration.get_or_insert(8.0);
            o.warmup.get_or_insert(1.0);
            cycles(&o, Op::Handshake)
        }
        "auth-rate" => {
            if o.auth.is_none() {
                return Err("auth-rate needs --auth USER:PASS".into());
            }
            if o.plain {
                return Err("auth-rate: --plain is not supported (AUTH is only offered over TLS)".into());
            }
            o.transport.get_or_insert(Transport::ImplicitTls);
            o.sessions.get_or_insert(4);
            o.duration.get_or_insert(8.0);
            o.warmup.get_or_insert(1.0);
            cycles(&o, Op::Auth)
        }
        _ => Err(format!("unknown command {cmd}")),
    }
}

// ---------------------------------------------------------------------------------------------
// TLS client configuration

/// Accepts whatever certificate the server presents (self-signed, any name, expired): test
/// only, for a loopback benchmark. It does verify the handshake signature with the
/// certificate's key, as any real client does, so the client's CPU work is realistic.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// What the first completed handshake negotiated (for the report).
    seen: Mutex<Option<String>>,
}

fn tls_setup(o: &Opts) -> Res<Option<Arc<Tls>>> {
    if o.transport.unwrap_or(Transport::Plain) == Transport::Plain {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match o.tls_version.as_deref() {
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        _ => rustls::DEFAULT_VERSIONS,
    };
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    // Every handshake a full one: what a fresh client costs (dakiya sends no TLS 1.3 tickets
    // anyway; this also rules out TLS 1.2 session-ID resumption).
    config.resumption = rustls::client::Resumption::disabled();
    let name =
        ServerName::try_from(o.server_name.clone()).map_err(|e| format!("--server-name {}: {e}", o.server_name))?;
    Ok(Some(Arc::new(Tls { config: Arc::new(config), name, seen: Mutex::new(None) })))
}

fn describe_tls(c: &ClientConnection) -> String {
    let version = match c.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(v) => format!("{v:?}"),
        None => "?".into(),
    };
    let suite = c.negotiated_cipher_suite().map_or("?".into(), |s| format!("{:?}", s.suite()));
    let kx = c.negotiated_key_exchange_group().map_or("?".into(), |g| format!("{:?}", g.name()));
    format!("{version} {suite} {kx}")
}

// ---------------------------------------------------------------------------------------------
// SMTP client connection

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

struct Conn {
    r: BufReader<Stream>,
    line: String,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Res<Conn> {
        let s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        s.set_write_timeout(Some(IO_TIMEOUT)).ok();
        Ok(Conn::new(Stream::Plain(s)))
    }

    fn new(s: Stream) -> Conn {
        Conn { r: BufReader::with_capacity(16 * 1024, s), line: String::new() }
    }

    /// TLS handshake on a plain connection (right after connect for implicit TLS, after the
    /// 220 to STARTTLS otherwise). Fails if the server has sent anything we have not read:
    /// plaintext injected before the handshake must not be taken as part of the TLS session.
    fn start_tls(self, tls: &Tls) -> Res<Conn> {
        if !self.r.buffer().is_empty() {
            return Err("server sent data before the TLS handshake".into());
        }
        let Stream::Plain(mut sock) = self.r.into_inner() else {
            return Err("TLS already started".into());
        };
        let mut c = ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(|e| format!("TLS: {e}"))?;
        // Bounded: every read has IO_TIMEOUT, and complete_io returns once the handshake is
        // done; a handshake takes a few round trips.
        for _ in 0..100 {
            if !c.is_handshaking() {
                break;
            }
            c.complete_io(&mut sock).map_err(|e| format!("TLS handshake: {e}"))?;
        }
        if c.is_handshaking() {
            return Err("TLS handshake did not finish".into());
        }
        let mut seen = tls.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.is_none() {
            *seen = Some(describe_tls(&c));
        }
        drop(seen);
        Ok(Conn::new(Stream::Tls(Box::new(StreamOwned::new(c, sock)))))
    }

    /// Reads one (possibly multi-line) reply and returns its code.
    fn reply(&mut self) -> Res<u16> {
        for _ in 0..1000 {
            self.line.clear();
            let n = self.r.read_line(&mut self.line).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by server".into());
            }
            let b = self.line.as_bytes();
            if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("bad reply line {:?}", self.line.trim_end()));
            }
            if b[3] != b'-' {
                return Ok(u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0'));
            }
        }
        Err("reply longer than 1000 lines".into())
    }

    fn cmd(&mut self, data: &[u8]) -> Res<u16> {
        let w = self.r.get_mut();
        w.write_all(data).and_then(|()| w.flush()).map_err(|e| format!("write: {e}"))?;
        self.reply()
    }

    fn expect(&mut self, data: &[u8], class: u16, what: &str) -> Res<()> {
        let code = self.cmd(data)?;
        if code / 100 != class {
            return Err(format!("{what}: {code} {}", self.line.trim_end()));
        }
        Ok(())
    }

    fn banner(&mut self) -> Res<()> {
        let code = self.reply()?;
        if code != 220 {
            return Err(format!("banner: {}", self.line.trim_end()));
        }
        Ok(())
    }

    fn ehlo(&mut self) -> Res<()> {
        self.expect(b"EHLO loadgen.bench.test\r\n", 2, "EHLO")
    }

    /// AUTH PLAIN with an initial response (RFC 4954, RFC 4616).
    fn auth_plain(&mut self, user: &str, pass: &str) -> Res<()> {
        let mut raw = Vec::with_capacity(user.len() + pass.len() + 2);
        raw.push(0);
        raw.extend_from_slice(user.as_bytes());
        raw.push(0);
        raw.extend_from_slice(pass.as_bytes());
        let line = format!("AUTH PLAIN {}\r\n", base64(&raw));
        let code = self.cmd(line.as_bytes())?;
        if code != 235 {
            return Err(format!("AUTH rejected: {}", self.line.trim_end()));
        }
        Ok(())
    }

    /// QUIT, the 221, then wait (briefly) for the server to close its side, so the server is
    /// the one that closes first, as after any SMTP session.
    fn quit(mut self) -> Res<()> {
        self.expect(b"QUIT\r\n", 2, "QUIT")?;
        self.r.get_ref().tcp().set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut buf = [0u8; 512];
        for _ in 0..16 {
            match self.r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = self.r.get_ref().tcp().shutdown(Shutdown::Both);
        Ok(())
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= ch.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Connects and sets a session up as the options say: implicit TLS (handshake first), banner,
/// EHLO; STARTTLS + handshake + EHLO again; AUTH PLAIN.
fn open_session(o: &Opts, tls: Option<&Tls>) -> Res<Conn> {
    let mut c = Conn::connect(o.addr)?;
    let transport = o.transport.unwrap_or(Transport::Plain);
    if transport == Transport::ImplicitTls {
        c = c.start_tls(tls.ok_or("no TLS configuration")?)?;
    }
    c.banner()?;
    c.ehlo()?;
    if transport == Transport::StartTls {
        c.expect(b"STARTTLS\r\n", 2, "STARTTLS")?;
        c = c.start_tls(tls.ok_or("no TLS configuration")?)?;
        c.ehlo()?;
    }
    if let Some((u, p)) = &o.auth {
        c.auth_plain(u, p)?;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// load

/// The payload: SIZE bytes of 80-byte lines (78 characters + CRLF), like smtp-source -l.
fn payload(size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size + 80);
    let mut n = 0usize;
    while p.len() < size {
        let left = size - p.len();
        let line_len = left.min(80);
        if line_len <= 2 {
            p.extend(std::iter::repeat_n(b'X', line_len));
            break;
        }
        n += 1;
        let tag = format!("{}", n % 10);
        p.extend_from_slice(tag.as_bytes());
        p.extend(std::iter::repeat_n(b'X', line_len - 2 - tag.len()));
        p.extend_from_slice(b"\r\n");
    }
    if !p.ends_with(b"\r\n") {
        p.extend_from_slice(b"\r\n");
    }
    p
}

fn rfc2822_now() -> String {
    // A fixed-format date is enough for a benchmark message; compute it from the epoch.
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil-from-days (Howard Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!("{}, {} {} {} {:02}:{:02}:{:02} +0000", WD[(days % 7) as usize], d, MON[(mo - 1) as usize], y, h, m, s)
}

#[derive(Default)]
struct SessionResult {
    /// (completion time since start in µs, latency in µs) of each completed transaction.
    done: Vec<(u64, u32)>,
    /// Time to set a session up (connect to ready for MAIL: TLS and AUTH included), in µs.
    setups: Vec<u32>,
    errors: u64,
    reconnects: u64,
    first_error: Option<String>,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

struct Run {
    o: Arc<Opts>,
    tls: Option<Arc<Tls>>,
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
    /// Transactions started so far (--count).
    started: AtomicU64,
}

fn session(id: usize, run: Arc<Run>, body: Arc<Vec<u8>>) -> SessionResult {
    let (o, start, end) = (&run.o, run.start, run.end);
    let mut res = SessionResult::default();
    res.done.reserve(100_000);
    let mail = format!("MAIL FROM:<{}>\r\n", o.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", o.to);
    let date = rfc2822_now();
    let mut conn: Option<Conn> = None;
    let mut seq: u64 = 0;
    let mut msg = Vec::with_capacity(body.len() + 512);
    while Instant::now() < end && !run.stop.load(Ordering::Relaxed) {
        if res.errors >= MAX_ERRORS_PER_SESSION {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let t = Instant::now();
                match open_session(o, run.tls.as_deref()) {
                    Ok(c) => {
                        res.setups.push(us(t.elapsed()));
                        conn = Some(c);
                    }
                    Err(e) => {
                        res.errors += 1;
                        if e.starts_with("AUTH rejected") {
                            // Retrying would only feed the server's brute-force throttle.
                            run.stop.store(true, Ordering::Relaxed);
                        }
                        res.first_error.get_or_insert(e);
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                if seq > 0 {
                    res.reconnects += 1;
                }
                conn.as_mut().unwrap()
            }
        };
        if let Some(n) = o.count
            && run.started.fetch_add(1, Ordering::Relaxed) >= n
        {
            break;
        }
        seq += 1;
        msg.clear();
        if let Some(m) = o.message.as_deref() {
            msg.extend_from_slice(m);
        } else {
            write!(
                msg,
                "From: <{}>\r\nTo: <{}>\r\nSubject: bench {id}.{seq}\r\nDate: {date}\r\n\
             Message-ID: <{id}.{seq}.{}@loadgen.bench.test>\r\n\r\n",
                o.from,
                o.to,
                start.elapsed().as_nanos()
            )
            .ok();
            msg.extend_from_slice(&body);
        }
        msg.extend_from_slice(b".\r\n");

        let t0 = Instant::now();
        let r = (|| -> Res<()> {
            c.expect(mail.as_bytes(), 2, "MAIL")?;
            c.expect(rcpt.as_bytes(), 2, "RCPT")?;
            c.expect(b"DATA\r\n", 3, "DATA")?;
            c.expect(&msg, 2, "end of DATA")
        })();
        let t1 = Instant::now();
        match r {
            Ok(()) => {
                res.done.push(((t1 - start).as_micros() as u64, us(t1 - t0)));
            }
            Err(e) => {
                res.errors += 1;
                res.first_error.get_or_insert(e.clone());
                // A negative reply leaves the session usable: reset it. An I/O error does not.
                let keep = !e.starts_with("read")
                    && !e.starts_with("write")
                    && !e.starts_with("connection closed")
                    && c.cmd(b"RSET\r\n").map(|code| code / 100 == 2).unwrap_or(false);
                if !keep {
                    conn = None;
                }
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = c.cmd(b"QUIT\r\n");
    }
    res
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest-rank percentile.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// `{"p50":…,"p90":…,"p99":…,"max":…,"mean":…}` in ms, of µs values (sorted here).
fn lat_json(v: &mut [u32]) -> String {
    v.sort_unstable();
    let n = v.len();
    let mean = if n > 0 { v.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64 / 1000.0 } else { 0.0 };
    format!(
        "{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3},\"mean\":{:.3}}}",
        pct(v, 50.0),
        pct(v, 90.0),
        pct(v, 99.0),
        v.last().map_or(0.0, |&l| f64::from(l) / 1000.0),
        mean
    )
}

fn json_str(s: Option<&str>) -> String {
    match s {
        Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".into(),
    }
}

/// Starts the run clock and a watchdog: whatever happens, the process ends shortly after the
/// deadline.
fn start_run(o: &Opts) -> Res<Arc<Run>> {
    let tls = tls_setup(o)?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.warmup.unwrap_or(0.0) + o.duration.unwrap_or(1.0));
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog_stop = stop.clone();
    let hard_deadline = end + IO_TIMEOUT + Duration::from_secs(5);
    thread::spawn(move || {
        while Instant::now() < hard_deadline {
            thread::sleep(Duration::from_millis(200));
        }
        watchdog_stop.store(true, Ordering::Relaxed);
        eprintln!("loadgen: workers did not finish in time; exiting");
        std::process::exit(3);
    });
    Ok(Arc::new(Run { o: Arc::new(o.clone()), tls, start, end, stop, started: AtomicU64::new(0) }))
}

fn tls_json(run: &Run) -> String {
    let seen = run.tls.as_ref().and_then(|t| t.seen.lock().unwrap_or_else(|e| e.into_inner()).clone());
    json_str(seen.as_deref())
}

fn load(o: &Opts) -> Res<()> {
    let body = Arc::new(payload(o.size));
    let run = start_run(o)?;
    let (sessions, warmup, duration) = (o.sessions.unwrap(), o.warmup.unwrap(), o.duration.unwrap());
    let mut handles = Vec::new();
    for id in 0..sessions {
        let (run, body) = (run.clone(), body.clone());
        handles.push(
            thread::Builder::new()
                .name(format!("session-{id}"))
                .stack_size(256 * 1024)
                .spawn(move || session(id, run, body))
                .map_err(|e| e.to_string())?,
        );
    }
    let from_us = (warmup * 1e6) as u64;
    let to_us = (run.end - run.start).as_micros() as u64;
    let mut lats: Vec<u32> = Vec::new();
    let mut setups: Vec<u32> = Vec::new();
    let (mut errors, mut reconnects, mut all_done) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut sessions_ok = 0usize;
    let mut last_us = 0u64;
    for h in handles {
        let r = h.join().map_err(|_| "session thread panicked".to_string())?;
        all_done += r.done.len() as u64;
        last_us = last_us.max(r.done.iter().map(|(t, _)| *t).max().unwrap_or(0));
        if !r.done.is_empty() {
            sessions_ok += 1;
        }
        lats.extend(r.done.iter().filter(|(t, _)| *t >= from_us && *t <= to_us).map(|(_, l)| *l));
        setups.extend(r.setups);
        errors += r.errors;
        reconnects += r.reconnects;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let n = lats.len();
    // With --count: the completed ones over the time to the last completion.
    let elapsed = if o.count.is_some() { last_us as f64 / 1e6 } else { duration };
    let rate = if elapsed > 0.0 { n as f64 / elapsed } else { 0.0 };
    let size = o.message.as_ref().map_or(o.size, |m| m.len());
    println!(
        "{{\"sessions\":{},\"sessions_with_mail\":{},\"warmup_s\":{},\"duration_s\":{},\"size\":{},\
         \"message_file\":{},\"count\":{},\"elapsed_s\":{:.3},\
         \"transport\":\"{}\",\"auth\":{},\"tls\":{},\
         \"messages\":{},\"messages_incl_warmup\":{},\"msgs_per_s\":{:.1},\
         \"latency_ms\":{},\"session_setups\":{},\"session_setup_ms\":{},\
         \"errors\":{},\"reconnects\":{},\"first_error\":{}}}",
        sessions,
        sessions_ok,
        warmup,
        duration,
        size,
        json_str(o.message_file.as_deref()),
        o.count.map_or("null".to_string(), |c| c.to_string()),
        elapsed,
        o.transport.unwrap_or(Transport::Plain).name(),
        o.auth.is_some(),
        tls_json(&run),
        n,
        all_done,
        rate,
        lat_json(&mut lats),
        setups.len(),
        lat_json(&mut setups),
        errors,
        reconnects,
        json_str(first_error.as_deref())
    );
    if n == 0 {
        return Err(format!(
            "no transaction completed{}",
            first_error.map(|e| format!(" (first error: {e})")).unwrap_or_default()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// handshakes / auth-rate: short connections, one after another, in each worker

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Handshake,
    Auth,
}

#[derive(Default)]
struct CycleResult {
    /// (completion time since start in µs, latency in µs, whole cycle in µs).
    done: Vec<(u64, u32, u32)>,
    errors: u64,
    first_error: Option<String>,
}

/// One cycle; returns (latency, whole cycle). Handshake: latency = connect() to the 220
/// (TCP + TLS handshake + banner). Auth: latency = AUTH written to 235 read.
fn one_cycle(run: &Run, op: Op) -> Res<(Duration, Duration)> {
    let o = &run.o;
    let t0 = Instant::now();
    match op {
        Op::Handshake => {
            let mut c = Conn::connect(o.addr)?;
            if o.transport == Some(Transport::ImplicitTls) {
                c = c.start_tls(run.tls.as_deref().ok_or("no TLS configuration")?)?;
            }
            c.banner()?;
            let lat = t0.elapsed();
            c.quit()?;
            Ok((lat, t0.elapsed()))
        }
        Op::Auth => {
            let (u, p) = o.auth.as_ref().ok_or("no --auth")?;
            // Everything up to AUTH, as open_session does it, then AUTH timed on its own.
            let no_auth = Opts { auth: None, ..(**o).clone() };
            let mut c = open_session(&no_auth, run.tls.as_deref())?;
            let ta = Instant::now();
            c.auth_plain(u, p)?;
            let lat = ta.elapsed();
            c.quit()?;
            Ok((lat, t0.elapsed()))
        }
    }
}

fn cycle_worker(run: Arc<Run>, op: Op) -> CycleResult {
    let mut res = CycleResult::default();
    res.done.reserve(50_000);
    for _ in 0..MAX_CYCLES_PER_WORKER {
        if Instant::now() >= run.end || run.stop.load(Ordering::Relaxed) || res.errors >= MAX_ERRORS_PER_WORKER {
            break;
        }
        match one_cycle(&run, op) {
            Ok((lat, cycle)) => {
                res.done.push(((run.start.elapsed()).as_micros() as u64, us(lat), us(cycle)));
            }
            Err(e) => {
                res.errors += 1;
                let fatal = e.starts_with("AUTH rejected");
                res.first_error.get_or_insert(e);
                if fatal {
                    // A rejected AUTH feeds the brute-force throttle: stop everything.
                    run.stop.store(true, Ordering::Relaxed);
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    res
}

fn cycles(o: &Opts, op: Op) -> Res<()> {
    let run = start_run(o)?;
    let (workers, warmup, duration) = (o.sessions.unwrap(), o.warmup.unwrap(), o.duration.unwrap());
    let mut handles = Vec::new();
    for id in 0..workers {
        let run = run.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("worker-{id}"))
                .stack_size(256 * 1024)
                .spawn(move || cycle_worker(run, op))
                .map_err(|e| e.to_string())?,
        );
    }
    let from_us = (warmup * 1e6) as u64;
    let to_us = (run.end - run.start).as_micros() as u64;
    let (mut lats, mut whole) = (Vec::new(), Vec::new());
    let (mut errors, mut all_done) = (0u64, 0u64);
    let mut first_error: Option<String> = None;
    for h in handles {
        let r = h.join().map_err(|_| "worker thread panicked".to_string())?;
        all_done += r.done.len() as u64;
        for &(t, l, c) in &r.done {
            if t >= from_us && t <= to_us {
                lats.push(l);
                whole.push(c);
            }
        }
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let n = lats.len();
    let (what, latency_is) = match (op, o.transport) {
        (Op::Handshake, Some(Transport::Plain)) => ("connection", "connect() to the 220 banner (no TLS)"),
        (Op::Handshake, _) => ("handshake", "connect() to the 220 banner: TCP + TLS handshake + banner"),
        (Op::Auth, _) => ("auth", "AUTH PLAIN written to 235 read"),
    };
    println!(
        "{{\"op\":\"{}\",\"workers\":{},\"warmup_s\":{},\"duration_s\":{},\"transport\":\"{}\",\"tls\":{},\
         \"ops\":{},\"ops_incl_warmup\":{},\"ops_per_s\":{:.1},\
         \"latency_is\":\"{}\",\"latency_ms\":{},\"cycle_ms\":{},\
         \"errors\":{},\"first_error\":{}}}",
        what,
        workers,
        warmup,
        duration,
        o.transport.unwrap_or(Transport::Plain).name(),
        tls_json(&run),
        n,
        all_done,
        n as f64 / duration,
        latency_is,
        lat_json(&mut lats),
        lat_json(&mut whole),
        errors,
        json_str(first_error.as_deref())
    );
    if n == 0 {
        return Err(format!(
            "no {what} completed{}",
            first_error.map(|e| format!(" (first error: {e})")).unwrap_or_default()
        ));
    }
    if run.stop.load(Ordering::Relaxed) {
        return Err(format!("stopped early: {}", first_error.unwrap_or_default()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// idle

fn idle(o: &Opts) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let per = o.conns.div_ceil(o.connect_threads);
    let tls = tls_setup(o)?;
    let o = Arc::new(o.clone());
    let mut handles = Vec::new();
    let mut left = o.conns;
    for _ in 0..o.connect_threads {
        let k = per.min(left);
        left -= k;
        if k == 0 {
            break;
        }
        let (o, tls) = (o.clone(), tls.clone());
        handles.push(thread::spawn(move || {
            let mut conns = Vec::with_capacity(k);
            let mut failed = 0usize;
            let mut first_error = None;
            for _ in 0..k {
                if Instant::now() > deadline {
                    failed += 1;
                    continue;
                }
                match open_session(&o, tls.as_deref()) {
                    Ok(c) => conns.push(c),
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (conns, failed, first_error)
        }));
    }
    let mut conns = Vec::with_capacity(o.conns);
    let mut failed = 0;
    let mut first_error = None;
    for h in handles {
        let (c, f, e) = h.join().map_err(|_| "connect thread panicked".to_string())?;
        conns.extend(c);
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    if let Some(e) = &first_error {
        eprintln!("loadgen: idle: {failed} connection(s) failed; first error: {e}");
    }
    println!("READY opened={} failed={}", conns.len(), failed);
    io::stdout().flush().ok();

    // Hold until told (a line or EOF on stdin) or until --hold-max.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = io::stdin().read(&mut buf);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs_f64(o.hold_max));

    for c in &mut conns {
        c.r.get_ref().tcp().set_write_timeout(Some(Duration::from_secs(1))).ok();
        let w = c.r.get_mut();
        let _ = w.write_all(b"QUIT\r\n").and_then(|()| w.flush());
    }
    drop(conns);
    println!("DONE");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{base64, smtp_data};

    #[test]
    fn message_file_becomes_smtp_data() {
        assert_eq!(smtp_data(b"A: b\n\n.x\r\n..\nend"), b"A: b\r\n\r\n..x\r\n...\r\nend\r\n");
        assert_eq!(smtp_data(b".\r\n"), b"..\r\n");
        assert_eq!(smtp_data(b"a\r\n"), b"a\r\n");
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(b"\0tim\0tanstaaftanstaaf"), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }
}
