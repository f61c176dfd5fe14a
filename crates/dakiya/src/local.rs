//! Local delivery: one copy of a queued message into a recipient's Maildir.

use dakiya_config::Config;
use dakiya_deliver::{FailureKind, Maildir};
use dakiya_proto::logtext::Esc;
use dakiya_spool::{Enhanced, FailureDetail, QueuedMessage, RcptState, Spool, next_retry_delay};
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

/// Delivers one copy into a local Maildir; `target` is (address, domain, mailbox). Returns the
/// recipient's new state; temporary failures are retried on the schedule until `max_age`.
pub fn deliver_one(
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
    let mut prefix = format!("Return-Path: <{}>\r\nDelivered-To: {address}\r\n", m.envelope.sender);
    // Authentication-Results, DKIM-Signature and ARC fields decided at the end of DATA.
    prefix.push_str(m.envelope.prepend.as_deref().unwrap_or(""));
    let result = boxes.get(cfg, domain, mailbox).and_then(|md| {
        let mut body = spool.body(id).map_err(dakiya_deliver::DeliverError::temporary)?;
        md.deliver(prefix.as_bytes(), &mut body, &cfg.hostname)
    });
    match result {
        Ok(path) => {
            tracing::info!(queue_id = %id, rcpt = %Esc(address), result = %"delivered", file = %path.display(), "delivered");
            RcptState::Delivered { at: now }
        }
        Err(e) if e.kind == FailureKind::Permanent => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(address), result = %"failed", error = %e, "delivered");
            let detail = FailureDetail::new(Enhanced(5, 2, 0));
            RcptState::Failed { at: now, error: e.to_string(), detail: Some(detail), notified: false }
        }
        Err(e) => {
            let attempts = match previous {
                RcptState::Deferred { attempts, .. } => attempts + 1,
                _ => 1,
            };
            if now.saturating_sub(m.envelope.received_at) > cfg.delivery.max_age.as_secs() {
                tracing::warn!(queue_id = %id, rcpt = %Esc(address), result = %"expired", error = %e, "delivered");
                return crate::delivery::expired(now, attempts, &e.to_string(), None);
            }
            let delay = next_retry_delay(attempts, &cfg.delivery.retry_schedule);
            let next_attempt = now + delay.as_secs().max(1);
            tracing::warn!(queue_id = %id, rcpt = %Esc(address), result = %"deferred", attempts, retry_in = delay.as_secs(), error = %e, "delivered");
            let detail = FailureDetail::new(Enhanced(4, 2, 0));
            let delay_notified = matches!(previous, RcptState::Deferred { delay_notified: true, .. });
            RcptState::Deferred { attempts, next_attempt, error: e.to_string(), detail: Some(detail), delay_notified }
        }
    }
}
