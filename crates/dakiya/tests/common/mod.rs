//! Test kit: runs a dakiya server on loopback ports and talks SMTP to it. The server runs
//! inside the test process ([`TestServer::start`]) unless a test needs a process of its own
//! to kill, signal or measure ([`TestServer::spawn`]); docs/testing.md says which to use.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server with its own data directory.
pub struct TestServer {
    run: Run,
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener: (address, role).
    pub listeners: Vec<(SocketAddr, String)>,
    pub dir: tempfile::TempDir,
}

/// Where the server runs.
enum Run {
    /// In this process, on its own runtime and threads, logging into memory.
    InProcess(dakiya::Server),
    /// The `dakiya serve` binary, its stderr read into `log` line by line.
    Child { child: Child, log: Arc<Mutex<String>> },
}

pub const BASE_CONFIG: &str = r#"
hostname = "mx.example.test"
# The tests run as root (CI containers) and spawn `dakiya serve`, which refuses root otherwise.
allow_root = true
[[listen]]
address = "127.0.0.1:0"
role = "mx"
# Tests that check SPF/DKIM/DMARC add a verifying listener with their own DNS server; this one
# must not depend on DNS.
verify = false
# Tests open many connections from loopback quickly (floods, memory): no rate limits here.
# Tests of rate limits add a listener with a profile of their own.
rate_limits = "none"
[domains."example.test"]
mailboxes = ["alice", "bob", "carol", "postmaster"]
[aliases]
"team@example.test" = ["alice@example.test", "bob@example.test"]
"fwd@example.test" = ["alice@example.test", "someone@elsewhere.test"]
[rate_limits.none]
connections_per_network = "off"
"#;

impl TestServer {
    /// Starts the server in this process with `extra` TOML appended to the base configuration.
    pub fn start(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        TestServer::start_in(dir, extra)
    }

    /// Starts (or restarts) the server in this process in an existing data directory.
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> TestServer {
        raise_open_files_limit();
        let cfg_path = write_config(dir.path(), extra);
        // From the file, as `dakiya serve --config` starts: `reload` re-reads it.
        let server = dakiya::Server::start_from_file(&cfg_path).unwrap_or_else(|e| panic!("server did not start: {e}"));
        let listeners: Vec<(SocketAddr, String)> =
            server.listeners().iter().map(|l| (l.address, l.role.as_str().to_string())).collect();
        TestServer { run: Run::InProcess(server), addr: listeners[0].0, listeners, dir }
    }

    /// Starts the server as a child process (`dakiya serve`), for tests that kill it
    /// ([`TestServer::kill`]), signal it ([`sigterm`]) or measure the process ([`TestServer::pid`]).
    pub fn spawn(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        TestServer::spawn_in(dir, extra)
    }

