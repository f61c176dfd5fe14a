//! The metrics listener over real sockets: counters scraped before and after a known set of
//! sessions move by exactly what they did, `promtool check metrics` accepts the output,
//! `/healthz` and `/readyz` follow the spool probe and shutdown, `dakiya status` (the real
//! binary) reports the running server, and hostile HTTP input is bounded.

mod common;

use common::{Client, TestServer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const METRICS: &str = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"metrics\"\n";
const SUBMISSION: &str = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n";

/// One HTTP/1.1 exchange on a new connection: the status code and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"))
}

/// The value of `series` (name and labels exactly as exported) in a scrape; 0 when absent.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits up to 30 s for `cond`.
fn wait_until(what: &str, server: &TestServer, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n--- log ---\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The next hop for `remote.test`: 451 for `defer@`, 550 for `bounce@`, 250 otherwise.
fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut out) = stream else { return };
            let mut input = BufReader::new(out.try_clone().unwrap());
            let _ = out.write_all(b"220 sink.test ESMTP\r\n");
            let mut line = String::new();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                let cmd = line.to_ascii_lowercase();
                let reply: &[u8] = if cmd.starts_with("ehlo") {
                    b"250-sink.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("rcpt") && cmd.contains("defer@") {
                    b"451 4.2.0 try later\r\n"
                } else if cmd.starts_with("rcpt") && cmd.contains("bounce@") {
                    b"550 5.1.1 no such user\r\n"
                } else if cmd.starts_with("data") {
                    let _ = out.write_all(b"354 go ahead\r\n");
                    let mut body = String::new();
                    while input.read_line(&mut body).is_ok_and(|n| n > 0) && !body.ends_with("\r\n.\r\n") {}
                    b"250 2.0.0 taken\r\n"
                } else if cmd.starts_with("quit") {
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
    port
}

fn promtool_accepts(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: scripts/test installs it");
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{scrape}");
}

