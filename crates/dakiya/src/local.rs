//! Local delivery of one queued message into its recipients' Maildirs, recording each
//! recipient's outcome.

use dakiya_config::Config;
use dakiya_deliver::{FailureKind, Maildir};
use dakiya_spool::{QueueId, QueuedMessage, RcptState, Spool, next_retry_delay};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open Maildirs, one per mailbox, shared by concurrent deliveries so that they share the
/// group-committed fsyncs of each `new/` directory.
const MAX_OPEN_MAILDIRS: usize = 512;

#[derive(Default)]
pub struct Mailboxes {
    open: Mutex<HashMap<(String, String), Arc<Maildir>>>,
}

impl Mailboxes {
    fn get(&self, cfg: &Config, domain: &str, mailbox: &str) -> Result<Arc<Maildir>, dakiya_deliver::DeliverError> {
        let key = (domain.to_string(), mailbox.to_string());
        if let Some(md) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(md.clone());
        }
        let dir = cfg.data_dir.join("mail").join(domain).join(mailbox);
        let md = Arc::new(Maildir::open_or_create(&dir)?);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Each entry holds a directory descriptor; with `any_mailbox` the set of mailboxes is
        // chosen by senders, so keep the cache bounded.
        if open.len() >= MAX_OPEN_MAILDIRS {
            open.clear();
        }
        open.insert(key, md.clone());
        Ok(md)
    }
}

/// What a delivery run leaves for the scheduler.
pub struct Outcome {
    pub id: QueueId,
    /// When to try again (unix seconds), if some local recipient was deferred.
    pub retry_at: Option<u64>,
}

/// The earliest time a local recipient of `m` is due, if any is still to do. Remote
/// recipients wait for outbound delivery, which this version does not have yet.
pub fn next_attempt(m: &QueuedMessage) -> Option<u64> {
    m.envelope
        .recipients
        .iter()
        .zip(&m.states)
        .filter(|(r, _)| r.mailbox.is_some())
        .filter_map(|(_, s)| match s {
            RcptState::Pending => Some(0),
            RcptState::Deferred { next_attempt, .. } => Some(*next_attempt),
            _ => None,
        })
        .min()
}

/// Delivers every due local recipient of message `id`.
///
/// Durability: a recipient's Maildir file is fsynced before its state is recorded, and the
/// message leaves the spool only when every recipient is delivered. When all recipients
/// succeed in one run no per-recipient records are written (the message file is simply
/// removed); a crash in the middle of such a run can therefore deliver a copy twice, never
/// zero times — at-least-once, as with every MTA.
pub fn deliver_message(cfg: &Config, spool: &Spool, boxes: &Mailboxes, id: &QueueId) -> Outcome {
    let now = crate::envelope::now();
    let m = match spool.load(id) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(queue_id = %id, error = %e, "cannot load queued message; will retry");
            return Outcome { id: id.clone(), retry_at: Some(now + 60) };
        }
    };
    let mut states = m.states.clone();
    let mut changed = Vec::new();
    for (i, rcpt) in m.envelope.recipients.iter().enumerate() {
        let Some((domain, mailbox)) = &rcpt.mailbox else {
            if matches!(states[i], RcptState::Pending) {
                tracing::info!(queue_id = %id, rcpt = %rcpt.address, result = %"queued", "remote recipient waits for outbound delivery");
            }
            continue;
        };
        let due = match &states[i] {
            RcptState::Pending => true,
            RcptState::Deferred { next_attempt, .. } => *next_attempt <= now,
            _ => false,
        };
        if !due {
            continue;
        }
        let target = (rcpt.address.as_str(), domain.as_str(), mailbox.as_str());
        let state = deliver_one(cfg, spool, boxes, &m, target, &states[i], now);
        changed.push(i);
        states[i] = state;
    }
    if states.iter().all(|s| matches!(s, RcptState::Delivered { .. })) {
        if let Err(e) = spool.remove(id) {
            tracing::warn!(queue_id = %id, error = %e, "cannot remove delivered message from the spool");
        }
        return Outcome { id: id.clone(), retry_at: None };
    }
    for i in changed {
        if let Err(e) = spool.record(id, i, &states[i]) {
            tracing::error!(queue_id = %id, error = %e, "cannot record delivery state; the recipient may get a second copy");
        }
    }
    let retry_at = next_attempt(&QueuedMessage { states, ..m });
    Outcome { id: id.clone(), retry_at }
}

/// Delivers one copy; `target` is (address, domain, mailbox).
fn deliver_one(
    cfg: &Config,
    spool: &Spool,
    boxes: &Mailboxes,
    m: &QueuedMessage,
    target: (&str, &str, &str),
    previous: &RcptState,
    now: u64,
) -> RcptState {
    let (address, domain, mailbox) = target;
    let id = &m.envelope.id;
    // RFC 5321 §4.4: Return-Path is added at final delivery; Delivered-To records which
    // mailbox this copy was for (and lets loops be detected).
    let prefix = format!("Return-Path: <{}>\r\nDelivered-To: {address}\r\n", m.envelope.sender);
    let result = boxes.get(cfg, domain, mailbox).and_then(|md| {
        let mut body = spool.body(id).map_err(dakiya_deliver::DeliverError::temporary)?;
        md.deliver(prefix.as_bytes(), &mut body, &cfg.hostname)
    });
    match result {
        Ok(path) => {
            tracing::info!(queue_id = %id, rcpt = %address, result = %"delivered", file = %path.display(), "delivered");
            RcptState::Delivered { at: now }
        }
        Err(e) if e.kind == FailureKind::Permanent => {
            tracing::warn!(queue_id = %id, rcpt = %address, result = %"failed", error = %e, "delivered");
            RcptState::Failed { at: now, error: e.to_string(), detail: None, notified: false }
        }
        Err(e) => {
            let attempts = match previous {
                RcptState::Deferred { attempts, .. } => attempts + 1,
                _ => 1,
            };
            if now.saturating_sub(m.envelope.received_at) > cfg.delivery.max_age.as_secs() {
                tracing::warn!(queue_id = %id, rcpt = %address, result = %"expired", error = %e, "delivered");
                return RcptState::Failed { at: now, error: format!("expired after {attempts} attempts: {e}"), detail: None, notified: false };
            }
            let delay = next_retry_delay(attempts, &cfg.delivery.retry_schedule);
            let next_attempt = now + delay.as_secs().max(1);
            tracing::warn!(queue_id = %id, rcpt = %address, result = %"deferred", attempts, retry_in = delay.as_secs(), error = %e, "delivered");
            RcptState::Deferred { attempts, next_attempt, error: e.to_string(), detail: None, delay_notified: false }
        }
    }
}
