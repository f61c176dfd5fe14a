//! The server's log: where it goes, how outside text is kept from forging lines, and how
//! repeated errors are counted instead of written one by one (docs/hardening.md, "Logs").

mod batched;
mod escape;
mod format;
mod limit;
pub mod recent;

use dakiya_config::Log;
use format::{Style, layer};
use limit::{Limiter, grouped};
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs to stderr, `RUST_LOG` filtering (default `info`), in the format `log` names, every
/// line escaped ([`EscapingWriter`], or its JSON counterpart). No ANSI colours even on a
/// terminal: the escaping would show the formatter's own colour codes as `\x1b[…m`, and a
/// log that can never carry an escape sequence is simpler to trust than one that carries
/// only "ours". Text lines leave out the time when stderr is systemd's journal, unless
/// `log.timestamps` says otherwise. Lines are gathered and written together, at most
/// [`batched::DELAY`] late ([`batched`]); [`flush`] writes out what is gathered, and a panic
/// does so before its message.
pub fn init(log: &Log) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let style = Style::new(log, format::stderr_is_journal());
    let out = OUTPUT.get_or_init(|| batched::Batched::start(Box::new(io::stderr())));
    let make = {
        let out = Arc::clone(out);
        move || batched::Handle(Arc::clone(&out))
    };
    tracing_subscriber::registry().with(filter).with(layer(style, make)).with(recent::Recent::default()).init();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The lines logged before the panic come before its message.
        if let Some(out) = OUTPUT.get() {
            out.try_write_out();
        }
        previous(info);
    }));
    spawn_reporter();
}

/// Where [`init`]'s lines are gathered.
static OUTPUT: OnceLock<Arc<batched::Batched>> = OnceLock::new();

/// Writes out the log lines gathered so far (before the process exits, or prints to stderr
/// itself).
pub fn flush() {
    if let Some(out) = OUTPUT.get() {
        out.write_out(None);
    }
}

/// A log kept in memory: what a server started in-process ([`crate::Server`]) writes.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The log of one in-process server: the lines [`init`] would write to stderr (`info` and
/// above, whatever `RUST_LOG` says), written into `buffer`, with its own counts of
/// [`Repeated`] lines, so that servers in one process neither mix their lines nor share
/// their limits. The lines take the format `log` names (a buffer is never the journal).
/// The caller installs it on every thread of that server.
pub fn to_buffer(buffer: Buffer, log: &Log) -> tracing::Dispatch {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(layer(Style::new(log, false), move || buffer.clone()))
        .with(Counts::default())
        .with(recent::Recent::default());
    tracing::Dispatch::new(subscriber)
}

/// Reports the counts of ended periods every second, as the thread of [`init`] does, for the
/// server whose dispatcher the calling task runs under ([`to_buffer`]).
pub async fn report_counts() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        flush_all(Instant::now());
    }
}

/// How many lines of one [`Repeated`] kind are written per period.
const LINES_PER_PERIOD: u32 = 5;
/// The period of the [`Repeated`] limits.
const PERIOD: Duration = Duration::from_secs(10);

/// A log line that an outsider can cause once per message or connection: at most
/// [`LINES_PER_PERIOD`] of them per [`PERIOD`], then one line with the count of the rest.
pub struct Repeated {
    /// The line's message, repeated in the count line.
    what: &'static str,
    level: Level,
    limiter: Mutex<Limiter>,
}

impl Repeated {
    pub const fn new(what: &'static str, level: Level) -> Repeated {
        Repeated { what, level, limiter: Mutex::new(Limiter::new(LINES_PER_PERIOD, PERIOD)) }
    }

    /// The line's message.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Whether to write a line of this kind now. Reports lines held back in an ended period
    /// first, so the count comes before the next line shown.
    pub fn admit(&self) -> bool {
        let now = Instant::now();
        let verdict = match own_counts() {
            Some(counts) => lock(&counts).entry(self.what).or_insert_with(new_limiter).admit(now),
            None => self.lock().admit(now),
        };
        if verdict.hidden_before > 0 {
            self.report(verdict.hidden_before);
        }
        verdict.show
    }

