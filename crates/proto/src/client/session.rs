//! Setting up the session: greeting, EHLO/HELO, STARTTLS and AUTH.
//!
//! A failure here concerns the host, not the message: the connection is not reused for
//! another job, and the failure's phase says so ([`Phase::is_session_setup`]).

use super::{AuthStep, Client, Extensions, Failure, FailureKind, Phase, State, TlsPolicy};
use crate::reply::{Enhanced, Reply};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

impl Client {
    pub(super) fn on_greeting(&mut self, reply: Reply) {
        // RFC 5321 §3.1 and §4.3.2: 220 opens the session. 554 means "no SMTP service
        // here" (permanent for this host, and the client should still QUIT: `finish` does);
        // other 4xx/5xx replies likewise.
        if reply.code == 220 {
            self.greeting = Some(reply);
            self.send_ehlo();
        } else {
            self.setup_refused(reply);
        }
    }

    pub(super) fn send_ehlo(&mut self) {
        if !valid_helo_name(&self.cfg.helo_name) {
            // The configuration should have caught it; here it must not reach the wire,
            // where a CR LF in it would inject commands.
            self.reusable = false;
            let reason = "the configured HELO name is not a domain or address literal";
            // RFC 3463 §3.4: X.3.5, system incorrectly configured.
            self.fail(Failure::local(Phase::Ehlo, FailureKind::Policy, Enhanced(4, 3, 5), reason), false);
            return;
        }
        // RFC 2033 §4.1: LMTP greets with LHLO, which takes EHLO's place and syntax.
        let verb = if self.cfg.lmtp { "LHLO" } else { "EHLO" };
        let line = format!("{verb} {}", self.cfg.helo_name);
        self.send(&line);
        self.state = State::Ehlo;
    }

    pub(super) fn on_ehlo(&mut self, reply: Reply) {
        match reply.code {
            250 => {
                self.ext = Extensions::parse(&reply);
                self.after_hello();
            }
            // RFC 5321 §3.2 and §4.1.4: a server that does not know EHLO says 500 or 502;
            // HELO then opens a session without extensions.
            // LMTP has no HELO (RFC 2033 §4.1): a refused LHLO ends the session.
            500 | 502 if !self.cfg.lmtp => {
                let line = format!("HELO {}", self.cfg.helo_name);
                self.send(&line);
                self.state = State::Helo;
            }
            _ => self.setup_refused(reply),
        }
    }

    pub(super) fn on_helo(&mut self, reply: Reply) {
        if reply.code == 250 {
            self.ext = Extensions::default();
            self.after_hello();
        } else {
            self.setup_refused(reply);
        }
    }

    /// The server greeted us: STARTTLS, AUTH or the job comes next.
    pub(super) fn after_hello(&mut self) {
        if !self.tls && !self.tls_refused && self.cfg.tls != TlsPolicy::None {
            if self.ext.starttls {
                self.send("STARTTLS");
                self.state = State::StartTls;
                return;
            }
            if self.cfg.tls == TlsPolicy::Required {
                self.reusable = false;
                let reason = "TLS is required, but the server does not offer STARTTLS";
                // Postfix uses the same X.7.5 for this; temporary, as the server may be fixed.
                self.fail(Failure::local(Phase::StartTls, FailureKind::Policy, Enhanced(4, 7, 5), reason), false);
                return;
            }
        }
        if self.cfg.credentials.is_some() && !self.authenticated {
            self.start_auth();
            return;
        }
        self.start_job();
    }

    pub(super) fn on_starttls(&mut self, reply: Reply) {
        match reply.code {
            // RFC 3207 §4: 220 "Ready to start TLS".
            220 => self.state = State::Handshake,
            // RFC 3207 §4.1: after a refusal the client decides whether to go on. In clear,
            // the EHLO keywords we have are still the session's.
            400..=599 if self.cfg.tls == TlsPolicy::Opportunistic => {
                self.tls_refused = true;
                self.after_hello();
            }
            400..=599 => {
                self.reusable = false;
                let mut failure = Failure::remote(Phase::StartTls, FailureKind::Policy, reply, false);
                failure.reason = format!("TLS is required, but STARTTLS was refused: {}", failure.reason);
                self.fail(failure, false);
            }
            _ => self.unexpected(reply),
        }
    }

