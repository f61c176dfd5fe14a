//! The client side of SMTP as a sans-IO state machine, for delivery to MX hosts and
//! smarthosts.
//!
//! The driver owns the socket. It appends what it reads to an input buffer and calls
//! [`Client::poll`], which consumes server replies and says what to do next:
//!
//! ```no_run
//! # use dakiya_proto::client::{Client, ClientConfig, ClientEvent, DataEncoder, Job};
//! # fn read() -> Vec<u8> { Vec::new() }
//! # fn write(_: &[u8]) {}
//! # fn handshake() {}
//! # fn record(_: dakiya_proto::client::Outcome) {}
//! # fn run(job: Job, message: &[u8]) {
//! let mut client = Client::new(ClientConfig::new("mx.example.test"), job);
//! let mut input = Vec::new();
//! loop {
//!     match client.poll(&mut input) {
//!         ClientEvent::Write(bytes) => write(bytes),
//!         // Read with `client.phase().timeout()`; on EOF or timeout: `client.connection_lost(..)`.
//!         ClientEvent::NeedInput => input.extend_from_slice(&read()),
//!         ClientEvent::StartTls => {
//!             handshake();
//!             client.tls_established();
//!         }
//!         ClientEvent::SendBody => {
//!             write(&DataEncoder::encode_all(message)); // or chunk by chunk
//!             client.body_sent();
//!         }
//!         ClientEvent::Done(outcome) => {
//!             record(outcome);
//!             client.finish(); // or `client.next_job(job)` to reuse the connection
//!         }
//!         ClientEvent::Ready => client.finish(),
//!         ClientEvent::Closed => break,
//!         _ => break,
//!     }
//! }
//! # }
//! ```
//!
//! Rules live here, effects in the driver: the machine decides when to use STARTTLS and
//! AUTH (per [`TlsPolicy`] and [`ClientConfig::credentials`]), checks the message against
//! what the server offers before naming it, pipelines MAIL and RCPT when the server allows
//! (RFC 2920), and reports a typed [`Outcome`] per job. The driver runs the TLS handshake
//! (and verifies certificates per its own policy), streams the content, keeps time and
//! reports a broken connection.

mod ehlo;
mod encoder;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod job;
mod outcome;
mod phase;
mod response;
mod session;
mod transaction;

pub use ehlo::Extensions;
pub use encoder::DataEncoder;
pub use job::{Job, JobRecipient, tls_required_no};
pub use outcome::{Failure, FailureKind, Outcome, RecipientOutcome};
pub use phase::Phase;
pub use response::{MAX_REPLY, MAX_REPLY_LINE, ReplyError, ReplyParser};

use crate::reply::{Enhanced, Reply};
use std::collections::VecDeque;

/// When to use STARTTLS (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Never, even when offered.
    None,
    /// STARTTLS when offered; when the server refuses it (4xx/5xx), go on in clear
    /// (RFC 3207 §4.1 leaves the choice to the client; RFC 7435 opportunistic security).
    #[default]
    Opportunistic,
    /// STARTTLS must succeed: not offered, or refused, is a temporary failure of the job.
    Required,
}

/// Credentials for AUTH with a smarthost (RFC 4954). `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCredentials {
    /// The authentication identity.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for AuthCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCredentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Identity and policy for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Our name for EHLO/HELO: a domain or an address literal (RFC 5321 §4.1.1.1).
    pub helo_name: String,
    /// When to use STARTTLS.
    pub tls: TlsPolicy,
    /// TLS is already active from the start (implicit TLS on port 465, RFC 8314 §3.3):
    /// no STARTTLS, and AUTH is allowed at once.
    pub implicit_tls: bool,
    /// Authenticate with these after TLS (smarthosts). When set, AUTH is required: a server
    /// that does not offer it, or a session without TLS, is a temporary failure, so
    /// credentials never cross the network in clear.
    pub credentials: Option<AuthCredentials>,
    /// Speak LMTP (RFC 2033) instead of SMTP: LHLO instead of EHLO (no HELO fallback),
    /// and after the content one reply per accepted recipient (§4.2) instead of one.
    pub lmtp: bool,
}

