//! Log injection and log floods (issue #9, items 3 and 8): outside text cannot forge a log
//! line, send a terminal escape sequence or pose as `key=value` fields; errors an outsider
//! can cause in bulk are written a few times and then counted; a full disk is `452 4.3.1`;
//! an ordinary SIGTERM logs no error.

use crate::common::{Client, TestServer};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dakiya_route::testdns::{TestDns, Zone};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUBMISSION: &str =
    "[auth]\nplaintext_on_loopback = true\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n";

/// Polls the server's log until `done` holds for it, or panics after 20 s.
fn wait_log(server: &TestServer, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log has no raw control character but line feeds (it was read line by line, each
/// line ended by one).
fn assert_no_raw_controls(log: &str) {
    let bad: Vec<&str> = log.lines().filter(|l| l.chars().any(|c| c.is_control())).collect();
    assert!(bad.is_empty(), "raw control characters in the log: {bad:?}");
}

#[test]
fn auth_user_name_cannot_forge_a_log_line() {
    let s = TestServer::start(SUBMISSION);
    // What the issue reproduced: a LOGIN user name carrying a whole forged line (lower case:
    // the server logs user names lowercased), CR, and an ESC colour sequence.
    let forged = "evil\n2026-12-06t00:00:00.000000z  info accepted queue_id=fake\r\x1b[31m";
    let mut c = Client::connect(s.addr_of("submission"), None);
    assert!(c.cmd("EHLO client.test").contains("AUTH"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334"));
    assert!(c.cmd(&B64.encode(forged)).starts_with("334"));
    assert!(c.cmd(&B64.encode("wrong password")).starts_with("535"));
    let log = wait_log(&s, "the auth line", |l| l.contains("result=failed"));
    assert_no_raw_controls(&log);
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-06t") || l.trim_start().starts_with("info accepted")),
        "a forged line:\n{log}"
    );
    let auth = log.lines().find(|l| l.contains("result=failed")).unwrap();
    assert!(
        auth.contains(r#"user="evil\n2026-12-06t00:00:00.000000z  info accepted queue_id=fake\r\x1b[31m""#),
        "the user name, quoted with visible escapes: {auth}"
    );
    assert!(!log.contains("wrong password"), "the password is never logged");
}

#[test]
fn envelope_sender_cannot_pose_as_fields() {
    let s = TestServer::start("");
    let mut c = s.connect();
    let r = c.send_mail("\"x result=ok queue_id=FAKE\"@remote.test", &["alice@example.test"], "Subject: q\r\n\r\nhi");
    assert!(r.starts_with("250"), "{r}");
    let log = wait_log(&s, "the accepted line", |l| l.contains(" accepted"));
    let line = log.lines().find(|l| l.contains(" accepted")).unwrap();
    let quoted = r#" from="<\"x result=ok queue_id=FAKE\"@remote.test>""#;
    assert!(line.contains(quoted), "sender quoted: {line}");
    // Outside the quoted value there is one result-less queue_id, the real one.
    let rest = line.replace(quoted, "");
    assert_eq!(rest.matches(" queue_id=").count(), 1, "{line}");
    assert!(!rest.contains("result=") && !rest.contains("FAKE"), "{line}");
}

/// A DNS server on loopback with its own runtime, alive as long as this value.
struct Dns {
    server: TestDns,
    _rt: tokio::runtime::Runtime,
}

#[test]
fn from_header_escape_sequence_does_not_reach_the_log() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = rt.block_on(TestDns::start(Zone::new().txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all")));
    let dns = Dns { server, _rt: rt };
    let s = TestServer::start(&format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = true\n[outbound]\nnameservers = [\"{}\"]\n",
        dns.server.addr
    ));
    let mut c = Client::connect(s.listeners[1].0, None);
    let body = "From: <x@evil\x1b[2J\x1b]0;owned\x07.test>\r\nTo: <alice@example.test>\r\nSubject: esc\r\n\r\nhi";
    let r = c.send_mail("x@sender.test", &["alice@example.test"], body);
    assert!(r.starts_with("250") || r.starts_with("550"), "{r}");
    let log = wait_log(&s, "the authentication line", |l| l.contains("message authentication"));
    assert_no_raw_controls(&log);
    let line = log.lines().find(|l| l.contains("message authentication")).unwrap();
    assert!(line.contains(r#"from_domain="evil\x1b[2j\x1b]0;owned\x07.test""#), "escaped: {line}");
}

#[test]
fn refused_connections_are_counted_not_logged_one_by_one() {
    let s = TestServer::start("[limits]\nmax_connections_per_ip = 1\n");
    let _held = s.connect();
    const FLOOD: usize = 40;
    for _ in 0..FLOOD {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut c, &mut reply).unwrap();
        assert!(reply.starts_with("421 4.7.0"), "{reply}");
    }
    // The count comes when the 10 s period ends, from the reporter (no further refusal).
    let log = wait_log(&s, "the count line", |l| l.contains("more in the last 10 s"));
    let refused = "connection refused: too many connections";
    let shown = log.lines().filter(|l| l.contains(refused) && l.contains("peer=")).count();
    assert!((1..=5).contains(&shown), "{shown} refusal lines:\n{log}");
    assert_eq!(more(&log, refused), FLOOD - shown, "{log}");
}

/// The sum of the `more=` counts on the count lines of `what`.
fn more(log: &str, what: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(what) && l.contains("more in the last"))
        .filter_map(|l| l.rsplit_once("more=").and_then(|(_, n)| n.split_whitespace().next()?.parse::<usize>().ok()))
        .sum()
}

/// A small tmpfs over `path`, unmounted on drop; `None` where mounting is not allowed (not
/// root, or in a container without the capability).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file into `dir` until the file system is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // Whatever partial block is left.
    while f.write_all(&[0u8; 512]).is_ok() {}
    path
}

#[test]
fn full_disk_is_452_and_logged_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "8m") else {
        eprintln!("SKIPPED full_disk_is_452_and_logged_with_a_count: cannot mount a tmpfs (needs root)");
        return;
    };
    let s = TestServer::start_in(dir, "");
    let filler = fill(&data);
    const MESSAGES: usize = 30;
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    for i in 0..MESSAGES {
        assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(format!("Subject: {i}\r\n\r\n{}\r\n.\r\n", "x".repeat(1000)).as_bytes());
        let r = c.reply();
        // RFC 3463 §3.4 X.3.1 "mail system full"; RFC 5321 §4.2.3 452.
        assert_eq!(r, "452 4.3.1 Insufficient system storage, try again later\r\n", "message {i}");
    }
    let log = wait_log(&s, "the count line", |l| l.contains("more in the last 10 s"));
    let what = "cannot store message";
    let shown = log.lines().filter(|l| l.contains(what) && l.contains("error=")).count();
    assert!((1..=5).contains(&shown), "{shown} error lines:\n{log}");
    assert_eq!(more(&log, what), MESSAGES - shown, "{log}");
    // Space again: the next message is accepted.
    std::fs::remove_file(filler).unwrap();
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: again\r\n\r\nhi");
    assert!(r.starts_with("250"), "{r}");
    let dir = s.stop();
    drop(tmpfs);
    drop(dir);
}

/// A remote server that accepts connections and never says a word; it holds them while the
/// returned value lives.
fn silent_mx() -> (u16, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(stream);
        }
    });
    (port, held)
}

