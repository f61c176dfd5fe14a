//! Copying the live messages of long-busy slots out into batch files, so that deferred mail
//! does not keep the slots busy (docs/spool-slots.md, "Slots kept busy by deferred mail").
//!
//! A slot is busy until the last message of its batch leaves the queue; a message deferred
//! at a remote host stays for days, and with one deferred message in every few rounds all the
//! slots are soon busy, and every round writes a batch file again. [`Spool::copy_out_slots`]
//! takes each slot whose batch has been busy for a while, writes its live messages (their
//! records as they are, and their current states) into a new batch file, makes that durable,
//! points the index at it and frees the slot, as the last removal would.
//!
//! What a crash leaves, step by step:
//! - before the renames into `queue/`: the copies are in `tmp/` (deleted at open); the slot
//!   is unchanged;
//! - the log renamed, not the batch: an orphan log, deleted at open; the slot is unchanged;
//! - both renamed, the `queue/` fsync done or not, the slot's zeros written or not: the same
//!   ids may be in the slot and in the batch file. Recovery reads the batch files first and
//!   skips, in a slot, every message a batch file holds: **the batch file wins**. Messages
//!   only ever move out of slots, never into one, and the batch file was complete and
//!   fsynced before the slot was freed; its log carries every state recorded since (appends
//!   look the message up again once they hold the batch's lock: `Spool::with_batch_of`).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::io_err;
use crate::format::{self, Extent, RECORD_PREFIX, ReadAt, SEALED_HEADER_LEN};
use crate::index::{BatchFile, MSG_EXT, STATUS_EXT};
use crate::openlog::OpenLog;
use crate::scan::{decode_err, read_log_if_any};
use crate::status::{self, STATUS_HEADER, StatusLog};
use crate::{QueueId, RcptState, Spool, SpoolError};

impl Spool {
    /// Copies out the live messages of every slot whose batch has been queued for at least
    /// `min_age` (since its commit, or since this spool was opened), each slot's into one new
    /// batch file, and frees those slots. Returns how many were freed. A slot that fails is
    /// left busy (logged); its messages stay where they are. Blocking file I/O: call it from a
    /// blocking thread, now and then (`dakiya serve` does every minute, for slots busy five
    /// minutes).
    pub fn copy_out_slots(&self, min_age: Duration) -> Result<usize, SpoolError> {
        // Nothing to look for while every slot is free (or there are none): no pass over the index.
        let stats = self.inner.slots.stats();
        if stats.free >= stats.slots {
            return Ok(0);
        }
        // One pass over the index: the busy slots old enough, with their messages.
        let mut busy: HashMap<usize, (Arc<BatchFile>, Vec<QueueId>)> = HashMap::new();
        let snapshot = self.inner.index().snapshot();
        for (id, loc) in snapshot {
            if loc.batch.slot.is_some() && loc.batch.since.elapsed() >= min_age {
                let key = Arc::as_ptr(&loc.batch) as usize;
                busy.entry(key).or_insert_with(|| (Arc::clone(&loc.batch), Vec::new())).1.push(id);
            }
        }
        let mut freed = 0;
        for (batch, ids) in busy.into_values() {
            let mut log = batch.lock();
            // Under the lock nothing is appended to the batch's log nor removed from it; the
            // messages still in it now are the ones to copy (a removal may have come first).
            let members: Vec<(QueueId, Extent)> = {
                let index = self.inner.index();
                let mut members: Vec<_> = ids
                    .into_iter()
                    .filter_map(|id| {
                        let loc = index.get(&id).filter(|loc| Arc::ptr_eq(&loc.batch, &batch))?;
                        Some((id, loc.extent))
                    })
                    .collect();
                if members.is_empty() || members.len() != index.live_count(&batch.name) {
                    continue;
                }
                members.sort_by_key(|(_, extent)| extent.env_off);
                members
            };
            match self.copy_out(&batch, members, &mut log) {
                Ok(()) => freed += 1,
                Err(e) => tracing::warn!(slot = ?batch.slot, error = %e, "spool: could not copy a slot's messages out"),
            }
        }
        Ok(freed)
    }

