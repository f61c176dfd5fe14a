//! Local delivery: one copy of a queued message into a recipient's Maildir.

use crate::loops::count_received;
use crate::outcome::Outcome;
use crate::state::{RetryPolicy, Transition};
use dakiya_config::Config;
use dakiya_deliver::{CopyBuffers, DeliverError, Maildir, Pending, QuotaLimit, Staged};
use dakiya_proto::logtext::Esc;
use dakiya_spool::{Body, QueuedMessage, RcptState};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Open Maildirs, one per mailbox, shared by concurrent deliveries so that they share the
/// group-committed fsyncs of each `new/` directory.
const MAX_OPEN_MAILDIRS: usize = 512;

/// The Maildirs open for delivery, at most [`MAX_OPEN_MAILDIRS`] of them.
#[derive(Default)]
pub struct Mailboxes {
    open: Mutex<HashMap<(String, String), Arc<Maildir>>>,
}

impl Mailboxes {
    fn get(&self, cfg: &Config, domain: &str, mailbox: &str) -> Result<Arc<Maildir>, DeliverError> {
        let key = (domain.to_string(), mailbox.to_string());
        if let Some(md) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(md.clone());
        }
        let dir = cfg.maildir_path(domain, mailbox);
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

impl Mailboxes {
    /// `(requests, fsyncs)` of the `new/` directory of `mailbox` in `domain`, if it is open:
    /// how many copies asked for the fsync of their directory entry and how many fsyncs
    /// were made for them (rounds share one).
    pub fn dir_sync_stats(&self, domain: &str, mailbox: &str) -> Option<(u64, u64)> {
        let key = (domain.to_string(), mailbox.to_string());
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&key).map(|md| md.dir_sync_stats())
    }

    /// How many copies' files were fsynced in `mailbox` of `domain`, if it is open.
    pub fn file_sync_count(&self, domain: &str, mailbox: &str) -> Option<u64> {
        let key = (domain.to_string(), mailbox.to_string());
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&key).map(|md| md.file_sync_count())
    }
}

/// Whether `mailbox` in `domain` is known to be full: it has a quota and its `maildirsize`
/// already says the quota is used up. For RCPT (`452 4.2.2`, RFC 5321 §4.2.2 / RFC 3463
/// X.2.2); an unknown usage (no `maildirsize` yet) is not full — delivery decides then.
pub fn mailbox_full(cfg: &Config, domain: &str, mailbox: &str) -> bool {
    let Some(bytes) = cfg.quota_of(domain, mailbox) else { return false };
    let limit = QuotaLimit { bytes, messages: 0 };
    dakiya_deliver::maildirsize::peek(&cfg.maildir_path(domain, mailbox))
        .is_some_and(|size| dakiya_deliver::quota::is_full(size.usage, limit))
}

/// One local recipient: its address and its mailbox (domain, mailbox name).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The recipient address, for `Delivered-To:` and logs.
    pub address: &'a str,
    /// The local domain.
    pub domain: &'a str,
    /// The mailbox in that domain.
    pub mailbox: &'a str,
}

/// A copy written by [`write_copy`]: either already delivered (durable), or written and
/// waiting for the round's phases: its fsync ([`fsync_copy`]), its link into `new/`
/// ([`link_copy`]), then the round's fsync of that directory.
pub(crate) enum Written {
    /// Delivered: `new/` was fsynced for it (mailboxes with a quota are committed one by
    /// one, so that the next quota check sees this copy in `maildirsize`).
    Durable(PathBuf),
    /// Written, its writeback started; not in `new/` yet.
    Pending(Arc<Maildir>, Pending),
    /// In `new/`, not yet durable: [`Maildir::commit_staged`] decides.
    Staged(Arc<Maildir>, Staged),
}

/// The round's second phase for one copy: fsyncs a written copy's file. A failure makes
/// the copy a failed one (dropped: nothing left behind; retried like any temporary failure).
pub(crate) fn fsync_copy(copy: &mut Result<Written, DeliverError>) {
    if let Ok(Written::Pending(md, pending)) = copy
        && let Err(e) = md.fsync(pending)
    {
        *copy = Err(e);
    }
}

/// The round's third phase for one copy: links (renames) a written copy into `new/` (after
/// its fsync, which [`Maildir::link`] makes if [`fsync_copy`] did not). Any other copy is
/// left as it is.
pub(crate) fn link_copy(copy: &mut Result<Written, DeliverError>, hostname: &str, bufs: &mut CopyBuffers) {
    if !matches!(copy, Ok(Written::Pending(..))) {
        return;
    }
    let placeholder = Err(DeliverError::temporary("copy not linked"));
    if let Ok(Written::Pending(md, pending)) = std::mem::replace(copy, placeholder) {
        *copy = md.link(pending, hostname, bufs).map(|staged| Written::Staged(md, staged));
    }
}

