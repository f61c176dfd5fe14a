//! The server side of an SMTP session as a sans-IO state machine.
//!
//! The driver (the binary) owns the socket. It appends what it reads to an input buffer and
//! calls [`Server::poll`] until it returns [`Event::NeedInput`]; replies accumulate in
//! [`Server::output`], which the driver writes out whenever it is about to wait for input
//! (so pipelined commands get their replies in one write, RFC 2920 §3). Decisions that need
//! the outside world — is this recipient ours, is the message safely stored — are events the
//! driver answers with [`Server::recipient_verdict`] and [`Server::message_committed`]: rules
//! live here, effects in the driver.

mod auth;
mod commands;
mod content;
pub(crate) mod replies;

use crate::address::{ForwardPath, ReversePath};
use crate::data::{CrlfChecker, DataDecoder};
use crate::line::{self, LineError, MAX_COMMAND_LINE};
use crate::params::{MailParams, RcptParams};
use crate::reply::{Enhanced, Reply};
use crate::sasl::Credentials;

/// Limits and identity for a session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our host name, for the greeting and EHLO.
    pub hostname: String,
    /// SIZE limit in octets (RFC 1870).
    pub max_message_size: u64,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Errors tolerated before the session is closed with 421.
    pub max_errors: u32,
}

/// What a listener offers and demands; set by the driver per connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Offer STARTTLS (RFC 3207): the listener has a certificate and TLS is not yet active.
    pub starttls: bool,
    /// TLS is active from the start (implicit TLS, RFC 8314).
    pub implicit_tls: bool,
    /// Offer AUTH (RFC 4954) on this listener.
    pub auth: bool,
    /// Allow AUTH without TLS (loopback clients, when configured).
    pub auth_without_tls: bool,
    /// MAIL requires a successful AUTH first (submission, RFC 6409 §4.3).
    pub auth_required: bool,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Write out [`Server::output`], then read more input.
    NeedInput,
    /// Decide on [`Server::pending_recipient`], then call [`Server::recipient_verdict`].
    CheckRecipient,
    /// Decide on [`Server::pending_sender`], then call [`Server::sender_verdict`].
    CheckSender,
    /// Check [`Server::pending_auth`], then call [`Server::auth_result`].
    Authenticate,
    /// Write out [`Server::output`] (the 220), run the TLS handshake, then call
    /// [`Server::tls_established`]. Input that arrived before the handshake has been discarded.
    StartTls,
    /// A message body begins: prepare storage. The envelope is [`Server::transaction`].
    MessageStart,
    /// Message content, already dot-unstuffed, with CRLF line ends.
    Body(&'a [u8]),
    /// The body is complete: store it durably, then call [`Server::message_committed`].
    MessageEnd,
    /// The message was refused or the session broke: discard what was stored so far.
    MessageAbort,
    /// Write out [`Server::output`] and close the connection.
    Close,
}

/// An event carried over to the next poll (an owned copy of [`Event`] minus `Body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    MessageEnd,
    MessageAbort,
    Close,
}

/// A decision the driver owes us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Recipient,
    Sender,
    Auth,
    Tls,
    Commit,
}

#[derive(Debug)]
enum Phase {
    Command,
    /// Discarding the rest of a too-long command line.
    SkipLine,
    Data(DataDecoder),
    Bdat {
        remaining: u64,
        last: bool,
        refuse: Option<Reply>,
    },
    /// Waiting for a SASL client response line (RFC 4954 §4).
    Sasl(SaslStep),
    Closed,
}

/// Where a multi-step AUTH exchange stands.
#[derive(Debug)]
enum SaslStep {
    PlainResponse,
    LoginUser,
    LoginPassword(String),
}

/// A recipient the driver accepted, with the driver's own data about it (e.g. its routes).
#[derive(Debug, Clone)]
pub struct Recipient<T> {
    /// The path as given in RCPT TO.
    pub path: ForwardPath,
    /// Its DSN parameters.
    pub params: RcptParams,
    /// What the driver attached when accepting it.
    pub data: T,
}

/// The mail transaction in progress (RFC 5321 §3.3).
#[derive(Debug, Clone)]
pub struct Transaction<T> {
    /// MAIL FROM.
    pub from: ReversePath,
    /// MAIL parameters.
    pub params: MailParams,
    /// Accepted recipients.
    pub rcpts: Vec<Recipient<T>>,
    pending: Option<(ForwardPath, RcptParams)>,
    started: bool,
    used_bdat: bool,
    size: u64,
    oversize: bool,
    checker: CrlfChecker,
}

