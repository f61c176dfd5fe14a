//! The mail transaction: checking the message against the server's extensions, MAIL and
//! RCPT (pipelined when offered), DATA and the final reply.

use super::{Client, Cmd, Extensions, Failure, FailureKind, Job, JobRecipient, Outcome, Phase, RcptState};
use super::{RecipientOutcome, State, Tx};
use crate::params::encode_xtext;
use crate::reply::{Enhanced, Reply};

/// The most commands in one pipelined write. RFC 2920 §3.1 warns of a deadlock when the
/// server blocks writing replies while the client blocks writing commands; the replies to a
/// hundred commands are a few kilobytes, far below any socket buffer, so that cannot happen,
/// while a job of a hundred recipients still costs one round trip.
pub(super) const MAX_PIPELINE_GROUP: usize = 100;

impl Client {
    /// Checks the job against the session and plans its commands.
    pub(super) fn start_job(&mut self) {
        let Some(job) = self.job.as_ref() else {
            self.state = State::Ready;
            return;
        };
        if let Err(failure) = check_job(job, &self.ext) {
            self.fail(failure, true);
            return;
        }
        let Some(mail) = mail_line(job, &self.ext) else {
            // RFC 3463 §3.2: X.1.7, bad sender's mailbox address syntax.
            let reason = "the sender address cannot be written in a MAIL command";
            self.fail(Failure::local(Phase::Mail, FailureKind::Unsupported, Enhanced(5, 1, 7), reason), true);
            return;
        };
        let mut tx = Tx::default();
        if self.needs_rset {
            tx.planned.push_back((Cmd::Rset, "RSET".into()));
        }
        tx.planned.push_back((Cmd::Mail, mail));
        for (i, rcpt) in job.recipients.iter().enumerate() {
            match rcpt_line(rcpt, &self.ext) {
                Some(line) => {
                    tx.planned.push_back((Cmd::Rcpt(i), line));
                    tx.rcpts.push(RcptState::Pending);
                }
                None => {
                    // RFC 3463 §3.2: X.1.3, bad destination mailbox address syntax.
                    let reason = "the recipient address cannot be written in a RCPT command";
                    let failure = Failure::local(Phase::Rcpt, FailureKind::Unsupported, Enhanced(5, 1, 3), reason);
                    tx.rcpts.push(RcptState::Failed(RecipientOutcome::Permanent(failure)));
                }
            }
        }
        let sendable = tx.rcpts.iter().any(|r| matches!(r, RcptState::Pending));
        self.tx = tx;
        if sendable {
            self.state = State::Transaction;
        } else {
            // No recipient (or none that can be written): nothing to send.
            let results = self.results(unreachable_outcome);
            self.complete(Outcome::Recipients(results));
        }
    }

    /// Writes planned commands: a group of them with PIPELINING (RFC 2920 §3.1 lets RSET,
    /// MAIL and RCPT share a group), otherwise one, each only after the last was answered.
    pub(super) fn pump(&mut self) {
        if self.state != State::Transaction || !self.tx.inflight.is_empty() {
            return;
        }
        let group = if self.ext.pipelining { MAX_PIPELINE_GROUP } else { 1 };
        while self.tx.inflight.len() < group
            && let Some((cmd, line)) = self.tx.planned.pop_front()
        {
            self.send(&line);
            self.tx.inflight.push_back(cmd);
        }
    }

    /// A reply to RSET, MAIL or RCPT; replies come in the order the commands were sent
    /// (RFC 2920 §3.1).
    pub(super) fn on_transaction(&mut self, reply: Reply) {
        let Some(&cmd) = self.tx.inflight.front() else {
            self.unexpected(reply);
            return;
        };
        let class = reply.code / 100;
        if !(class == 2 || class == 4 || class == 5) {
            self.unexpected(reply);
            return;
        }
        self.tx.inflight.pop_front();
        let permanent = class == 5;
        match cmd {
            Cmd::Rset if class == 2 => self.needs_rset = false,
            Cmd::Rset => {
                // The server cannot reset: nothing more can be done on this connection.
                self.reusable = false;
                self.tx.planned.clear();
                let failure = Failure::remote(Phase::Rset, FailureKind::Refused, reply, false);
                self.tx.failed.get_or_insert((failure, false));
            }
            Cmd::Mail if class == 2 => self.needs_rset = true,
            Cmd::Mail => {
                // Without PIPELINING the RCPTs were never sent; with it their replies (503s)
                // are still to come and are read and dropped.
                self.tx.planned.clear();
                let failure = Failure::remote(Phase::Mail, FailureKind::Refused, reply, permanent);
                self.tx.failed.get_or_insert((failure, permanent));
            }
            Cmd::Rcpt(_) if self.tx.failed.is_some() => {}
            Cmd::Rcpt(i) => {
                // RFC 5321 §4.3.2 and §3.3: 2xx (250, 251) accepts the recipient, 4xx defers
                // and 5xx refuses it, each for that recipient alone.
                let state = if class == 2 {
                    RcptState::Accepted
                } else {
                    let failure = Failure::remote(Phase::Rcpt, FailureKind::Refused, reply, permanent);
                    RcptState::Failed(RecipientOutcome::failed(failure, permanent))
                };
                if let Some(slot) = self.tx.rcpts.get_mut(i) {
                    *slot = state;
                }
            }
        }
        if self.tx.inflight.is_empty() && self.tx.planned.is_empty() {
            self.recipients_answered();
        }
    }