    /// Reports the lines held back in a period that has ended by `now`, if any.
    fn flush(&self, now: Instant) {
        let hidden = match own_counts() {
            Some(counts) => lock(&counts).get_mut(self.what).map_or(0, |l| l.flush(now)),
            None => self.lock().flush(now),
        };
        if hidden > 0 {
            self.report(hidden);
        }
    }

    /// The limiter of the process (the counts of the server run by `dakiya serve`).
    fn lock(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, more: u64) {
        let (what, count, secs) = (self.what, grouped(more), PERIOD.as_secs());
        // tracing needs the level at compile time.
        match self.level {
            Level::ERROR => tracing::error!(more, "{what} … and {count} more in the last {secs} s"),
            Level::WARN => tracing::warn!(more, "{what} … and {count} more in the last {secs} s"),
            _ => tracing::info!(more, "{what} … and {count} more in the last {secs} s"),
        }
    }
}

/// The message could not be stored (a full disk refuses every message).
pub static STORE_FAILED: Repeated = Repeated::new("cannot store message", Level::ERROR);
/// A message could not be read back (or its envelope rewritten) for verification or signing.
pub static READ_BACK_FAILED: Repeated = Repeated::new("cannot read back the message for authentication", Level::ERROR);
/// A connection over the total or per-address limit.
pub static TOO_MANY_CONNECTIONS: Repeated = Repeated::new("connection refused: too many connections", Level::WARN);
/// `accept` failed (EMFILE and friends).
pub static ACCEPT_FAILED: Repeated = Repeated::new("accept failed", Level::WARN);

/// A full server closed an idle session to admit a new client (one per connection in a flood).
pub static EVICTED: Repeated = Repeated::new("server full: closed the longest idle session to make room", Level::INFO);
/// A password could not be checked (a broken users file fails every AUTH).
pub static CHECK_FAILED: Repeated = Repeated::new("password check failed", Level::ERROR);

/// A DNS list answered with a code outside those configured (such as 127.255.255.254).
pub static DNSBL_UNEXPECTED: Repeated =
    Repeated::new("DNS list answered a code it is not configured to count", Level::WARN);
/// A client spoke before the greeting, or pipelined where PIPELINING was not offered.
pub static EARLY_TALKER: Repeated = Repeated::new("client refused: it did not wait for our reply", Level::INFO);
/// A client refused by the DNS lists, FCrDNS or HELO checks.
pub static SCREENED: Repeated = Repeated::new("client refused by screening", Level::INFO);

static ALL: [&Repeated; 9] = [
    &STORE_FAILED,
    &READ_BACK_FAILED,
    &TOO_MANY_CONNECTIONS,
    &ACCEPT_FAILED,
    &EVICTED,
    &CHECK_FAILED,
    &DNSBL_UNEXPECTED,
    &EARLY_TALKER,
    &SCREENED,
];

