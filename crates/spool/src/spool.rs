//! Opening the spool, recording delivery state, removing messages.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::hash::{Hash, Hasher};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::io_err;
use crate::format::{self, STATUS_HEADER};
use crate::{Envelope, GroupSync, MessageWriter, QueueId, RcptState, SpoolError};

/// Subdirectory for messages being written; emptied at open.
const TMP_DIR: &str = "tmp";
/// Subdirectory for committed messages and their status logs.
const QUEUE_DIR: &str = "queue";
/// Subdirectory for files recovery could not decode; never cleaned.
pub(crate) const CORRUPT_DIR: &str = "corrupt";
const LOCK_FILE: &str = "lock";
pub(crate) const MSG_EXT: &str = "msg";
pub(crate) const STATUS_EXT: &str = "status";
/// Stripes of the per-message lock that serializes status log appends.
const RECORD_STRIPES: usize = 64;

/// The durable message queue. Cheap to clone; `Send + Sync`.
///
/// Only one `Spool` may have a directory open at a time: [`Spool::open`]
/// takes an exclusive lock, because it deletes leftover temporary files that
/// would belong to another live writer.
#[derive(Clone)]
pub struct Spool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub queue: PathBuf,
    /// Group commit of fsyncs of the queue directory.
    pub queue_sync: GroupSync<File>,
    record_locks: Vec<Mutex<()>>,
    /// Held (flock) for the life of the spool.
    _lock: File,
}

impl Inner {
    pub fn tmp_path(&self, id: &QueueId) -> PathBuf {
        self.tmp.join(id.as_str())
    }

    pub fn msg_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.{MSG_EXT}"))
    }

    pub fn status_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.{STATUS_EXT}"))
    }

    /// Makes renames, links and unlinks in the queue directory durable.
    pub fn sync_queue_dir(&self) -> Result<(), SpoolError> {
        self.queue_sync.sync().map_err(io_err("fsync", &self.queue))
    }
}

impl Spool {
    /// Opens (creating, mode 0700) the spool in `dir`, locks it, deletes
    /// temporary files left by a crash and status logs whose message is gone.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
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
        let inner = Inner {
            root: dir.to_owned(),
            tmp: dir.join(TMP_DIR),
            queue,
            queue_sync: GroupSync::new(queue_handle),
            record_locks: (0..RECORD_STRIPES).map(|_| Mutex::new(())).collect(),
            _lock: lock,
        };
        let spool = Spool { inner: Arc::new(inner) };
        spool.remove_leftovers()?;
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

    /// Issues a queue id not used by any message in the spool.
    pub fn new_id(&self) -> QueueId {
        let mut id = QueueId::generate();
        // Ids are unique within a process; a clock stepped back across a
        // restart could repeat one still queued, so skip those. `commit`
        // refuses to overwrite in any case.
        for _ in 0..16 {
            let taken = [self.inner.msg_path(&id), self.inner.status_path(&id)]
                .iter()
                .any(|p| !matches!(p.try_exists(), Ok(false)));
            if !taken {
                break;
            }
            id = QueueId::generate();
        }
        id
    }

    /// Starts a message. Nothing is durable until [`MessageWriter::commit`].
    pub fn writer(&self, envelope: Envelope) -> Result<MessageWriter, SpoolError> {
        MessageWriter::new(Arc::clone(&self.inner), envelope)
    }

    /// Appends `state` for recipient `rcpt_index` to the message's status log
    /// and fdatasyncs it; the log is created (and the directory synced) on
    /// the first record. Returns only once the record is durable.
    pub fn record(&self, id: &QueueId, rcpt_index: usize, state: &RcptState) -> Result<(), SpoolError> {
        let path = self.inner.status_path(id);
        let line = format::encode_record(rcpt_index, state);
        let (file, created) = {
            let _guard = self.record_lock(id);
            let (file, needs_header, created) = self.open_status_log(id, &path)?;
            let mut data = if needs_header { STATUS_HEADER.to_vec() } else { Vec::new() };
            data.extend_from_slice(&line);
            (&file).write_all(&data).map_err(io_err("write", &path))?;
            (file, created)
        };
        // fdatasync also persists the new file size, which reading needs.
        file.sync_data().map_err(io_err("fdatasync", &path))?;
        if created {
            self.inner.sync_queue_dir()?;
        }
        Ok(())
    }