#[test]
fn sigterm_during_delivery_logs_no_error() {
    // Delivery runs in flight at the SIGTERM: local ones (one at a time, so a backlog waits
    // for the slot) and remote ones waiting for a greeting that never comes. A run that
    // starts a blocking step while the runtime shuts down finds it cancelled (what logged
    // "delivery run failed … task N was cancelled").
    let (port, _held) = silent_mx();
    let s = TestServer::spawn(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nlocal_concurrency = 1\n[outbound]\n[outbound.routes.\"remote.test\"]\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"none\"\n"
    ));
    // Local delivery runs in rounds and keeps up with one sequential client, so four clients
    // send at once (group commit) and each message has three local copies to write and fsync.
    const CLIENTS: usize = 4;
    const MESSAGES: usize = 50;
    const LOCAL: usize = 3;
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let s = &s;
            scope.spawn(move || {
                let mut c = s.connect();
                assert!(c.cmd("EHLO client.test").starts_with("250"));
                for i in 0..MESSAGES {
                    // MAIL, RCPT and DATA as one pipelined group (RFC 2920), then the message.
                    c.send(format!("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>\r\nRCPT TO:<x{client}-{i}@remote.test>\r\nDATA\r\n").as_bytes());
                    let replies: Vec<String> = (0..6).map(|_| c.reply()).collect();
                    assert!(replies[5].starts_with("354"), "{replies:?}");
                    c.send(format!("Subject: {i}\r\n\r\nhi\r\n.\r\n").as_bytes());
                    assert!(c.reply().starts_with("250"));
                }
            });
        }
    });
    let pid = s.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut s = s;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = s.child().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM; log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    // The log reader thread sees the end of the pipe shortly after the exit.
    wait_log(&s, "the shutdown line", |l| l.contains("shutting down"));
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log();
    let delivered = log.matches("result=delivered").count();
    assert!(delivered < LOCAL * CLIENTS * MESSAGES, "the queue was empty before the SIGTERM; the test proves nothing");
    assert!(status.success(), "{status:?}\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "errors on an ordinary SIGTERM ({delivered} local deliveries done): {errors:?}");
}
