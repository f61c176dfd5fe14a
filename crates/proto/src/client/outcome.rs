//! What became of a job: per recipient, or for the whole job when it failed before any
//! recipient was answered. Temporary and permanent failures are different variants, so the
//! queue manager cannot confuse "retry" with "bounce"; each failure keeps the server's reply
//! for the DSN (RFC 3464 §2.3.4 Status, §2.3.6 Diagnostic-Code).

use super::Phase;
use crate::reply::{Enhanced, Reply};
use std::fmt;

/// What kind of thing went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server refused with a 4xx or 5xx reply.
    Refused,
    /// The server's reply was malformed, or made no sense at that point of the dialog.
    Protocol,
    /// The driver reported the connection broken, timed out or the TLS handshake failed.
    Connection,
    /// Our TLS or AUTH policy could not be met with this server.
    Policy,
    /// The message needs what the next hop does not offer (SIZE, 8BITMIME, SMTPUTF8), or
    /// cannot be put into a command line at all.
    Unsupported,
}

/// One failure, with everything a DSN and a log line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where in the dialog it happened.
    pub phase: Phase,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The DSN Status (RFC 3464 §2.3.4): the server's enhanced code when it gave one,
    /// otherwise derived; its class always matches the failure's severity.
    pub status: Enhanced,
    /// The server's reply, when the server said something (Diagnostic-Code).
    pub reply: Option<Reply>,
    /// Why, in words, for logs and the human-readable part of a DSN.
    pub reason: String,
}

impl Failure {
    /// The server refused (or said something unexpected): `permanent` picks the status class.
    pub(crate) fn remote(phase: Phase, kind: FailureKind, reply: Reply, permanent: bool) -> Failure {
        let class = if permanent { 5 } else { 4 };
        // The severity is ours to decide (a 5xx to STARTTLS under a TLS-required policy is a
        // temporary failure of this attempt), so the class follows it; subject and detail
        // are the server's when it gave them (RFC 3463 §3: X.0.0 otherwise).
        let status = reply.enhanced.map_or(Enhanced(class, 0, 0), |e| Enhanced(class, e.1, e.2));
        let reason = reply.lines.join(" ");
        Failure { phase, kind, status, reply: Some(reply), reason }
    }

    /// A failure decided on our side, with its DSN status.
    pub(crate) fn local(phase: Phase, kind: FailureKind, status: Enhanced, reason: impl Into<String>) -> Failure {
        Failure { phase, kind, status, reply: None, reason: reason.into() }
    }

    /// The Diagnostic-Code value (RFC 3464 §2.3.6) when the server replied:
    /// `smtp; 550 5.1.1 text`, with the lines of a multi-line reply joined by spaces.
    pub fn diagnostic_code(&self) -> Option<String> {
        self.reply.as_ref().map(|r| format!("smtp; {}", one_line(r)))
    }
}

/// A reply on one line: `550 5.1.1 first line second line`.
fn one_line(reply: &Reply) -> String {
    let mut out = reply.code.to_string();
    if let Some(e) = reply.enhanced {
        out.push_str(&format!(" {e}"));
    }
    for line in reply.lines.iter().filter(|l| !l.is_empty()) {
        out.push(' ');
        out.push_str(line);
    }
    out
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reply {
            Some(reply) => write!(f, "{} at {}: server said {}", self.status, self.phase, one_line(reply)),
            None => write!(f, "{} at {}: {}", self.status, self.phase, self.reason),
        }
    }
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientOutcome {
    /// The server took responsibility for the message (the final reply to DATA, 2xx).
    Delivered(Reply),
    /// Try again later (4xx, or a failure on our side that may pass).
    Temporary(Failure),
    /// Give up and bounce (5xx, or a need the next hop cannot meet).
    Permanent(Failure),
}