    /// Starts (or restarts) the server as a child process in an existing data directory.
    pub fn spawn_in(dir: tempfile::TempDir, extra: &str) -> TestServer {
        let cfg_path = write_config(dir.path(), extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_dakiya"))
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut found = Vec::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(pos) = line.find("listening address=") {
                    let mut words = line[pos + "listening address=".len()..].split_whitespace();
                    let addr: SocketAddr = words.next().unwrap().parse().unwrap();
                    let role = words.next().unwrap_or("role=mx").trim_start_matches("role=").to_string();
                    found.push((addr, role));
                }
                if line.contains("dakiya started")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(std::mem::take(&mut found));
                }
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
            }
        });
        let listeners: Vec<(SocketAddr, String)> = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        TestServer { run: Run::Child { child, log }, addr: listeners[0].0, listeners, dir }
    }

    /// The process ID of a server started with [`TestServer::spawn`].
    pub fn pid(&self) -> u32 {
        match &self.run {
            Run::Child { child, .. } => child.id(),
            Run::InProcess(_) => panic!("an in-process server has no process of its own: use TestServer::spawn"),
        }
    }

    /// The child process of a server started with [`TestServer::spawn`].
    pub fn child(&mut self) -> &mut Child {
        match &mut self.run {
            Run::Child { child, .. } => child,
            Run::InProcess(_) => panic!("an in-process server has no process of its own: use TestServer::spawn"),
        }
    }

    /// The address of the listener with `role`.
    pub fn addr_of(&self, role: &str) -> SocketAddr {
        self.listeners.iter().find(|(_, r)| r == role).unwrap_or_else(|| panic!("no {role} listener")).0
    }

    /// Rewrites the configuration file with `extra` and the base, as [`TestServer::start`]
    /// wrote it; the server reads it at its next reload.
    pub fn rewrite_config(&self, extra: &str) {
        write_config(self.dir.path(), extra);
    }

    /// Reloads an in-process server's configuration file as SIGHUP and `dakiya reload` do,
    /// and waits for the outcome (a child: use [`sighup`] or the `dakiya reload` CLI).
    pub fn reload(&self) -> Result<dakiya::ReloadSummary, dakiya::ReloadError> {
        match &self.run {
            Run::InProcess(server) => server.reload(),
            Run::Child { .. } => panic!("a child server reloads on SIGHUP: use common::sighup"),
        }
    }

    /// The configuration file the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dakiya.toml")
    }

    /// Adds a user with the CLI, the password on stdin.
    pub fn add_user(&self, address: &str, password: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dakiya"))
            .args(["user", "--config"])
            .arg(self.config_path())
            .args(["add", address])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "user add failed");
    }

    /// The first envelope line (JSON) of each batch in the spool: batch files and busy slots.
    pub fn spooled_envelopes(&self) -> Vec<String> {
        let dir = self.data().join("spool").join("queue");
        let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".msg"))
            .filter_map(|e| {
                let data = std::fs::read(e.path()).ok()?;
                // A free slot (docs/spool-slots.md) starts with zeros and holds no batch.
                if data.first() == Some(&0) {
                    return None;
                }
                let text = String::from_utf8_lossy(&data).into_owned();
                Some(text.lines().nth(1).unwrap_or_default().to_string())
            })
            .collect()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn maildir(&self, mailbox: &str) -> PathBuf {
        self.data().join("mail").join("example.test").join(mailbox).join("new")
    }

    /// Messages delivered to `mailbox`, waiting up to 10 s for at least `n`.
    pub fn wait_for(&self, mailbox: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let msgs = read_dir_sorted(&self.maildir(mailbox));
            if msgs.len() >= n || Instant::now() > deadline {
                return msgs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Messages in the mailbox right now.
    pub fn messages(&self, mailbox: &str) -> Vec<String> {
        read_dir_sorted(&self.maildir(mailbox))
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr, None)
    }

    /// Everything the server has logged so far, one line per event.
    pub fn log(&self) -> String {
        match &self.run {
            Run::InProcess(server) => server.log(),
            Run::Child { log, .. } => log.lock().unwrap().clone(),
        }
    }

    /// Kills a server started with [`TestServer::spawn`] with SIGKILL (a crash: nothing is
    /// drained or flushed) and hands back its data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let child = self.child();
        let _ = child.kill();
        let _ = child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Shuts the server down as SIGTERM does (a child gets SIGTERM) and waits until it has;
    /// its log stays readable.
    pub fn shutdown(&mut self) {
        match &mut self.run {
            Run::InProcess(server) => server.shutdown(),
            Run::Child { child, .. } => {
                let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
                assert!(status.success());
                let _ = child.wait();
            }
        }
    }

    /// Shuts the server down ([`TestServer::shutdown`]) and hands back its data directory (to
    /// restart in it, or to look at what it left).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &mut self.run {
            // Before the data directory goes.
            Run::InProcess(server) => server.shutdown(),
            Run::Child { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// Writes the configuration (`extra` and the base) into `dir`; returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    // Top-level keys in `extra` (before its first table) must precede every table.
    let mut split = extra.len();
    let mut offset = 0;
    for line in extra.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            split = offset;
            break;
        }
        offset += line.len();
    }
    let (top, tables) = extra.split_at(split);
    let tables = loopback_dns(tables);
    let cfg = format!("data_dir = {:?}\n{top}\n{BASE_CONFIG}\n{tables}", data.display().to_string());
    let cfg_path = dir.join("dakiya.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    cfg_path
}