#[test]
fn counters_move_by_exactly_what_the_sessions_did() {
    let port = sink();
    let s = TestServer::start(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[auth]\nplaintext_on_loopback = true\n\
         [delivery]\nretry_schedule = [\"1h\"]\n\
         [outbound.routes.\"remote.test\"]\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"none\"\n{SUBMISSION}{METRICS}"
    ));
    let m = s.addr_of("metrics");
    let mx = s.addr.to_string();
    let (code, before) = get(m, "/metrics");
    assert_eq!(code, 200, "{before}");
    promtool_accepts(&before);
    let series = |name: &str, labels: &str| format!("dakiya_{name}{{{labels}}}");
    let conns = series("connections_total", &format!("listener=\"{mx}\",role=\"mx\""));
    let relay = series("smtp_rejections_total", "stage=\"rcpt\",reason=\"relay_denied\"");
    let unknown = series("smtp_rejections_total", "stage=\"rcpt\",reason=\"unknown_user\"");
    let auth_required = series("smtp_rejections_total", "stage=\"mail\",reason=\"auth_required\"");
    let auth_failed = series("auth_attempts_total", "mechanism=\"PLAIN\",result=\"failure\"");
    let local = series("deliveries_total", "kind=\"local\",result=\"delivered\"");
    let deferred = series("deliveries_total", "kind=\"remote\",result=\"deferred\"");
    let bounced = series("deliveries_total", "kind=\"remote\",result=\"bounced\"");
    let latency = series("delivery_latency_seconds_count", "kind=\"local\"");
    let expected_zero = [&conns, &relay, &unknown, &auth_required, &auth_failed, &local, &deferred, &bounced];
    for name in expected_zero {
        assert!(before.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} is exported from the start");
        assert_eq!(value(&before, name), 0.0, "{name}");
    }

    // An untrusted client: one relay attempt, one unknown user.
    let mut c = Client::connect(s.addr, Some("127.0.0.9"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<someone@elsewhere.test>").starts_with("550 5.7.1"));
    assert!(c.cmd("RCPT TO:<nosuch@example.test>").starts_with("550 5.1.1"));
    assert!(c.cmd("QUIT").starts_with("221"));
    // A trusted client: one message to one local and two remote recipients.
    let r = s.connect().send_mail(
        "alice@example.test",
        &["bob@example.test", "defer@remote.test", "bounce@remote.test"],
        "Subject: counted\r\n\r\nhello\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    // Submission: MAIL before AUTH, then a wrong password.
    let mut sub = Client::connect(s.addr_of("submission"), None);
    sub.cmd("EHLO client.test");
    assert!(sub.cmd("MAIL FROM:<alice@example.test>").starts_with("530 5.7.0"));
    let bad = "AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw=="; // \0alice@example.test\0wrong
    assert!(sub.cmd(&format!("AUTH PLAIN {bad}")).starts_with("535"));
    drop((c, sub));

    // bob, and the bounce to alice, are local deliveries; one remote deferral, one bounce.
    let mut after = String::new();
    wait_until("the deliveries", &s, || {
        after = get(m, "/metrics").1;
        value(&after, &local) >= 2.0 && value(&after, &deferred) >= 1.0 && value(&after, &bounced) >= 1.0
    });
    promtool_accepts(&after);
    assert_eq!(value(&after, &conns), 2.0);
    assert_eq!(value(&after, &relay), 1.0);
    assert_eq!(value(&after, &unknown), 1.0);
    assert_eq!(value(&after, &auth_required), 1.0);
    assert_eq!(value(&after, &auth_failed), 1.0);
    assert_eq!(value(&after, &local), 2.0);
    assert_eq!(value(&after, &latency), 2.0);
    assert_eq!(value(&after, &deferred), 1.0);
    assert_eq!(value(&after, &bounced), 1.0);
    assert_eq!(value(&after, "dakiya_messages_accepted_total"), 1.0);
    assert_eq!(value(&after, "dakiya_recipients_accepted_total"), 3.0);
    assert!(value(&after, "dakiya_received_bytes_total") > 20.0);
    assert_eq!(value(&after, "dakiya_outbound_attempt_duration_seconds_count"), 1.0);
    // The deferred message waits for its next attempt, counted at scrape time.
    assert_eq!(value(&after, "dakiya_queue_messages{state=\"scheduled\"}"), 1.0, "{after}");
    assert_eq!(value(&after, "dakiya_spool_writable"), 1.0);
    assert!(value(&after, "dakiya_spool_commit_batch_messages_count") >= 1.0, "{after}");
    for kind in ["directory", "file"] {
        let fsyncs = format!("dakiya_spool_fsync_duration_seconds_count{{kind=\"{kind}\"}}");
        assert!(value(&after, &fsyncs) >= 1.0, "{fsyncs}\n{after}");
    }
    // The message's first delivery run, and the notice's, read what their commits kept in
    // memory (docs/performance.md 7.10); nothing was evicted.
    let hits = "dakiya_spool_memory_loads_total{result=\"hit\"}";
    let kept = "dakiya_spool_memory_messages_total{event=\"kept\"}";
    assert_eq!(value(&before, hits), 0.0, "{before}");
    assert!(value(&after, hits) >= 1.0, "{after}");
    assert!(value(&after, kept) >= value(&after, hits), "{after}");
    assert_eq!(value(&after, "dakiya_spool_memory_messages_total{event=\"evicted\"}"), 0.0);
    assert!(after.contains("dakiya_spool_pool_files_total{event=\"recycled\"} "), "{after}");
    // No client-controlled text in any label.
    for needle in ["elsewhere.test", "alice", "127.0.0.9", "client.test"] {
        assert!(!after.contains(needle), "{needle} in the metrics:\n{after}");
    }
}

#[test]
fn openmetrics_when_asked_and_404_405() {
    let s = TestServer::start(METRICS);
    let m = s.addr_of("metrics");
    let req = "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n";
    let (code, body) = http(m, req);
    assert_eq!(code, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (code, body) = get(m, "/metrics");
    assert_eq!(code, 200);
    assert!(!body.contains("# EOF") && body.contains("# TYPE dakiya_connections_total counter"), "{body}");
    assert_eq!(get(m, "/").0, 404);
    assert_eq!(get(m, "/metrics/../etc/passwd").0, 404);
    assert_eq!(http(m, "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").0, 405);
    assert_eq!(http(m, "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").0, 200);
}

#[test]
fn health_follows_the_spool_probe_and_recovers() {
    let s = TestServer::start(METRICS);
    let m = s.addr_of("metrics");
    assert_eq!(get(m, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(m, "/readyz"), (200, "ready\n".into()));
    // Root ignores permissions: replace the directory new messages start in with a file.
    let tmp = s.data().join("spool").join("tmp");
    let away = s.data().join("spool").join("tmp.away");
    std::fs::rename(&tmp, &away).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let mut last = (0, String::new());
    wait_until("/healthz to fail", &s, || {
        last = get(m, "/healthz");
        last.0 == 503
    });
    assert!(last.1.starts_with("spool not writable"), "{}", last.1);
    let (code, why) = get(m, "/readyz");
    assert_eq!(code, 503);
    assert!(why.starts_with("spool not writable"), "{why}");
    assert_eq!(value(&get(m, "/metrics").1, "dakiya_spool_writable"), 0.0);
    // `dakiya status` says so too.
    let out = status_cli(&s, &[]);
    assert!(out.contains("Health: UNHEALTHY: spool not writable"), "{out}");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::rename(&away, &tmp).unwrap();
    wait_until("/healthz to recover", &s, || get(m, "/healthz").0 == 200);
    assert_eq!(get(m, "/readyz").0, 200);
}

#[test]
fn readyz_says_draining_while_sessions_drain() {
    let mut s = TestServer::start(&format!("[timeouts]\nshutdown_grace = \"5s\"\n{METRICS}"));
    let m = s.addr_of("metrics");
    // A session inside a transaction holds the shutdown for up to the grace.
    let mut c = s.connect();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@remote.test>").starts_with("250"));
    std::thread::scope(|scope| {
        let stopping = scope.spawn(|| s.shutdown());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = (0, String::new());
        while Instant::now() < deadline {
            seen = get(m, "/readyz");
            if seen.0 == 503 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seen, (503, "draining for shutdown\n".into()));
        drop(c);
        stopping.join().unwrap();
    });
}

fn status_cli(s: &TestServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dakiya"))
        .args(["status", "--config"])
        .arg(s.config_path())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn status_reports_the_running_server() {
    let s = TestServer::start(&format!("trusted_networks = [\"127.0.0.1/32\"]\n{METRICS}"));
    // Something for the queue: a message to a domain whose DNS does not answer.
    let r = s.connect().send_mail("alice@example.test", &["x@unreachable.test"], "Subject: x\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    let text = status_cli(&s, &[]);
    assert!(text.starts_with(&format!("dakiya {}, up ", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("Health: healthy\n"), "{text}");
    assert!(text.contains(&format!("  {:<24} mx\n", s.addr)), "{text}");
    assert!(text.contains(&format!("  {:<24} metrics\n", s.addr_of("metrics"))), "{text}");
    assert!(text.contains("Queue: "), "{text}");
    let json = status_cli(&s, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    let status = &v["status"];
    assert_eq!(status["listeners"].as_array().unwrap().len(), 2);
    assert_eq!(status["listeners"][1]["role"], "metrics");
    assert!(status["queue"]["ready"].is_u64(), "{json}");
    // The self-signed certificate warning at start-up is among the recent warnings.
    let recent = status["recent_errors"].as_array().unwrap();
    assert!(
        recent.iter().any(|e| e["level"] == "WARN" && e["message"].as_str().unwrap().contains("self-signed")),
        "{json}"
    );
}

#[test]
fn status_when_no_server_runs_exits_3() {
    let s = TestServer::start("");
    let cfg = s.config_path();
    let mut s = s;
    s.shutdown();
    let out = Command::new(env!("CARGO_BIN_EXE_dakiya")).args(["status", "--config"]).arg(cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_http_input_gets_4xx_and_the_listener_keeps_serving() {
    let s = TestServer::start(METRICS);
    let m = s.addr_of("metrics");
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http(m, &huge).0, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(http(m, &format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{many}\r\n")).0, 431);
    let post = "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(http(m, post).0, 413);
    let chunked = "GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(http(m, chunked).0, 413);
    assert_eq!(http(m, "HELLO\r\n\r\n").0, 400);
    assert_eq!(http(m, "GET /metrics HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n").0, 400);
    // An SMTP client on the wrong port.
    assert_eq!(http(m, "EHLO client.test\r\n").0, 400);
    assert_eq!(get(m, "/metrics").0, 200);
}

#[test]
fn idle_and_slow_clients_cannot_exhaust_the_listener() {
    let s = TestServer::start(METRICS);
    let m = s.addr_of("metrics");
    // Many idle connections, and slow ones sending a request head a byte at a time: at most
    // 32 are served at once, the rest are answered 503 and closed.
    let mut held = Vec::new();
    for i in 0..200 {
        let mut c = TcpStream::connect(m).unwrap();
        if i % 2 == 0 {
            c.write_all(b"GET /met").unwrap();
        }
        held.push(c);
    }
    let mut refused = 0;
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf)
            && buf[..n].starts_with(b"HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(refused >= 200 - 32, "only {refused} of 200 were refused");
    // The ones being served are closed when their request head does not come in time.
    let deadline = Instant::now() + Duration::from_secs(20);
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(Instant::now() < deadline, "an idle connection outlived the head timeout");
    }
    drop(held);
    assert_eq!(get(m, "/metrics").0, 200);
    // Keep-alive: two requests on one connection, then it is closed when idle.
    let mut c = TcpStream::connect(m).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(started.elapsed() < Duration::from_secs(15), "the idle kept-alive connection was closed");
}

#[test]
fn tls_versions_are_counted_on_both_sides_of_a_relay() {
    let b = TestServer::start(&format!("{METRICS}[domains.\"remote.test\"]\nmailboxes = [\"bob\"]\n"));
    let a = TestServer::start(&format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n{METRICS}[outbound.routes.\"remote.test\"]\nhosts = [\"127.0.0.1:{}\"]\ntls = \"require\"\n",
        b.addr.port()
    ));
    let r = a.connect().send_mail("alice@example.test", &["bob@remote.test"], "Subject: tls\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    let outbound = "dakiya_tls_handshakes_total{direction=\"outbound\",version=\"TLSv1.3\"}";
    let inbound = "dakiya_tls_handshakes_total{direction=\"inbound\",version=\"TLSv1.3\"}";
    let remote_delivered = "dakiya_deliveries_total{kind=\"remote\",result=\"delivered\"}";
    let mut sender = String::new();
    wait_until("the relay", &a, || {
        sender = get(a.addr_of("metrics"), "/metrics").1;
        value(&sender, remote_delivered) == 1.0
    });
    assert_eq!(value(&sender, outbound), 1.0, "{sender}");
    assert_eq!(value(&sender, inbound), 0.0);
    let receiver = get(b.addr_of("metrics"), "/metrics").1;
    assert_eq!(value(&receiver, inbound), 1.0, "{receiver}");
    assert_eq!(value(&receiver, outbound), 0.0);
}

/// The DNS server of the spam-controls test, with its own runtime (alive as long as this).
struct SpamDns {
    server: dakiya_route::testdns::TestDns,
    _rt: tokio::runtime::Runtime,
}

/// `bl.test` lists 127.0.0.2 and nobody else; no PTR records (no client has FCrDNS).
fn spam_dns() -> SpamDns {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let zone = dakiya_route::testdns::Zone::new().a("2.0.0.127.bl.test", [127, 0, 0, 2].into());
    let server = rt.block_on(dakiya_route::testdns::TestDns::start(zone));
    SpamDns { server, _rt: rt }
}

/// The first reply a client from `ip` gets after sending `send` (if anything) on connecting.
fn first_reply_from(ip: &str, addr: SocketAddr, send: &[u8]) -> String {
    let mut c = common::raw_from(ip, addr);
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(send).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(c).read_line(&mut line);
    line
}

#[test]
fn spam_control_refusals_are_counted_by_reason() {
    let dns = spam_dns();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed at once
    let screen = |keys: &str| {
        format!(
            "[outbound]\nnameservers = [\"{}\"]\n[screen]\n{keys}\n[[screen.zone]]\nname = \"bl.test\"\n",
            dns.server.addr
        )
    };
    // Listeners: [0] the base mx (greylisted), [1] a greet delay, [2] tight rate limits,
    // [3] a milter that is down (default_action tempfail), [4] metrics.
    let a = TestServer::start(&format!(
        "{}[greylist]\nenabled = true\nmin_delay = \"1h\"\n\
         [rate_limits.tight]\nconnections_per_network = \"2/1h\"\nmessages_per_network = \"1/1h\"\n\
         [[milter]]\nname = \"down\"\naddress = \"inet:127.0.0.1:{dead}\"\nconnect_timeout = \"2s\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nrate_limits = \"none\"\ngreet_delay = \"1s\"\ngreylist = false\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nrate_limits = \"tight\"\ngreylist = false\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nrate_limits = \"none\"\ngreylist = false\nmilters = [\"down\"]\n\
         {METRICS}",
        screen("helo_checks = [\"bare-ip\"]")
    ));
    let (plain, greet, tight, filtered) = (a.addr, a.listeners[1].0, a.listeners[2].0, a.listeners[3].0);
    let m = a.addr_of("metrics");
    let reasons = [
        ("connect", "dnsbl"),
        ("rcpt", "dnsbl"),
        ("connect", "early_talker"),
        ("command", "pipelining"),
        ("rcpt", "fcrdns"),
        ("mail", "helo"),
        ("rcpt", "greylisted"),
        ("connect", "rate_limited"),
        ("mail", "rate_limited"),
        ("rcpt", "rate_limited"),
        ("mail", "milter"),
        ("rcpt", "milter"),
        ("data", "milter"),
    ];
    let series = |(stage, reason): (&str, &str)| {
        format!("dakiya_smtp_rejections_total{{stage=\"{stage}\",reason=\"{reason}\"}}")
    };
    let (_, before) = get(m, "/metrics");
    promtool_accepts(&before);
    for r in reasons {
        assert!(
            before.lines().any(|l| l.starts_with(&format!("{} 0", series(r)))),
            "{} at 0 from the start\n{before}",
            series(r)
        );
    }

    // A listed client, refused instead of the greeting.
    assert!(first_reply_from("127.0.0.2", plain, b"").starts_with("554 5.7.1"));
    // An early talker, before the 1 s greet delay is over.
    assert!(first_reply_from("127.0.0.3", greet, b"EHLO early.test\r\n").starts_with("554 5.5.1"));
    // Pipelining after HELO (PIPELINING not offered).
    let mut c = Client::connect(plain, Some("127.0.0.4"));
    assert!(c.cmd("HELO client.test").starts_with("250"));
    c.send(b"MAIL FROM:<x@elsewhere.test>\r\nRCPT TO:<bob@example.test>\r\n");
    assert!(c.reply().starts_with("554 5.5.1"));
    // A bare IP address as the HELO name; then a greylisted triplet.
    let mut c = Client::connect(plain, Some("127.0.0.5"));
    assert!(c.cmd("EHLO 192.0.2.1").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("550 5.7.1"));
    let mut c = Client::connect(plain, Some("127.0.0.6"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("451 4.7.1"));
    // Rate limits: the second message of the network, then its third connection.
    let mut c = Client::connect(tight, Some("127.0.1.1"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("450 4.7.1"));
    let _second = Client::connect(tight, Some("127.0.1.2"));
    assert!(first_reply_from("127.0.1.3", tight, b"").starts_with("421 4.7.0"));
    // The milter is down: MAIL gets its default action, tempfail.
    let mut c = Client::connect(filtered, Some("127.0.2.1"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("451 4.7.1"));

    // A second server: lists refuse at RCPT, and FCrDNS is required.
    let b = TestServer::start(&format!("{}{METRICS}", screen("action = \"reject-at-rcpt\"\nrequire_fcrdns = true")));
    for (ip, code) in [("127.0.0.2", "554 5.7.1"), ("127.0.0.3", "450 4.7.25")] {
        let mut c = Client::connect(b.addr, Some(ip));
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<x@elsewhere.test>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with(code), "{ip}");
    }

    let expect_a = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    let expect_b = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    for (s, expect) in [(&a, expect_a), (&b, expect_b)] {
        let (_, after) = get(s.addr_of("metrics"), "/metrics");
        promtool_accepts(&after);
        for (r, n) in reasons.into_iter().zip(expect) {
            assert_eq!(value(&after, &series(r)), n, "{}\n{after}", series(r));
        }
        for r in ["relay_denied", "unknown_user", "policy"] {
            assert_eq!(value(&after, &series(("rcpt", r))), 0.0, "{r}");
        }
    }
}
