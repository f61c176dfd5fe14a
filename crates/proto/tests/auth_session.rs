//! In-memory sessions for STARTTLS and AUTH under the submission policies.

use dakiya_proto::server::SessionPolicy;
use dakiya_proto::{Enhanced, Event, Reply, Server, ServerConfig};
use std::sync::Arc;

fn cfg() -> Arc<ServerConfig> {
    Arc::new(ServerConfig { hostname: "mx.test".into(), max_message_size: 1000, max_recipients: 10, max_errors: 20 })
}

const SUBMISSION: SessionPolicy =
    SessionPolicy { starttls: true, implicit_tls: false, auth: true, auth_without_tls: false, auth_required: true };

/// Drives the session; passwords "right" are accepted; senders must be the user's address.
struct H {
    s: Server<()>,
    tls_handshakes: usize,
    auth_attempts: Vec<(String, String)>,
}

impl H {
    fn new(policy: SessionPolicy) -> H {
        let mut s = Server::with_policy(cfg(), policy);
        s.clear_output();
        H { s, tls_handshakes: 0, auth_attempts: Vec::new() }
    }

    fn send(&mut self, input: &str) -> String {
        let mut buf = input.as_bytes().to_vec();
        loop {
            match self.s.poll(&mut buf) {
                Event::NeedInput | Event::Close => break,
                Event::StartTls => {
                    // What a driver does: the 220 is flushed, then the handshake; the input
                    // that was pipelined behind STARTTLS must already be gone.
                    assert!(buf.is_empty(), "input after STARTTLS was not discarded");
                    self.tls_handshakes += 1;
                    self.s.tls_established();
                }
                Event::Authenticate => {
                    let c = self.s.pending_auth().unwrap().clone();
                    self.auth_attempts.push((c.username.clone(), c.password.clone()));
                    let v = if c.password == "right" {
                        Ok(c.username)
                    } else {
                        Err(Reply::new(535, Enhanced(5, 7, 8), "Authentication credentials invalid"))
                    };
                    self.s.auth_result(v);
                }
                Event::CheckSender => {
                    let ok = match (self.s.pending_sender().unwrap(), self.s.auth_user()) {
                        (dakiya_proto::address::ReversePath::Mailbox(m), Some(u)) => m.to_string() == u,
                        (_, None) => true,
                        _ => true,
                    };
                    self.s.sender_verdict(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(553, Enhanced(5, 7, 1), "Sender not owned"))
                    });
                }
                Event::CheckRecipient => self.s.recipient_verdict(Ok(())),
                other => panic!("unexpected {other:?}"),
            }
        }
        let out = String::from_utf8(self.s.output().to_vec()).unwrap();
        self.s.clear_output();
        out
    }

    fn codes(&mut self, input: &str) -> Vec<String> {
        self.send(input)
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l.chars().take(9).collect::<String>().trim_end().to_string())
            .collect()
    }
}