impl ClientConfig {
    /// Opportunistic TLS, no AUTH.
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            tls: TlsPolicy::default(),
            implicit_tls: false,
            credentials: None,
            lmtp: false,
        }
    }

    /// An LMTP client (RFC 2033) for a local delivery agent: no TLS, no AUTH.
    pub fn lmtp(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig { tls: TlsPolicy::None, lmtp: true, ..ClientConfig::new(helo_name) }
    }
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent<'a> {
    /// Write all these bytes to the server, then poll again.
    Write(&'a [u8]),
    /// Read from the server (waiting at most [`Client::phase`]'s timeout), append to the
    /// input, poll again. On end of stream, timeout or error: [`Client::connection_lost`].
    NeedInput,
    /// Run the TLS handshake now, then call [`Client::tls_established`] (or
    /// [`Client::connection_lost`] if it fails). Input read before it was discarded.
    StartTls,
    /// Send the message content through a [`DataEncoder`] (which adds the terminator), then
    /// call [`Client::body_sent`].
    SendBody,
    /// The job is over. Call [`Client::next_job`] to send another message on this connection,
    /// or [`Client::finish`].
    Done(Outcome),
    /// No job: call [`Client::next_job`] or [`Client::finish`].
    Ready,
    /// The session is over: close the connection.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// 220 to STARTTLS received; the driver runs the handshake.
    Handshake,
    Auth(AuthStep),
    /// RSET/MAIL/RCPT commands planned or awaiting replies.
    Transaction,
    DataCmd,
    /// 354 received; the driver sends the content.
    Body,
    DataEnd,
    /// Between jobs.
    Ready,
    Quit,
    Closed,
}

/// Where an AUTH exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthStep {
    /// `AUTH PLAIN <initial response>` sent.
    Plain,
    /// `AUTH LOGIN` sent; the user name is asked next.
    LoginStart,
    LoginUser,
    LoginPassword,
}

/// A transaction command whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Rset,
    Mail,
    /// RCPT for the job's recipient at this index.
    Rcpt(usize),
}

#[derive(Debug)]
enum RcptState {
    Pending,
    Accepted,
    Failed(RecipientOutcome),
    /// LMTP: the recipient's own reply after the content (RFC 2033 §4.2), kept even if the
    /// connection breaks before the other recipients' replies.
    Answered(RecipientOutcome),
}

/// The transaction in progress.
#[derive(Debug, Default)]
struct Tx {
    /// Command lines not yet written.
    planned: VecDeque<(Cmd, String)>,
    /// Commands written whose replies are awaited, in order.
    inflight: VecDeque<Cmd>,
    /// RSET or MAIL failed: the rest of the replies are read and dropped, then the job
    /// fails with this.
    failed: Option<(Failure, bool)>,
    rcpts: Vec<RcptState>,
}

/// Internal result of one step; `poll` turns it into a [`ClientEvent`].
enum Step {
    Write,
    NeedInput,
    StartTls,
    SendBody,
    Done(Outcome),
    Ready,
    Closed,
}

/// One client connection: a session with one server, carrying one job after another.
pub struct Client {
    cfg: ClientConfig,
    state: State,
    parser: ReplyParser,
    out: Vec<u8>,
    /// `out` was handed to the driver and is cleared at the next poll.
    written: bool,
    done: Option<Outcome>,
    greeting: Option<Reply>,
    ext: Extensions,
    tls: bool,
    tls_refused: bool,
    authenticated: bool,
    /// The server still talks to us: QUIT makes sense.
    alive: bool,
    /// Another job may use this session.
    reusable: bool,
    /// MAIL was accepted and no transaction end followed: RSET before the next MAIL.
    needs_rset: bool,
    job: Option<Job>,
    tx: Tx,
}