/// Writes one copy into a local Maildir: `Return-Path:` and `Delivered-To:` on top of the
/// stored message. Not a delivery yet unless [`Written::Durable`]: the round fsyncs each
/// written copy, links it into `new/`, commits the staged copies, then settles each with
/// [`settle`].
pub(crate) fn write_copy(
    cfg: &Config,
    body: &mut Source,
    boxes: &Mailboxes,
    m: &QueuedMessage,
    target: Target,
    bufs: &mut CopyBuffers,
) -> Result<Written, DeliverError> {
    // RFC 5321 §4.4: Return-Path is added at final delivery; Delivered-To records which
    // mailbox this copy was for (and lets loops be detected).
    let mut prefix = format!("Return-Path: <{}>\r\nDelivered-To: {}\r\n", m.envelope.sender, target.address);
    // Authentication-Results, DKIM-Signature and ARC fields decided at the end of DATA.
    prefix.push_str(m.envelope.prepend.as_deref().unwrap_or(""));
    let md = boxes.get(cfg, target.domain, target.mailbox)?;
    let mut body = body.reader().map_err(|e| DeliverError::io("read message body", e))?;
    // Maildir++ quota (docs/dovecot.md): over it, deferred as 4.2.2 "mailbox full".
    let limit = cfg.quota_of(target.domain, target.mailbox).map(|bytes| QuotaLimit { bytes, messages: 0 });
    if limit.is_none() {
        // Written now, fsynced and linked with the round's other copies, so that one journal
        // commit covers them all (docs/maildir.md, "Delivery steps and durability").
        let pending = md.write_within(prefix.as_bytes(), &mut body, &cfg.hostname, None, bufs)?;
        return Ok(Written::Pending(md, pending));
    }
    let staged = md.stage_within(prefix.as_bytes(), &mut body, &cfg.hostname, limit, bufs)?;
    // Under a quota, committed at once, so that the next copy's check sees this one in
    // `maildirsize` (docs/maildir.md, "Delivery steps and durability": file, then `new/`).
    md.commit_staged(&[&staged]).map_err(|e| e.error)?;
    md.record_size(staged.size);
    Ok(Written::Durable(staged.path))
}

/// What came of one local copy once it is durable (or failed): the outcome and the
/// recipient's new state, logged; temporary failures are retried on the schedule until
/// `max_age`.
pub(crate) fn settle(
    cfg: &Config,
    m: &QueuedMessage,
    address: &str,
    result: Result<PathBuf, DeliverError>,
    previous: &RcptState,
    now: u64,
) -> (Outcome, RcptState) {
    let outcome = Outcome::from_local(result.as_ref().map(|_| ()));
    let policy = RetryPolicy::of(&cfg.delivery);
    let state = RcptState::after(previous, &outcome, now, m.envelope.received_at, &policy);
    log(m, address, &result, &outcome, &state, &policy);
    (outcome, state)
}

/// Bodies up to this size are read into memory once per delivery run, then copied from
/// there into every Maildir; larger ones are streamed from the spool for each copy.
const IN_MEMORY: u64 = 256 * 1024;

/// The body of the message a run delivers, read from the spool at most once when it is
/// small ([`IN_MEMORY`]).
pub struct Source {
    body: Body,
    /// The whole body, once read (small bodies only).
    bytes: Option<Vec<u8>>,
}

impl Source {
    /// The body of the message being delivered.
    pub fn new(body: Body) -> Source {
        Source { body, bytes: None }
    }

    /// The `Received:` fields of the message's header section (the loop check).
    pub fn count_received(&mut self) -> usize {
        match self.reader() {
            Ok(reader) => count_received(reader),
            Err(_) => 0,
        }
    }

    /// A reader of the whole body, from its start.
    fn reader(&mut self) -> std::io::Result<Box<dyn Read + '_>> {
        // The first run of a message just committed: the spool kept its bytes.
        if self.body.is_in_memory() {
            return Ok(Box::new(self.body.in_memory().unwrap_or_default()));
        }
        if self.body.len() > IN_MEMORY {
            self.body.rewind();
            return Ok(Box::new(&mut self.body));
        }
        if self.bytes.is_none() {
            let mut bytes = Vec::with_capacity(self.body.len() as usize);
            self.body.rewind();
            self.body.read_to_end(&mut bytes)?;
            self.bytes = Some(bytes);
        }
        Ok(Box::new(self.bytes.as_deref().unwrap_or_default()))
    }
}

fn log(
    m: &QueuedMessage,
    address: &str,
    result: &Result<PathBuf, DeliverError>,
    outcome: &Outcome,
    state: &RcptState,
    policy: &RetryPolicy,
) {
    let id = &m.envelope.id;
    let rcpt = Esc(address);
    match (result, outcome, state) {
        (Ok(path), _, _) => {
            tracing::info!(queue_id = %id, rcpt = %rcpt, result = %"delivered", file = %path.display(), "delivered");
        }
        (Err(e), Outcome::Permanent(_), _) => {
            tracing::warn!(queue_id = %id, rcpt = %rcpt, result = %"failed", error = %e, "delivered");
        }
        (Err(e), _, RcptState::Deferred { attempts, .. }) => {
            let (attempts, retry_in) = (*attempts, policy.delay(*attempts).as_secs());
            tracing::warn!(queue_id = %id, rcpt = %rcpt, result = %"deferred", attempts, retry_in, error = %e, "delivered");
        }
        (Err(e), _, _) => {
            tracing::warn!(queue_id = %id, rcpt = %rcpt, result = %"expired", error = %e, "delivered");
        }
    }
}
