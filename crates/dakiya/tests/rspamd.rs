//! rspamd, a real content filter, over the milter protocol: its proxy worker in milter mode
//! on loopback, started by the test with a minimal configuration of its own (no Redis, DNS
//! pointed at a dead loopback port). rspamd's test patterns (GTUBE and its "add header"
//! variant) decide the actions. One test, because rspamd takes seconds to start: the
//! scenarios share one instance, and the last one stops it.

mod common;

use common::{Client, TestServer};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The GTUBE test string rspamd rejects, and its variant that only adds a header (rspamd's
/// `enable_test_patterns`).
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const GTUBE_ADD_HEADER: &str = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A running rspamd; stopped (SIGTERM, then waited for) when dropped.
struct Rspamd {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, port: u16, dead_dns: u16) -> String {
    let d = dir.display();
    format!(
        r#"options {{
  pidfile = "{d}/rspamd.pid";
  dbdir = "{d}/db";
  enable_test_patterns = true;
  dns {{ nameserver = ["127.0.0.1:{dead_dns}"]; timeout = 0.2s; retransmits = 1; }}
  hs_cache_dir = "{d}/hs";
}}
logging {{ type = "file"; filename = "{d}/rspamd.log"; level = "info"; }}
lua = "/usr/share/rspamd/rules/rspamd.lua";
modules {{ path = "/usr/share/rspamd/plugins/milter_headers.lua"; }}
worker "rspamd_proxy" {{
  bind_socket = "127.0.0.1:{port}";
  milter = yes;
  timeout = 30s;
  count = 1;
  upstream "local" {{ default = yes; self_scan = yes; }}
}}
actions {{ reject = 15; add_header = 6; greylist = null; rewrite_subject = null; }}
milter_headers {{ use = ["x-spamd-result", "x-rspamd-queue-id"]; skip_local = false; skip_authenticated = false; }}
"#
    )
}

impl Rspamd {
    fn start() -> Rspamd {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["db", "hs"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let port = free_port();
        let conf = dir.path().join("rspamd.conf");
        std::fs::write(&conf, config(dir.path(), port, free_port())).unwrap();
        // -f: foreground; -i: allowed to run as root (tests run as root; nothing is written
        // outside the temporary directory).
        let child = Command::new("rspamd")
            .args(["-f", "-i", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rspamd (Debian package rspamd) must be installed: scripts/test installs it");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = Rspamd { child: Some(child), addr, dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "rspamd did not start:\n{}", r.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rspamd.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Sender <sender@remote.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
}

#[test]
fn rspamd_rejects_gtube_marks_spam_adds_its_headers_and_its_absence_tempfails() {
    let mut rspamd = Rspamd::start();
    let extra = format!(
        "[[milter]]\nname = \"rspamd\"\naddress = \"inet:{}\"\nconnect_timeout = \"2s\"\n\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\nrate_limits = \"none\"\nmilters = [\"rspamd\"]\n",
        rspamd.addr
    );
    let s = TestServer::start(&extra);
    let filtered = || Client::connect(s.listeners[1].0, Some("127.0.0.2"));

    // GTUBE: rejected with rspamd's own reply.
    let r = filtered().send_mail("sender@remote.test", &["bob@example.test"], &message("gtube", GTUBE));
    assert!(r.starts_with("554 5.7.1 ") && r.contains("Gtube pattern"), "{r}\n{}", rspamd.log());

    // A clean message arrives with rspamd's result headers.
    let started = Instant::now();
    let r = filtered().send_mail("sender@remote.test", &["bob@example.test"], &message("clean", "Hello Bob."));
    let elapsed = started.elapsed();
    assert!(r.starts_with("250"), "{r}\n{}", s.log());
    let got = s.wait_for("bob", 1);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("\nX-Spamd-Result: default: False ["), "{}", got[0]);
    assert!(got[0].contains("\nX-Rspamd-Queue-Id: "), "{}", got[0]);
    assert!(!got[0].contains("X-Spam: Yes"), "{}", got[0]);
    // A rough figure for the report, not an assertion: the same message without a milter.
    let started = Instant::now();
    let r = Client::connect(s.addr, Some("127.0.0.2")).send_mail(
        "sender@remote.test",
        &["alice@example.test"],
        &message("plain", "Hi."),
    );
    assert!(r.starts_with("250"), "{r}");
    eprintln!("one message, EHLO to 250: {elapsed:?} through rspamd, {:?} without a milter", started.elapsed());

    // The "add header" action: accepted, marked.
    let r = filtered().send_mail("sender@remote.test", &["bob@example.test"], &message("addheader", GTUBE_ADD_HEADER));
    assert!(r.starts_with("250"), "{r}");
    let got = s.wait_for("bob", 2);
    assert_eq!(got.len(), 2);
    let marked = got.iter().find(|m| m.contains("addheader@remote.test")).unwrap();
    assert!(marked.contains("\nX-Spam: Yes\n"), "{marked}");

    // rspamd stopped: the default action (tempfail) at MAIL.
    rspamd.stop();
    let mut c = filtered();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<sender@remote.test>"), "451 4.7.1 Content filter unavailable, try again later\r\n");
    assert!(common::wait_log(&s, "milter failed milter=rspamd", 5), "{}", s.log());
    for line in rspamd.log().lines().filter(|l| l.contains("rspamd_task_write_log")) {
        eprintln!("rspamd: {line}");
    }
}