    /// Opens the status log for appending: `(file, needs_header, created)`.
    /// A torn last line (crash mid-append) is cut off first, so the next
    /// record starts on a line of its own.
    fn open_status_log(&self, id: &QueueId, path: &Path) -> Result<(File, bool, bool), SpoolError> {
        let mut options = OpenOptions::new();
        options.read(true).append(true).mode(0o600);
        match options.clone().create_new(true).open(path) {
            Ok(file) => {
                if !self.inner.msg_path(id).exists() {
                    let _ = fs::remove_file(path);
                    return Err(SpoolError::NotFound(id.clone()));
                }
                return Ok((file, true, true));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", path)(e)),
        }
        let file = options.open(path).map_err(io_err("open", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        let mut last = [0u8; 1];
        if len > 0 {
            file.read_exact_at(&mut last, len - 1).map_err(io_err("read", path))?;
        }
        if len == 0 || last[0] == b'\n' {
            return Ok((file, len == 0, false));
        }
        let data = format::read_all(&file).map_err(io_err("read", path))?;
        let keep = format::complete_len(&data);
        tracing::warn!(path = %path.display(), cut = data.len() - keep, "status log: dropping torn last line");
        file.set_len(keep as u64).map_err(io_err("truncate", path))?;
        Ok((file, keep == 0, false))
    }

    fn record_lock(&self, id: &QueueId) -> std::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        let stripe = (hasher.finish() % RECORD_STRIPES as u64) as usize;
        self.inner.record_locks[stripe].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes a message and its status log, durably. The message file goes
    /// first: a crash in between leaves an orphan log, deleted at open.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let msg = self.inner.msg_path(id);
        let found = match fs::remove_file(&msg) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("unlink", msg)(e)),
        };
        let status = self.inner.status_path(id);
        ignore_missing(fs::remove_file(&status)).map_err(io_err("unlink", status))?;
        if !found {
            return Err(SpoolError::NotFound(id.clone()));
        }
        // Without this a crash could bring the message back: a duplicate.
        self.inner.sync_queue_dir()
    }

    /// Deletes `tmp/*` and status logs without a message.
    fn remove_leftovers(&self) -> Result<(), SpoolError> {
        let tmp = &self.inner.tmp;
        let mut removed = 0;
        for entry in fs::read_dir(tmp).map_err(io_err("readdir", tmp))? {
            let path = entry.map_err(io_err("readdir", tmp))?.path();
            fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(count = removed, "spool: removed unfinished messages");
        }
        for (id, ext) in self.queue_entries()? {
            if ext == STATUS_EXT && !self.inner.msg_path(&id).exists() {
                let path = self.inner.status_path(&id);
                tracing::info!(path = %path.display(), "spool: removing orphan status log");
                fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            }
        }
        Ok(())
    }

    /// `(id, extension)` of each well-named file in the queue directory;
    /// other names are logged and left alone.
    pub(crate) fn queue_entries(&self) -> Result<Vec<(QueueId, String)>, SpoolError> {
        let queue = &self.inner.queue;
        let mut entries = Vec::new();
        for entry in fs::read_dir(queue).map_err(io_err("readdir", queue))? {
            let name = entry.map_err(io_err("readdir", queue))?.file_name();
            let parsed = name.to_str().and_then(|n| n.split_once('.')).and_then(|(stem, ext)| {
                let id = stem.parse::<QueueId>().ok()?;
                (ext == MSG_EXT || ext == STATUS_EXT).then(|| (id, ext.to_owned()))
            });
            match parsed {
                Some(entry) => entries.push(entry),
                None => tracing::warn!(file = ?name, "spool: ignoring unexpected file in queue"),
            }
        }
        entries.sort();
        Ok(entries)
    }
}

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
fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
