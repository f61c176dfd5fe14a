//! Socket tests for the POP3 listener that need no TLS client: logins in clear text are
//! allowed here only because the test config turns `plaintext_on_loopback` on (one test
//! checks the refusal without it). The TLS paths (STLS, pop3s) are exercised with real
//! clients in tests/interop/test_pop3.py.

mod common;
use common::{Client, TestServer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

const POP3: &str = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"pop3\"\n";
const CLEAR: &str = "[auth]\nplaintext_on_loopback = true\n";
const PASSWORD: &str = "correct horse";

/// A line-oriented POP3 client on a raw socket.
struct Pop {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Pop {
    fn connect(addr: SocketAddr, bind: Option<&str>) -> Pop {
        let stream = match bind {
            None => TcpStream::connect(addr).unwrap(),
            Some(ip) => common::raw_from(ip, addr),
        };
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut p = Pop { stream, reader };
        let greeting = p.line();
        assert!(greeting.starts_with("+OK "), "{greeting}");
        p
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.reader.read_line(&mut line);
        line
    }

    fn cmd(&mut self, line: &str) -> String {
        self.stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.line()
    }

    /// A multi-line response after its `+OK` line: the raw lines up to (without) the `.`.
    fn multi(&mut self, line: &str) -> (String, String) {
        let first = self.cmd(line);
        assert!(first.starts_with("+OK"), "{line}: {first}");
        let mut body = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed inside a multi-line response");
            if l == ".\r\n" {
                return (first, body);
            }
            body.push_str(&l);
        }
    }

    fn login(&mut self, user: &str) -> String {
        assert!(self.cmd(&format!("USER {user}")).starts_with("+OK"));
        self.cmd(&format!("PASS {PASSWORD}"))
    }

    fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

fn server(extra: &str) -> TestServer {
    let s = TestServer::start(&format!("{extra}\n{POP3}"));
    s.add_user("alice@example.test", PASSWORD);
    s
}

/// Sends `body` to alice over SMTP and waits for its delivery.
fn deliver(s: &TestServer, subject: &str, n: usize) {
    // Dot-stuffed for SMTP: stored as ".leading dot".
    let body = format!("Subject: {subject}\r\n\r\nHello over POP3.\r\n..leading dot");
    let r = Client::connect(s.addr_of("mx"), None).send_mail("bob@example.test", &["alice@example.test"], &body);
    assert!(r.starts_with("250"), "{r}");
    for _ in 0..500 {
        if s.messages("alice").len() + cur(s).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("message {n} was not delivered");
}

fn maildir(s: &TestServer) -> PathBuf {
    s.data().join("mail/example.test/alice")
}

fn cur(s: &TestServer) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(maildir(s).join("cur"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn clear_text_login_is_refused_without_tls() {
    let s = server("");
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    let (_, caps) = p.multi("CAPA");
    assert!(caps.contains("STLS\r\n") && !caps.contains("USER\r\n"), "{caps}");
    let r = p.cmd("USER alice@example.test");
    assert!(r.starts_with("-ERR [AUTH] Plaintext authentication is not allowed without TLS"), "{r}");
    assert!(p.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl").starts_with("-ERR [AUTH]"));
    assert!(!s.log().contains("protocol=\"pop3\""), "no password was checked");
}

#[test]
fn retrieve_a_message_sent_over_smtp() {
    let s = server(CLEAR);
    deliver(&s, "first", 1);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    let r = p.login("alice@example.test");
    assert!(r.starts_with("+OK Logged in, 1 messages"), "{r}");
    // The message moved from new/ to cur/ with the `:2,` info.
    let names = cur(&s);
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(":2,"), "{names:?}");
    assert!(s.messages("alice").is_empty());
    let (_, list) = p.multi("LIST");
    let size: usize = list.trim().split(' ').nth(1).unwrap().parse().unwrap();
    let (first, content) = p.multi("RETR 1");
    assert_eq!(first, format!("+OK {size} octets\r\n"));
    // Sent with CRLF line ends, the leading dot stuffed; LIST counted the unstuffed size.
    assert!(content.contains("Subject: first\r\n\r\nHello over POP3.\r\n..leading dot\r\n"), "{content}");
    assert_eq!(content.len() - 1, size, "one stuffed dot");
    let (_, uidl) = p.multi("UIDL");
    let uid = names[0].trim_end_matches(":2,");
    assert_eq!(uidl, format!("1 {uid}\r\n"));
    let (_, top) = p.multi("TOP 1 0");
    assert!(top.ends_with("Subject: first\r\n\r\n"), "{top}");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(cur(&s), names, "nothing deleted");
}

#[test]
fn dele_and_quit_removes_but_a_dropped_connection_does_not() {
    let s = server(CLEAR);
    deliver(&s, "one", 1);
    deliver(&s, "two", 2);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK Logged in, 2 messages"));
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    drop(p);
    // The lock is released once the server sees the close; the next login finds both.
    let mut p = retry_login(&s);
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"), "QUIT");
    let left = cur(&s);
    assert_eq!(left.len(), 1, "{left:?}");
    let mut p = retry_login(&s);
    let (_, content) = p.multi("RETR 1");
    assert!(content.contains("Subject: two"), "the second message stayed");
}

/// Logs in, retrying while the previous session's lock is still held.
fn retry_login(s: &TestServer) -> Pop {
    for _ in 0..100 {
        let mut p = Pop::connect(s.addr_of("pop3"), None);
        let r = p.login("alice@example.test");
        if r.starts_with("+OK") {
            return p;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the maildrop stayed locked");
}

#[test]
fn second_session_gets_in_use() {
    let s = server(CLEAR);
    deliver(&s, "one", 1);
    let mut first = Pop::connect(s.addr_of("pop3"), None);
    assert!(first.login("alice@example.test").starts_with("+OK"));
    let mut second = Pop::connect(s.addr_of("pop3"), None);
    assert_eq!(second.login("alice@example.test"), "-ERR [IN-USE] Mailbox is in use by another POP3 session\r\n");
    assert!(first.cmd("QUIT").starts_with("+OK"));
    // Still in AUTHORIZATION: the same connection may try again (RFC 1939 §8).
    for _ in 0..100 {
        if second.login("alice@example.test").starts_with("+OK") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the lock was not released at QUIT");
}

#[test]
fn uidl_is_stable_across_restarts() {
    let s = server(CLEAR);
    deliver(&s, "one", 1);
    deliver(&s, "two", 2);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK"));
    let (_, before) = p.multi("UIDL");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    let dir = s.stop();
    let s = TestServer::start_in(dir, &format!("{CLEAR}\n{POP3}"));
    deliver(&s, "three", 3);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK Logged in, 3 messages"));
    let (_, after) = p.multi("UIDL");
    assert!(after.starts_with(&before), "before:\n{before}after:\n{after}");
    assert_eq!(after.lines().count(), 3);
}

#[test]
fn big_message_streams_whole() {
    let s = server(CLEAR);
    let line = "x".repeat(998);
    let body: String = (0..3000).map(|i| format!("\r\n{i:04}{line}")).collect();
    let mut c = Client::connect(s.addr_of("mx"), None);
    assert!(
        c.send_mail("bob@example.test", &["alice@example.test"], &format!("Subject: big\r\n\r\n{body}"))
            .starts_with("250")
    );
    s.wait_for("alice", 1);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK"));
    let size: usize = p.cmd("LIST 1").trim().split(' ').nth(2).unwrap().parse().unwrap();
    let (_, content) = p.multi("RETR 1");
    assert_eq!(content.len(), size);
    assert!(content.ends_with(&format!("2999{line}\r\n")), "{}", &content[content.len() - 100..]);
}

#[test]
fn bad_input_gets_clear_errors_and_repeated_abuse_closes() {
    let s = server(CLEAR);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    let long = format!("USER {}", "a".repeat(400));
    assert_eq!(p.cmd(&long), "-ERR Line too long (at most 255 octets, RFC 2449)\r\n");
    assert_eq!(p.cmd("EHLO example.test"), "-ERR Unknown command\r\n");
    assert_eq!(p.cmd("STAT"), "-ERR Not allowed before login\r\n");
    assert_eq!(p.cmd("APOP alice 0123456789abcdef"), "-ERR Unknown command\r\n");
    p.stream.write_all(b"\x00\xff\x16\x03\x01\r\n").unwrap();
    assert_eq!(p.line(), "-ERR Invalid characters in command\r\n");
    assert_eq!(p.cmd("NOOP"), "-ERR Not allowed before login\r\n");
    assert!(p.cmd("CAPA").starts_with("+OK"), "the session still works");
    p.multi_rest();
    for _ in 0..4 {
        p.cmd("BOGUS");
    }
    let rest = p.read_to_end();
    assert!(rest.ends_with("-ERR Too many errors; closing connection\r\n"), "{rest:?}");
    // A lone LF breaks the framing: the session ends.
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    p.stream.write_all(b"CAPA\n").unwrap();
    assert_eq!(p.read_to_end(), "-ERR Lines must end with CRLF; closing connection\r\n");
}

impl Pop {
    /// Skips the rest of a multi-line response.
    fn multi_rest(&mut self) {
        while self.line() != ".\r\n" {}
    }
}

#[test]
fn brute_force_is_throttled_like_smtp_auth() {
    let s = server(&format!("{CLEAR}max_failures = 3\nfailure_delay = \"1ms\"\n"));
    deliver(&s, "one", 1);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    for _ in 0..3 {
        p.cmd("USER alice@example.test");
        assert_eq!(p.cmd("PASS wrong"), "-ERR [AUTH] Authentication failed\r\n");
    }
    // Locked out: even the right password is not checked.
    let r = p.login("alice@example.test");
    assert_eq!(r, "-ERR [SYS/TEMP] Too many failed logins; try again later\r\n");
    // Per client address, as for SMTP AUTH: another loopback address is not locked out.
    let mut other = Pop::connect(s.addr_of("pop3"), Some("127.0.0.2"));
    assert!(other.login("alice@example.test").starts_with("+OK"));
    assert!(s.log().contains("result=locked-out"));
}

#[test]
fn a_client_over_the_connection_limit_gets_a_pop3_refusal() {
    let s = server(&format!("{CLEAR}[limits]\nmax_connections_per_ip = 1\n"));
    let _first = Pop::connect(s.addr_of("pop3"), None);
    let mut second = TcpStream::connect(s.addr_of("pop3")).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut text = String::new();
    let _ = second.read_to_string(&mut text);
    assert_eq!(text, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
}

#[test]
fn shutdown_ends_sessions_without_update() {
    let mut s = server(CLEAR);
    deliver(&s, "one", 1);
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK"));
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    s.shutdown();
    assert_eq!(p.read_to_end(), "-ERR [SYS/TEMP] Server shutting down, try again later\r\n");
    assert_eq!(cur(&s).len(), 1, "the DELE was not applied");
}

/// The wire form of stored `content` (RFC 1939 §3): CRLF line ends, a "." added to lines
/// starting with one, a line end added to a last line without, then the "." line.
fn wire(content: &str) -> String {
    let mut lines: Vec<String> = content.split('\n').map(|l| l.trim_end_matches('\r').to_string()).collect();
    if content.ends_with('\n') {
        lines.pop();
    }
    let stuffed: String =
        lines.iter().map(|l| format!("{}{l}\r\n", if l.starts_with('.') { "." } else { "" })).collect();
    format!("{stuffed}.\r\n")
}

#[test]
fn pipelined_retrs_are_answered_byte_for_byte() {
    let s = server(CLEAR);
    let md = maildir(&s);
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    // Dot lines, a last line without a newline, CRLF storage, an empty body, a big one.
    let mut contents: Vec<String> = vec![
        "Subject: dots\n\n.\n..\n.hidden\nend\n".into(),
        "Subject: no newline at the end\n\nlast line".into(),
        "Subject: crlf\r\n\r\n.x\r\ny\r\n".into(),
        "Subject: empty body\n\n".into(),
        format!("Subject: big\n\n{}", (0..5000).map(|i| format!(".{i:05} {}\n", "y".repeat(300))).collect::<String>()),
    ];
    for i in 0..40 {
        contents.push(format!("Subject: {i}\n\n.{i}\nline {i}"));
    }
    for (i, c) in contents.iter().enumerate() {
        std::fs::write(md.join(format!("new/1700000000.M{i}P1Q1.test")), c).unwrap();
    }
    let mut p = Pop::connect(s.addr_of("pop3"), None);
    assert!(p.login("alice@example.test").starts_with("+OK"));
    let (_, uidl) = p.multi("UIDL");
    let (_, list) = p.multi("LIST");
    let by_uid: Vec<&String> = uidl
        .lines()
        .map(|l| {
            let uid = l.split(' ').nth(1).unwrap();
            let i: usize = uid.split(".M").nth(1).unwrap().split('P').next().unwrap().parse().unwrap();
            &contents[i]
        })
        .collect();
    assert_eq!(by_uid.len(), contents.len());
    // All RETRs (and a TOP) in one write; the answers must come back in order, exact.
    let mut cmds: String = (1..=by_uid.len()).map(|n| format!("RETR {n}\r\n")).collect();
    cmds.push_str("TOP 1 2\r\nQUIT\r\n");
    p.stream.write_all(cmds.as_bytes()).unwrap();
    let mut want = String::new();
    for (n, (c, l)) in by_uid.iter().zip(list.lines()).enumerate() {
        let size: usize = l.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(l.split(' ').next().unwrap(), (n + 1).to_string());
        let body = wire(c);
        // LIST's size is the stored content with CRLF line ends (RFC 1939 §5), before
        // dot-stuffing and without a line end the server adds.
        assert_eq!(size, c.replace("\r\n", "\n").replace('\n', "\r\n").len(), "message {}: {c:?}", n + 1);
        want.push_str(&format!("+OK {size} octets\r\n{body}"));
    }
    let top = wire(by_uid[0]);
    let top_lines: Vec<&str> = top.split_inclusive("\r\n").collect();
    let header_end = top_lines.iter().position(|l| *l == "\r\n").unwrap();
    let size1 = list.lines().next().unwrap().split(' ').nth(1).unwrap();
    want.push_str(&format!("+OK {size1} octets\r\n"));
    for l in &top_lines[..(header_end + 3).min(top_lines.len() - 1)] {
        want.push_str(l);
    }
    want.push_str(".\r\n");
    let got = p.read_to_end();
    assert!(
        got.starts_with(&want),
        "answers differ at byte {}",
        got.bytes().zip(want.bytes()).take_while(|(a, b)| a == b).count()
    );
    assert!(got[want.len()..].starts_with("+OK"), "{}", &got[want.len()..]);
}
