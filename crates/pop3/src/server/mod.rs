//! The server side of a POP3 session as a sans-IO state machine (RFC 1939 §3).
//!
//! The driver owns the socket and the maildrop. It appends what it reads to an input buffer
//! and calls [`Server::poll`] until it returns [`Event::NeedInput`]; replies accumulate in
//! [`Server::output`]. Whatever needs the world is an [`Event`] the driver answers: check the
//! credentials ([`Server::auth_result`]), open and lock the maildrop
//! ([`Server::maildrop_opened`]), send a message ([`Server::retrieve_opened`], then the
//! content through a [`ContentEncoder`](crate::ContentEncoder)), remove the messages marked
//! deleted ([`Server::committed`]).
//!
//! States: AUTHORIZATION until a login succeeds and the maildrop is locked, then TRANSACTION;
//! QUIT there enters UPDATE, the only place deletions take effect (RFC 1939 §6). A session
//! that ends any other way (a dropped connection, a timeout) removes nothing.

mod authorization;
mod transaction;

use crate::command::{self, MAX_COMMAND_LINE, MAX_RESPONSE_LINE};
use crate::reply::{self, Code};
use dakiya_proto::line::{self, LineError};
use std::sync::Arc;

/// Identity and limits shared by the sessions of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our host name, for the greeting.
    pub hostname: String,
    /// Errors tolerated (unknown or malformed commands, commands out of state, refused
    /// logins, too-long lines) before the session is closed.
    pub max_errors: u32,
}

/// What a listener offers; set by the driver per connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Offer STLS (RFC 2595 §4): the listener has a certificate.
    pub stls: bool,
    /// TLS is active from the start (implicit TLS, RFC 8314 §3.3).
    pub implicit_tls: bool,
    /// Allow USER/PASS and AUTH without TLS (loopback clients, when configured).
    pub login_without_tls: bool,
}

/// One message of the maildrop as the driver lists it at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its size in octets, counted with CRLF line ends (RFC 1939 §5, [`crate::CrlfSize`]).
    pub size: u64,
    /// Its unique-id: 1 to 70 characters 0x21–0x7E, stable across sessions (RFC 1939 §7).
    pub uid: String,
}

/// Why a login was refused, as the driver found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// Wrong user name or password.
    Invalid,
    /// Too many failures from this client: locked out for a while (no password checked).
    Locked,
    /// No password check became free in time.
    Busy,
    /// The check itself failed (the user store could not be read).
    Unavailable,
}

/// Why the maildrop could not be opened after a successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenFailure {
    /// Another session holds its lock (RFC 1939 §8).
    InUse,
    /// The user has no mailbox of their own here.
    NoMailbox,
    /// It could not be read (a file system error).
    Unavailable,
}

/// Credentials to check. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `"USER"` or `"PLAIN"`, for logs.
    pub method: &'static str,
    /// The user name as given.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Write out [`Server::output`], then read more input.
    NeedInput,
    /// Check [`Server::credentials`], then call [`Server::auth_result`].
    Authenticate,
    /// Open and lock the maildrop of [`Server::user`], then call [`Server::maildrop_opened`].
    OpenMaildrop,
    /// Write out [`Server::output`] (the `+OK`), run the TLS handshake, then call
    /// [`Server::tls_established`]. Input that arrived before the handshake is discarded.
    StartTls,
    /// Open message `msg` (0-based index into [`Server::entries`]) and call
    /// [`Server::retrieve_opened`]; if it succeeded, write out [`Server::output`] and then
    /// the content through a `ContentEncoder::new(body_lines)` before polling again.
    Retrieve {
        /// The message's index.
        msg: usize,
        /// TOP: how many body lines; `None` for RETR (the whole message).
        body_lines: Option<u64>,
    },
    /// UPDATE (RFC 1939 §6): remove the messages [`Server::deleted`] lists, then call
    /// [`Server::committed`].
    Commit,
    /// Write out [`Server::output`] and close the connection.
    Close,
}

/// A decision the driver owes us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Auth,
    Maildrop,
    Tls,
    Retrieve { msg: usize, body_lines: Option<u64> },
    Commit,
}

/// Where the reading of input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Command,
    /// Discarding the rest of a too-long command line.
    SkipLine,
    /// Waiting for the client's SASL PLAIN response (RFC 5034 §4).
    SaslResponse,
    Closed,
}

/// The session's state (RFC 1939 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not logged in; the user name given with USER, if any.
    Authorization { user: Option<String> },
    /// Logged in with the maildrop locked.
    Transaction,
}

/// One POP3 server session.
#[derive(Debug)]
pub struct Server {
    cfg: Arc<ServerConfig>,
    policy: Policy,
    tls: bool,
    out: Vec<u8>,
    phase: Phase,
    state: State,
    errors: u32,
    awaiting: Option<Awaiting>,
    pending: Option<Credentials>,
    user: Option<String>,
    entries: Vec<Entry>,
    deleted: Vec<bool>,
}

