//! Delivery status notifications (RFC 3461, 3464): maps a message's recipient states into
//! `dakiya_dsn`'s input, builds the notice and queues it like any other message, from the
//! null reverse-path `<>` to the original sender (RFC 5321 §4.5.5). Which notices a run
//! calls for is the planner's decision (`plan.rs`); this file only carries one out.

use crate::ctx::Ctx;
use dakiya_config::Target;
use dakiya_dsn::{Action, DsnInput, Kind, RcptReport, Time, build_dsn};
use dakiya_spool::{BodyType, Enhanced, Envelope, Notify, QueueId, QueuedMessage, RcptState, Recipient};

/// Builds and queues one notice of `kind` about recipients `which` of `m` (index and the
/// action to report). `Ok(None)` when no notice can be sent at all (the sender's address
/// cannot receive mail, say: logged); `Err` when queueing failed and should be tried again.
pub(crate) fn send(
    ctx: &Ctx,
    m: &QueuedMessage,
    kind: Kind,
    which: &[(usize, Action)],
    states: &[RcptState],
    now: u64,
) -> Result<Option<QueueId>, String> {
    let env = &m.envelope;
    let cfg = &ctx.cfg;
    let retry_until = time(env.received_at + cfg.delivery.max_age.as_secs());
    let recipients = reports(m, which, states, now, retry_until);
    let from = format!("MAILER-DAEMON@{}", cfg.hostname);
    let mut original = ctx.spool.body(&env.id).map_err(|e| e.to_string())?;
    let built = build_dsn(DsnInput {
        kind,
        reporting_mta: &cfg.hostname,
        from: &from,
        original_sender: &env.sender,
        queue_id: env.id.as_str(),
        arrival_date: time(env.received_at),
        now: time(now),
        envid: env.dsn_envid.as_deref(),
        ret: env.dsn_ret,
        original: &mut original,
        return_limit: dakiya_dsn::DEFAULT_RETURN_LIMIT,
        recipients: &recipients,
    });
    let notice = match built {
        Ok(bytes) => bytes,
        Err(dakiya_dsn::DsnError::Io(e)) => return Err(format!("reading the original message: {e}")),
        Err(e) => {
            tracing::error!(queue_id = %env.id, error = %e, "cannot build a delivery status notification; none is sent");
            return Ok(None);
        }
    };
    let Some(targets) = sender_targets(ctx, env) else {
        return Ok(None);
    };
    let envelope = notice_envelope(ctx, m, targets, &notice, now);
    let mut writer = ctx.spool.writer(envelope.clone()).map_err(|e| e.to_string())?;
    writer.write(&notice).map_err(|e| e.to_string())?;
    let id = writer.commit().map_err(|e| e.to_string())?;
    crate::history::queued_notice(ctx, &envelope, &id, notice.len());
    Ok(Some(id))
}

/// Unix seconds as a DSN date.
fn time(secs: u64) -> Time {
    chrono::DateTime::from_timestamp(secs as i64, 0).unwrap_or_default().fixed_offset()
}

/// What the notice says about each of recipients `which` (index and action), from their
/// states' failure details.
fn reports(
    m: &QueuedMessage,
    which: &[(usize, Action)],
    states: &[RcptState],
    now: u64,
    retry_until: Time,
) -> Vec<RcptReport> {
    which
        .iter()
        .map(|&(i, action)| {
            let rcpt = &m.envelope.recipients[i];
            let (default_status, detail) = match &states[i] {
                RcptState::Failed { detail, .. } => (Enhanced(5, 0, 0), detail.as_ref()),
                RcptState::Deferred { detail, .. } => (Enhanced(4, 0, 0), detail.as_ref()),
                _ => (Enhanced(2, 0, 0), None),
            };
            RcptReport {
                final_recipient: rcpt.address.clone(),
                original_recipient: rcpt.orcpt.clone(),
                action,
                status: detail.map_or(default_status, |d| d.status),
                // Stored as `host [address]`; Remote-MTA names the host (RFC 3464 §2.3.5).
                remote_mta: detail
                    .and_then(|d| d.remote_mta.as_deref())
                    .map(|m| m.split(" [").next().unwrap_or(m).to_string()),
                diagnostic: detail.and_then(|d| d.diagnostic.clone()),
                last_attempt: Some(time(now)),
                will_retry_until: (action == Action::Delayed).then_some(retry_until),
            }
        })
        .collect()
}

/// The envelope of a notice about `m`: from `<>` to the sender's `targets`.
fn notice_envelope(ctx: &Ctx, m: &QueuedMessage, targets: Vec<Target>, notice: &[u8], now: u64) -> Envelope {
    let env = &m.envelope;
    let recipients = targets
        .into_iter()
        .map(|t| {
            let (address, mailbox) = match t {
                Target::Mailbox { domain, mailbox } => (format!("{mailbox}@{domain}"), Some((domain, mailbox))),
                Target::Remote { address } => (address, None),
            };
            // NOTIFY=NEVER: a notice about a notice is never sent (RFC 3461 §4.1, RFC 5321
            // §4.5.5); the null sender says so already.
            Recipient { address, original: env.sender.clone(), orcpt: None, notify: Some(Notify::NEVER), mailbox }
        })
        .collect();
    Envelope {
        id: ctx.spool.new_id(),
        received_at: now,
        sender: String::new(),
        client_ip: String::new(),
        helo: ctx.cfg.hostname.clone(),
        body: if notice.iter().any(|&b| b >= 0x80) { BodyType::EightBitMime } else { BodyType::SevenBit },
        smtputf8: env.smtputf8 || !env.sender.is_ascii(),
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        recipients,
        prepend: None,
    }
}

/// Where a notice to `sender` goes: its local mailbox(es), or the address itself when it is
/// in another domain. `None` (logged) when a local sender has no mailbox.
fn sender_targets(ctx: &Ctx, env: &Envelope) -> Option<Vec<Target>> {
    let sender = env.sender.as_str();
    let (local, domain) = sender.rsplit_once('@')?;
    let cfg = &ctx.cfg;
    if !cfg.is_local_domain(domain) {
        return Some(vec![Target::Remote { address: sender.to_string() }]);
    }
    let users = &ctx.users;
    match cfg.resolve_with(local, domain, &|addr| users.exists(addr)) {
        Ok(targets) if !targets.is_empty() => Some(targets),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(queue_id = %env.id, sender, error = %e, "the sender has no local mailbox; no delivery status notification is sent");
            None
        }
    }
}