impl<T> Transaction<T> {
    fn new(from: ReversePath, params: MailParams) -> Transaction<T> {
        Transaction {
            from,
            params,
            rcpts: Vec::new(),
            pending: None,
            started: false,
            used_bdat: false,
            size: 0,
            oversize: false,
            checker: CrlfChecker::new(),
        }
    }
}

/// The client's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The name given with EHLO/HELO.
    pub name: String,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Server<T> {
    cfg: std::sync::Arc<ServerConfig>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    phase: Phase,
    hello: Option<Hello>,
    tx: Option<Transaction<T>>,
    errors: u32,
    awaiting: Option<Awaiting>,
    queued: Option<Queued>,
    policy: SessionPolicy,
    tls: bool,
    auth_user: Option<String>,
    pending_auth: Option<Credentials>,
    pending_mail: Option<(ReversePath, MailParams)>,
    /// More input follows the command line being handled (it was pipelined behind it).
    input_follows: bool,
}

impl<T> Server<T> {
    /// A new session with the plain MX policy (no TLS, no AUTH); the greeting is in the output.
    pub fn new(cfg: std::sync::Arc<ServerConfig>) -> Server<T> {
        Server::with_policy(cfg, SessionPolicy::default())
    }

    /// A new session under `policy`; the 220 greeting is already in the output.
    pub fn with_policy(cfg: std::sync::Arc<ServerConfig>, policy: SessionPolicy) -> Server<T> {
        let mut s = Server {
            policy,
            tls: policy.implicit_tls,
            auth_user: None,
            pending_auth: None,
            pending_mail: None,
            input_follows: false,
            out: Vec::new(),
            scratch: Vec::new(),
            phase: Phase::Command,
            hello: None,
            tx: None,
            errors: 0,
            awaiting: None,
            queued: None,
            cfg,
        };
        let greeting = Reply::plain(220, vec![format!("{} ESMTP dakiya", s.cfg.hostname)]);
        s.reply(greeting);
        s
    }

    /// Replies waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Marks the output as written and releases its buffer: a session waiting for its
    /// client holds no reply buffer, so thousands of idle connections cost only their state
    /// (docs/hardening.md, "Memory"). The next reply allocates a small one again.
    pub fn clear_output(&mut self) {
        self.out = Vec::new();
    }

    /// The client's EHLO/HELO, if any.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// The transaction in progress.
    pub fn transaction(&self) -> Option<&Transaction<T>> {
        self.tx.as_ref()
    }

    /// True once TLS is active on this session.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated user, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// The sender awaiting a verdict after [`Event::CheckSender`].
    pub fn pending_sender(&self) -> Option<&ReversePath> {
        self.pending_mail.as_ref().map(|(p, _)| p)
    }

    /// The ESMTP parameters of the MAIL command awaiting a verdict (for content filters).
    pub fn pending_mail_params(&self) -> Option<&MailParams> {
        self.pending_mail.as_ref().map(|(_, m)| m)
    }

    /// The credentials awaiting a check after [`Event::Authenticate`].
    pub fn pending_auth(&self) -> Option<&Credentials> {
        self.pending_auth.as_ref()
    }

    /// The recipient awaiting a verdict after [`Event::CheckRecipient`].
    pub fn pending_recipient(&self) -> Option<(&ForwardPath, &RcptParams)> {
        self.tx.as_ref()?.pending.as_ref().map(|(p, r)| (p, r))
    }