impl Server {
    /// A new session under `policy`; the greeting is already in the output. There is no APOP
    /// timestamp in it: APOP is not offered (RFC 1939 §7 makes it optional).
    pub fn new(cfg: Arc<ServerConfig>, policy: Policy) -> Server {
        let mut s = Server {
            policy,
            tls: policy.implicit_tls,
            out: Vec::new(),
            phase: Phase::Command,
            state: State::Authorization { user: None },
            errors: 0,
            awaiting: None,
            pending: None,
            user: None,
            entries: Vec::new(),
            deleted: Vec::new(),
            cfg,
        };
        let greeting = format!("{} POP3 dakiya ready", s.cfg.hostname);
        reply::ok(&mut s.out, &greeting);
        s
    }

    /// Replies waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Marks the output as written and releases its buffer (an idle session holds none).
    pub fn clear_output(&mut self) {
        self.out = Vec::new();
    }

    /// True once TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The credentials awaiting a check after [`Event::Authenticate`].
    pub fn credentials(&self) -> Option<&Credentials> {
        self.pending.as_ref()
    }

    /// The logged-in user (as the driver named it in [`Server::auth_result`]).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The maildrop as listed at login (deleted messages included).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The indices of the messages marked deleted.
    pub fn deleted(&self) -> Vec<usize> {
        self.deleted.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect()
    }

    /// True while in the TRANSACTION state.
    pub fn in_transaction(&self) -> bool {
        self.state == State::Transaction
    }

    /// Answers [`Event::Authenticate`]: `Ok(user)` names the logged-in user (as the driver
    /// normalised it); the next event is [`Event::OpenMaildrop`].
    pub fn auth_result(&mut self, result: Result<String, AuthFailure>) {
        if self.awaiting.take() != Some(Awaiting::Auth) {
            return;
        }
        self.pending = None;
        self.state = State::Authorization { user: None };
        match result {
            Ok(user) => {
                self.user = Some(user);
                self.awaiting = Some(Awaiting::Maildrop);
            }
            Err(f) => {
                let (code, text) = match f {
                    AuthFailure::Invalid => (Code::Auth, "Authentication failed"),
                    AuthFailure::Locked => (Code::SysTemp, "Too many failed logins; try again later"),
                    AuthFailure::Busy => (Code::SysTemp, "Server busy; try again later"),
                    _ => (Code::SysTemp, "Temporary authentication failure"),
                };
                self.error(Some(code), text);
            }
        }
    }

    /// Answers [`Event::OpenMaildrop`] with its messages, or why it cannot be opened (the
    /// session stays in AUTHORIZATION, RFC 1939 §4).
    pub fn maildrop_opened(&mut self, result: Result<Vec<Entry>, OpenFailure>) {
        if self.awaiting.take() != Some(Awaiting::Maildrop) {
            return;
        }
        match result {
            Ok(entries) => {
                let total: u64 = entries.iter().map(|e| e.size).sum();
                let text = format!("Logged in, {} messages ({total} octets)", entries.len());
                self.deleted = vec![false; entries.len()];
                self.entries = entries;
                self.state = State::Transaction;
                reply::ok(&mut self.out, &text);
            }
            Err(f) => {
                self.user = None;
                let (code, text) = match f {
                    // RFC 2449 §8.1.1.
                    OpenFailure::InUse => (Code::InUse, "Mailbox is in use by another POP3 session"),
                    OpenFailure::NoMailbox => (Code::SysPerm, "This user has no mailbox here"),
                    _ => (Code::SysTemp, "Cannot open the mailbox; try again later"),
                };
                reply::err(&mut self.out, Some(code), text);
            }
        }
    }

    /// Answers [`Event::StartTls`] once the handshake succeeded (RFC 2595 §4: the client
    /// must ask CAPA again; nothing from before TLS is kept).
    pub fn tls_established(&mut self) {
        if self.awaiting.take() != Some(Awaiting::Tls) {
            return;
        }
        self.tls = true;
        self.state = State::Authorization { user: None };
        self.phase = Phase::Command;
    }

    /// Answers [`Event::Retrieve`]: `true` puts the `+OK` in the output (the driver writes
    /// it, then the content); `false` refuses with `-ERR [SYS/TEMP]`.
    pub fn retrieve_opened(&mut self, opened: bool) {
        let Some(Awaiting::Retrieve { msg, .. }) = self.awaiting.take() else { return };
        if opened {
            let size = self.entries.get(msg).map_or(0, |e| e.size);
            reply::ok(&mut self.out, &format!("{size} octets"));
        } else {
            reply::err(&mut self.out, Some(Code::SysTemp), "Cannot read this message");
        }
    }

