//! The in-memory index: where each queued message lies, how many messages
//! of each batch file are still queued, and which names in `queue/` are
//! taken. Filled when the spool is opened and at every commit; the files
//! are never searched after that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::format::Extent;
use crate::openlog::OpenLog;
use crate::{GroupSync, QueueId, SpoolError, SyncTarget};

/// The extension of a batch file in `queue/`.
pub(crate) const MSG_EXT: &str = "msg";
/// The extension of a batch's status log in `queue/`.
pub(crate) const STATUS_EXT: &str = "status";

/// One batch file in `queue/` and its status log.
pub(crate) struct BatchFile {
    /// The batch's name: the id of its first message.
    pub name: QueueId,
    /// `queue/NAME.msg`.
    pub path: PathBuf,
    /// Serializes appends to the status log, and the final unlink with them;
    /// holds the log's descriptor once it has been opened for appending.
    pub lock: Mutex<Option<OpenLog>>,
    /// Group commit of the status log's fdatasyncs.
    pub log_sync: GroupSync<LogFile>,
    /// Whether the log's directory entry is known to be durable.
    pub log_durable: AtomicBool,
    /// Whether the batch may have a status log. `false` only while it is
    /// known to have none: a batch this process committed, or one found at
    /// open without a log, until the first append ([`crate::append`] sets it
    /// before the log can appear). Readers then skip the log (no failing
    /// `openat` per load: docs/performance.md, 7.10 "first delivery from memory").
    pub has_log: AtomicBool,
    /// Messages the file holds (live or not). Status records without an id
    /// (version-1 logs) apply only to a file of one message.
    pub messages: usize,
    /// The batch file's length, once known (where its last record ends): the pool takes it
    /// instead of asking the file system when the file is recycled.
    pub len: OnceLock<u64>,
    /// The slot the batch was written into (`queue/slot-N.msg`, slots.rs), if it was.
    pub slot: Option<u32>,
    /// When this process committed the batch, or found it at open: how long a slot has been
    /// busy (copyout.rs).
    pub since: std::time::Instant,
}

impl BatchFile {
    /// A batch named `name` in `queue`. `at_open`: found by the scan at open
    /// (its log, if any, is durable, and it may have one; the scan tells
    /// [`Self::has_log`] exactly), else just committed (no log yet).
    pub fn new(name: QueueId, queue: &Path, messages: usize, at_open: bool) -> BatchFile {
        let (path, log) = (queue.join(format!("{name}.{MSG_EXT}")), queue.join(format!("{name}.{STATUS_EXT}")));
        BatchFile::at(name, path, log, None, messages, at_open)
    }

    /// A batch named `name` (its first message's id) in slot `n`, whose file and log are
    /// `paths` (slots.rs), as [`Self::new`].
    pub fn in_slot(name: QueueId, paths: (PathBuf, PathBuf), n: u32, messages: usize, at_open: bool) -> BatchFile {
        BatchFile::at(name, paths.0, paths.1, Some(n), messages, at_open)
    }

    fn at(name: QueueId, path: PathBuf, log: PathBuf, slot: Option<u32>, messages: usize, at_open: bool) -> BatchFile {
        BatchFile {
            path,
            log_sync: GroupSync::new(LogFile(log)),
            name,
            lock: Mutex::new(None),
            log_durable: AtomicBool::new(at_open),
            has_log: AtomicBool::new(at_open),
            messages,
            len: OnceLock::new(),
            slot,
            since: std::time::Instant::now(),
        }
    }

    /// `queue/NAME.status`.
    pub fn log_path(&self) -> &Path {
        &self.log_sync.target().0
    }

    /// Whether the batch may have a status log (see [`Self::has_log`]).
    pub fn may_have_log(&self) -> bool {
        self.has_log.load(Ordering::Acquire)
    }

