//! SMTP load generator for `scripts/bench` (std only, one OS thread per session).
//!
//! `loadgen load --addr 127.0.0.1:PORT [--sessions 20] [--duration 12] [--warmup 2]
//!               [--size 5120] [--from a@bench.test] [--to b@bench.test]`
//!   Runs SESSIONS sessions, one TCP connection each, for WARMUP+DURATION seconds. Each session
//!   sends EHLO once, then MAIL/RCPT/DATA/body transactions back to back (no pipelining: every
//!   command waits for its reply, like smtp-source). A transaction's latency is the time from
//!   writing MAIL FROM to reading the 250 after the final dot. Transactions that complete during
//!   the warm-up are not counted. Prints one JSON object on stdout.
//!
//! `loadgen idle --addr 127.0.0.1:PORT [--conns 1000] [--hold-max 120]`
//!   Opens CONNS connections, reads each banner, sends EHLO and reads the whole reply, then
//!   prints `READY opened=N failed=F` on stdout and holds them until a line (or EOF) arrives on
//!   stdin, or HOLD-MAX seconds pass. Then sends QUIT on each, closes them, and prints `DONE`.
//!
//! Only loopback addresses are accepted, and every loop is bounded in count and time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAX_SESSIONS: usize = 1000;
const MAX_CONNS: usize = 20_000;
const MAX_DURATION_S: f64 = 600.0;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A session that hits this many failed transactions stops.
const MAX_ERRORS_PER_SESSION: u64 = 100;

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

struct Opts {
    addr: SocketAddr,
    sessions: usize,
    duration: f64,
    warmup: f64,
    size: usize,
    from: String,
    to: String,
    conns: usize,
    hold_max: f64,
    connect_threads: usize,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        addr: "127.0.0.1:2525".parse().unwrap(),
        sessions: 20,
        duration: 12.0,
        warmup: 2.0,
        size: 5120,
        from: "a@bench.test".into(),
        to: "b@bench.test".into(),
        conns: 1000,
        hold_max: 120.0,
        connect_threads: 8,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let mut v = || it.next().cloned().ok_or_else(|| format!("{k} needs a value"));
        let num = |s: String| s.parse::<f64>().map_err(|_| format!("{k}: not a number: {s}"));
        match k.as_str() {
            "--addr" => {
                let s = v()?;
                o.addr = s
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {s}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--addr {s}: no address"))?;
            }
            "--sessions" => o.sessions = num(v()?)? as usize,
            "--duration" => o.duration = num(v()?)?,
            "--warmup" => o.warmup = num(v()?)?,
            "--size" => o.size = num(v()?)? as usize,
            "--from" => o.from = v()?,
            "--to" => o.to = v()?,
            "--conns" => o.conns = num(v()?)? as usize,
            "--hold-max" => o.hold_max = num(v()?)?,
            "--connect-threads" => o.connect_threads = num(v()?)? as usize,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    // Network rule: loopback only.
    if !o.addr.ip().is_loopback() {
        return Err(format!("refusing non-loopback address {}", o.addr));
    }
    if o.sessions == 0 || o.sessions > MAX_SESSIONS {
        return Err(format!("--sessions must be 1..={MAX_SESSIONS}"));
    }
    if !(o.duration > 0.0 && o.duration + o.warmup <= MAX_DURATION_S && o.warmup >= 0.0) {
        return Err(format!("--warmup + --duration must be in (0, {MAX_DURATION_S}] s"));
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

fn run(args: &[String]) -> Res<()> {
    let (cmd, rest) = args.split_first().ok_or("usage: loadgen load|idle [options]")?;
    let o = parse(rest)?;
    match cmd.as_str() {
        "load" => load(&o),
        "idle" => idle(&o),
        _ => Err(format!("unknown command {cmd}")),
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP client connection

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    line: String,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Res<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        s.set_write_timeout(Some(IO_TIMEOUT)).ok();
        let w = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn { r: BufReader::with_capacity(16 * 1024, s), w, line: String::new() })
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
                return Ok(u16::from(b[0] - b'0') * 100
                    + u16::from(b[1] - b'0') * 10
                    + u16::from(b[2] - b'0'));
            }
        }
        Err("reply longer than 1000 lines".into())
    }

    fn cmd(&mut self, data: &[u8]) -> Res<u16> {
        self.w.write_all(data).map_err(|e| format!("write: {e}"))?;
        self.reply()
    }

    fn expect(&mut self, data: &[u8], class: u16, what: &str) -> Res<()> {
        let code = self.cmd(data)?;
        if code / 100 != class {
            return Err(format!("{what}: {code} {}", self.line.trim_end()));
        }
        Ok(())
    }

    fn greet(&mut self) -> Res<()> {
        let code = self.reply()?;
        if code != 220 {
            return Err(format!("banner: {}", self.line.trim_end()));
        }
        self.expect(b"EHLO loadgen.bench.test\r\n", 2, "EHLO")
    }
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
    const MON: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[(days % 7) as usize],
        d,
        MON[(mo - 1) as usize],
        y,
        h,
        m,
        s
    )
}

