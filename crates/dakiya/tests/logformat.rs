//! `[log]` (issue #16): JSON lines that parse and carry the queue ID, and text lines without
//! a time when stderr is systemd's journal. The journal and the hostile-text cases run the
//! `dakiya serve` binary, because what they test is the process's own stderr and environment.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, TestServer, queue_id, write_config};
use dakiya_proto::logtext::Esc;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JSON: &str = "[log]\nformat = \"json\"\n";

/// Every line of `log` as a JSON object; panics on one that is not.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nlog:\n{log}")))
        .collect()
}

/// The lines whose message is `message`.
fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// Polls `log` until `done` holds for it, or panics after 20 s.
fn wait(what: &str, log: impl Fn() -> String, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = log();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_lines_parse_and_carry_the_queue_id() {
    let s = TestServer::start(JSON);
    let reply = s.connect().send_mail("x@remote.test", &["alice@example.test"], "Subject: json\r\n\r\nhi");
    assert!(reply.starts_with("250"), "{reply}");
    let id = queue_id(&reply);
    s.wait_for("alice", 1);
    let log = wait("the delivered line", || s.log(), |l| l.contains("\"delivered\""));
    let lines = json_lines(&log);
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["message"].is_string(), "{line}");
    }
    let accepted = with_message(&lines, "accepted");
    assert_eq!(accepted.len(), 1, "{log}");
    assert_eq!(accepted[0]["queue_id"], id.as_str(), "{log}");
    assert_eq!(accepted[0]["level"], "INFO");
    // Fields are JSON values: numbers stay numbers.
    assert_eq!(accepted[0]["rcpts"], 1, "{log}");
    let delivered = with_message(&lines, "delivered");
    assert_eq!(delivered.len(), 1, "{log}");
    assert_eq!(delivered[0]["queue_id"], id.as_str(), "{log}");
    assert_eq!(delivered[0]["rcpt"], "alice@example.test", "{log}");
}

/// `dakiya serve` with its stderr in a file of its own.
struct Child {
    child: std::process::Child,
    log: PathBuf,
    addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

/// Where a child's `JOURNAL_STREAM` points.
enum Journal {
    /// Not set.
    Unset,
    /// At its stderr, as systemd sets it.
    Stderr,
    /// At another file (inherited by a process whose stderr went elsewhere).
    Elsewhere,
}

impl Child {
    fn spawn(extra: &str, journal: Journal) -> Child {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), extra);
        let log = dir.path().join("stderr");
        let stderr = std::fs::File::create(&log).unwrap();
        let other = std::fs::File::create(dir.path().join("other")).unwrap();
        let stream = |f: &std::fs::File| {
            let m = f.metadata().unwrap();
            format!("{}:{}", m.dev(), m.ino())
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dakiya"));
        cmd.args(["serve", "--config"]).arg(&cfg).env("RUST_LOG", "info").env_remove("JOURNAL_STREAM");
        match journal {
            Journal::Unset => {}
            Journal::Stderr => drop(cmd.env("JOURNAL_STREAM", stream(&stderr))),
            Journal::Elsewhere => drop(cmd.env("JOURNAL_STREAM", stream(&other))),
        }
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        let mut c = Child { child, log, addrs: Vec::new(), _dir: dir };
        let text = wait("dakiya started", || c.log(), |l| l.contains("dakiya started"));
        c.addrs = text.lines().filter_map(listening).collect();
        assert!(!c.addrs.is_empty(), "{text}");
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `listening` line, text or JSON.
fn listening(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return if v["message"] == "listening" { v["address"].as_str()?.parse().ok() } else { None };
    }
    let rest = line.split("listening address=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn hostile_text_keeps_a_json_line_one_line_and_round_trips() {
    let extra = format!(
        "{JSON}\n[auth]\nplaintext_on_loopback = true\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n"
    );
    let s = Child::spawn(&extra, Journal::Unset);
    let user = "evil\r\n{\"level\":\"INFO\",\"message\":\"accepted\"}\x1b[31m\u{202e}gnp.exe\u{2066}\u{9b}";
    let mut c = Client::connect(s.addrs[1], None);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let plain = B64.encode(format!("\0{user}\0wrong"));
    let r = c.cmd(&format!("AUTH PLAIN {plain}"));
    assert!(r.starts_with("535"), "{r}");
    drop(c);
    let log = wait("the auth line", || s.log(), |l| l.contains("\"auth\""));
    assert!(!log.contains(['\r', '\x1b', '\u{202e}', '\u{2066}', '\u{9b}']), "{log:?}");
    let lines = json_lines(&log);
    let auth = with_message(&lines, "auth");
    assert_eq!(auth.len(), 1, "{log}");
    assert!(with_message(&lines, "accepted").is_empty(), "a forged line: {log}");
    // The field holds the same text as in a text log (outside text through `Esc`), and
    // that text (of the user name as the server keeps it, lowercase) comes back from the
    // JSON exactly.
    assert_eq!(auth[0]["user"], Esc(&user.to_lowercase()).to_string(), "{log}");
    assert_eq!(auth[0]["level"], "WARN");
}

/// The `listening` lines of `log`, which must exist.
fn listening_lines(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" listening address=")).collect();
    assert!(!lines.is_empty(), "{log}");
    lines
}

/// Whether `line` starts with an RFC 3339 time (`2026-12-07T00:33:10.123456Z`).
fn starts_with_time(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn text_lines_in_the_journal_leave_the_time_to_it() {
    let journal = Child::spawn("", Journal::Stderr);
    for line in listening_lines(&journal.log()) {
        assert!(!starts_with_time(line), "{line}");
        assert!(line.starts_with(" INFO listening") || line.starts_with("INFO listening"), "{line}");
    }
    // A JOURNAL_STREAM naming another file is not the journal; unset it is not either.
    for other in [Journal::Elsewhere, Journal::Unset] {
        let plain = Child::spawn("", other);
        for line in listening_lines(&plain.log()) {
            assert!(starts_with_time(line), "{line}");
        }
    }
    // `timestamps = "always"` keeps them in the journal too.
    let always = Child::spawn("[log]\ntimestamps = \"always\"\n", Journal::Stderr);
    for line in listening_lines(&always.log()) {
        assert!(starts_with_time(line), "{line}");
    }
}

#[test]
fn json_lines_in_the_journal_keep_their_timestamp_unless_told() {
    let journal = Child::spawn(JSON, Journal::Stderr);
    let lines = json_lines(&journal.log());
    assert!(lines.iter().all(|l| l["timestamp"].is_string()), "{lines:?}");
    let never = Child::spawn(&format!("{JSON}timestamps = \"never\"\n"), Journal::Unset);
    let lines = json_lines(&never.log());
    assert!(!lines.is_empty() && lines.iter().all(|l| l.get("timestamp").is_none()), "{lines:?}");
}