    /// True while message content is being received (the driver uses the data timeout).
    pub fn in_message(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Answers [`Event::CheckRecipient`]: `Ok(data)` accepts, `Err(reply)` refuses.
    pub fn recipient_verdict(&mut self, verdict: Result<T, Reply>) {
        if self.awaiting.take() != Some(Awaiting::Recipient) {
            return;
        }
        let Some(tx) = self.tx.as_mut() else { return };
        let Some((path, params)) = tx.pending.take() else {
            return;
        };
        match verdict {
            Ok(data) => {
                tx.rcpts.push(Recipient { path, params, data });
                self.reply(replies::recipient_ok());
            }
            Err(reply) => self.error(reply),
        }
    }

    /// Answers [`Event::CheckSender`]: `Ok(())` starts the transaction, `Err(reply)` refuses.
    pub fn sender_verdict(&mut self, verdict: Result<(), Reply>) {
        if self.awaiting.take() != Some(Awaiting::Sender) {
            return;
        }
        let Some((from, params)) = self.pending_mail.take() else {
            return;
        };
        match verdict {
            Ok(()) => {
                self.tx = Some(Transaction::new(from, params));
                self.reply(replies::sender_ok());
            }
            Err(reply) => self.error(reply),
        }
    }

    /// Answers [`Event::Authenticate`]: `Ok(identity)` on success, or the reply to send
    /// (535 5.7.8 for bad credentials, 454 4.7.0 when throttled).
    pub fn auth_result(&mut self, result: Result<String, Reply>) {
        if self.awaiting.take() != Some(Awaiting::Auth) {
            return;
        }
        self.pending_auth = None;
        match result {
            Ok(user) => {
                self.auth_user = Some(user);
                self.reply(replies::auth_succeeded());
            }
            Err(reply) => self.error(reply),
        }
    }

    /// Answers [`Event::StartTls`] once the handshake succeeded. RFC 3207 §4.2: the server
    /// discards all knowledge obtained from the client before TLS; the client must EHLO again.
    pub fn tls_established(&mut self) {
        if self.awaiting.take() != Some(Awaiting::Tls) {
            return;
        }
        self.tls = true;
        self.hello = None;
        self.tx = None;
        self.auth_user = None;
        self.phase = Phase::Command;
    }

    /// Answers [`Event::MessageEnd`]: `Ok(queue_id)` once the message is durably stored, or
    /// the reply to send (typically 451 4.3.0) if storing failed.
    pub fn message_committed(&mut self, result: Result<&str, Reply>) {
        if self.awaiting.take() != Some(Awaiting::Commit) {
            return;
        }
        self.tx = None;
        match result {
            Ok(id) => self.reply(replies::r(250, Enhanced(2, 0, 0), &format!("Ok: queued as {id}"))),
            Err(reply) => self.reply(reply),
        }
    }

    /// Ends the session from the driver's side (e.g. a timeout), with a final reply.
    pub fn shutdown(&mut self, reply: Reply) -> bool {
        let had_message = self.tx.as_ref().is_some_and(|t| t.started);
        self.reply(reply);
        self.phase = Phase::Closed;
        self.tx = None;
        had_message
    }

    /// Processes input; consumed octets are removed from the front of `input`.
    pub fn poll(&mut self, input: &mut Vec<u8>) -> Event<'_> {
        let (consumed, queued_or_body) = self.step(input);
        input.drain(..consumed);
        match queued_or_body {
            Step::Event(q) => q.into(),
            Step::Body => Event::Body(&self.scratch),
            Step::NeedInput => Event::NeedInput,
            Step::Check => Event::CheckRecipient,
            Step::Sender => Event::CheckSender,
            Step::Auth => Event::Authenticate,
            Step::Tls => Event::StartTls,
            Step::Start => Event::MessageStart,
        }
    }

