//! In-memory POP3 sessions: feed client lines, answer the driver's events, check the replies.

use dakiya_pop3::server::Credentials;
use dakiya_pop3::{AuthFailure, ContentEncoder, Entry, Event, OpenFailure, Policy, Server, ServerConfig};
use std::sync::Arc;

/// A driver with a maildrop of `messages`, the password "pw", and a switch for the lock.
struct Driver {
    server: Server,
    messages: Vec<&'static [u8]>,
    locked: bool,
    removed: Vec<usize>,
    logins: Vec<Credentials>,
    out: String,
    closed: bool,
}

fn session(policy: Policy) -> Driver {
    let cfg = Arc::new(ServerConfig { hostname: "pop.test".into(), max_errors: 5 });
    let mut d = Driver {
        server: Server::new(cfg, policy),
        messages: vec![b"Subject: one\n\nfirst\n", b"Subject: two\n\n.dot\nsecond\nthird\n"],
        locked: false,
        removed: Vec::new(),
        logins: Vec::new(),
        out: String::new(),
        closed: false,
    };
    d.take();
    d
}

fn tls() -> Policy {
    Policy { stls: false, implicit_tls: true, login_without_tls: false }
}

impl Driver {
    fn take(&mut self) {
        self.out.push_str(std::str::from_utf8(self.server.output()).unwrap());
        self.server.clear_output();
    }

    /// Sends `input` and returns everything the server wrote in answer.
    fn send(&mut self, input: &str) -> String {
        let before = self.out.len();
        let mut buf = input.as_bytes().to_vec();
        loop {
            match self.server.poll(&mut buf) {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::Authenticate => {
                    let c = self.server.credentials().unwrap().clone();
                    let ok = c.password == "pw";
                    self.logins.push(c);
                    self.server.auth_result(if ok { Ok("alice".into()) } else { Err(AuthFailure::Invalid) });
                }
                Event::OpenMaildrop => {
                    let r = if self.locked { Err(OpenFailure::InUse) } else { Ok(self.entries()) };
                    self.server.maildrop_opened(r);
                }
                Event::StartTls => self.server.tls_established(),
                Event::Retrieve { msg, body_lines } => {
                    self.server.retrieve_opened(true);
                    self.take();
                    let mut enc = ContentEncoder::new(body_lines);
                    let mut content = Vec::new();
                    enc.encode(self.messages[msg], &mut content);
                    enc.finish(&mut content);
                    self.out.push_str(std::str::from_utf8(&content).unwrap());
                }
                Event::Commit => {
                    self.removed = self.server.deleted();
                    self.server.committed(Ok(()));
                }
                e => panic!("unexpected {e:?}"),
            }
        }
        self.take();
        self.out[before..].to_string()
    }

    fn entries(&self) -> Vec<Entry> {
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| Entry {
                size: m.len() as u64 + m.iter().filter(|&&b| b == b'\n').count() as u64,
                uid: format!("U{i}"),
            })
            .collect()
    }

    fn login(&mut self) {
        assert!(self.send("USER alice\r\n").starts_with("+OK"));
        let r = self.send("PASS pw\r\n");
        assert!(r.starts_with("+OK Logged in, 2 messages"), "{r}");
    }
}

#[test]
fn greeting_has_no_apop_timestamp() {
    let d = session(tls());
    assert_eq!(d.out, "+OK pop.test POP3 dakiya ready\r\n");
}

#[test]
fn capa_depends_on_tls_and_state() {
    let mut clear = session(Policy { stls: true, ..Policy::default() });
    let caps = clear.send("CAPA\r\n");
    assert!(caps.contains("STLS\r\n") && !caps.contains("USER\r\n") && !caps.contains("SASL"), "{caps}");
    assert!(caps.ends_with("\r\n.\r\n"));
    let mut secure = session(tls());
    let caps = secure.send("capa\r\n");
    assert!(caps.contains("USER\r\n") && caps.contains("SASL PLAIN\r\n") && !caps.contains("STLS"), "{caps}");
    assert!(caps.contains("UIDL\r\n") && caps.contains("TOP\r\n") && caps.contains("RESP-CODES\r\n"));
    secure.login();
    let caps = secure.send("CAPA\r\n");
    assert!(!caps.contains("USER\r\n") && caps.contains("UIDL"), "{caps}");
}

#[test]
fn clear_text_login_is_refused_until_stls() {
    let mut d = session(Policy { stls: true, ..Policy::default() });
    let r = d.send("USER alice\r\n");
    assert!(r.starts_with("-ERR [AUTH] Plaintext authentication is not allowed without TLS"), "{r}");
    assert!(d.send("PASS pw\r\n").starts_with("-ERR [AUTH]"));
    assert!(d.send("AUTH PLAIN AGFsaWNlAHB3\r\n").starts_with("-ERR [AUTH]"));
    assert!(d.logins.is_empty());
    // Input pipelined behind STLS is dropped (RFC 2595 §4).
    let r = d.send("STLS\r\nUSER mallory\r\n");
    assert_eq!(r, "+OK Begin TLS negotiation\r\n");
    assert!(d.server.is_tls());
    assert!(d.send("STLS\r\n").starts_with("-ERR TLS is already active"));
    d.login();
}

#[test]
fn loopback_switch_allows_clear_text() {
    let mut d = session(Policy { stls: true, implicit_tls: false, login_without_tls: true });
    d.login();
}