    /// Every RCPT has its reply: DATA if anyone was accepted.
    fn recipients_answered(&mut self) {
        if let Some((failure, permanent)) = self.tx.failed.take() {
            self.fail(failure, permanent);
            return;
        }
        if !self.tx.rcpts.iter().any(|r| matches!(r, RcptState::Accepted)) {
            // RFC 5321 §3.3: no DATA without an accepted recipient. MAIL was accepted, so the
            // transaction is still open on the server: RSET precedes the next MAIL
            // (`needs_rset`), or QUIT ends the session.
            let results = self.results(unreachable_outcome);
            self.complete(Outcome::Recipients(results));
            return;
        }
        // DATA is sent only after the RCPT replies, although RFC 2920 would let it join the
        // group: a server that (wrongly) answered 354 after refusing every recipient would
        // then need an empty message to be sent, and the round trip saved is one per message.
        self.send("DATA");
        self.state = State::DataCmd;
    }

    pub(super) fn on_data(&mut self, reply: Reply) {
        match reply.code {
            // RFC 5321 §4.1.1.4: 354 invites the content.
            354 => self.state = State::Body,
            400..=599 => {
                let permanent = reply.code >= 500;
                self.fail(Failure::remote(Phase::DataInit, FailureKind::Refused, reply, permanent), permanent);
            }
            _ => self.unexpected(reply),
        }
    }

    /// The final reply after the content: one reply for all accepted recipients
    /// (RFC 5321 §4.1.1.4 and §4.2.5; unlike LMTP, there is no reply per recipient).
    pub(super) fn on_data_end(&mut self, reply: Reply) {
        if self.cfg.lmtp {
            return self.on_lmtp_reply(reply);
        }
        match reply.code / 100 {
            2 => {
                // The transaction is over; the next one needs no RSET.
                self.needs_rset = false;
                let results = self.results(|| RecipientOutcome::Delivered(reply.clone()));
                self.complete(Outcome::Recipients(results));
            }
            4 | 5 => {
                let permanent = reply.code >= 500;
                let failure = Failure::remote(Phase::DataTermination, FailureKind::Refused, reply, permanent);
                self.fail(failure, permanent);
            }
            _ => self.unexpected(reply),
        }
    }
}

impl Client {
    /// LMTP: after the content, one reply per recipient accepted at RCPT, in RCPT order
    /// (RFC 2033 §4.2). Each is that recipient's own result: 2xx delivered, 4xx temporary,
    /// 5xx permanent. The job is over after the last one.
    fn on_lmtp_reply(&mut self, reply: Reply) {
        let Some(i) = self.tx.rcpts.iter().position(|r| matches!(r, RcptState::Accepted)) else {
            return self.unexpected(reply);
        };
        let outcome = match reply.code / 100 {
            2 => RecipientOutcome::Delivered(reply),
            4 | 5 => {
                let permanent = reply.code >= 500;
                let failure = Failure::remote(Phase::DataTermination, FailureKind::Refused, reply, permanent);
                RecipientOutcome::failed(failure, permanent)
            }
            _ => return self.unexpected(reply),
        };
        self.tx.rcpts[i] = RcptState::Answered(outcome);
        if !self.tx.rcpts.iter().any(|r| matches!(r, RcptState::Accepted)) {
            self.needs_rset = false;
            let results = self.results(unreachable_outcome);
            self.complete(Outcome::Recipients(results));
        }
    }
}