    /// Answers [`Event::Commit`]: `Ok(())` when every deleted message is gone, `Err(())`
    /// when some could not be removed (RFC 1939 §6). The session then closes.
    pub fn committed(&mut self, result: Result<(), ()>) {
        if self.awaiting.take() != Some(Awaiting::Commit) {
            return;
        }
        let left = self.deleted.iter().filter(|d| !**d).count();
        match result {
            Ok(()) => reply::ok(
                &mut self.out,
                &format!("{} POP3 dakiya signing off ({left} messages left)", self.cfg.hostname),
            ),
            Err(()) => reply::err(&mut self.out, Some(Code::SysTemp), "Some deleted messages were not removed"),
        }
        self.phase = Phase::Closed;
    }

    /// Ends the session from the driver's side (a timeout, shutdown) with `-ERR text`;
    /// nothing is removed.
    pub fn shutdown(&mut self, code: Option<Code>, text: &str) {
        reply::err(&mut self.out, code, text);
        self.phase = Phase::Closed;
        self.awaiting = None;
    }

    /// Processes input; consumed octets are removed from the front of `input`.
    pub fn poll(&mut self, input: &mut Vec<u8>) -> Event {
        if let Some(a) = self.awaiting {
            // The driver polled before answering: ask again.
            return match a {
                Awaiting::Auth => Event::Authenticate,
                Awaiting::Maildrop => Event::OpenMaildrop,
                Awaiting::Tls => Event::StartTls,
                Awaiting::Retrieve { msg, body_lines } => Event::Retrieve { msg, body_lines },
                Awaiting::Commit => Event::Commit,
            };
        }
        loop {
            match self.phase {
                Phase::Closed => return Event::Close,
                Phase::SkipLine => match line::skip_line(input) {
                    Ok((n, found)) => {
                        input.drain(..n);
                        if !found {
                            return Event::NeedInput;
                        }
                        self.phase = Phase::Command;
                    }
                    Err(e) => self.framing_error(e),
                },
                Phase::Command | Phase::SaslResponse => {
                    let max = if self.phase == Phase::Command { MAX_COMMAND_LINE } else { MAX_RESPONSE_LINE };
                    match line::next_line(input, max) {
                        Ok(None) => return Event::NeedInput,
                        Ok(Some((len, consumed))) => {
                            let text: Vec<u8> = input.drain(..consumed).take(len).collect();
                            let event = if self.phase == Phase::SaslResponse {
                                self.phase = Phase::Command;
                                self.sasl_response(&text)
                            } else {
                                self.command(&text)
                            };
                            if let Some(event) = event {
                                if event == Event::StartTls {
                                    // RFC 2595 §4 (as RFC 3207 §4.2 for SMTP): nothing sent
                                    // before the handshake may be acted on after it.
                                    input.clear();
                                }
                                return event;
                            }
                        }
                        Err(e) => self.framing_error(e),
                    }
                }
            }
        }
    }

    /// A line too long (RFC 2449 §4: 255 octets) is refused and its rest discarded; a lone
    /// CR or LF breaks the framing (RFC 1939 §3: lines end with CRLF) and ends the session.
    fn framing_error(&mut self, e: LineError) {
        match e {
            LineError::TooLong => {
                let in_sasl = self.phase == Phase::SaslResponse;
                self.phase = Phase::SkipLine;
                if in_sasl {
                    self.error(None, "Authentication response too long");
                } else {
                    self.error(None, "Line too long (at most 255 octets, RFC 2449)");
                }
            }
            _ => {
                reply::err(&mut self.out, None, "Lines must end with CRLF; closing connection");
                self.phase = Phase::Closed;
            }
        }
    }

    /// Sends `-ERR`, counting the error; past the limit the session closes.
    fn error(&mut self, code: Option<Code>, text: &str) {
        reply::err(&mut self.out, code, text);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors && self.phase != Phase::Closed {
            reply::err(&mut self.out, None, "Too many errors; closing connection");
            self.phase = Phase::Closed;
            self.awaiting = None;
        }
    }

    /// Handles one command line.
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(command::ParseError::Unknown) => {
                self.error(None, "Unknown command");
                return None;
            }
            Err(command::ParseError::Syntax(why)) => {
                self.error(None, why);
                return None;
            }
            Err(_) => {
                self.error(None, "Invalid characters in command");
                return None;
            }
        };
        match self.state {
            State::Authorization { .. } => self.authorization(cmd),
            State::Transaction => self.transaction(cmd),
        }
    }

    /// The CAPA response (RFC 2449 §5), which depends on the state and on TLS.
    fn capabilities(&mut self) {
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if let State::Authorization { .. } = self.state {
            if self.login_allowed() {
                caps.extend(["USER", "SASL PLAIN"]);
            }
            if self.policy.stls && !self.tls {
                caps.push("STLS");
            }
        }
        caps.push("IMPLEMENTATION dakiya");
        reply::ok(&mut self.out, "Capability list follows");
        reply::lines(&mut self.out, caps.into_iter().map(String::from));
    }

    /// Logins need TLS, or the loopback development switch (RFC 2595 §2.2, RFC 8314 §3).
    fn login_allowed(&self) -> bool {
        self.tls || self.policy.login_without_tls
    }
}