#[test]
fn transaction_commands() {
    let mut d = session(tls());
    d.login();
    assert_eq!(d.send("STAT\r\n"), "+OK 2 60\r\n");
    assert_eq!(d.send("LIST\r\n"), "+OK 2 messages (60 octets)\r\n1 23\r\n2 37\r\n.\r\n");
    assert_eq!(d.send("LIST 2\r\n"), "+OK 2 37\r\n");
    assert_eq!(d.send("UIDL\r\n"), "+OK Unique-ID listing follows\r\n1 U0\r\n2 U1\r\n.\r\n");
    assert_eq!(d.send("uidl 1\r\n"), "+OK 1 U0\r\n");
    assert_eq!(d.send("RETR 2\r\n"), "+OK 37 octets\r\nSubject: two\r\n\r\n..dot\r\nsecond\r\nthird\r\n.\r\n");
    assert_eq!(d.send("TOP 2 1\r\n"), "+OK 37 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n");
    assert!(d.send("RETR 3\r\n").starts_with("-ERR No such message"));
    assert!(d.send("RETR 0\r\n").starts_with("-ERR No such message"));
    assert_eq!(d.send("NOOP\r\n"), "+OK\r\n");
    assert!(d.send("USER bob\r\n").starts_with("-ERR"));
}

#[test]
fn deletions_take_effect_only_at_quit() {
    let mut d = session(tls());
    d.login();
    assert_eq!(d.send("DELE 1\r\n"), "+OK Message 1 deleted\r\n");
    assert!(d.send("RETR 1\r\n").starts_with("-ERR Message already deleted"));
    assert!(d.send("DELE 1\r\n").starts_with("-ERR"));
    assert_eq!(d.send("STAT\r\n"), "+OK 1 37\r\n");
    assert_eq!(d.send("LIST\r\n"), "+OK 1 messages (37 octets)\r\n2 37\r\n.\r\n");
    assert_eq!(d.send("RSET\r\n"), "+OK 2 messages\r\n");
    assert_eq!(d.send("STAT\r\n"), "+OK 2 60\r\n");
    d.send("DELE 2\r\n");
    assert!(d.removed.is_empty());
    let r = d.send("QUIT\r\n");
    assert_eq!(r, "+OK pop.test POP3 dakiya signing off (1 messages left)\r\n");
    assert_eq!(d.removed, vec![1]);
    assert!(d.closed);
}

#[test]
fn quit_before_login_removes_nothing() {
    let mut d = session(tls());
    assert_eq!(d.send("QUIT\r\n"), "+OK Bye\r\n");
    assert!(d.closed && d.removed.is_empty());
}

#[test]
fn auth_plain_with_initial_response_and_continuation() {
    let mut d = session(tls());
    // \0alice\0pw
    let r = d.send("AUTH PLAIN AGFsaWNlAHB3\r\n");
    assert!(r.starts_with("+OK Logged in"), "{r}");
    let mut d = session(tls());
    assert_eq!(d.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert!(d.send("AGFsaWNlAHB3\r\n").starts_with("+OK Logged in"));
    assert_eq!(d.logins[0].method, "PLAIN");
    assert_eq!(d.logins[0].username, "alice");
    let mut d = session(tls());
    d.send("AUTH PLAIN\r\n");
    assert!(d.send("*\r\n").starts_with("-ERR Authentication cancelled"));
    assert!(d.send("AUTH LOGIN\r\n").starts_with("-ERR Unsupported"));
    assert!(d.send("AUTH PLAIN !!!\r\n").starts_with("-ERR Malformed"));
    assert!(
        !format!("{:?}", Credentials { method: "USER", username: "a".into(), password: "hunter2".into() })
            .contains("hunter2")
    );
}

#[test]
fn bad_password_and_locked_maildrop() {
    let mut d = session(tls());
    d.send("USER alice\r\n");
    assert_eq!(d.send("PASS wrong\r\n"), "-ERR [AUTH] Authentication failed\r\n");
    // RFC 1939 §7: after a failed PASS the client starts again with USER.
    assert!(d.send("PASS pw\r\n").starts_with("-ERR Send USER first"));
    d.locked = true;
    d.send("USER alice\r\n");
    assert_eq!(d.send("PASS pw\r\n"), "-ERR [IN-USE] Mailbox is in use by another POP3 session\r\n");
    assert!(d.send("STAT\r\n").starts_with("-ERR Not allowed before login"));
    d.locked = false;
    d.login();
}

#[test]
fn long_lines_are_refused_and_repeated_errors_close() {
    let mut d = session(tls());
    let long = format!("USER {}\r\nNOOP\r\n", "x".repeat(300));
    let r = d.send(&long);
    assert_eq!(r, "-ERR Line too long (at most 255 octets, RFC 2449)\r\n-ERR Not allowed before login\r\n");
    // A line of exactly 255 octets with CRLF is fine.
    let fits = format!("USER {}\r\n", "y".repeat(255 - 7));
    assert!(d.send(&fits).starts_with("+OK"));
    let r = d.send("FOO\r\nBAR\r\nBAZ\r\nQUUX\r\nNEVER\r\n");
    assert!(r.ends_with("-ERR Too many errors; closing connection\r\n"), "{r}");
    assert!(d.closed);
}

#[test]
fn lone_lf_closes_and_binary_garbage_is_refused() {
    let mut d = session(tls());
    let r = d.send("\u{1}\u{2}\r\n");
    assert!(r.starts_with("-ERR Invalid characters"), "{r}");
    let r = d.send("CAPA\nQUIT\r\n");
    assert_eq!(r, "-ERR Lines must end with CRLF; closing connection\r\n");
    assert!(d.closed);
}

#[test]
fn partial_input_waits() {
    let mut d = session(tls());
    assert_eq!(d.send("US"), "");
    let mut buf = b"ER a\r".to_vec();
    assert_eq!(d.server.poll(&mut buf), Event::NeedInput);
}