/// In-process servers share the test process's open-files limit (a child had a table of its
/// own): the soft limit goes up to the hard one, once.
fn raise_open_files_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
    });
}

/// Files in `dir` (contents, by name), waiting up to 30 s for at least `n`.
pub fn wait_files(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files = read_dir_sorted(dir);
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => return Vec::new(),
    };
    names.sort_by_key(|p| delivery_order(p));
    names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// Tests never ask the system's DNS: unless a test names its own name servers, outbound
/// lookups go to a loopback port where nothing answers (a temporary failure).
fn loopback_dns(tables: &str) -> String {
    const NOWHERE: &str = "nameservers = [\"127.0.0.1:9\"]";
    if tables.contains("nameservers") {
        return tables.to_string();
    }
    match tables.find("[outbound]\n") {
        Some(at) => {
            let end = at + "[outbound]\n".len();
            format!("{}{NOWHERE}\n{}", &tables[..end], &tables[end..])
        }
        None => format!("{tables}\n[outbound]\n{NOWHERE}\n"),
    }
}

/// A line-oriented SMTP client on a raw socket.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr, bind: Option<&str>) -> Client {
        let stream = match bind {
            None => TcpStream::connect(addr).unwrap(),
            Some(ip) => socket_bound_to(ip, addr),
        };
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Client { stream, reader };
        let greeting = c.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// Reads one whole (possibly multi-line) reply; "" on EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    /// Sends a command line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads until the server closes; returns what it sent.
    pub fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }

    /// EHLO, then MAIL FROM `from` and RCPT TO `to`, each expected to succeed: a transaction
    /// ready for DATA or BDAT.
    pub fn begin(&mut self, from: &str, to: &str) {
        for line in ["EHLO client.test".to_string(), format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
            let r = self.cmd(&line);
            assert!(r.starts_with("250"), "{line}: {r}");
        }
    }

    /// EHLO, MAIL, RCPT..., DATA, body; returns the final reply.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> String {
        let ehlo = self.cmd("EHLO client.test");
        assert!(ehlo.starts_with("250"), "{ehlo}");
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert!(r.starts_with("250"), "{r}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            assert!(r.starts_with("250"), "{t}: {r}");
        }
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "{r}");
        self.send(body.as_bytes());
        self.send(b"\r\n.\r\n");
        self.reply()
    }
}

/// A client socket bound to a given loopback source address (another "client IP").
fn socket_bound_to(ip: &str, addr: SocketAddr) -> TcpStream {
    // std has no bind-before-connect; tokio's TcpSocket does, on a throwaway runtime.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(ip, 0)).unwrap();
        s.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// The queue ID from a `250 2.0.0 Ok: queued as ID` reply.
pub fn queue_id(reply: &str) -> String {
    reply.trim_end().rsplit(' ').next().unwrap().to_string()
}

/// A raw client socket from `ip` (another loopback "client address"), nothing read yet.
pub fn raw_from(ip: &str, addr: SocketAddr) -> TcpStream {
    socket_bound_to(ip, addr)
}

/// Waits up to `secs` for `needle` to appear in the server log.
pub fn wait_log(server: &TestServer, needle: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if server.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends SIGHUP (reload the configuration) to a server started with [`TestServer::spawn`].
pub fn sighup(server: &TestServer) {
    let status = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Sends SIGTERM to a server started with [`TestServer::spawn`].
pub fn sigterm(server: &TestServer) {
    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

/// A field of `/proc/PID/status` in KiB (such as "VmHWM", the peak resident set size, or
/// "VmRSS"); 0 if it cannot be read.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let prefix = format!("{field}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

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