/// Stands in for a recipient that has no result where every recipient must have one; the
/// state machine never gets there, but a protocol library must not panic if it did.
fn unreachable_outcome() -> RecipientOutcome {
    let failure = Failure::local(Phase::Rcpt, FailureKind::Protocol, Enhanced(4, 5, 0), "recipient not answered");
    RecipientOutcome::Temporary(failure)
}

/// What the message needs from the next hop, checked before MAIL names it. Each failure is
/// permanent: the next hop declared what it supports, and retrying will not change the
/// message. Downgrading (8-bit to 7-bit, RFC 6531 §3.2's alternative) is not done.
fn check_job(job: &Job, ext: &Extensions) -> Result<(), Failure> {
    let unsupported = |status, reason: String| Failure::local(Phase::Mail, FailureKind::Unsupported, status, reason);
    // RFC 1870 §4: a message over the declared fixed maximum would be refused (552) after
    // being transferred; do not transfer it. RFC 3463 §3.4: X.3.4, message too big.
    if let (Some(limit), Some(size)) = (ext.size_limit, job.size)
        && size > limit
    {
        let reason = format!("message size {size} exceeds the next hop's fixed maximum of {limit} octets");
        return Err(unsupported(Enhanced(5, 3, 4), reason));
    }
    // RFC 6152 §3: 8-bit content only to a server that offers 8BITMIME.
    // RFC 3463 §3.7: X.6.3, conversion required but not supported.
    if job.eight_bit && !ext.eight_bit_mime {
        return Err(unsupported(Enhanced(5, 6, 3), "next hop does not support 8BITMIME".into()));
    }
    // RFC 6531 §3.2: an internationalised message must not go to a server without
    // SMTPUTF8. X.6.7 when an address is the reason, X.6.9 when the headers are (both
    // codes registered by RFC 6531).
    if job.needs_smtputf8() && !ext.smtputf8 {
        let status = if job.has_utf8_address() { Enhanced(5, 6, 7) } else { Enhanced(5, 6, 9) };
        return Err(unsupported(status, "next hop does not support SMTPUTF8".into()));
    }
    // RFC 8689 §5: a REQUIRETLS message only to a server that offers REQUIRETLS; 5.7.30
    // "REQUIRETLS support required" (§6).
    if job.require_tls && !ext.requiretls {
        return Err(unsupported(Enhanced(5, 7, 30), "REQUIRETLS: next hop does not offer REQUIRETLS".into()));
    }
    Ok(())
}

/// `MAIL FROM:<path>` with the parameters the server offers; `None` if the line would hold
/// a control character (which could only come from a mailbox built without parsing).
fn mail_line(job: &Job, ext: &Extensions) -> Option<String> {
    let mut line = format!("MAIL FROM:<{}>", job.from);
    // RFC 1870 §6: declare the size when SIZE is offered.
    if ext.size
        && let Some(size) = job.size
    {
        line.push_str(&format!(" SIZE={size}"));
    }
    // RFC 6152 §2.
    if job.eight_bit && ext.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    // RFC 6531 §3.4.
    if job.needs_smtputf8() && ext.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    // RFC 8689 §4.1 (check_job made sure the server offers it).
    if job.require_tls {
        line.push_str(" REQUIRETLS");
    }
    // RFC 3461 §4: the DSN parameters only to a server that offers DSN; otherwise we are
    // the last DSN-aware hop (and report "relayed" when asked for success notices).
    if ext.dsn {
        if let Some(ret) = job.ret {
            line.push_str(" RET=");
            line.push_str(ret.keyword());
        }
        if let Some(envid) = &job.envid {
            line.push_str(" ENVID=");
            line.push_str(&encode_xtext(envid));
        }
    }
    without_controls(line)
}

/// `RCPT TO:<path>` with NOTIFY and ORCPT when the server offers DSN (RFC 3461 §4.1, §4.2).
fn rcpt_line(rcpt: &JobRecipient, ext: &Extensions) -> Option<String> {
    let mut line = format!("RCPT TO:<{}>", rcpt.mailbox);
    if ext.dsn {
        if let Some(notify) = rcpt.notify {
            line.push_str(" NOTIFY=");
            line.push_str(&notify.to_string());
        }
        // addr-type is an atom (RFC 3461 §4.2); one that is not is dropped, not sent broken.
        if let Some((kind, addr)) = &rcpt.orcpt
            && !kind.is_empty()
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            line.push_str(&format!(" ORCPT={kind};{}", encode_xtext(addr)));
        }
    }
    without_controls(line)
}