/// The limiters of one in-process server, by [`Repeated::what`]: a layer of its dispatcher
/// ([`to_buffer`]) that only holds them. Under any other dispatcher (`dakiya serve`, unit
/// tests) each [`Repeated`] uses its own limiter.
#[derive(Default)]
struct Counts(Arc<Mutex<HashMap<&'static str, Limiter>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counts {}

/// The limiters of the in-process server whose dispatcher is the current one, if any.
fn own_counts() -> Option<Arc<Mutex<HashMap<&'static str, Limiter>>>> {
    tracing::dispatcher::get_default(|d| d.downcast_ref::<Counts>().map(|c| c.0.clone()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_limiter() -> Limiter {
    Limiter::new(LINES_PER_PERIOD, PERIOD)
}

/// Reports the lines of every kind held back in periods that have ended by `now`.
fn flush_all(now: Instant) {
    for kind in ALL {
        kind.flush(now);
    }
}

/// A thread that reports the counts of ended periods within a second, also when no further
/// line of the kind comes to carry them.
fn spawn_reporter() {
    let spawned = std::thread::Builder::new().name("log-counts".into()).spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            flush_all(Instant::now());
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log count reporter; counts come with the next line");
    }
}

/// What `f` logs (at every level, without timestamps), as the server would write it.
#[cfg(test)]
pub fn capture(f: impl FnOnce()) -> String {
    let sink = tests::Sink::default();
    let make = {
        let sink = sink.clone();
        move || sink.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(escape::Escaping(make))
        .with_max_level(Level::TRACE)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().0.clone();
    String::from_utf8(bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use super::escape::{Escaping, EscapingWriter};
    use super::*;
    use std::sync::Arc;

    /// A shared buffer that records how many writes it got.
    #[derive(Clone, Default)]
    pub(super) struct Sink(pub(super) Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_one_escaped_line_whatever_field_carries_control_characters() {
        let forged = "evil\n2026-01-01T00:00:00Z  INFO accepted queue_id=FAKE\x1b[31m\r";
        let text = capture(|| {
            tracing::info!(user = %forged, other = forged, "auth {forged}");
            tracing::warn!("second");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "one line per event: {text:?}");
        assert!(lines[0].starts_with(" INFO auth evil\\n2026-01-01T00:00:00Z  INFO accepted"), "{text:?}");
        assert!(lines[0].contains("user=evil\\n2026"), "{text:?}");
        assert!(lines[0].contains("FAKE\\x1b[31m\\r"), "{text:?}");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert_eq!(lines[1], " WARN second");
    }

    #[test]
    fn the_formatter_writes_an_event_in_one_call() {
        let sink = Sink::default();
        let make = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let subscriber = tracing_subscriber::fmt().with_writer(Escaping(make)).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(a = "x\ny", b = %"z\n", "one\ntwo");
            tracing::info!("three");
        });
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        assert_eq!(writes, 2, "{:?}", String::from_utf8_lossy(&bytes));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2);
    }

    #[test]
    fn repeated_lines_are_counted() {
        static KIND: Repeated = Repeated::new("disk on fire", Level::ERROR);
        let text = capture(|| {
            let shown = (0..100).filter(|_| KIND.admit()).count();
            assert_eq!(shown, LINES_PER_PERIOD as usize);
            KIND.flush(Instant::now() + PERIOD);
        });
        assert_eq!(text, "ERROR disk on fire … and 95 more in the last 10 s more=95\n");
    }

    /// What `f` logs in JSON (without timestamps), one value per line.
    fn capture_json(f: impl FnOnce()) -> Vec<serde_json::Value> {
        use dakiya_config::{LogFormat, Timestamps};
        let sink = Sink::default();
        let make = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let style = Style::new(&Log { format: LogFormat::Json, timestamps: Timestamps::Never }, false);
        let subscriber = tracing_subscriber::registry().with(layer(style, make));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
    }

    #[test]
    fn a_json_event_is_one_line_whose_values_round_trip() {
        let hostile = "mx.evil\r\n\u{1b}[31m\u{202e}gnp.exe\u{2066}\u{9b}\u{7f}\u{2028}end\"}";
        let lines = capture_json(|| {
            tracing::info!(helo = hostile, queue_id = %"ABC", size = 12_u64, "hello {hostile}");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["helo"], hostile);
        assert_eq!(line["message"], format!("hello {hostile}"));
        assert_eq!(line["queue_id"], "ABC");
        assert_eq!(line["size"], 12);
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn repeated_lines_are_counted_in_json_too() {
        static KIND: Repeated = Repeated::new("disk melting", Level::WARN);
        let lines = capture_json(|| {
            let shown = (0..20).filter(|_| KIND.admit()).count();
            assert_eq!(shown, LINES_PER_PERIOD as usize);
            KIND.flush(Instant::now() + PERIOD);
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "disk melting … and 15 more in the last 10 s");
        assert_eq!(lines[0]["more"], 15);
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn a_write_takes_the_whole_buffer() {
        let mut w = EscapingWriter(Vec::new());
        assert_eq!(w.write(b"a\x1bb\n").unwrap(), 4);
        assert_eq!(w.0, b"a\\x1bb\n");
    }
}
