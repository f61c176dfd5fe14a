//! STARTTLS (RFC 3207) and AUTH (RFC 4954) in the session.

use super::{Awaiting, Phase, SaslStep, Server, Step, replies};
use crate::reply::Enhanced;
use crate::sasl::{self, Credentials, Mechanism, SaslError};

impl<T> Server<T> {
    /// True if AUTH may be used now: offered on this listener, and TLS is active or the
    /// policy allows AUTH without it.
    pub(super) fn auth_usable(&self) -> bool {
        self.policy.auth && (self.tls || self.policy.auth_without_tls)
    }

    /// True if STARTTLS is offered now.
    pub(super) fn starttls_offered(&self) -> bool {
        self.policy.starttls && !self.tls
    }

    pub(super) fn starttls(&mut self) -> Option<Step> {
        if self.tls {
            self.error(replies::already_tls());
            return None;
        }
        if !self.policy.starttls {
            self.error(replies::tls_not_available());
            return None;
        }
        self.reply(replies::ready_for_tls());
        self.awaiting = Some(Awaiting::Tls);
        Some(Step::Tls)
    }

    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, args: &str) -> Option<Step> {
        if !self.policy.auth {
            self.error(replies::not_implemented());
            return None;
        }
        if !self.hello.as_ref().is_some_and(|h| h.esmtp) {
            self.error(replies::auth_needs_ehlo());
            return None;
        }
        if !self.auth_usable() {
            self.error(replies::must_starttls());
            return None;
        }
        if self.auth_user.is_some() {
            self.error(replies::already_authenticated());
            return None;
        }
        if self.tx.is_some() {
            self.error(replies::auth_in_transaction());
            return None;
        }
        let mut words = args.split(' ').filter(|w| !w.is_empty());
        let Some(mechanism) = words.next().and_then(Mechanism::parse) else {
            self.error(replies::unknown_mechanism());
            return None;
        };
        let initial = words.next();
        if words.next().is_some() {
            self.error(replies::auth_malformed());
            return None;
        }
        match (mechanism, initial) {
            (Mechanism::Plain, Some(resp)) => self.sasl_response(SaslStep::PlainResponse, resp.as_bytes()),
            (Mechanism::Plain, None) => {
                // RFC 4954 §4: an empty challenge.
                self.reply(replies::r(334, Enhanced(0, 0, 0), "").without_enhanced());
                self.phase = Phase::Sasl(SaslStep::PlainResponse);
                None
            }
            (Mechanism::Login, Some(resp)) => self.sasl_response(SaslStep::LoginUser, resp.as_bytes()),
            (Mechanism::Login, None) => {
                self.challenge("Username:");
                self.phase = Phase::Sasl(SaslStep::LoginUser);
                None
            }
        }
    }

    fn challenge(&mut self, text: &str) {
        self.reply(replies::r(334, Enhanced(0, 0, 0), &sasl::encode_challenge(text)).without_enhanced());
    }

    /// One client response line during AUTH.
    pub(super) fn sasl_response(&mut self, step: SaslStep, line: &[u8]) -> Option<Step> {
        let decoded = std::str::from_utf8(line).map_err(|_| SaslError::Malformed).and_then(sasl::decode_response);
        let result = decoded.and_then(|raw| match step {
            SaslStep::PlainResponse => sasl::parse_plain(&raw).map(Some),
            SaslStep::LoginUser => {
                let user = sasl::parse_login_item(&raw)?;
                self.challenge("Password:");
                self.phase = Phase::Sasl(SaslStep::LoginPassword(user));
                Ok(None)
            }
            SaslStep::LoginPassword(username) => {
                let password = sasl::parse_login_item(&raw)?;
                Ok(Some(Credentials { mechanism: Mechanism::Login, username, password }))
            }
        });
        match result {
            Ok(Some(creds)) => {
                self.pending_auth = Some(creds);
                self.awaiting = Some(Awaiting::Auth);
                Some(Step::Auth)
            }
            Ok(None) => None,
            Err(SaslError::Cancelled) => {
                self.error(replies::auth_cancelled());
                None
            }
            // A foreign authorization identity is a failed authentication, not a syntax error.
            Err(SaslError::Authzid) => {
                self.error(replies::auth_failed());
                None
            }
            Err(_) => {
                self.error(replies::auth_malformed());
                None
            }
        }
    }
}