#[derive(Default)]
struct SessionResult {
    /// (completion time since start in µs, latency in µs) of each completed transaction.
    done: Vec<(u64, u32)>,
    errors: u64,
    reconnects: u64,
    first_error: Option<String>,
}

fn session(
    id: usize,
    o: Arc<Opts>,
    body: Arc<Vec<u8>>,
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> SessionResult {
    let mut res = SessionResult::default();
    res.done.reserve(100_000);
    let mail = format!("MAIL FROM:<{}>\r\n", o.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", o.to);
    let date = rfc2822_now();
    let mut conn: Option<Conn> = None;
    let mut seq: u64 = 0;
    let mut msg = Vec::with_capacity(body.len() + 512);
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        if res.errors >= MAX_ERRORS_PER_SESSION {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                match Conn::connect(o.addr).and_then(|mut c| c.greet().map(|()| c)) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        res.errors += 1;
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
        seq += 1;
        msg.clear();
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
                let lat = (t1 - t0).as_micros().min(u128::from(u32::MAX)) as u32;
                res.done.push(((t1 - start).as_micros() as u64, lat));
            }
            Err(e) => {
                res.errors += 1;
                res.first_error.get_or_insert(e.clone());
                // A negative reply leaves the session usable: reset it. An I/O error does not.
                let keep = !e.starts_with("read") && !e.starts_with("write")
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

fn load(o: &Opts) -> Res<()> {
    let body = Arc::new(payload(o.size));
    let o = Arc::new(Opts { from: o.from.clone(), to: o.to.clone(), ..*o });
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(o.warmup);
    let end = measure_from + Duration::from_secs_f64(o.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for id in 0..o.sessions {
        let (o, body, stop) = (o.clone(), body.clone(), stop.clone());
        handles.push(
            thread::Builder::new()
                .name(format!("session-{id}"))
                .stack_size(256 * 1024)
                .spawn(move || session(id, o, body, start, end, stop))
                .map_err(|e| e.to_string())?,
        );
    }
    // Hard stop: whatever happens, the run ends shortly after its deadline.
    let watchdog_stop = stop.clone();
    let hard_deadline = end + IO_TIMEOUT + Duration::from_secs(5);
    thread::spawn(move || {
        while Instant::now() < hard_deadline {
            thread::sleep(Duration::from_millis(200));
        }
        watchdog_stop.store(true, Ordering::Relaxed);
        eprintln!("loadgen: sessions did not finish in time; exiting");
        std::process::exit(3);
    });

    let from_us = (measure_from - start).as_micros() as u64;
    let to_us = (end - start).as_micros() as u64;
    let mut lats: Vec<u32> = Vec::new();
    let (mut errors, mut reconnects, mut all_done) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut sessions_ok = 0usize;
    for h in handles {
        let r = h.join().map_err(|_| "session thread panicked".to_string())?;
        all_done += r.done.len() as u64;
        if !r.done.is_empty() {
            sessions_ok += 1;
        }
        lats.extend(r.done.iter().filter(|(t, _)| *t >= from_us && *t <= to_us).map(|(_, l)| *l));
        errors += r.errors;
        reconnects += r.reconnects;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    lats.sort_unstable();
    let n = lats.len();
    let mean = if n > 0 { lats.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64 / 1000.0 } else { 0.0 };
    let rate = n as f64 / o.duration;
    let err_json = match &first_error {
        Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".into(),
    };
    println!(
        "{{\"sessions\":{},\"sessions_with_mail\":{},\"warmup_s\":{},\"duration_s\":{},\"size\":{},\
         \"messages\":{},\"messages_incl_warmup\":{},\"msgs_per_s\":{:.1},\
         \"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3},\"mean\":{:.3}}},\
         \"errors\":{},\"reconnects\":{},\"first_error\":{}}}",
        o.sessions,
        sessions_ok,
        o.warmup,
        o.duration,
        o.size,
        n,
        all_done,
        rate,
        pct(&lats, 50.0),
        pct(&lats, 90.0),
        pct(&lats, 99.0),
        lats.last().map_or(0.0, |&l| f64::from(l) / 1000.0),
        mean,
        errors,
        reconnects,
        err_json
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
// idle

fn idle(o: &Opts) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let per = o.conns.div_ceil(o.connect_threads);
    let addr = o.addr;
    let mut handles = Vec::new();
    let mut left = o.conns;
    for _ in 0..o.connect_threads {
        let k = per.min(left);
        left -= k;
        if k == 0 {
            break;
        }
        handles.push(thread::spawn(move || {
            let mut conns = Vec::with_capacity(k);
            let mut failed = 0usize;
            let mut first_error = None;
            for _ in 0..k {
                if Instant::now() > deadline {
                    failed += 1;
                    continue;
                }
                match Conn::connect(addr).and_then(|mut c| c.greet().map(|()| c)) {
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
        c.w.set_write_timeout(Some(Duration::from_secs(1))).ok();
        let _ = c.w.write_all(b"QUIT\r\n");
    }
    drop(conns);
    println!("DONE");
    Ok(())
}
