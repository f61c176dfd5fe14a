//! Local delivery over LMTP (`[delivery] method = "lmtp"`): the due local recipients of one
//! message in one LMTP transaction, each recipient's own reply mapped to its [`Outcome`]
//! (RFC 2033 §4.2): 2xx delivered, 4xx deferred on the queue's schedule, 5xx bounced.

use crate::ctx::Ctx;
use crate::outcome::{Failure, Outcome};
use crate::remote::{from_path, read_body};
use dakiya_outbound::Lmtp;
use dakiya_proto::Enhanced;
use dakiya_proto::address::parse_mailbox;
use dakiya_proto::client::{Job, JobRecipient, RecipientOutcome};
use dakiya_proto::logtext::Esc;
use dakiya_spool::{QueueId, QueuedMessage};

/// Delivers the local recipients `rcpts` of `m` (indices into its envelope) through `lmtp`;
/// returns each one's outcome.
pub async fn deliver(ctx: &Ctx, lmtp: &Lmtp, m: &QueuedMessage, rcpts: &[usize]) -> Vec<(usize, Outcome)> {
    if rcpts.is_empty() {
        return Vec::new();
    }
    let id = &m.envelope.id;
    // No Return-Path or Delivered-To here: the LMTP server adds them at final delivery.
    let body = match read_body(ctx, id, m.envelope.prepend.clone().unwrap_or_default()).await {
        Ok(body) => body,
        Err(error) => return rcpts.iter().map(|&i| (i, temporary(Enhanced(4, 3, 0), &error))).collect(),
    };
    let mut outcomes = Vec::new();
    let mut job = Job::new(from_path(&m.envelope.sender), []);
    let mut sent = Vec::new();
    for &i in rcpts {
        let rcpt = &m.envelope.recipients[i];
        // The mailbox the address resolved to (an alias's target), as the LMTP server's
        // userdb knows it: `mailbox@domain`.
        let address = match &rcpt.mailbox {
            Some((domain, mailbox)) => format!("{mailbox}@{domain}"),
            None => rcpt.address.clone(),
        };
        match parse_mailbox(&address) {
            Ok(mailbox) => {
                job.recipients.push(JobRecipient { mailbox, notify: None, orcpt: None });
                sent.push(i);
            }
            Err(e) => outcomes.push((i, permanent(Enhanced(5, 1, 3), &format!("invalid mailbox {address}: {e}")))),
        }
    }
    job.size = Some(body.len() as u64);
    job.eight_bit = body.iter().any(|&b| b >= 0x80);
    job.smtputf8 = m.envelope.smtputf8;
    let results = lmtp.deliver(&job, &body).await;
    for (i, result) in sent.into_iter().zip(results) {
        log(id, &m.envelope.recipients[i].address, lmtp, &result);
        outcomes.push((i, outcome(&result)));
    }
    outcomes
}

/// One recipient's LMTP result as a queue [`Outcome`]. The server's status and reply are
/// kept for the DSN (`Diagnostic-Code: smtp; 452 4.2.2 ...`).
pub fn outcome(result: &RecipientOutcome) -> Outcome {
    let failure = |f: &dakiya_proto::client::Failure| Failure {
        error: f.to_string(),
        status: f.status,
        remote_mta: None,
        diagnostic: f.diagnostic_code(),
    };
    match result {
        RecipientOutcome::Delivered(_) => Outcome::Delivered,
        RecipientOutcome::Permanent(f) => Outcome::Permanent(failure(f)),
        RecipientOutcome::Temporary(f) => Outcome::Temporary(failure(f)),
        other => temporary(Enhanced(4, 0, 0), &format!("unexpected LMTP result {other:?}")),
    }
}

fn temporary(status: Enhanced, error: &str) -> Outcome {
    Outcome::Temporary(Failure::local(status, error))
}

fn permanent(status: Enhanced, error: &str) -> Outcome {
    Outcome::Permanent(Failure::local(status, error))
}

fn log(id: &QueueId, rcpt: &str, lmtp: &Lmtp, result: &RecipientOutcome) {
    let via = lmtp.target().to_string();
    match result {
        RecipientOutcome::Delivered(reply) => {
            let reply = reply.lines.join(" ");
            tracing::info!(queue_id = %id, rcpt = %Esc(rcpt), result = %"delivered", via = %Esc(&via), reply = %Esc(&reply), "delivered");
        }
        RecipientOutcome::Permanent(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"failed", via = %Esc(&via), error = %Esc(&f.to_string()), "delivered");
        }
        RecipientOutcome::Temporary(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"deferred", via = %Esc(&via), error = %Esc(&f.to_string()), "delivered");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_proto::Reply;
    use dakiya_proto::client::{FailureKind, Phase};

    fn refused(code: u16, status: Enhanced, text: &str) -> dakiya_proto::client::Failure {
        dakiya_proto::client::Failure {
            phase: Phase::DataTermination,
            kind: FailureKind::Refused,
            status,
            reply: Some(Reply::new(code, status, text)),
            reason: text.into(),
        }
    }

    #[test]
    fn each_reply_maps_on_its_own() {
        let ok = RecipientOutcome::Delivered(Reply::new(250, Enhanced(2, 0, 0), "saved"));
        assert_eq!(outcome(&ok), Outcome::Delivered);
        assert_eq!(outcome(&ok).success_action(), Some(dakiya_dsn::Action::Delivered));
        let full = RecipientOutcome::Temporary(refused(452, Enhanced(4, 2, 2), "Quota exceeded"));
        let Outcome::Temporary(f) = outcome(&full) else { panic!("not temporary") };
        assert_eq!(f.status, Enhanced(4, 2, 2));
        assert_eq!(f.diagnostic.as_deref(), Some("smtp; 452 4.2.2 Quota exceeded"));
        let gone = RecipientOutcome::Permanent(refused(550, Enhanced(5, 1, 1), "no such user"));
        let Outcome::Permanent(f) = outcome(&gone) else { panic!("not permanent") };
        assert_eq!(f.status, Enhanced(5, 1, 1));
    }
}