    /// Copies `members` (every live message of slot `batch`, in file order) into a new batch
    /// file named after the first, with their states, then frees the slot. `log` is the slot
    /// batch's lock, held.
    pub(crate) fn copy_out(
        &self,
        batch: &Arc<BatchFile>,
        members: Vec<(QueueId, Extent)>,
        log: &mut Option<OpenLog>,
    ) -> Result<(), SpoolError> {
        let Some(n) = batch.slot else { return Ok(()) };
        let file =
            self.inner.slots.file(n).ok_or_else(|| io_err("read", &batch.path)(std::io::ErrorKind::NotFound.into()))?;
        let states = match batch.may_have_log() {
            true => read_log_if_any(batch.log_path())?.unwrap_or_default(),
            false => StatusLog::default(),
        };
        let name = members[0].0.clone();
        if self.inner.index().foreign(&name).is_some() {
            return Err(SpoolError::IdInUse(name));
        }
        // The records as they are in the slot, and each message's current states.
        let mut records = Vec::new();
        let mut lines = Vec::new();
        let mut moved = Vec::with_capacity(members.len());
        let mut at = SEALED_HEADER_LEN as u64;
        for (id, extent) in &members {
            let start = extent.env_off - RECORD_PREFIX as u64;
            let len = extent.body_off + extent.body_len - start;
            let mut record = vec![
                0;
                usize::try_from(len).map_err(|_| io_err("read", &batch.path)(
                    std::io::ErrorKind::InvalidData.into()
                ))?
            ];
            ReadAt::read_exact_at(&*file, &mut record, start).map_err(io_err("read", &batch.path))?;
            let envelope = format::read_envelope(&*file, extent).map_err(|e| decode_err(e, &batch.path))?;
            let (now, _) = states.states(id, envelope.recipients.len(), false);
            for (rcpt, state) in now.iter().enumerate() {
                if !matches!(state, RcptState::Pending) {
                    lines.extend(status::encode_record(id, rcpt, state));
                }
            }
            if states.is_held(id) {
                lines.extend(status::encode_hold(id, true));
            }
            moved.push((id.clone(), Extent::of_record(at, extent.body_off - start, extent.body_len)));
            at += len;
            records.push(record);
        }
        let mut crc = crc32fast::Hasher::new();
        records.iter().for_each(|r| crc.update(r));
        let header = format::sealed_header(members.len(), crc.finalize());
        let (queue, tmp) = (&self.inner.queue, &self.inner.tmp);
        let (msg_path, log_path) =
            (queue.join(format!("{name}.{MSG_EXT}")), queue.join(format!("{name}.{STATUS_EXT}")));
        let (tmp_msg, tmp_log) = (tmp.join(format!("{name}.copy")), tmp.join(format!("{name}.copylog")));
        let written = (|| {
            write_synced(&tmp_msg, &[&header[..], &records.concat()].concat())?;
            if !lines.is_empty() {
                write_synced(&tmp_log, &[STATUS_HEADER, &lines].concat())?;
                // The log first: a crash before the batch's rename leaves an orphan log,
                // which open deletes, and the slot as it was.
                fs::rename(&tmp_log, &log_path).map_err(io_err("rename", &tmp_log))?;
            }
            fs::rename(&tmp_msg, &msg_path).map_err(io_err("rename", &tmp_msg))?;
            self.inner.sync_queue_dir()
        })();
        if let Err(e) = written {
            // Not known durable: the messages stay in the slot.
            for path in [&tmp_msg, &tmp_log, &msg_path, &log_path] {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        let copy = Arc::new(BatchFile::new(name, queue, members.len(), false));
        copy.has_log.store(!lines.is_empty(), Ordering::Release);
        copy.log_durable.store(true, Ordering::Release);
        self.inner.index().move_batch(batch, copy, moved);
        // The slot's batch now has no queued message: freed as by the last removal.
        self.free_slot(batch, n, log)?;
        self.inner.slots.copied_out();
        tracing::info!(
            slot = n,
            messages = members.len(),
            "spool: copied a long-busy slot's messages into a batch file"
        );
        Ok(())
    }
}

/// Writes `bytes` into a new file at `path` (mode 0600) and fsyncs it.
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err("create", path))?;
    file.write_all(bytes).map_err(io_err("write", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}
