//! Command handlers: each checks sequence and arguments, then proceeds or refuses.

use super::{Awaiting, Hello, Phase, Queued, Server, Step, replies};
use crate::address::{ForwardPath, ReversePath};
use crate::command::{self, Command, CommandError};
use crate::data::DataDecoder;
use crate::params::{MailParams, ParamError, RcptParams};
use crate::reply::{Enhanced, Reply};

impl<T> Server<T> {
    /// Handles one command line; returns an event for the driver, if any.
    pub(super) fn command(&mut self, line: &[u8]) -> Option<Step> {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                self.error(command_error_reply(&e));
                return None;
            }
        };
        match cmd {
            Command::Ehlo(name) => self.greet(name, true),
            Command::Helo(name) => self.greet(name, false),
            Command::Mail(from, params) => return self.mail(from, params),
            Command::Rcpt(to, params) => return self.rcpt(to, params),
            Command::Data => return self.data(),
            Command::Bdat { size, last } => return self.bdat(size, last),
            Command::Rset => {
                // RFC 5321 §4.1.1.5: abort the transaction, keep the greeting.
                let started = self.tx.take().is_some_and(|t| t.started);
                self.reply(replies::ok());
                if started {
                    return Some(Step::Event(Queued::MessageAbort));
                }
            }
            Command::Noop => self.reply(replies::ok()),
            Command::Help => self.reply(replies::help()),
            Command::Vrfy => self.reply(replies::vrfy()),
            Command::Expn => self.reply(replies::expn()),
            Command::Quit => {
                self.shutdown(replies::bye());
                return Some(Step::Event(Queued::Close));
            }
            Command::Http => {
                self.shutdown(replies::http());
                return Some(Step::Event(Queued::Close));
            }
            Command::StartTls => return self.starttls(),
            Command::Auth(args) => return self.auth(&args),
        }
        None
    }

    fn greet(&mut self, name: String, esmtp: bool) {
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
        self.tx = None;
        if esmtp {
            let c = &self.cfg;
            let mut lines = vec![
                format!("{} greets {}", c.hostname, name),
                "PIPELINING".into(),
                format!("SIZE {}", c.max_message_size),
                "8BITMIME".into(),
                "ENHANCEDSTATUSCODES".into(),
                "SMTPUTF8".into(),
                "CHUNKING".into(),
                "DSN".into(),
            ];
            if self.starttls_offered() {
                lines.push("STARTTLS".into());
            }
            // RFC 8689 §4.1: REQUIRETLS only over TLS.
            if self.tls {
                lines.push("REQUIRETLS".into());
            }
            // RFC 4954 §4 / RFC 3207 §4: AUTH is advertised only where it may be used, so
            // passwords never cross the network in the clear.
            if self.auth_usable() && self.auth_user.is_none() {
                lines.push("AUTH PLAIN LOGIN".into());
            }
            self.reply(Reply::plain(250, lines));
        } else {
            self.reply(Reply::plain(250, vec![self.cfg.hostname.clone()]));
        }
        self.hello = Some(Hello { name, esmtp });
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) -> Option<Step> {
        if let Some(reply) = self.check_mail(&from, &params) {
            self.error(reply);
            return None;
        }
        self.pending_mail = Some((from, params));
        self.awaiting = Some(Awaiting::Sender);
        Some(Step::Sender)
    }

    /// The checks on MAIL that need nobody's opinion but the protocol's.
    fn check_mail(&self, from: &ReversePath, params: &MailParams) -> Option<Reply> {
        let Some(hello) = &self.hello else {
            return Some(replies::need_helo());
        };
        if self.tx.is_some() {
            return Some(replies::nested_mail());
        }
        if self.policy.auth_required && self.auth_user.is_none() {
            return Some(replies::auth_required());
        }
        if !hello.esmtp && *params != MailParams::default() {
            return Some(replies::params_without_ehlo());
        }
        if params.requiretls && !self.tls {
            return Some(replies::requiretls_without_tls());
        }
        if let ReversePath::Mailbox(m) = from
            && !m.is_ascii()
            && !params.smtputf8
        {
            return Some(replies::need_smtputf8());
        }
        // RFC 1870 §6: a declared size over the limit is refused at MAIL.
        if params.size.is_some_and(|s| s > self.cfg.max_message_size) {
            return Some(replies::size_exceeded());
        }
        None
    }

    fn rcpt(&mut self, to: ForwardPath, params: RcptParams) -> Option<Step> {
        let esmtp = self.hello.as_ref().is_some_and(|h| h.esmtp);
        let max = self.cfg.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            self.error(replies::need_mail());
            return None;
        };
        if tx.started {
            self.error(replies::need_mail());
            return None;
        }
        if !esmtp && params != RcptParams::default() {
            self.error(replies::params_without_ehlo());
            return None;
        }
        if let ForwardPath::Mailbox(m) = &to
            && !m.is_ascii()
            && !tx.params.smtputf8
        {
            self.error(replies::need_smtputf8());
            return None;
        }
        if tx.rcpts.len() >= max {
            self.error(replies::too_many_recipients());
            return None;
        }
        tx.pending = Some((to, params));
        self.awaiting = Some(Awaiting::Recipient);
        Some(Step::Check)
    }

    fn data(&mut self) -> Option<Step> {
        match &mut self.tx {
            None => self.error(replies::need_mail_data()),
            Some(tx) if tx.used_bdat => self.error(replies::data_after_bdat()),
            Some(tx) if tx.rcpts.is_empty() => self.error(replies::no_valid_recipients()),
            // RFC 2920 §3.1: DATA may only be the last command of a pipelined group; a client
            // that sends content before our 354 is not waiting for our replies, so what it
            // sent cannot be trusted to mean what it seems (the transaction may have been
            // refused). Close, as for any loss of synchronisation.
            Some(_) if self.input_follows => {
                self.tx = None;
                self.shutdown(replies::data_before_354());
                return Some(Step::Event(Queued::Close));
            }
            Some(tx) => {
                tx.started = true;
                self.phase = Phase::Data(DataDecoder::new());
                self.reply(replies::start_data());
                return Some(Step::Start);
            }
        }
        None
    }

    /// RFC 3030 §2: the chunk is read in full even when the command is refused.
    fn bdat(&mut self, size: u64, last: bool) -> Option<Step> {
        let refuse = match &self.tx {
            None => Some(replies::need_mail_data()),
            Some(tx) if tx.rcpts.is_empty() => Some(replies::no_valid_recipients()),
            Some(_) => None,
        };
        let start = refuse.is_none() && self.tx.as_ref().is_some_and(|t| !t.started);
        if let Some(tx) = self.tx.as_mut().filter(|_| refuse.is_none()) {
            tx.started = true;
            tx.used_bdat = true;
        }
        self.phase = Phase::Bdat { remaining: size, last, refuse };
        start.then_some(Step::Start)
    }
}

/// Maps a parse error to its reply (RFC 5321 §4.2.2, RFC 3463 §3).
fn command_error_reply(e: &CommandError) -> Reply {
    match e {
        CommandError::Unknown => replies::unknown_command(),
        CommandError::Invalid => replies::invalid_chars(),
        CommandError::Syntax(text) => replies::r(501, Enhanced(5, 5, 2), &format!("Syntax error: {text}")),
        CommandError::Sender(err) => replies::r(501, Enhanced(5, 1, 7), &format!("Bad sender address syntax: {err}")),
        CommandError::Recipient(err) => {
            replies::r(501, Enhanced(5, 1, 3), &format!("Bad recipient address syntax: {err}"))
        }
        CommandError::Param(ParamError::Unknown(k)) => {
            // RFC 5321 §4.1.1.11: unrecognised parameters get 555.
            replies::r(555, Enhanced(5, 5, 4), &format!("Parameter {k} not recognized"))
        }
        CommandError::Param(p) => replies::r(501, Enhanced(5, 5, 4), &format!("Invalid parameter: {p}")),
    }
}