    fn step(&mut self, input: &[u8]) -> (usize, Step) {
        if let Some(q) = self.queued.take() {
            return (0, Step::Event(q));
        }
        if let Some(a) = self.awaiting {
            // The driver polled before answering; repeat the question.
            let step = match a {
                Awaiting::Recipient => Step::Check,
                Awaiting::Sender => Step::Sender,
                Awaiting::Auth => Step::Auth,
                Awaiting::Tls => Step::Tls,
                Awaiting::Commit => Step::Event(Queued::MessageEnd),
            };
            return (0, step);
        }
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let phase = std::mem::replace(&mut self.phase, Phase::Closed);
            match phase {
                Phase::Closed => return (pos, Step::Event(Queued::Close)),
                Phase::Command => {
                    self.phase = Phase::Command;
                    match line::next_line(rest, command_line_limit(rest)) {
                        Ok(None) => return (pos, Step::NeedInput),
                        Ok(Some((len, used))) => {
                            pos += used;
                            self.input_follows = rest.len() > used;
                            if let Some(step) = self.command(&rest[..len]) {
                                if self.is_closed() {
                                    // The session ended on this command (QUIT, HTTP, a
                                    // protocol violation): nothing after it is read.
                                    return (input.len(), step);
                                }
                                if matches!(step, Step::Tls) {
                                    // RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after
                                    // STARTTLS is discarded, never run after the handshake.
                                    return (input.len(), step);
                                }
                                return (pos, step);
                            }
                            if let Some(q) = self.queued.take() {
                                return (pos, Step::Event(q));
                            }
                        }
                        Err(LineError::TooLong) => {
                            self.phase = Phase::SkipLine;
                            self.error(replies::line_too_long());
                        }
                        Err(_) => return (pos, self.framing_error()),
                    }
                }
                Phase::SkipLine => match line::skip_line(rest) {
                    Ok((used, found)) => {
                        pos += used;
                        self.phase = if found { Phase::Command } else { Phase::SkipLine };
                        if !found {
                            return (pos, Step::NeedInput);
                        }
                    }
                    Err(_) => return (pos, self.framing_error()),
                },
                Phase::Data(mut dec) => {
                    self.scratch.clear();
                    match dec.decode(rest, &mut self.scratch) {
                        Err(_) => return (pos, self.framing_error()),
                        Ok((used, end)) => {
                            pos += used;
                            let nul = dec.saw_nul();
                            self.phase = if end { Phase::Command } else { Phase::Data(dec) };
                            return (pos, self.content(end, nul));
                        }
                    }
                }
                Phase::Sasl(step) => match line::next_line(rest, MAX_SASL_LINE) {
                    Ok(None) => {
                        self.phase = Phase::Sasl(step);
                        return (pos, Step::NeedInput);
                    }
                    Ok(Some((len, used))) => {
                        pos += used;
                        self.phase = Phase::Command;
                        if let Some(step) = self.sasl_response(step, &rest[..len]) {
                            return (pos, step);
                        }
                        if let Some(q) = self.queued.take() {
                            return (pos, Step::Event(q));
                        }
                    }
                    Err(LineError::TooLong) => {
                        self.phase = Phase::SkipLine;
                        self.error(replies::auth_malformed());
                    }
                    Err(_) => return (pos, self.framing_error()),
                },
                Phase::Bdat { remaining, last, refuse } => {
                    let take = remaining.min(rest.len() as u64) as usize;
                    pos += take;
                    return (pos, self.bdat_chunk(&rest[..take], remaining - take as u64, last, refuse));
                }
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// Sends an error reply and counts it; too many errors end the session.
    fn error(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors > self.cfg.max_errors && !self.is_closed() {
            let had_message = self.shutdown(replies::too_many_errors());
            self.queued = Some(if had_message { Queued::MessageAbort } else { Queued::Close });
        }
    }
}

/// RFC 4954 §4: AUTH command lines and SASL responses may be up to 12288 octets.
const MAX_SASL_LINE: usize = 12288;

/// The length limit for the command line at the start of `rest`.
fn command_line_limit(rest: &[u8]) -> usize {
    if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"AUTH ") { MAX_SASL_LINE } else { MAX_COMMAND_LINE }
}

/// Internal result of one step; converted to [`Event`] by `poll`.
enum Step {
    Event(Queued),
    Body,
    NeedInput,
    Check,
    Sender,
    Auth,
    Tls,
    Start,
}

impl From<Queued> for Event<'_> {
    fn from(q: Queued) -> Self {
        match q {
            Queued::MessageEnd => Event::MessageEnd,
            Queued::MessageAbort => Event::MessageAbort,
            Queued::Close => Event::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session must not keep the buffer its last replies were written from: with
    /// thousands of idle connections that buffer was most of what each one cost.
    #[test]
    fn written_output_holds_no_buffer() {
        let cfg = std::sync::Arc::new(ServerConfig {
            hostname: "mx.example.test".into(),
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 10,
        });
        let mut s: Server<()> = Server::new(cfg);
        let mut input = b"EHLO client.test\r\n".to_vec();
        assert!(matches!(s.poll(&mut input), Event::NeedInput));
        assert!(s.output().starts_with(b"220 "), "greeting and EHLO reply queued");
        assert!(s.out.capacity() > 0);
        s.clear_output();
        assert!(s.output().is_empty());
        assert_eq!(s.out.capacity(), 0, "the reply buffer is released once written");
    }
}
