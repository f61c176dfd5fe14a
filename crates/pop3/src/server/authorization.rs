//! The AUTHORIZATION state (RFC 1939 §4): CAPA, STLS, USER/PASS, AUTH PLAIN, QUIT.

use super::{Awaiting, Credentials, Event, Phase, Server, State};
use crate::command::Command;
use crate::reply::{self, Code};
use dakiya_proto::sasl::{self, SaslError};

/// The reply when a login is tried in clear text (RFC 2595 §2.2: plaintext passwords only
/// inside TLS).
const NEEDS_TLS: &str = "Plaintext authentication is not allowed without TLS; use STLS (or port 995) first";

impl Server {
    /// Handles a command in the AUTHORIZATION state.
    pub(super) fn authorization(&mut self, cmd: Command) -> Option<Event> {
        match cmd {
            Command::Capa => self.capabilities(),
            Command::Quit => {
                reply::ok(&mut self.out, "Bye");
                self.phase = Phase::Closed;
                return Some(Event::Close);
            }
            Command::Stls => return self.stls(),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !self.login_allowed() => {
                self.error(Some(Code::Auth), NEEDS_TLS);
            }
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                reply::ok(&mut self.out, "Send PASS");
            }
            Command::Pass(password) => {
                let State::Authorization { user: Some(username) } =
                    std::mem::replace(&mut self.state, State::Authorization { user: None })
                else {
                    self.error(None, "Send USER first");
                    return None;
                };
                return Some(self.check(Credentials { method: "USER", username, password }));
            }
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial),
            _ => self.error(None, "Not allowed before login"),
        }
        None
    }

    /// STLS (RFC 2595 §4): only before login, only once, only where a certificate is.
    fn stls(&mut self) -> Option<Event> {
        if self.tls {
            self.error(None, "TLS is already active");
            return None;
        }
        if !self.policy.stls {
            self.error(None, "STLS is not offered here");
            return None;
        }
        reply::ok(&mut self.out, "Begin TLS negotiation");
        self.awaiting = Some(Awaiting::Tls);
        Some(Event::StartTls)
    }

    /// AUTH (RFC 5034 §4): PLAIN only, with an initial response or after a `+` continuation.
    fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Option<Event> {
        if mechanism != "PLAIN" {
            self.error(None, "Unsupported authentication mechanism (PLAIN is offered)");
            return None;
        }
        match initial {
            Some(ir) => self.sasl_response(ir.as_bytes()),
            None => {
                // An empty challenge: "+ " (RFC 5034 §4).
                self.out.extend_from_slice(b"+ \r\n");
                self.phase = Phase::SaslResponse;
                None
            }
        }
    }

    /// The client's PLAIN response, as an initial response or on its own line; `*` cancels.
    pub(super) fn sasl_response(&mut self, line: &[u8]) -> Option<Event> {
        let decoded = std::str::from_utf8(line)
            .map_err(|_| SaslError::Malformed)
            .and_then(sasl::decode_response)
            .and_then(|raw| sasl::parse_plain(&raw));
        match decoded {
            Ok(c) => Some(self.check(Credentials { method: "PLAIN", username: c.username, password: c.password })),
            Err(SaslError::Cancelled) => {
                self.error(None, "Authentication cancelled");
                None
            }
            Err(_) => {
                self.error(None, "Malformed PLAIN response");
                None
            }
        }
    }

    fn check(&mut self, creds: Credentials) -> Event {
        self.pending = Some(creds);
        self.awaiting = Some(Awaiting::Auth);
        Event::Authenticate
    }
}