/// A command line must never carry CR, LF or other controls: they would inject commands.
fn without_controls(line: String) -> Option<String> {
    if line.chars().any(char::is_control) { None } else { Some(line) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Mailbox, ReversePath, parse_path};
    use crate::params::{Notify, Ret};

    fn ext_all() -> Extensions {
        Extensions { size: true, eight_bit_mime: true, smtputf8: true, dsn: true, ..Extensions::default() }
    }

    #[test]
    fn mail_line_parameters() {
        let mut job = Job::new(ReversePath::Mailbox(parse_path("<a@b.test>").unwrap()), []);
        job.size = Some(1234);
        job.eight_bit = true;
        job.smtputf8 = true;
        job.ret = Some(Ret::Hdrs);
        job.envid = Some("id+1=x y".into());
        assert_eq!(
            mail_line(&job, &ext_all()).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3Dx+20y"
        );
        assert_eq!(mail_line(&job, &Extensions::default()).unwrap(), "MAIL FROM:<a@b.test>");
        job.from = ReversePath::Null;
        job.ret = Some(Ret::Full);
        job.envid = None;
        job.size = None;
        assert_eq!(mail_line(&job, &ext_all()).unwrap(), "MAIL FROM:<> BODY=8BITMIME SMTPUTF8 RET=FULL");
    }

    #[test]
    fn rcpt_line_parameters() {
        let mut r = JobRecipient::new(parse_path("<\"x y\"@d.test>").unwrap());
        assert_eq!(rcpt_line(&r, &ext_all()).unwrap(), "RCPT TO:<\"x y\"@d.test>");
        r.notify = Some(Notify { success: true, failure: false, delay: true });
        r.orcpt = Some(("rfc822".into(), "a+b@c.test".into()));
        assert_eq!(
            rcpt_line(&r, &ext_all()).unwrap(),
            "RCPT TO:<\"x y\"@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@c.test"
        );
        assert_eq!(rcpt_line(&r, &Extensions::default()).unwrap(), "RCPT TO:<\"x y\"@d.test>");
        r.notify = Some(Notify::default());
        r.orcpt = Some(("rfc 822".into(), "a@c.test".into()));
        assert_eq!(rcpt_line(&r, &ext_all()).unwrap(), "RCPT TO:<\"x y\"@d.test> NOTIFY=NEVER");
    }

    #[test]
    fn control_characters_never_reach_a_command() {
        let evil = Mailbox { local: "a\r\nRCPT TO:<x".into(), domain: "d.test".into() };
        assert_eq!(rcpt_line(&JobRecipient::new(evil.clone()), &ext_all()), None);
        let job = Job::new(ReversePath::Mailbox(evil), []);
        assert_eq!(mail_line(&job, &ext_all()), None);
    }

    #[test]
    fn checks_against_extensions() {
        let mut job = Job::new(ReversePath::Null, [parse_path("<a@b.test>").unwrap()]);
        let mut ext = ext_all();
        ext.size_limit = Some(100);
        job.size = Some(100);
        assert!(check_job(&job, &ext).is_ok());
        job.size = Some(101);
        assert_eq!(check_job(&job, &ext).unwrap_err().status, Enhanced(5, 3, 4));
        job.size = None;
        job.eight_bit = true;
        ext.eight_bit_mime = false;
        assert_eq!(check_job(&job, &ext).unwrap_err().status, Enhanced(5, 6, 3));
        job.eight_bit = false;
        job.smtputf8 = true;
        ext.smtputf8 = false;
        assert_eq!(check_job(&job, &ext).unwrap_err().status, Enhanced(5, 6, 9));
        job.recipients.push(JobRecipient::new(parse_path("<\u{e9}@b.test>").unwrap()));
        assert_eq!(check_job(&job, &ext).unwrap_err().status, Enhanced(5, 6, 7));
        let mut job = Job::new(ReversePath::Null, Vec::new());
        job.require_tls = true;
        assert_eq!(check_job(&job, &ext).unwrap_err().status, Enhanced(5, 7, 30));
        let ext = Extensions { requiretls: true, ..ext };
        assert!(check_job(&job, &ext).is_ok());
        assert_eq!(mail_line(&job, &ext).unwrap(), "MAIL FROM:<> REQUIRETLS");
    }
}
