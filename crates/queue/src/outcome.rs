//! [`Outcome`]: what one delivery attempt to one recipient came to, the same type for local
//! (Maildir) and remote (SMTP) delivery, and the two small mappings into it.

use dakiya_deliver::{DeliverError, FailureKind};
use dakiya_dsn::Action;
use dakiya_outbound::RcptResult;
use dakiya_proto::Enhanced;
use dakiya_proto::client::RecipientOutcome;
use dakiya_spool::FailureDetail;

/// RFC 3463 §3.3 X.2.2 "mailbox full", as a transient failure: retried, and bounced as
/// 5.2.2 when the message expires ([`crate::state`]).
pub const MAILBOX_FULL: Enhanced = Enhanced(4, 2, 2);

/// What one delivery attempt to one recipient came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered into the recipient's mailbox here.
    Delivered,
    /// Handed to a next hop, which took responsibility. `next_hop_dsn`: it offered DSN
    /// (RFC 3461), so it was handed NOTIFY and reports success itself; without it a success
    /// notice is ours to send, as `relayed` (RFC 3461 §6.2.2).
    Relayed {
        /// The next hop offered the DSN extension.
        next_hop_dsn: bool,
    },
    /// May succeed later: retried on the schedule until the message is too old.
    Temporary(Failure),
    /// Retrying cannot help: the recipient fails now.
    Permanent(Failure),
}

/// Why an attempt failed, with what a delivery status notification reports about it
/// (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error in words, for logs and the recipient's state.
    pub error: String,
    /// The enhanced status code (RFC 3463).
    pub status: Enhanced,
    /// The remote MTA that answered, as `host [address]`, when one did.
    pub remote_mta: Option<String>,
    /// The remote reply as `smtp; 550 5.1.1 text` (`Diagnostic-Code`), when there was one.
    pub diagnostic: Option<String>,
}

impl Failure {
    /// A failure on our side or before any server answered: no remote MTA, no diagnostic.
    pub fn local(status: Enhanced, error: impl Into<String>) -> Failure {
        Failure { error: error.into(), status, remote_mta: None, diagnostic: None }
    }

    /// The spool's record of this failure. The one place where the typed status becomes
    /// the spool's text.
    pub fn detail(&self) -> FailureDetail {
        FailureDetail { status: self.status, remote_mta: self.remote_mta.clone(), diagnostic: self.diagnostic.clone() }
    }
}

impl Outcome {
    /// The action a success notice reports for this outcome, if it is a success that is ours
    /// to report: `delivered` here, or `relayed` to a next hop without DSN.
    pub fn success_action(&self) -> Option<Action> {
        match self {
            Outcome::Delivered => Some(Action::Delivered),
            Outcome::Relayed { next_hop_dsn: false } => Some(Action::Relayed),
            _ => None,
        }
    }

