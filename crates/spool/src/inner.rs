//! The state an open spool shares between its handles, its writers and the committer: the
//! directories, the group-committed fsync of `queue/`, the in-memory index and the lock.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::io_err;
use crate::index::Index;
use crate::latency::Latencies;
use crate::pool::Pool;
use crate::recent::Recent;
use crate::slots::Slots;
use crate::{GroupSync, QueueId, SpoolError};

pub(crate) struct Inner {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub queue: PathBuf,
    /// Group commit of fsyncs of the queue directory.
    pub queue_sync: GroupSync<File>,
    /// How long fsyncs of message files (batches, spilled messages) took.
    pub file_sync: Latencies,
    /// Finished batch files and status logs, to be rewritten instead of created.
    pub pool: Pool,
    /// Status logs kept open for appending (bounded by `OPEN_LOGS_MAX`).
    pub open_logs: Arc<AtomicUsize>,
    /// Batch files written in place (slots.rs).
    pub slots: Slots,
    /// Messages just committed, kept in memory for their first delivery run.
    pub recent: Recent,
    /// Writers open and not yet handed to a commit: messages still arriving (commit.rs
    /// holds a round back under load only while some are).
    pub writing: AtomicUsize,
    index: Mutex<Index>,
    /// Held (flock) for the life of the spool.
    _lock: File,
}

impl Inner {
    /// The state of a spool whose lock is held, with an empty index.
    pub fn new(root: PathBuf, tmp: PathBuf, queue: PathBuf, queue_sync: GroupSync<File>, lock: File) -> Inner {
        let (index, file_sync) = (Mutex::new(Index::default()), Latencies::default());
        let (pool, open_logs) = (Pool::new(tmp.clone()), Arc::default());
        let (recent, slots) = (Recent::new(), Slots::new(queue.clone()));
        let writing = AtomicUsize::new(0);
        Inner { root, tmp, queue, queue_sync, file_sync, pool, open_logs, slots, recent, writing, index, _lock: lock }
    }

    pub fn tmp_path(&self, id: &QueueId) -> PathBuf {
        self.tmp.join(id.as_str())
    }

    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes renames, creations and unlinks in the queue directory durable.
    pub fn sync_queue_dir(&self) -> Result<(), SpoolError> {
        self.queue_sync.sync().map_err(io_err("fsync", &self.queue))
    }
}