    /// Takes the batch's lock (appends to its log, removal of its messages).
    pub fn lock(&self) -> MutexGuard<'_, Option<OpenLog>> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A status log as a [`SyncTarget`]: fdatasync through a fresh descriptor,
/// so that no descriptor stays open per batch (one fdatasync covers writes
/// made through any descriptor of the file).
pub(crate) struct LogFile(PathBuf);

impl SyncTarget for LogFile {
    fn sync(&self) -> io::Result<()> {
        File::open(&self.0)?.sync_data()
    }
}

/// Where a queued message lies.
#[derive(Clone)]
pub(crate) struct Loc {
    pub batch: Arc<BatchFile>,
    pub extent: Extent,
}

/// A file in `queue/` that is not indexed, and why.
#[derive(Debug, Clone)]
pub(crate) enum Foreign {
    /// It could not be decoded; `recover` moves it to `corrupt/`.
    Corrupt(String),
    /// It was moved to `corrupt/`.
    MovedAside(String),
    /// Written by an unknown format version; left in place.
    Unsupported(String),
    /// Reading it failed; left in place for the next start.
    Unreadable,
}

#[derive(Default)]
pub(crate) struct Index {
    messages: HashMap<QueueId, Loc>,
    /// Live batches by name, with how many of their messages are queued.
    batches: HashMap<QueueId, usize>,
    /// Ids of messages being committed; a batch may take one as its name.
    reserved: HashSet<QueueId>,
    /// Names of files in `queue/` that are not indexed.
    foreign: BTreeMap<QueueId, Foreign>,
}

impl Index {
    /// Whether `id` may not name a new message or batch.
    pub fn is_taken(&self, id: &QueueId) -> bool {
        self.messages.contains_key(id)
            || self.batches.contains_key(id)
            || self.reserved.contains(id)
            || self.foreign.contains_key(id)
    }

    /// Claims `id` for a message about to be committed.
    pub fn reserve(&mut self, id: &QueueId) -> Result<(), SpoolError> {
        if self.is_taken(id) {
            return Err(SpoolError::IdInUse(id.clone()));
        }
        self.reserved.insert(id.clone());
        Ok(())
    }

    /// Gives up a claim after a failed commit.
    pub fn unreserve(&mut self, id: &QueueId) {
        self.reserved.remove(id);
    }

    /// Adds a batch file and its live messages (releasing their claims).
    pub fn add_batch(&mut self, batch: Arc<BatchFile>, members: Vec<(QueueId, Extent)>) {
        let count = members.len();
        // Records tile the file: where the last ends, it ends (unless the scan at open, which
        // saw every record and not only the live ones, said so first).
        if let Some(end) = members.iter().map(|(_, e)| e.body_off + e.body_len).max() {
            let _ = batch.len.set(end);
        }
        for (id, extent) in members {
            self.reserved.remove(&id);
            self.messages.insert(id, Loc { batch: Arc::clone(&batch), extent });
        }
        self.batches.insert(batch.name.clone(), count);
    }

    /// Moves every live message of batch `old` to batch `new` (copyout.rs): `members` are
    /// all of them, with their places in `new`. `old` is no longer a live batch.
    pub fn move_batch(&mut self, old: &BatchFile, new: Arc<BatchFile>, members: Vec<(QueueId, Extent)>) {
        self.batches.remove(&old.name);
        self.add_batch(new, members);
    }

    /// How many messages of the batch named `name` are still queued.
    pub fn live_count(&self, name: &QueueId) -> usize {
        self.batches.get(name).copied().unwrap_or(0)
    }

    /// Notes a file that is not indexed.
    pub fn add_foreign(&mut self, name: QueueId, why: Foreign) {
        self.foreign.insert(name, why);
    }

    /// Files recovery must move to `corrupt/`, and why.
    pub fn corrupt(&self) -> Vec<(QueueId, String)> {
        let corrupt = self.foreign.iter().filter_map(|(name, why)| match why {
            Foreign::Corrupt(reason) => Some((name.clone(), reason.clone())),
            _ => None,
        });
        corrupt.collect()
    }

    /// Why the file named `name` is not indexed, if it is one of those.
    pub fn foreign(&self, name: &QueueId) -> Option<&Foreign> {
        self.foreign.get(name)
    }

    pub fn get(&self, id: &QueueId) -> Option<Loc> {
        self.messages.get(id).cloned()
    }

    /// How many messages of `id`'s batch are still queued (`id` included).
    pub fn live_in_batch(&self, id: &QueueId) -> Option<usize> {
        let loc = self.messages.get(id)?;
        self.batches.get(&loc.batch.name).copied()
    }

    /// Forgets a removed message; its batch too once it has none left.
    pub fn remove(&mut self, id: &QueueId) {
        let Some(loc) = self.messages.remove(id) else { return };
        if let Some(live) = self.batches.get_mut(&loc.batch.name) {
            *live -= 1;
            if *live == 0 {
                self.batches.remove(&loc.batch.name);
            }
        }
    }

    /// Every queued message, in id order.
    pub fn snapshot(&self) -> Vec<(QueueId, Loc)> {
        let mut all: Vec<_> = self.messages.iter().map(|(id, loc)| (id.clone(), loc.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
