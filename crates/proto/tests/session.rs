//! In-memory session tests: feed bytes, check replies and what would be stored.

use dakiya_proto::address::ForwardPath;
use dakiya_proto::{Enhanced, Event, Reply, Server, ServerConfig};
use std::sync::Arc;

struct Harness {
    server: Server<String>,
    output: String,
    body: Vec<u8>,
    stored: Vec<(Vec<String>, Vec<u8>)>,
    starts: usize,
    aborts: usize,
    closed: bool,
    commit_fails: bool,
}

fn cfg() -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        hostname: "mx.example.test".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 10,
    })
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            server: Server::new(cfg()),
            output: String::new(),
            body: Vec::new(),
            stored: Vec::new(),
            starts: 0,
            aborts: 0,
            closed: false,
            commit_fails: false,
        };
        h.flush();
        h
    }

    fn flush(&mut self) {
        self.output.push_str(&String::from_utf8_lossy(self.server.output()));
        self.server.clear_output();
    }

    /// Feeds input, driving the session until it wants more; returns the replies written.
    fn send(&mut self, input: &[u8]) -> String {
        let mut buf = input.to_vec();
        self.output.clear();
        loop {
            match self.server.poll(&mut buf) {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::CheckRecipient => {
                    let verdict = match self.server.pending_recipient().unwrap().0 {
                        ForwardPath::Postmaster => Ok("postmaster".to_string()),
                        ForwardPath::Mailbox(m) if m.domain != "example.test" => {
                            Err(Reply::new(550, Enhanced(5, 7, 1), "Relaying denied"))
                        }
                        ForwardPath::Mailbox(m) if m.local == "unknown" => {
                            Err(Reply::new(550, Enhanced(5, 1, 1), "No such user"))
                        }
                        ForwardPath::Mailbox(m) => Ok(m.to_string()),
                    };
                    self.server.recipient_verdict(verdict);
                }
                Event::CheckSender => self.server.sender_verdict(Ok(())),
                Event::MessageStart => {
                    self.starts += 1;
                    self.body.clear();
                }
                Event::Body(b) => self.body.extend_from_slice(b),
                Event::MessageEnd => {
                    if self.commit_fails {
                        self.server.message_committed(Err(Reply::new(451, Enhanced(4, 3, 0), "Disk trouble")));
                    } else {
                        let rcpts = self.server.transaction().unwrap().rcpts.iter().map(|r| r.data.clone()).collect();
                        self.stored.push((rcpts, std::mem::take(&mut self.body)));
                        let id = format!("ID{}", self.stored.len());
                        self.server.message_committed(Ok(&id));
                    }
                }
                Event::MessageAbort => {
                    self.aborts += 1;
                    self.body.clear();
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        self.flush();
        std::mem::take(&mut self.output)
    }

    fn codes(&mut self, input: &str) -> Vec<String> {
        self.send(input.as_bytes())
            .lines()
            .filter(|l| l.len() >= 4 && &l[3..4] == " ")
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn ready() -> Harness {
        let mut h = Harness::new();
        assert_eq!(h.codes("EHLO client.test\r\n"), ["250 DSN"]);
        h
    }
}

#[test]
fn greeting_and_ehlo_keywords() {
    let mut h = Server::<()>::new(cfg());
    assert_eq!(h.output(), b"220 mx.example.test ESMTP dakiya\r\n");
    h.clear_output();
    let mut input = b"EHLO client.test\r\n".to_vec();
    assert_eq!(h.poll(&mut input), Event::NeedInput);
    let out = String::from_utf8(h.output().to_vec()).unwrap();
    for kw in ["PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"] {
        assert!(out.contains(&format!("250-{kw}\r\n")) || out.contains(&format!("250 {kw}\r\n")), "{kw}: {out}");
    }
    assert!(out.starts_with("250-mx.example.test greets client.test\r\n"));
}

#[test]
fn full_transaction() {
    let mut h = Harness::ready();
    assert_eq!(h.codes("MAIL FROM:<a@remote.test>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes("RCPT TO:<bob@example.test>\r\n"), ["250 2.1.5"]);
    assert_eq!(h.codes("DATA\r\n"), ["354 2.0.0"]);
    let out = h.send(b"Subject: hi\r\n\r\nhello\r\n..dot\r\n.\r\n");
    assert_eq!(out, "250 2.0.0 Ok: queued as ID1\r\n");
    assert_eq!(
        h.stored,
        vec![(vec!["bob@example.test".to_string()], b"Subject: hi\r\n\r\nhello\r\n.dot\r\n".to_vec())]
    );
    assert_eq!(h.codes("QUIT\r\n"), ["221 2.0.0"]);
    assert!(h.closed);
}

#[test]
fn pipelined_transaction_gets_replies_in_order() {
    let mut h = Harness::ready();
    let out = h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<unknown@example.test>\r\nRCPT TO:<y@other.test>\r\nDATA\r\n");
    assert_eq!(out, ["250 2.1.0", "250 2.1.5", "550 5.1.1", "550 5.7.1", "354 2.0.0"]);
    assert_eq!(
        h.codes("body\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n"),
        ["250 2.0.0", "250 2.1.0", "250 2.1.5", "354 2.0.0"]
    );
    assert_eq!(h.codes(".\r\n"), ["250 2.0.0"]);
    assert_eq!(h.stored.len(), 2);
    assert_eq!(h.stored[0].0, ["x@example.test"]);
    assert_eq!(h.stored[1], (vec!["postmaster".to_string()], vec![]));
}

#[test]
fn message_split_across_reads() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
    let msg = b"line one\r\n.leading\r\nline three\r\n.\r\n";
    for b in msg.iter() {
        h.send(std::slice::from_ref(b));
    }
    assert_eq!(h.stored[0].1, b"line one\r\nleading\r\nline three\r\n");
}

#[test]
fn bdat_chunks() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\n");
    assert_eq!(h.codes("BDAT 7\r\nhello\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes("BDAT 8 LAST\r\n.world\r\nNOOP\r\n"), ["250 2.0.0", "250 2.0.0"]);
    assert_eq!(h.stored[0].1, b"hello\r\n.world\r\n");
    assert_eq!(h.starts, 1);
    // A BDAT chunk may split anywhere, including between CR and LF.
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\n");
    assert_eq!(h.codes("BDAT 3\r\nab\r"), ["250 2.0.0"]);
    assert_eq!(h.codes("BDAT 1 LAST\r\n\n"), ["250 2.0.0"]);
    assert_eq!(h.stored[1].1, b"ab\r\n");
}

#[test]
fn bdat_without_transaction_consumes_the_chunk() {
    let mut h = Harness::ready();
    // The chunk holds what looks like commands; it must be swallowed, not executed.
    assert_eq!(h.codes("BDAT 28 LAST\r\nMAIL FROM:<evil@remote.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
    assert!(h.stored.is_empty());
}

#[test]
fn data_after_bdat_refused() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nBDAT 2\r\nab");
    assert_eq!(h.codes("DATA\r\n"), ["503 5.5.1"]);
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new();
    assert_eq!(h.codes("MAIL FROM:<a@remote.test>\r\n"), ["503 5.5.1"]);
    h.codes("EHLO c.test\r\n");
    assert_eq!(h.codes("RCPT TO:<x@example.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("DATA\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("MAIL FROM:<a@remote.test>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes("MAIL FROM:<a@remote.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("DATA\r\n"), ["554 5.5.1"]);
    assert_eq!(h.codes("RSET\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes("RCPT TO:<x@example.test>\r\n"), ["503 5.5.1"]);
}

#[test]
fn syntax_errors_and_other_commands() {
    let mut h = Harness::ready();
    assert_eq!(h.codes("FROB\r\n"), ["500 5.5.1"]);
    assert_eq!(h.codes("MAIL FROM:x@y\r\n"), ["501 5.5.2"]);
    assert_eq!(h.codes("MAIL FROM:<x@>\r\n"), ["501 5.1.7"]);
    assert_eq!(h.codes("MAIL FROM:<x@y.test> FOO=1\r\n"), ["555 5.5.4"]);
    assert_eq!(h.codes("MAIL FROM:<x@y.test> SIZE=x\r\n"), ["501 5.5.4"]);
    h.codes("RSET\r\n");
    assert_eq!(h.codes("MAIL FROM:<x@y.test>\r\nRCPT TO:<x@>\r\n"), ["250 2.1.0", "501 5.1.3"]);
    assert_eq!(h.codes("VRFY bob\r\n"), ["252 2.5.0"]);
    assert_eq!(h.codes("VRFY\r\n"), ["501 5.5.2"]);
    assert_eq!(h.codes("EXPN list\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes("HELP\r\n"), ["214 2.0.0"]);
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes("STARTTLS\r\n"), ["454 4.7.0"]);
    assert!(!h.closed);
}

#[test]
fn helo_session_refuses_esmtp_parameters() {
    let mut h = Harness::new();
    assert_eq!(h.codes("HELO c.test\r\n"), ["250 mx.example.test"]);
    assert_eq!(h.codes("MAIL FROM:<a@b.test> SIZE=10\r\n"), ["555 5.5.4"]);
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes("RCPT TO:<x@example.test> NOTIFY=NEVER\r\n"), ["555 5.5.4"]);
}

#[test]
fn size_limit_at_mail_and_in_body() {
    let mut h = Harness::ready();
    assert_eq!(h.codes("MAIL FROM:<a@b.test> SIZE=1001\r\n"), ["552 5.3.4"]);
    h.codes("MAIL FROM:<a@b.test> SIZE=10\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
    let big = format!("{}\r\n.\r\n", "x".repeat(1200));
    assert_eq!(h.codes(&big), ["552 5.3.4"]);
    assert!(h.stored.is_empty());
    assert_eq!(h.aborts, 1);
    // The session goes on.
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    h.codes("RCPT TO:<x@example.test>\r\n");
    assert_eq!(h.codes("BDAT 1200 LAST\r\n"), Vec::<String>::new());
    assert_eq!(h.codes(&"y".repeat(1200)), ["552 5.3.4"]);
    assert!(h.stored.is_empty());
}

#[test]
fn too_many_recipients() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@b.test>\r\n");
    let out = h.codes("RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\n");
    assert_eq!(out, ["250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3"]);
}

#[test]
fn too_many_errors_closes() {
    let mut h = Harness::ready();
    let out = h.codes(&"FROB\r\n".repeat(20));
    // Ten errors are tolerated; the eleventh closes the session.
    assert_eq!(out.len(), 12, "{out:?}");
    assert_eq!(out[11], "421 4.7.0");
    assert!(h.closed);
}

#[test]
fn over_long_command_line() {
    let mut h = Harness::ready();
    let long = format!("NOOP {}\r\nNOOP\r\n", "a".repeat(600));
    assert_eq!(h.codes(&long), ["500 5.5.6", "250 2.0.0"]);
    let exact = format!("NOOP {}\r\n", "a".repeat(505));
    assert_eq!(exact.len(), 512);
    assert_eq!(h.codes(&exact), ["250 2.0.0"]);
}

/// SMTP smuggling: none of these may end the message, and the "second message" after them
/// must never be accepted.
#[test]
fn smuggling_variants_never_end_a_message() {
    for sep in ["\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r\n.\r", "\r.\r\n"] {
        let mut h = Harness::ready();
        h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
        let attack = format!(
            "Subject: first\r\n\r\nbody{sep}MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n"
        );
        let out = h.codes(&attack);
        assert_eq!(out, ["521 5.5.2"], "separator {sep:?}");
        assert!(h.closed, "separator {sep:?}");
        assert!(h.stored.is_empty(), "separator {sep:?}");
        assert_eq!(h.aborts, 1);
    }
}

#[test]
fn bare_lf_in_commands_closes() {
    let mut h = Harness::ready();
    assert_eq!(h.codes("NOOP\nNOOP\r\n"), ["521 5.5.2"]);
    assert!(h.closed);
    let mut h = Harness::ready();
    assert_eq!(h.codes("NOOP\rNOOP\r\n"), ["521 5.5.2"]);
}

#[test]
fn bare_lf_in_bdat_closes() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\n");
    assert_eq!(h.codes("BDAT 5 LAST\r\na\nb\r\n"), ["521 5.5.2"]);
    assert!(h.stored.is_empty() && h.closed);
}

#[test]
fn nul_in_body_refused_session_continues() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
    assert_eq!(h.send(b"a\0b\r\n.\r\n"), "554 5.6.0 Message contains NUL octets; refused\r\n");
    assert!(h.stored.is_empty() && !h.closed);
    assert_eq!(h.codes("NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn nul_in_command_refused() {
    let mut h = Harness::ready();
    assert_eq!(h.send(b"NOOP\0\r\n"), "500 5.5.2 Command contains invalid characters\r\n");
}

#[test]
fn commit_failure_is_temporary_and_nothing_claimed() {
    let mut h = Harness::ready();
    h.commit_fails = true;
    h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
    assert_eq!(h.codes("x\r\n.\r\n"), ["451 4.3.0"]);
    // The transaction is over.
    assert_eq!(h.codes("RCPT TO:<x@example.test>\r\n"), ["503 5.5.1"]);
}

#[test]
fn smtputf8_rules() {
    let mut h = Harness::ready();
    assert_eq!(h.codes("MAIL FROM:<josé@example.test>\r\n"), ["553 5.6.7"]);
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\nRCPT TO:<josé@example.test>\r\n"), ["250 2.1.0", "553 5.6.7"]);
    h.codes("RSET\r\n");
    assert_eq!(
        h.codes("MAIL FROM:<josé@b.test> SMTPUTF8\r\nRCPT TO:<josé@example.test>\r\n"),
        ["250 2.1.0", "250 2.1.5"]
    );
    assert_eq!(h.codes("DATA\r\n"), ["354 2.0.0"]);
    assert_eq!(h.codes("Subject: héllo\r\n\r\nçava\r\n.\r\n"), ["250 2.0.0"]);
    assert_eq!(h.stored[0].1, "Subject: héllo\r\n\r\nçava\r\n".as_bytes());
}

#[test]
fn dsn_parameters_are_kept() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@b.test> RET=HDRS ENVID=abc\r\nRCPT TO:<x@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@example.test\r\n");
    let tx = h.server.transaction().unwrap();
    assert_eq!(tx.params.envid.as_deref(), Some("abc"));
    assert!(tx.rcpts[0].params.notify.unwrap().failure);
    assert_eq!(tx.rcpts[0].params.orcpt.as_ref().unwrap().1, "x@example.test");
}

#[test]
fn rset_during_nothing_and_ehlo_resets_transaction() {
    let mut h = Harness::ready();
    h.codes("MAIL FROM:<a@b.test>\r\n");
    h.codes("EHLO again.test\r\n");
    assert_eq!(h.codes("RCPT TO:<x@example.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("RSET x\r\n"), ["501 5.5.2"]);
}

#[test]
fn content_pipelined_before_354_closes_the_session() {
    // RFC 2920 §3.1: DATA ends a pipelined group. Content sent with it, before the 354,
    // is refused and the session closed; nothing is stored.
    let mut h = Harness::ready();
    assert_eq!(
        h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: early\r\n\r\nhi\r\n.\r\n"),
        ["250 2.1.0", "250 2.1.5", "554 5.5.0"]
    );
    assert!(h.closed);
    assert_eq!(h.starts, 0);
    assert!(h.stored.is_empty());
}

#[test]
fn pipelined_group_ending_in_data_is_fine() {
    let mut h = Harness::ready();
    assert_eq!(
        h.codes("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "354 2.0.0"]
    );
    // Content may be the first "command" of the next group, and MAIL may follow it.
    assert_eq!(h.codes("hi\r\n.\r\nMAIL FROM:<b@remote.test>\r\n"), ["250 2.0.0", "250 2.1.0"]);
    assert_eq!(h.stored.len(), 1);
}

#[test]
fn http_request_is_answered_by_closing() {
    let mut h = Harness::new();
    assert_eq!(h.codes("POST / HTTP/1.1\r\nHost: x\r\n\r\n"), ["221 2.7.0"]);
    assert!(h.closed);
}

#[test]
fn empty_message_is_accepted() {
    let mut h = Harness::ready();
    assert_eq!(
        h.codes("MAIL FROM:<>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"),
        ["250 2.1.0", "250 2.1.5", "354 2.0.0"]
    );
    assert_eq!(h.codes(".\r\n"), ["250 2.0.0"]);
    assert_eq!(h.stored[0].1, b"");
}