#[test]
fn ehlo_offers_starttls_then_auth_after_tls() {
    let mut h = H::new(SUBMISSION);
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(ehlo.contains("250-STARTTLS\r\n") || ehlo.contains("250 STARTTLS\r\n"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    assert_eq!(h.codes("STARTTLS\r\n"), ["220 2.0.0"]);
    assert_eq!(h.tls_handshakes, 1);
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
}

#[test]
fn auth_before_tls_and_mail_before_auth() {
    let mut h = H::new(SUBMISSION);
    h.send("EHLO c.test\r\n");
    assert_eq!(h.send("AUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
    assert!(h.auth_attempts.is_empty(), "credentials sent in clear must not even be checked");
    assert_eq!(h.send("MAIL FROM:<a@b.test>\r\n"), "530 5.7.0 Authentication required\r\n");
}

#[test]
fn auth_plain_and_login_success_and_failure() {
    let mut h = H::new(SessionPolicy { implicit_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\n");
    // \0a@b.test\0wrong
    assert_eq!(h.codes("AUTH PLAIN AGFAYi50ZXN0AHdyb25n\r\n"), ["535 5.7.8"]);
    assert_eq!(h.codes("AUTH LOGIN\r\n"), ["334 VXNlc"]);
    assert_eq!(h.send("YUBiLnRlc3Q=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(h.codes("cmlnaHQ=\r\n"), ["235 2.7.0"]);
    assert_eq!(
        h.auth_attempts,
        [("a@b.test".to_string(), "wrong".to_string()), ("a@b.test".to_string(), "right".to_string())]
    );
    assert_eq!(h.codes("AUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n"), ["503 5.5.1"], "AUTH twice");
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes("AUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n"), ["503 5.5.1"]);
}

#[test]
fn auth_plain_with_empty_challenge() {
    let mut h = H::new(SessionPolicy { implicit_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\n");
    assert_eq!(h.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.codes("AGFAYi50ZXN0AHJpZ2h0\r\n"), ["235 2.7.0"]);
}

#[test]
fn malformed_and_cancelled_auth() {
    let mut h = H::new(SessionPolicy { implicit_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\n");
    assert_eq!(h.codes("AUTH PLAIN not-base64!\r\n"), ["501 5.5.2"]);
    assert_eq!(h.codes("AUTH PLAIN\r\n*\r\n"), ["334", "501 5.5.2"]);
    assert_eq!(h.codes("AUTH LOGIN\r\n*\r\n"), ["334 VXNlc", "501 5.5.2"]);
    assert_eq!(h.codes("AUTH CRAM-MD5\r\n"), ["504 5.5.4"]);
    assert_eq!(h.codes("AUTH\r\n"), ["501 5.5.2"]);
    // Proxy authorization (authzid != authcid) is refused as a failed login.
    assert_eq!(h.codes("AUTH PLAIN Y0BiLnRlc3QAYUBiLnRlc3QAcmlnaHQ=\r\n"), ["535 5.7.8"]);
    assert!(h.auth_attempts.is_empty());
}

#[test]
fn pipelined_commands_after_starttls_are_discarded() {
    let mut h = H::new(SUBMISSION);
    h.send("EHLO c.test\r\n");
    // CVE-2011-0411: the injected MAIL must not run inside the TLS session.
    let out = h.codes("STARTTLS\r\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(out, ["220 2.0.0"]);
    // After TLS the state is reset: EHLO is needed again.
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes("STARTTLS\r\n"), ["503 5.5.1"]);
}

#[test]
fn starttls_resets_authentication_and_transaction() {
    let mut h = H::new(SessionPolicy { auth_without_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\n");
    assert_eq!(h.codes("AUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n"), ["235 2.7.0"]);
    h.send("STARTTLS\r\n");
    h.send("EHLO c.test\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
}

#[test]
fn sender_not_owned() {
    let mut h = H::new(SessionPolicy { implicit_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\nAUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n");
    assert_eq!(h.codes("MAIL FROM:<boss@b.test>\r\n"), ["553 5.7.1"]);
    assert_eq!(h.codes("MAIL FROM:<a@b.test> AUTH=<>\r\n"), ["250 2.1.0"]);
}

#[test]
fn mx_listener_has_no_auth_or_starttls() {
    let mut h = H::new(SessionPolicy::default());
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(!ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(h.codes("STARTTLS\r\n"), ["454 4.7.0"]);
    assert_eq!(h.codes("AUTH PLAIN AGFAYi50ZXN0AHJpZ2h0\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes("MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
}

#[test]
fn long_auth_line_is_allowed_up_to_12288() {
    let mut h = H::new(SessionPolicy { implicit_tls: true, ..SUBMISSION });
    h.send("EHLO c.test\r\n");
    let long = format!("AUTH PLAIN {}\r\n", "A".repeat(2000));
    assert_eq!(h.codes(&long), ["501 5.5.2"], "too long for 512 but fine for AUTH: it is only malformed");
}

/// RFC 8689 §4.1: REQUIRETLS is offered only over TLS, and MAIL with it is refused in
/// clear; over TLS it is taken and kept with the transaction's parameters.
#[test]
fn requiretls_only_over_tls() {
    let mx = SessionPolicy {
        starttls: true,
        implicit_tls: false,
        auth: false,
        auth_without_tls: false,
        auth_required: false,
    };
    let mut h = H::new(mx);
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(!ehlo.contains("REQUIRETLS"), "{ehlo}");
    assert!(h.send("MAIL FROM:<a@b.test> REQUIRETLS\r\n").starts_with("530 5.7.10 "));
    h.send("STARTTLS\r\n");
    let ehlo = h.send("EHLO c.test\r\n");
    assert!(ehlo.contains("250-REQUIRETLS\r\n") || ehlo.contains("250 REQUIRETLS\r\n"), "{ehlo}");
    assert_eq!(h.codes("MAIL FROM:<a@b.test> REQUIRETLS\r\n"), ["250 2.1.0"]);
    assert!(h.s.transaction().unwrap().params.requiretls);
}
