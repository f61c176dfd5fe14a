//! Remote delivery of one message: one SMTP job per destination domain, all at once, each
//! recipient's result mapped to an [`Outcome`].

use crate::ctx::Ctx;
use crate::history::Via;
use crate::outcome::{Failure, Outcome};
use dakiya_outbound::RcptResult;
use dakiya_proto::Enhanced;
use dakiya_proto::address::{Mailbox, ReversePath, parse_mailbox};
use dakiya_proto::client::{Job, JobRecipient, RecipientOutcome};
use dakiya_proto::logtext::Esc;
use dakiya_spool::{QueueId, QueuedMessage};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

/// Delivers recipients `remote` of `m` (indices into its envelope) and returns each one's
/// outcome and the next hop that gave it, in no particular order. A recipient whose job's task panicked is left out: it
/// stays as it was and is retried.
pub(crate) async fn deliver(ctx: &Ctx, m: &QueuedMessage, remote: &[usize]) -> Vec<(usize, Outcome, Via)> {
    let id = &m.envelope.id;
    let body = match read_body(ctx, id, m.envelope.prepend.clone().unwrap_or_default()).await {
        Ok(body) => body,
        Err(error) => return defer_all(id, remote, &error),
    };
    let from = from_path(&m.envelope.sender);
    let mut outcomes = Vec::new();
    let mut groups: BTreeMap<String, Vec<(usize, Mailbox)>> = BTreeMap::new();
    for &i in remote {
        let address = &m.envelope.recipients[i].address;
        match parse_mailbox(address) {
            Ok(mailbox) => groups.entry(mailbox.domain.to_ascii_lowercase()).or_default().push((i, mailbox)),
            Err(e) => {
                let error = format!("invalid recipient address {address}: {e}");
                outcomes.push((i, Outcome::Permanent(Failure::local(Enhanced(5, 1, 3), error)), Via::default()));
            }
        }
    }
    let eight_bit = body.iter().any(|&b| b >= 0x80);
    let mut tasks = tokio::task::JoinSet::new();
    for (domain, rcpts) in groups {
        let job = job(m, &from, &rcpts, &body, eight_bit);
        let (outbound, body) = (ctx.outbound.clone(), body.clone());
        let indices: Vec<usize> = rcpts.iter().map(|(i, _)| *i).collect();
        let metrics = ctx.metrics.clone();
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let results = outbound.deliver(&domain, &job, body).await;
            metrics.outbound_attempt(started.elapsed());
            (indices, results)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((indices, results)) = joined else { continue };
        for (i, result) in indices.into_iter().zip(results) {
            log(id, &m.envelope.recipients[i].address, &result);
            outcomes.push((i, Outcome::from_remote(&result), via(&result)));
        }
    }
    outcomes
}

/// The envelope sender as a reverse path (empty: the null sender).
pub(crate) fn from_path(sender: &str) -> ReversePath {
    if sender.is_empty() {
        return ReversePath::Null;
    }
    match parse_mailbox(sender) {
        Ok(m) => ReversePath::Mailbox(m),
        // Accepted by our own parser at MAIL time, so this cannot happen; be safe anyway.
        Err(_) => ReversePath::Null,
    }
}

/// The message as sent: the header fields decided at the end of DATA (Authentication-Results,
/// DKIM, ARC) on top, as for local delivery, then the stored message.
pub(crate) async fn read_body(ctx: &Ctx, id: &QueueId, prepend: String) -> Result<Arc<[u8]>, String> {
    let (spool, id) = (ctx.spool.clone(), id.clone());
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut body = spool.body(&id).map_err(std::io::Error::other)?;
        let mut data = prepend.into_bytes();
        data.reserve(body.len() as usize);
        body.read_to_end(&mut data)?;
        Ok(data)
    })
    .await;
    match read {
        Ok(Ok(data)) => Ok(data.into()),
        Ok(Err(e)) => Err(format!("cannot read the queued message: {e}")),
        Err(e) => Err(format!("cannot read the queued message: {e}")),
    }
}

/// Defers every due remote recipient with `error` (a problem on our side): 4.3.0.
fn defer_all(id: &QueueId, remote: &[usize], error: &str) -> Vec<(usize, Outcome, Via)> {
    tracing::warn!(queue_id = %id, error, "remote delivery deferred");
    remote.iter().map(|&i| (i, Outcome::Temporary(Failure::local(Enhanced(4, 3, 0), error)), Via::default())).collect()
}

/// The next hop that answered and, for a delivery, its reply (for the message history).
fn via(result: &RcptResult) -> Via {
    let reply = match &result.outcome {
        RecipientOutcome::Delivered(reply) => Some(format!("{} {}", reply.code, reply.lines.join(" "))),
        _ => None,
    };
    Via { local: false, hop: result.remote_mta.clone(), reply }
}

/// The SMTP job for recipients `rcpts` of `m`, with their DSN parameters (RFC 3461).
fn job(m: &QueuedMessage, from: &ReversePath, rcpts: &[(usize, Mailbox)], body: &[u8], eight_bit: bool) -> Job {
    let env = &m.envelope;
    Job {
        from: from.clone(),
        recipients: rcpts
            .iter()
            .map(|(i, mailbox)| {
                let r = &env.recipients[*i];
                JobRecipient {
                    mailbox: mailbox.clone(),
                    notify: r.notify,
                    orcpt: r.orcpt.as_deref().and_then(|o| o.split_once(';')).map(|(t, a)| (t.into(), a.into())),
                }
            })
            .collect(),
        size: Some(body.len() as u64),
        eight_bit,
        smtputf8: env.smtputf8,
        ret: env.dsn_ret,
        envid: env.dsn_envid.clone(),
        require_tls: env.require_tls,
        // RFC 8689 §5.1: with REQUIRETLS, the header field is ignored.
        tls_optional: !env.require_tls && dakiya_proto::client::tls_required_no(body),
    }
}

/// The log line of one remote recipient's result.
fn log(id: &QueueId, rcpt: &str, result: &RcptResult) {
    let mta = result.remote_mta.as_deref().unwrap_or("-");
    match &result.outcome {
        RecipientOutcome::Delivered(reply) => {
            let reply = reply.lines.join(" ");
            tracing::info!(queue_id = %id, rcpt = %Esc(rcpt), result = %"sent", relay = %Esc(mta), reply = %Esc(&reply), "delivered");
        }
        RecipientOutcome::Permanent(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"bounced", relay = %Esc(mta), error = %Esc(&f.to_string()), "delivered");
        }
        RecipientOutcome::Temporary(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"deferred", relay = %Esc(mta), error = %Esc(&f.to_string()), "delivered");
        }
        _ => {}
    }
}
