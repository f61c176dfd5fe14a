//! Opening the spool, recording delivery state, removing messages.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::append::append;
use crate::commit::{CommitStats, Committer};
use crate::error::io_err;
use crate::index::BatchFile;
use crate::index::{MSG_EXT, STATUS_EXT};
use crate::inner::Inner;
use crate::openlog::OpenLog;
use crate::slots::{self, SLOTS_MAX, slot_number};
use crate::{Envelope, GroupSync, LatencyStats, MessageWriter, QueueId, RcptState, RecentStats, SlotStats, SpoolError};
use crate::{pool, status};

/// Subdirectory for files being written and the pool of free files; at
/// open everything but the pool's files is deleted.
const TMP_DIR: &str = "tmp";
/// Subdirectory for committed batch files and their status logs.
const QUEUE_DIR: &str = "queue";
/// Subdirectory for files recovery could not decode; never cleaned.
pub(crate) const CORRUPT_DIR: &str = "corrupt";
const LOCK_FILE: &str = "lock";

/// How a spool is opened ([`Spool::open_with`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SpoolOptions {
    /// Slots (batch files written in place, docs/spool-slots.md) made at most; 0 writes every
    /// round into a new batch file (slots found at open are still read, their messages
    /// delivered, but not written again).
    pub slots: usize,
}

impl Default for SpoolOptions {
    fn default() -> SpoolOptions {
        SpoolOptions { slots: SLOTS_MAX }
    }
}

impl SpoolOptions {
    /// Options with at most `slots` slots.
    pub fn with_slots(slots: usize) -> SpoolOptions {
        SpoolOptions { slots }
    }
}