    /// Starts AUTH (RFC 4954): PLAIN if offered, else LOGIN; only over TLS.
    fn start_auth(&mut self) {
        let Some(creds) = self.cfg.credentials.as_ref() else {
            self.start_job();
            return;
        };
        let policy_failure = |status, reason: &str| Failure::local(Phase::Auth, FailureKind::Policy, status, reason);
        if !self.tls {
            // Never send a password in clear; X.7.10 "encryption needed" (RFC 5248).
            let failure = policy_failure(Enhanced(4, 7, 10), "will not send credentials without TLS");
            self.reusable = false;
            self.fail(failure, false);
            return;
        }
        if self.ext.offers_auth("PLAIN") {
            // RFC 4616 §2: [authzid] NUL authcid NUL passwd, sent as the initial response
            // (RFC 4954 §4) to save a round trip.
            let message = format!("\0{}\0{}", creds.username, creds.password);
            let line = format!("AUTH PLAIN {}", STANDARD.encode(message));
            self.send(&line);
            self.state = State::Auth(AuthStep::Plain);
        } else if self.ext.offers_auth("LOGIN") {
            self.send("AUTH LOGIN");
            self.state = State::Auth(AuthStep::LoginStart);
        } else {
            let reason = "the server offers no AUTH mechanism we use (PLAIN, LOGIN)";
            let failure = policy_failure(Enhanced(4, 7, 0), reason);
            self.reusable = false;
            self.fail(failure, false);
        }
    }

    pub(super) fn on_auth(&mut self, step: AuthStep, reply: Reply) {
        let Some(creds) = self.cfg.credentials.as_ref() else {
            self.unexpected(reply);
            return;
        };
        match (reply.code, step) {
            // RFC 4954 §6: 235 authentication succeeded.
            (235, _) => {
                self.authenticated = true;
                self.start_job();
            }
            // LOGIN (draft-murchison-sasl-login): the server asks for the user name, then the
            // password, each as a base64 line. The challenge texts vary; only order counts.
            (334, AuthStep::LoginStart) => {
                let line = STANDARD.encode(&creds.username);
                self.send(&line);
                self.state = State::Auth(AuthStep::LoginUser);
            }
            (334, AuthStep::LoginUser) => {
                let line = STANDARD.encode(&creds.password);
                self.send(&line);
                self.state = State::Auth(AuthStep::LoginPassword);
            }
            // RFC 4954 §6: 535 means the credentials are wrong. They are the operator's, not
            // the sender's: the mail waits for the fix (a temporary failure, as Postfix's
            // smtp_sasl_auth_soft_bounce) rather than bouncing every message; the delay
            // notice tells senders, and max_age ends it. The session is not reused.
            _ => {
                self.reusable = false;
                self.fail(Failure::remote(self.phase(), FailureKind::Refused, reply, false), false);
            }
        }
    }

    /// A refusal while setting up the session.
    fn setup_refused(&mut self, reply: Reply) {
        self.reusable = false;
        self.refused(reply);
    }
}

/// A domain or an address literal (RFC 5321 §4.1.1.1), ASCII only: the name goes on the
/// wire before we know whether the server takes UTF-8.
fn valid_helo_name(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ':');
    }
    name.is_ascii() && crate::address::is_domain(name)
}

#[cfg(test)]
mod tests {
    use super::valid_helo_name;

    #[test]
    fn helo_names() {
        for ok in ["mx.example.test", "localhost", "[192.0.2.1]", "[IPv6:2001:db8::1]"] {
            assert!(valid_helo_name(ok), "{ok}");
        }
        for bad in ["", "a b", "mx.test\r\nMAIL FROM:<x@y>", "[]", "[1.2.3.4\r\n]", "b\u{fc}cher.test", "-x.test"] {
            assert!(!valid_helo_name(bad), "{bad:?}");
        }
    }
}