impl RecipientOutcome {
    /// True for [`RecipientOutcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, RecipientOutcome::Delivered(_))
    }

    /// True for [`RecipientOutcome::Permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, RecipientOutcome::Permanent(_))
    }

    /// The failure, unless delivered.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            RecipientOutcome::Delivered(_) => None,
            RecipientOutcome::Temporary(f) | RecipientOutcome::Permanent(f) => Some(f),
        }
    }

    pub(crate) fn failed(failure: Failure, permanent: bool) -> RecipientOutcome {
        if permanent { RecipientOutcome::Permanent(failure) } else { RecipientOutcome::Temporary(failure) }
    }
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Each recipient has its own result, in the job's order. Given once DATA was answered,
    /// or when the recipients' replies differ (some refused, the rest failed later).
    Recipients(Vec<RecipientOutcome>),
    /// The job failed temporarily as a whole, before any recipient was refused: the same
    /// for every recipient. When `phase.is_session_setup()`, it is the host that failed.
    Temporary(Failure),
    /// The job failed permanently as a whole (554 greeting, MAIL refused with 5xx, size or
    /// body needs the next hop cannot meet).
    Permanent(Failure),
}

impl Outcome {
    /// One result per recipient, for a job of `count` recipients.
    pub fn into_recipients(self, count: usize) -> Vec<RecipientOutcome> {
        match self {
            Outcome::Recipients(all) => all,
            Outcome::Temporary(f) => vec![RecipientOutcome::Temporary(f); count],
            Outcome::Permanent(f) => vec![RecipientOutcome::Permanent(f); count],
        }
    }

    /// The whole-job failure, if this is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Recipients(_) => None,
            Outcome::Temporary(f) | Outcome::Permanent(f) => Some(f),
        }
    }

    pub(crate) fn failed(failure: Failure, permanent: bool) -> Outcome {
        if permanent { Outcome::Permanent(failure) } else { Outcome::Temporary(failure) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_severity_and_keeps_the_servers_detail() {
        let r = Reply::new(550, Enhanced(5, 1, 1), "No such user");
        let f = Failure::remote(Phase::Rcpt, FailureKind::Refused, r.clone(), true);
        assert_eq!(f.status, Enhanced(5, 1, 1));
        assert_eq!(f.reason, "No such user");
        let f = Failure::remote(Phase::StartTls, FailureKind::Policy, r, false);
        assert_eq!(f.status, Enhanced(4, 1, 1));
        let plain = Reply::plain(451, vec!["later".into()]);
        assert_eq!(Failure::remote(Phase::Mail, FailureKind::Refused, plain, false).status, Enhanced(4, 0, 0));
    }

    #[test]
    fn diagnostic_code_and_display() {
        let r = Reply { code: 550, enhanced: Some(Enhanced(5, 7, 1)), lines: vec!["Relay".into(), "denied".into()] };
        let f = Failure::remote(Phase::Rcpt, FailureKind::Refused, r, true);
        assert_eq!(f.diagnostic_code().as_deref(), Some("smtp; 550 5.7.1 Relay denied"));
        assert_eq!(f.to_string(), "5.7.1 at RCPT TO: server said 550 5.7.1 Relay denied");
        let f = Failure::local(Phase::Mail, FailureKind::Unsupported, Enhanced(5, 3, 4), "too big");
        assert_eq!(f.diagnostic_code(), None);
        assert_eq!(f.to_string(), "5.3.4 at MAIL FROM: too big");
        let bare = Failure::remote(Phase::Rcpt, FailureKind::Refused, Reply::plain(550, vec![String::new()]), true);
        assert_eq!(bare.diagnostic_code().as_deref(), Some("smtp; 550"));
    }

    #[test]
    fn whole_job_outcomes_expand_per_recipient() {
        let f = Failure::local(Phase::Mail, FailureKind::Unsupported, Enhanced(5, 6, 3), "8bit");
        let all = Outcome::failed(f.clone(), true).into_recipients(2);
        assert_eq!(all, vec![RecipientOutcome::Permanent(f.clone()); 2]);
        assert!(all[0].is_permanent() && !all[0].is_delivered());
        assert_eq!(all[0].failure(), Some(&f));
        assert_eq!(Outcome::failed(f.clone(), false).failure(), Some(&f));
        let ok = RecipientOutcome::Delivered(Reply::new(250, Enhanced(2, 0, 0), "ok"));
        assert_eq!(ok.failure(), None);
        assert_eq!(Outcome::Recipients(vec![ok.clone()]).into_recipients(5), vec![ok]);
    }
}
