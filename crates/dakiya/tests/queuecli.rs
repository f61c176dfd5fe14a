//! `dakiya queue ...` against a running server: the CLI talks to the control socket in the
//! data directory. Mail to `remote.test` and `other.test` is routed to a closed port, so after
//! its first attempt it stays queued (deferred, next attempt in 90 minutes) for the CLI to look
//! at.

mod common;

use common::{TestServer, queue_id};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What one run of the CLI gave.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(config: &Path, args: &[&str]) -> Out {
    let out =
        Command::new(env!("CARGO_BIN_EXE_dakiya")).args(["queue", "--config"]).arg(config).args(args).output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs the CLI and expects success.
fn ok(s: &TestServer, args: &[&str]) -> String {
    let out = cli(&s.config_path(), args);
    assert_eq!(out.code, 0, "dakiya queue {args:?}: {}\n--- log ---\n{}", out.stderr, s.log());
    out.stdout
}

/// `list --json`, parsed.
fn list(s: &TestServer) -> serde_json::Value {
    serde_json::from_str(&ok(s, &["list", "--json"])).unwrap()
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn socket(s: &TestServer) -> PathBuf {
    s.data().join("control.sock")
}

/// A server that relays for 127.0.0.1 and sends remote.test and other.test to a closed port,
/// retrying every 90 minutes.
fn server() -> TestServer {
    server_with(TestServer::start)
}

/// [`server`] started with `start` (in-process or as a child process).
fn server_with(start: fn(&str) -> TestServer) -> TestServer {
    let s = start(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"90m\"]\n\
         [outbound]\nhelo_name = \"sender.test\"\n[outbound.routes.\"remote.test\"]\n\
         hosts = [\"127.0.0.1:{port}\"]\ntls = \"opportunistic\"\n\
         [outbound.routes.\"other.test\"]\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"opportunistic\"\n",
        port = closed_port()
    ));
    wait_until("the control socket", &s, || s.log().contains("control socket listening"));
    s
}

fn wait_until(what: &str, s: &TestServer, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n--- log ---\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state of recipient `rcpt` of message `id` in `list --json`, if listed.
fn state(s: &TestServer, id: &str, rcpt: usize) -> Option<serde_json::Value> {
    let listing = list(s);
    let m = listing["messages"].as_array().unwrap().iter().find(|m| m["id"] == id)?.clone();
    Some(m["recipients"][rcpt].clone())
}

/// Runs the CLI with `--json` added, expects success, and parses the one JSON object it prints.
fn json(s: &TestServer, args: &[&str]) -> serde_json::Value {
    let out = ok(s, &[args, &["--json"]].concat());
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    serde_json::from_str(&out).unwrap()
}

/// Sends one message to `rcpts` and waits for every recipient to be deferred after its first
/// attempt. Returns the queue id.
fn queue_deferred(s: &TestServer, rcpts: &[&str]) -> String {
    let r = s.connect().send_mail("app@example.test", rcpts, "Subject: deferred\r\n\r\nhello\r\n");
    assert!(r.starts_with("250"), "{r}");
    let id = queue_id(&r);
    let all_deferred = || (0..rcpts.len()).all(|i| state(s, &id, i).is_some_and(|r| r["state"] == "deferred"));
    wait_until("the first attempts", s, all_deferred);
    id
}

/// Sends one message to a local and a remote recipient and waits for the remote one to be
/// deferred after its first attempt. Returns the queue id.
fn queue_one(s: &TestServer) -> String {
    let r = s.connect().send_mail(
        "app@example.test",
        &["alice@example.test", "bob@remote.test"],
        "From: app@example.test\r\nSubject: queued\r\n\r\nhello\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let id = queue_id(&r);
    wait_until("the first attempt", s, || state(s, &id, 1).is_some_and(|r| r["state"] == "deferred"));
    id
}

#[test]
fn list_shows_the_queued_message_with_recipient_states() {
    let s = server();
    assert_eq!(ok(&s, &["list"]), "The queue is empty.\n");
    let id = queue_one(&s);
    let table = ok(&s, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("QUEUE ID"), "{table}");
    assert!(lines[1].starts_with(&id) && lines[1].ends_with("<app@example.test>"), "{table}");
    assert!(lines[2].contains("delivered") && lines[2].ends_with("alice@example.test"), "{table}");
    assert!(lines[3].contains("deferred   in 1h ") && lines[3].ends_with("bob@remote.test"), "{table}");
    assert!(lines[4].contains("last error (1 attempt): "), "{table}");
    let footer = lines.last().unwrap();
    assert!(footer.starts_with("-- 1 message, ") && footer.ends_with(", 1 recipient waiting"), "{table}");

    let json = list(&s);
    assert_eq!(json["ok"], true);
    let m = &json["messages"][0];
    assert_eq!(
        (m["id"].as_str(), m["sender"].as_str(), m["held"].as_bool()),
        (Some(&*id), Some("app@example.test"), Some(false))
    );
    assert_eq!(m["recipients"][0]["state"], "delivered");
    let bob = &m["recipients"][1];
    assert_eq!((bob["address"].as_str(), bob["attempts"].as_u64()), (Some("bob@remote.test"), Some(1)));
    assert!(bob["next_attempt"].as_u64().unwrap() > json["now"].as_u64().unwrap() + 3000, "{bob}");
    assert!(bob["error"].as_str().is_some_and(|e| !e.is_empty()), "{bob}");
}

#[test]
fn show_prints_envelope_and_header_section() {
    let s = server();
    let id = queue_one(&s);
    let text = ok(&s, &["show", &id.to_lowercase()]);
    for want in [
        format!("Queue ID:    {id}\n"),
        "Sender:      <app@example.test>\n".into(),
        "Client:      127.0.0.1 (HELO client.test)\n".into(),
        "  deferred   bob@remote.test\n             RCPT TO:<bob@remote.test>, remote\n".into(),
        "             next attempt: in 1h\n".into(),
        "RCPT TO:<alice@example.test>, local mailbox example.test/alice\n".into(),
        "\nHeaders:\nReceived: from client.test ([127.0.0.1])\n".into(),
        "From: app@example.test\nSubject: queued\n".into(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("hello"), "the body is not shown:\n{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(&s, &["show", &id, "--json"])).unwrap();
    assert_eq!(json["message"]["detail"]["helo"], "client.test");
    assert_eq!(json["message"]["detail"]["headers_truncated"], false);
}

#[test]
fn errors_and_exit_codes() {
    // A process, to be killed: SIGKILL leaves the control socket behind.
    let s = server_with(TestServer::spawn);
    let missing = cli(&s.config_path(), &["show", "0000000000000001"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("0000000000000001") && missing.stderr.contains("not found"), "{}", missing.stderr);
    let bad = cli(&s.config_path(), &["delete", "../../etc/passwd"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let usage = cli(&s.config_path(), &["retry"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    // The socket is private to the server's user.
    let meta = std::fs::symlink_metadata(socket(&s)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Killed, the server leaves its socket file behind: still "not running".
    let config = s.config_path();
    let dir = s.kill();
    let config = dir.path().join(config.file_name().unwrap());
    let stale = cli(&config, &["list"]);
    assert_eq!(stale.code, 3, "{}", stale.stderr);
    let stale_json = cli(&config, &["stats", "--json"]);
    assert_eq!((stale_json.code, stale_json.stdout.as_str()), (3, ""), "{}", stale_json.stderr);
    assert!(stale.stderr.starts_with("dakiya: dakiya is not running"), "{}", stale.stderr);
    std::fs::remove_file(dir.path().join("data/control.sock")).unwrap();
    let gone = cli(&config, &["list"]);
    assert_eq!(gone.code, 3);
    let want = format!(
        "dakiya: dakiya is not running (no control socket at {})\n",
        dir.path().join("data/control.sock").display()
    );
    assert_eq!(gone.stderr, want);
}

#[test]
fn bad_requests_get_an_error_and_the_server_keeps_serving() {
    let s = server();
    let ask = |raw: &[u8]| -> serde_json::Value {
        let mut c = UnixStream::connect(socket(&s)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = c.write_all(raw);
        let _ = c.shutdown(Shutdown::Write);
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.ends_with('\n') && answer.lines().count() == 1, "{answer:?}");
        serde_json::from_str(&answer).unwrap()
    };
    let listing = ask(b"{\"cmd\":\"list\"}\n");
    assert_eq!((&listing["ok"], &listing["messages"]), (&serde_json::json!(true), &serde_json::json!([])));
    // The line feed is optional when the client half-closes.
    assert_eq!(ask(b"{\"cmd\":\"list\"}")["ok"], true);
    let error = |raw: &[u8]| {
        let answer = ask(raw);
        assert_eq!(answer["ok"], false, "{answer}");
        answer["error"].as_str().unwrap().to_string()
    };
    assert!(error(b"hello\n").starts_with("malformed request"));
    assert!(error(b"").starts_with("empty request"));
    assert!(error(b"{\"cmd\":\"flush\"}\n").starts_with("unknown command"));
    assert!(error(b"{\"cmd\":\"show\",\"id\":\"../x\"}\n").starts_with("invalid queue id"));
    assert!(error(&vec![b'x'; 100_000]).contains("longer than 4096 bytes"));
    // A client that never finishes its line is answered after a timeout.
    let mut slow = UnixStream::connect(socket(&s)).unwrap();
    slow.write_all(b"{\"cmd\":").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("timed out"), "{answer}");
    assert_eq!(ok(&s, &["list"]), "The queue is empty.\n");
}

#[test]
fn hold_then_release() {
    let s = server();
    let id = queue_one(&s);
    assert_eq!(ok(&s, &["hold", &id]), format!("{id}: held\n"));
    assert_eq!(list(&s)["messages"][0]["held"], true);
    let table = ok(&s, &["list"]);
    assert!(table.contains("<app@example.test>  (held)") && table.contains("deferred   held"), "{table}");
    assert!(table.contains(", 1 held\n"), "{table}");
    // A held message is not retried.
    let refused = cli(&s.config_path(), &["retry", &id]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("held"), "{}", refused.stderr);
    // Release delivers at once: a second attempt (to the closed port again).
    assert_eq!(ok(&s, &["release", &id]), format!("{id}: released\n"));
    wait_until("the second attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 2));
    assert_eq!(list(&s)["messages"][0]["held"], false);
}

#[test]
fn retry_one_and_all() {
    let s = server();
    let id = queue_one(&s);
    assert_eq!(ok(&s, &["retry", &id]), format!("{id}: scheduled for delivery now\n"));
    wait_until("the second attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 2));
    assert_eq!(ok(&s, &["retry", "--all"]), "1 message scheduled for delivery now\n");
    wait_until("the third attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 3));
    // The operation on one message names it (issue #16); the one on all names none.
    let log = s.log();
    let ops: Vec<&str> = log.lines().filter(|l| l.contains("control socket: queue operation")).collect();
    assert_eq!(ops.len(), 2, "{log}");
    assert!(ops[0].contains(&format!("queue_id={id} ")), "{}", ops[0]);
    assert!(!ops[1].contains("queue_id="), "{}", ops[1]);
}

#[test]
fn delete_removes_the_message() {
    let s = server();
    let id = queue_one(&s);
    assert_eq!(ok(&s, &["delete", &id]), format!("{id}: deleted\n"));
    assert_eq!(ok(&s, &["list"]), "The queue is empty.\n");
    assert!(s.spooled_envelopes().is_empty());
    let again = cli(&s.config_path(), &["delete", &id]);
    assert_eq!(again.code, 1, "{}", again.stderr);
}

/// The numbers of one row of `stats --json` (a domain or the total).
fn counts(row: &serde_json::Value) -> [u64; 5] {
    ["messages", "recipients", "pending", "deferred", "held"].map(|k| row[k].as_u64().unwrap())
}

#[test]
fn stats_by_domain_age_and_state() {
    let s = server();
    assert_eq!(ok(&s, &["stats"]), "The queue is empty.\n");
    let empty = json(&s, &["stats"]);
    assert_eq!((&empty["ok"], &empty["stats"]["domains"]), (&serde_json::json!(true), &serde_json::json!([])));
    assert_eq!(counts(&empty["stats"]["total"]), [0; 5]);
    // alice is delivered at once (local), so only bob waits: delivered recipients do not count.
    queue_one(&s);
    // Two recipients at remote.test in one message: one message, two recipients there.
    queue_deferred(&s, &["carol@remote.test", "dave@remote.test", "erin@other.test"]);
    let held = queue_deferred(&s, &["frank@Other.Test"]);
    ok(&s, &["hold", &held]);

    let v = json(&s, &["stats"]);
    let stats = &v["stats"];
    assert!(v["now"].as_u64().is_some(), "{v}");
    assert_eq!(stats["buckets"], serde_json::json!([300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800]));
    // [messages, recipients, pending, deferred, held]
    assert_eq!(counts(&stats["total"]), [3, 5, 0, 4, 1]);
    // Every message is minutes old: all in the first bucket.
    assert_eq!(stats["total"]["ages"], serde_json::json!([3, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    let domains = stats["domains"].as_array().unwrap();
    let rows: Vec<(&str, bool, [u64; 5])> =
        domains.iter().map(|d| (d["domain"].as_str().unwrap(), d["local"].as_bool().unwrap(), counts(d))).collect();
    // Most messages first; the tie on messages is broken by recipients.
    assert_eq!(rows, [("remote.test", false, [2, 3, 0, 3, 0]), ("other.test", false, [2, 2, 0, 1, 1])]);
    assert_eq!(domains[1]["ages"], serde_json::json!([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(stats["more_domains"], 0);

    let table = ok(&s, &["stats"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        "DOMAIN T 5m 10m 20m 40m 80m 160m 320m 640m 1280m 1280m+ RCPTS PENDING DEFERRED HELD"
            .split(' ')
            .collect::<Vec<_>>(),
        "{table}"
    );
    assert_eq!(lines[1], ["TOTAL", "3", "3", "0", "0", "0", "0", "0", "0", "0", "0", "0", "5", "0", "4", "1"]);
    assert_eq!(lines[2][..3], ["remote.test", "2", "2"], "{table}");
    assert_eq!(lines[3][..3], ["other.test", "2", "2"], "{table}");
    assert_eq!(lines.len(), 4, "{table}");

    let top = json(&s, &["stats", "--top", "1"]);
    assert_eq!(top["stats"]["domains"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&top["stats"]["domains"][0]["domain"], &top["stats"]["more_domains"]),
        (&"remote.test".into(), &1.into())
    );
    assert_eq!(counts(&top["stats"]["total"]), [3, 5, 0, 4, 1]);
    assert!(ok(&s, &["stats", "--top", "1"]).ends_with("\n-- 1 more domain (--top 0 lists all)\n"));
    assert_eq!(json(&s, &["stats", "--top", "0"])["stats"]["domains"].as_array().unwrap().len(), 2);
}

#[test]
fn every_subcommand_prints_one_json_object() {
    let s = server();
    let id = queue_one(&s);
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    let shown = json(&s, &["show", &id]);
    assert_eq!(shown["ok"], true);
    assert!(shown["now"].as_u64().unwrap().abs_diff(now()) < 60, "{shown}");
    let m = &shown["message"];
    assert_eq!(
        (m["id"].as_str(), m["sender"].as_str(), m["held"].as_bool()),
        (Some(&*id), Some("app@example.test"), Some(false))
    );
    assert!(m["size"].as_u64().unwrap() > 0 && m["age"].as_u64().unwrap() < 60, "{m}");
    assert_eq!(m["detail"]["client_ip"], "127.0.0.1");
    assert_eq!(m["detail"]["body"], "seven_bit");
    assert!(m["detail"]["headers"].as_str().unwrap().contains("Subject: queued\n"), "{m}");
    let alice = &m["recipients"][0];
    assert_eq!((alice["address"].as_str(), alice["state"].as_str()), (Some("alice@example.test"), Some("delivered")));
    assert_eq!(alice["detail"]["mailbox"], "example.test/alice");
    let bob = &m["recipients"][1];
    assert_eq!((bob["state"].as_str(), bob["attempts"].as_u64()), (Some("deferred"), Some(1)));
    assert_eq!(
        (&bob["detail"]["original"], &bob["detail"]["mailbox"]),
        (&"bob@remote.test".into(), &serde_json::Value::Null)
    );

    let affected = |v: serde_json::Value| {
        assert_eq!(v["ok"], true, "{v}");
        assert!(v.get("error").is_none(), "{v}");
        v["affected"].as_u64().unwrap()
    };
    assert_eq!(affected(json(&s, &["hold", &id])), 1);
    assert_eq!(json(&s, &["list"])["messages"][0]["held"], true);
    assert_eq!(affected(json(&s, &["release", &id])), 1);
    wait_until("the second attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 2));
    assert_eq!(affected(json(&s, &["retry", &id])), 1);
    wait_until("the third attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 3));
    assert_eq!(affected(json(&s, &["retry", "--all"])), 1);
    wait_until("the fourth attempt", &s, || state(&s, &id, 1).is_some_and(|r| r["attempts"] == 4));
    assert_eq!(affected(json(&s, &["delete", &id])), 1);
    assert_eq!(json(&s, &["list"])["messages"], serde_json::json!([]));

    // Errors stay on stderr, with the usual exit status, and nothing on stdout.
    let refused = cli(&s.config_path(), &["delete", &id, "--json"]);
    assert_eq!((refused.code, refused.stdout.as_str()), (1, ""), "{}", refused.stderr);
    assert!(refused.stderr.starts_with("dakiya: ") && refused.stderr.contains(&id), "{}", refused.stderr);
    let usage = cli(&s.config_path(), &["hold", "nonsense", "--json"]);
    assert_eq!((usage.code, usage.stdout.as_str()), (2, ""), "{}", usage.stderr);
}