    /// A local delivery's result: `Ok` delivered; a permanent failure is 5.2.0 and a temporary
    /// one 4.2.0, "mailbox status" (RFC 3463 §3.3); over quota is 4.2.2, "mailbox full".
    pub fn from_local(result: Result<(), &DeliverError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Delivered,
            Err(e) if e.is_mailbox_full() => Outcome::Temporary(Failure::local(MAILBOX_FULL, e.to_string())),
            Err(e) if e.kind == FailureKind::Permanent => {
                Outcome::Permanent(Failure::local(Enhanced(5, 2, 0), e.to_string()))
            }
            Err(e) => Outcome::Temporary(Failure::local(Enhanced(4, 2, 0), e.to_string())),
        }
    }

    /// A remote recipient's result from the outbound service.
    pub fn from_remote(result: &RcptResult) -> Outcome {
        let failure = |f: &dakiya_proto::client::Failure| Failure {
            error: f.to_string(),
            status: f.status,
            remote_mta: result.remote_mta.clone(),
            // A next hop refused by our own TLS policy (DANE, MTA-STS, REQUIRETLS) gave no
            // reply to quote: the DSN gives our reason instead (RFC 3464 §2.3.6 allows
            // diagnostic types besides "smtp").
            diagnostic: f.diagnostic_code().or_else(|| {
                (f.kind == dakiya_proto::client::FailureKind::Policy && f.reply.is_none())
                    .then(|| format!("x-dakiya; {}", f.reason))
            }),
        };
        match &result.outcome {
            RecipientOutcome::Delivered(_) => Outcome::Relayed { next_hop_dsn: result.next_hop_dsn },
            RecipientOutcome::Permanent(f) => Outcome::Permanent(failure(f)),
            RecipientOutcome::Temporary(f) => Outcome::Temporary(failure(f)),
            other => {
                Outcome::Temporary(Failure::local(Enhanced(4, 0, 0), format!("unexpected delivery result {other:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_proto::Reply;
    use dakiya_proto::client::{FailureKind as ClientKind, Phase};

    #[test]
    fn local_results() {
        assert_eq!(Outcome::from_local(Ok(())), Outcome::Delivered);
        let p = Outcome::from_local(Err(&DeliverError::permanent("no such mailbox")));
        assert_eq!(p, Outcome::Permanent(Failure::local(Enhanced(5, 2, 0), "no such mailbox")));
        let t = Outcome::from_local(Err(&DeliverError::temporary("disk full")));
        assert_eq!(t, Outcome::Temporary(Failure::local(Enhanced(4, 2, 0), "disk full")));
        let full = Outcome::from_local(Err(&DeliverError::mailbox_full("mailbox full")));
        assert_eq!(full, Outcome::Temporary(Failure::local(Enhanced(4, 2, 2), "mailbox full")));
    }

    fn remote(outcome: RecipientOutcome, next_hop_dsn: bool) -> RcptResult {
        RcptResult { outcome, remote_mta: Some("mx.example.net [192.0.2.1]".into()), next_hop_dsn }
    }

    #[test]
    fn remote_results_keep_the_status_mta_and_diagnostic() {
        let ok = Reply::new(250, Enhanced(2, 0, 0), "ok");
        let delivered = remote(RecipientOutcome::Delivered(ok.clone()), true);
        assert_eq!(Outcome::from_remote(&delivered), Outcome::Relayed { next_hop_dsn: true });
        assert_eq!(Outcome::from_remote(&delivered).success_action(), None, "the next hop reports it");
        let relayed = remote(RecipientOutcome::Delivered(ok), false);
        assert_eq!(Outcome::from_remote(&relayed).success_action(), Some(Action::Relayed));
        let refused = dakiya_proto::client::Failure {
            phase: Phase::Rcpt,
            kind: ClientKind::Refused,
            status: Enhanced(5, 1, 1),
            reply: Some(Reply::new(550, Enhanced(5, 1, 1), "no such user")),
            reason: "no such user".into(),
        };
        let Outcome::Permanent(f) = Outcome::from_remote(&remote(RecipientOutcome::Permanent(refused.clone()), true))
        else {
            panic!("not permanent")
        };
        assert_eq!(f.status, Enhanced(5, 1, 1));
        assert_eq!(f.error, refused.to_string());
        assert_eq!(f.diagnostic.as_deref(), Some("smtp; 550 5.1.1 no such user"));
        let d = f.detail();
        assert_eq!((d.status, d.remote_mta.as_deref()), (Enhanced(5, 1, 1), Some("mx.example.net [192.0.2.1]")));
        let later = remote(RecipientOutcome::Temporary(refused), false);
        assert!(matches!(Outcome::from_remote(&later), Outcome::Temporary(_)));
    }

    /// A hop refused by our TLS policy (no reply to quote) still tells the DSN why.
    #[test]
    fn policy_refusals_without_a_reply_carry_our_reason() {
        let refused = dakiya_proto::client::Failure {
            phase: Phase::Idle,
            kind: ClientKind::Policy,
            status: Enhanced(5, 7, 30),
            reply: None,
            reason: "REQUIRETLS: not authenticated".into(),
        };
        let Outcome::Permanent(f) = Outcome::from_remote(&remote(RecipientOutcome::Permanent(refused), false)) else {
            panic!("not permanent")
        };
        assert_eq!(f.diagnostic.as_deref(), Some("x-dakiya; REQUIRETLS: not authenticated"));
    }

    #[test]
    fn success_actions() {
        assert_eq!(Outcome::Delivered.success_action(), Some(Action::Delivered));
        let f = Failure::local(Enhanced(4, 0, 0), "x");
        assert_eq!(Outcome::Temporary(f.clone()).success_action(), None);
        assert_eq!(Outcome::Permanent(f).success_action(), None);
    }
}