/// Shows where the session stands, never the output buffer (it may hold an AUTH line).
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("helo_name", &self.cfg.helo_name)
            .field("state", &self.state)
            .field("tls", &self.tls)
            .field("authenticated", &self.authenticated)
            .field("alive", &self.alive)
            .field("reusable", &self.reusable)
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a freshly opened connection, waiting for the greeting, with `job` as
    /// the first message.
    pub fn new(cfg: ClientConfig, job: Job) -> Client {
        Client {
            tls: cfg.implicit_tls,
            cfg,
            state: State::Greeting,
            parser: ReplyParser::new(),
            out: Vec::new(),
            written: false,
            done: None,
            greeting: None,
            ext: Extensions::default(),
            tls_refused: false,
            authenticated: false,
            alive: true,
            reusable: true,
            needs_rset: false,
            job: Some(job),
            tx: Tx::default(),
        }
    }

    /// Where the dialog stands; [`Phase::timeout`] is the read timeout to use.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Greeting => Phase::Greeting,
            State::Ehlo | State::Helo => Phase::Ehlo,
            State::StartTls | State::Handshake => Phase::StartTls,
            State::Auth(_) => Phase::Auth,
            State::Transaction => {
                let next = self.tx.inflight.front().or(self.tx.planned.front().map(|(c, _)| c));
                match next {
                    Some(Cmd::Rset) => Phase::Rset,
                    Some(Cmd::Mail) => Phase::Mail,
                    Some(Cmd::Rcpt(_)) | None => Phase::Rcpt,
                }
            }
            State::DataCmd => Phase::DataInit,
            State::Body => Phase::DataBlock,
            State::DataEnd => Phase::DataTermination,
            State::Quit => Phase::Quit,
            State::Ready | State::Closed => Phase::Idle,
        }
    }

    /// What the server offered in its latest EHLO reply (empty before it, and after HELO).
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// The server's 220 greeting, once received.
    pub fn greeting(&self) -> Option<&Reply> {
        self.greeting.as_ref()
    }

    /// True once TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True once AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The job in progress.
    pub fn job(&self) -> Option<&Job> {
        self.job.as_ref()
    }

    /// True if [`Client::next_job`] would accept a job now: the last job is over and
    /// reported, the session was set up, and the server is in step with us.
    pub fn is_reusable(&self) -> bool {
        self.reusable && self.alive && self.state == State::Ready && self.done.is_none()
    }

    /// Processes input; consumed octets are removed from the front of `input`.
    pub fn poll(&mut self, input: &mut Vec<u8>) -> ClientEvent<'_> {
        match self.step(input) {
            Step::Write => ClientEvent::Write(&self.out),
            Step::NeedInput => ClientEvent::NeedInput,
            Step::StartTls => ClientEvent::StartTls,
            Step::SendBody => ClientEvent::SendBody,
            Step::Done(outcome) => ClientEvent::Done(outcome),
            Step::Ready => ClientEvent::Ready,
            Step::Closed => ClientEvent::Closed,
        }
    }

    fn step(&mut self, input: &mut Vec<u8>) -> Step {
        if std::mem::take(&mut self.written) {
            self.out.clear();
        }
        loop {
            self.pump();
            if !self.out.is_empty() {
                self.written = true;
                return Step::Write;
            }
            if let Some(outcome) = self.done.take() {
                if !input.is_empty() {
                    // More than we asked for: replies no longer pair with commands.
                    self.reusable = false;
                }
                return Step::Done(outcome);
            }
            match self.state {
                State::Handshake => {
                    // RFC 3207 §4.2: nothing received in clear after the 220 may be taken
                    // as coming from the TLS session (STARTTLS response injection).
                    input.clear();
                    return Step::StartTls;
                }
                State::Body => return Step::SendBody,
                State::Ready => {
                    if !input.is_empty() {
                        // Unsolicited (typically a 421 from an idle timeout).
                        self.reusable = false;
                    }
                    return Step::Ready;
                }
                State::Closed => return Step::Closed,
                _ => {}
            }
            match self.parser.parse(input) {
                Ok((used, reply)) => {
                    input.drain(..used);
                    match reply {
                        Some(reply) => self.on_reply(reply),
                        None => return Step::NeedInput,
                    }
                }
                Err(e) => {
                    input.clear();
                    self.protocol_error(e);
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        if self.state == State::Quit {
            self.state = State::Closed;
            return;
        }
        if reply.code == 421 {
            // RFC 5321 §3.8: the server is shutting the connection; whatever is not
            // finished is deferred, and no QUIT follows.
            self.alive = false;
            self.reusable = false;
            let failure = Failure::remote(self.phase(), FailureKind::Refused, reply, false);
            self.fail(failure, false);
            return;
        }
        match self.state {
            State::Greeting => self.on_greeting(reply),
            State::Ehlo => self.on_ehlo(reply),
            State::Helo => self.on_helo(reply),
            State::StartTls => self.on_starttls(reply),
            State::Auth(step) => self.on_auth(step, reply),
            State::Transaction => self.on_transaction(reply),
            State::DataCmd => self.on_data(reply),
            State::DataEnd => self.on_data_end(reply),
            // `step` reads no replies in these states.
            State::Handshake | State::Body | State::Ready | State::Quit | State::Closed => {}
        }
    }

    /// Answers [`ClientEvent::StartTls`]: the handshake succeeded. The session starts over
    /// with EHLO, and what the server offered before is forgotten (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        if self.state != State::Handshake {
            return;
        }
        self.tls = true;
        self.ext = Extensions::default();
        self.send_ehlo();
    }

    /// Answers [`ClientEvent::SendBody`]: the content and its terminator are written.
    pub fn body_sent(&mut self) {
        if self.state == State::Body {
            self.state = State::DataEnd;
        }
    }

    /// Starts another job on this connection once the last one is over and reported
    /// (RSET first if the last transaction was left open). Gives the job back if the
    /// connection cannot take it (see [`Client::is_reusable`]).
    pub fn next_job(&mut self, job: Job) -> Result<(), Job> {
        if !self.is_reusable() {
            return Err(job);
        }
        self.job = Some(job);
        self.start_job();
        Ok(())
    }

    /// Ends the session: QUIT when the server still listens (RFC 5321 §4.1.1.10), then
    /// [`ClientEvent::Closed`]. With a job in progress the job is abandoned as a temporary
    /// failure and the connection closed without QUIT: in the middle of DATA a QUIT would
    /// be message content, and replies may still be on their way.
    pub fn finish(&mut self) {
        if self.job.is_some() {
            self.connection_lost("delivery abandoned by the driver");
            return;
        }
        match self.state {
            State::Ready if self.alive => {
                self.send("QUIT");
                self.state = State::Quit;
            }
            State::Quit | State::Closed => {}
            _ => self.state = State::Closed,
        }
    }

    /// The driver's report that the connection broke: end of stream, timeout, I/O error or
    /// a failed TLS handshake. The job in progress fails temporarily with `reason`.
    ///
    /// If this happens after the content was sent and before the final reply, the server
    /// may have accepted the message anyway, and the retry may deliver a duplicate
    /// (RFC 1047); the long DATA termination timeout of RFC 5321 §4.5.3.2.6 keeps this rare.
    pub fn connection_lost(&mut self, reason: &str) {
        self.alive = false;
        self.reusable = false;
        self.out.clear();
        self.written = false;
        if self.job.is_some() {
            let failure = Failure::local(self.phase(), FailureKind::Connection, Enhanced(4, 4, 2), reason);
            self.fail(failure, false);
        }
        self.state = State::Closed;
    }

    /// Appends one command line.
    fn send(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Ends the job with `failure`. Recipients the server already refused keep their own
    /// result; the rest (accepted or unanswered) get this one.
    fn fail(&mut self, failure: Failure, permanent: bool) {
        let any_refused = self.tx.rcpts.iter().any(|r| matches!(r, RcptState::Failed(_) | RcptState::Answered(_)));
        let outcome = if any_refused {
            Outcome::Recipients(self.results(|| RecipientOutcome::failed(failure.clone(), permanent)))
        } else {
            Outcome::failed(failure, permanent)
        };
        self.complete(outcome);
    }

    /// Per-recipient results: refused recipients keep theirs, the others get `rest()`.
    fn results(&mut self, mut rest: impl FnMut() -> RecipientOutcome) -> Vec<RecipientOutcome> {
        let rcpts = std::mem::take(&mut self.tx.rcpts);
        rcpts
            .into_iter()
            .map(|r| match r {
                RcptState::Failed(outcome) | RcptState::Answered(outcome) => outcome,
                RcptState::Accepted | RcptState::Pending => rest(),
            })
            .collect()
    }

    /// Records the job's outcome for the next poll and leaves the transaction.
    fn complete(&mut self, outcome: Outcome) {
        if self.job.take().is_some() {
            self.done = Some(outcome);
        }
        self.tx = Tx::default();
        self.state = if self.alive { State::Ready } else { State::Closed };
    }

    /// A well-formed reply that makes no sense here (a 354 to MAIL, a 250 greeting): the
    /// dialog is out of step, so the connection is given up.
    fn unexpected(&mut self, reply: Reply) {
        self.alive = false;
        self.reusable = false;
        let mut failure = Failure::remote(self.phase(), FailureKind::Protocol, reply, false);
        failure.reason = format!("unexpected reply: {}", failure.reason);
        self.fail(failure, false);
    }

    /// A reply that could not be read at all.
    fn protocol_error(&mut self, e: ReplyError) {
        if self.state == State::Quit {
            self.state = State::Closed;
            return;
        }
        self.alive = false;
        self.reusable = false;
        let reason = format!("malformed reply: {e}");
        // RFC 3463 §3.6: X.5.0, other or undefined protocol status.
        self.fail(Failure::local(self.phase(), FailureKind::Protocol, Enhanced(4, 5, 0), reason), false);
    }

    /// A refusal that ends the job: 4xx temporary, 5xx permanent; other codes are out of step.
    fn refused(&mut self, reply: Reply) {
        match reply.code / 100 {
            4 => self.fail(Failure::remote(self.phase(), FailureKind::Refused, reply, false), false),
            5 => self.fail(Failure::remote(self.phase(), FailureKind::Refused, reply, true), true),
            _ => self.unexpected(reply),
        }
    }
}

#[cfg(test)]
mod tests;