/// The durable message queue. Cheap to clone; `Send + Sync`.
///
/// Only one `Spool` may have a directory open at a time: [`Spool::open`]
/// takes an exclusive lock, because it deletes leftover temporary files that
/// would belong to another live writer, and because the in-memory index of
/// queued messages must be the only one.
#[derive(Clone)]
pub struct Spool {
    pub(crate) inner: Arc<Inner>,
    /// Group commit of messages into batch files.
    committer: Arc<Committer>,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool in `dir`, locks it, deletes
    /// temporary files left by a crash (keeping its pool of free files), and
    /// reads the queue into memory: status logs whose batch is gone and
    /// batches whose messages are all done are deleted; undecodable files
    /// are noted for [`Spool::recover`].
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(dir, SpoolOptions::default())
    }

    /// [`Spool::open`] with options other than the defaults.
    pub fn open_with(dir: &Path, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in [TMP_DIR, QUEUE_DIR, CORRUPT_DIR] {
            let path = dir.join(sub);
            builder.create(&path).map_err(io_err("mkdir", &path))?;
        }
        let lock = lock(&dir.join(LOCK_FILE))?;
        // Make the directories themselves durable (once per open). The
        // parent may not be ours to open (e.g. mode 0711): best effort.
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(e) = sync_dir(parent)
        {
            tracing::warn!(error = %e, "spool: could not fsync the parent directory");
        }
        let queue = dir.join(QUEUE_DIR);
        let queue_handle = File::open(&queue).map_err(io_err("open", &queue))?;
        let inner = Inner::new(dir.to_owned(), dir.join(TMP_DIR), queue, GroupSync::new(queue_handle), lock);
        inner.slots.set_max(options.slots);
        let spool = Spool { inner: Arc::new(inner), committer: Arc::new(Committer::new()) };
        spool.remove_temporaries()?;
        spool.load_queue()?;
        // Entries a dead process left unsynced, and our deletions, become
        // durable; every status log present now counts as durable.
        spool.inner.sync_queue_dir()?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// `(requests, fsyncs)` of the queue directory so far: how well group
    /// commit coalesced directory fsyncs (for metrics).
    pub fn dir_sync_stats(&self) -> (u64, u64) {
        self.inner.queue_sync.stats()
    }

    /// How long fsyncs took so far (for metrics): of the queue directory, and of message
    /// files.
    pub fn fsync_latency(&self) -> (LatencyStats, LatencyStats) {
        (self.inner.queue_sync.latency(), self.inner.file_sync.snapshot())
    }

    /// How commits were grouped into batch files so far (for metrics).
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.stats()
    }

    /// Whether new messages can be stored now: creates, writes, fsyncs and removes a small
    /// file in `tmp/`, where every message starts (for health checks). Costs a disk write
    /// and an fsync, so callers rate-limit it.
    pub fn probe_writable(&self) -> Result<(), SpoolError> {
        let path = self.inner.tmp.join("health-probe");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        file.write_all(b"probe\n").and_then(|()| file.sync_all()).map_err(io_err("write", &path))?;
        fs::remove_file(&path).map_err(io_err("unlink", &path))
    }

    /// Issues a queue id not used by any message or file in the spool.
    pub fn new_id(&self) -> QueueId {
        let index = self.inner.index();
        let mut id = QueueId::generate();
        // Ids are unique within a process; a clock stepped back across a
        // restart could repeat one still queued, so skip those. `commit`
        // refuses a taken id in any case.
        for _ in 0..16 {
            if !index.is_taken(&id) {
                break;
            }
            id = QueueId::generate();
        }
        id
    }

    /// Starts a message. Nothing is durable until [`MessageWriter::commit`].
    pub fn writer(&self, envelope: Envelope) -> Result<MessageWriter, SpoolError> {
        MessageWriter::new(Arc::clone(&self.inner), Arc::clone(&self.committer), envelope)
    }

    /// Appends `state` for recipient `rcpt_index` of message `id` to the
    /// status log of its batch and fdatasyncs it (group-committed with other
    /// records to the same log); a new log's directory entry is made durable
    /// too. Returns only once the record is durable.
    pub fn record(&self, id: &QueueId, rcpt_index: usize, state: &RcptState) -> Result<(), SpoolError> {
        self.append_durably(id, &status::encode_record(id, rcpt_index, state))
    }

    /// Holds (`true`) or releases (`false`) message `id`: appends a `held` or
    /// `released` record to the status log of its batch, durably, as
    /// [`Spool::record`] does. The last such record wins; `load`, `list` and
    /// `recover` report it in [`QueuedMessage::held`](crate::QueuedMessage::held),
    /// across restarts. Holding a held message (or releasing one that is not
    /// held) appends a record all the same and changes nothing.
    pub fn set_held(&self, id: &QueueId, held: bool) -> Result<(), SpoolError> {
        self.append_durably(id, &status::encode_hold(id, held))
    }

    /// Appends `line` about message `id` to its batch's status log and
    /// returns once it is durable (see [`Spool::record`]).
    fn append_durably(&self, id: &QueueId, line: &[u8]) -> Result<(), SpoolError> {
        let (batch, ()) = self.with_batch_of(id, |batch, log| append(&self.inner, batch, log, line))?;
        // fdatasync also persists the new file size, which reading needs.
        batch.log_sync.sync().map_err(io_err("fdatasync", batch.log_path()))?;
        if !batch.log_durable.load(Ordering::Acquire) {
            // The log may have been created just now (by this call or an
            // earlier `remove`): its directory entry must be durable too.
            self.inner.sync_queue_dir()?;
            batch.log_durable.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Takes a message out of the queue. While other messages of its batch
    /// are queued this appends a `done` record to the batch's status log
    /// **without** fsync: after a crash the message may be delivered again
    /// (at-least-once), never lost. Removing the last queued message of a
    /// batch deletes the batch file and its log.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        self.with_batch_of(id, |batch, log| self.remove_locked(id, batch, log)).map(|_| ())
    }

    /// [`Spool::remove`] with the batch's lock held (`log`).
    fn remove_locked(&self, id: &QueueId, batch: &Arc<BatchFile>, log: &mut Option<OpenLog>) -> Result<(), SpoolError> {
        let live = self.inner.index().live_in_batch(id).ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        self.inner.recent.forget(id);
        if live > 1 {
            append(&self.inner, batch, log, &status::encode_done(id))?;
            self.inner.index().remove(id);
            return Ok(());
        }
        self.inner.index().remove(id);
        if let Some(n) = batch.slot {
            return self.free_slot(batch, n, log);
        }
        let log_len = log.take().map(|open| open.len);
        // A batch known to have no log (one message, or all removed at once) has none to move.
        let has_log = batch.may_have_log();
        // The batch first: a crash in between leaves an orphan log, which
        // open deletes. No directory fsync: like the done records, a crash
        // may bring the batch back, and its messages are delivered again.
        // The files go to the pool for reuse, unless a reader still holds
        // the batch (this `batch` is then not the only handle left: the index
        // holds none any more and hands out no new ones).
        let pool = &self.inner.pool;
        let sync = &self.inner.queue_sync;
        if Arc::strong_count(batch) == 1 {
            pool.recycle(&batch.path, batch.len.get().copied(), sync).map_err(io_err("rename", &batch.path))?;
            if !has_log {
                return Ok(());
            }
            return pool.recycle(batch.log_path(), log_len, sync).map_err(io_err("rename", batch.log_path()));
        }
        ignore_missing(fs::remove_file(&batch.path)).map_err(io_err("unlink", &batch.path))?;
        if !has_log {
            return Ok(());
        }
        ignore_missing(fs::remove_file(batch.log_path())).map_err(io_err("unlink", batch.log_path()))
    }

    /// Runs `f` on the batch that holds message `id`, with the batch's lock taken (appends to
    /// its log, removals), and returns the batch with what `f` gave. The message is looked up
    /// again once the lock is held: a slot's messages may have been copied out into a batch
    /// file meanwhile (`copy_out_slots`), and a record appended to the slot's log then would be
    /// lost with it.
    fn with_batch_of<R>(
        &self,
        id: &QueueId,
        f: impl FnOnce(&Arc<BatchFile>, &mut Option<OpenLog>) -> Result<R, SpoolError>,
    ) -> Result<(Arc<BatchFile>, R), SpoolError> {
        loop {
            let batch = self.inner.index().get(id).ok_or_else(|| SpoolError::NotFound(id.clone()))?.batch;
            let mut log = batch.lock();
            // Looked up in a statement of its own: the index's lock is released before `f`, and
            // no clone of the batch is left (`remove` counts them to tell whether a reader holds
            // the file).
            let same = self.inner.index().get(id).map(|loc| Arc::ptr_eq(&loc.batch, &batch));
            match same {
                None => return Err(SpoolError::NotFound(id.clone())),
                Some(true) => {
                    let got = f(&batch, &mut log)?;
                    drop(log);
                    return Ok((batch, got));
                }
                // Moved to another batch while we waited for the lock: look again.
                Some(false) => {}
            }
        }
    }

    /// Frees slot `n`, whose batch has no queued message left (slots.rs): its first line
    /// becomes zeros and its status log empty, neither fsynced (a crash may bring the batch
    /// back, and its messages are delivered again, as for a lost done record). The log is
    /// emptied only once the zeros are written, so that the batch never comes back without
    /// its done records while the process lives; emptied, it can say nothing about the next
    /// batch's messages. `log` is the batch's lock, held.
    pub(crate) fn free_slot(
        &self,
        batch: &Arc<BatchFile>,
        n: u32,
        log: &mut Option<OpenLog>,
    ) -> Result<(), SpoolError> {
        let file = self.inner.slots.file(n);
        let file = file.ok_or_else(|| io_err("write", &batch.path)(ErrorKind::NotFound.into()))?;
        slots::zero_first_line(&file).map_err(io_err("write", &batch.path))?;
        if batch.may_have_log() {
            let path = batch.log_path();
            let emptied = match log.take() {
                Some(open) => open.file.set_len(0),
                None => slots::empty_log(path),
            };
            emptied.map_err(io_err("truncate", path))?;
        }
        self.inner.slots.release(n, Arc::downgrade(batch));
        Ok(())
    }

    /// `(recycled, reused)`: finished batch files and status logs renamed
    /// into the pool of free files so far, and those rewritten as new ones
    /// (for tests and metrics).
    pub fn pool_stats(&self) -> (u64, u64) {
        let counts = self.inner.pool.counts();
        (counts.recycled, counts.reused)
    }

    /// How batch files were written in place into slots so far (for metrics and benchmarks).
    pub fn slot_stats(&self) -> SlotStats {
        self.inner.slots.stats()
    }

    /// How the in-memory copies of just-committed messages served their first loads so far
    /// (for metrics and benchmarks).
    pub fn recent_stats(&self) -> RecentStats {
        self.inner.recent.stats()
    }

    /// Cleans `tmp/`: with the lock held, everything there belongs to a
    /// dead process. The free files of its pool (`free-N`) join this
    /// process's pool (docs/spool-format.md, "Reusing files: the pool"):
    /// unlinking them would make the next burst create them again. All
    /// else (unfinished messages and batches) is deleted.
    fn remove_temporaries(&self) -> Result<(), SpoolError> {
        let tmp = &self.inner.tmp;
        let (mut removed, mut adopted) = (0, 0);
        let mut free = Vec::new();
        for entry in fs::read_dir(tmp).map_err(io_err("readdir", tmp))? {
            let entry = entry.map_err(io_err("readdir", tmp))?;
            if let Some(n) = entry.file_name().to_str().and_then(pool::free_number) {
                free.push(n);
                continue;
            }
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            removed += 1;
        }
        // Oldest first, as they were pooled.
        free.sort_unstable();
        for n in free {
            let kept = self.inner.pool.adopt(n, &self.inner.queue_sync);
            match kept.map_err(io_err("adopt", tmp.join(format!("free-{n}"))))? {
                true => adopted += 1,
                false => removed += 1,
            }
        }
        if removed > 0 {
            tracing::info!(count = removed, "spool: removed unfinished messages");
        }
        if adopted > 0 {
            tracing::debug!(count = adopted, "spool: kept free files for reuse");
        }
        Ok(())
    }

    /// `(name, extension)` of each well-named file in the queue directory, and `(number,
    /// extension)` of each slot's files (`slot-N.msg`, `slot-N.status`); other names are
    /// logged and left alone.
    pub(crate) fn queue_entries(&self) -> Result<QueueEntries, SpoolError> {
        let queue = &self.inner.queue;
        let (mut entries, mut slots) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(queue).map_err(io_err("readdir", queue))? {
            let name = entry.map_err(io_err("readdir", queue))?.file_name();
            let split = name.to_str().and_then(|n| n.split_once('.'));
            let split = split.filter(|(_, ext)| *ext == MSG_EXT || *ext == STATUS_EXT);
            if let Some((stem, ext)) = split {
                if let Ok(id) = stem.parse::<QueueId>() {
                    entries.push((id, ext.to_owned()));
                    continue;
                }
                if let Some(n) = slot_number(stem) {
                    slots.push((n, ext.to_owned()));
                    continue;
                }
            }
            tracing::warn!(file = ?name, "spool: ignoring unexpected file in queue");
        }
        entries.sort();
        slots.sort();
        Ok((entries, slots))
    }
}

/// What [`Spool::queue_entries`] found: batch files and logs by name, slot files by number.
pub(crate) type QueueEntries = (Vec<(QueueId, String)>, Vec<(u32, String)>);

/// Takes the spool's exclusive lock.
fn lock(path: &Path) -> Result<File, SpoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open", path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked { path: path.to_owned() }),
        Err(TryLockError::Error(e)) => Err(io_err("lock", path)(e)),
    }
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

/// Ignores `NotFound`, keeps other errors.
pub(crate) fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
