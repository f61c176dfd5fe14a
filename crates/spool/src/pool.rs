//! Recycled inodes: finished batch files and status logs are renamed into
//! `tmp/` and rewritten as the next batch file or status log, instead of
//! being unlinked and created again.
//!
//! On ext4 without a journal every file create scans past the inodes freed
//! in the last 60–360 s (`recently_deleted()` in `fs/ext4/ialloc.c`), which
//! made the spool's create/unlink per batch its most expensive step
//! (docs/performance.md, section 3). A rename allocates no inode.
//!
//! The pool is bounded in files ([`POOL_MAX_FILES`], thousands: enough to
//! absorb the backlog of a burst, so that a drain does not unlink what the
//! next burst would create) and in bytes ([`POOL_MAX_BYTES`]): a file that
//! would take the pool past its bytes is cut to length 0 as it enters, and
//! then holds an inode but no blocks. In memory a free file is three
//! numbers (its name's suffix, its mark, its length).
//!
//! A file may be taken again only once a fsync of `queue/` that **started
//! after** it left `queue/` has succeeded: until then a crash could bring its
//! old name back, and that name must not point at new contents. A reader
//! that still holds the batch (a [`crate::Body`], a listing) keeps it out of
//! the pool: such a batch is unlinked as before, so its bytes stay readable.
//!
//! The pool outlives the process: `open` adopts the `tmp/free-N` files a
//! previous process left ([`Pool::adopt`]) instead of unlinking them.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::GroupSync;

/// Free files kept at most; more finished files are unlinked.
pub(crate) const POOL_MAX_FILES: usize = 8192;
/// Bytes the free files may hold together; a file that would go past this
/// is truncated to 0 as it enters the pool.
pub(crate) const POOL_MAX_BYTES: u64 = 16 << 20;

/// Name prefix of free files in `tmp/` (adopted at open).
const FREE_PREFIX: &str = "free-";

/// A free file: `tmp/free-{n}`, the queue-directory sync mark taken right
/// after it left `queue/`, and its length.
struct Free {
    n: u64,
    mark: u64,
    len: u64,
}

/// What went through the pool so far (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolCounts {
    /// Files that went into the pool (adopted ones included).
    pub recycled: u64,
    /// Files taken out of it to be rewritten.
    pub reused: u64,
    /// Files cut to length 0 as they entered (the bytes bound).
    pub truncated: u64,
    /// Finished files unlinked because the pool was full.
    pub unlinked: u64,
}

struct State {
    /// Free files, oldest first.
    free: VecDeque<Free>,
    /// Sum of the free files' lengths.
    bytes: u64,
    /// Suffix of the next free file's name.
    next: u64,
    /// Files being renamed into the pool (counted against its bound).
    entering: usize,
    max_files: usize,
    max_bytes: u64,
    counts: PoolCounts,
}

/// The spool's pool of free files in `tmp/`.
pub(crate) struct Pool {
    tmp: PathBuf,
    state: Mutex<State>,
}

impl Pool {
    pub fn new(tmp: PathBuf) -> Pool {
        let state = State {
            free: VecDeque::new(),
            bytes: 0,
            next: 0,
            entering: 0,
            max_files: POOL_MAX_FILES,
            max_bytes: POOL_MAX_BYTES,
            counts: PoolCounts::default(),
        };
        Pool { tmp, state: Mutex::new(state) }
    }

    /// Takes `path` (a file in `queue/` whose messages are all done) out of
    /// the queue: renames it into the pool, or unlinks it if the pool is
    /// full. `len` is the file's length when the caller knows it (else it is
    /// asked of the file system: one `statx`). A missing file is not an
    /// error. Nothing is fsynced. The pool's
    /// lock is not held across the file operations: a truncation frees
    /// blocks, which can take milliseconds, and commits must not wait on it.
    pub fn recycle(&self, path: &Path, len: Option<u64>, queue_sync: &GroupSync<fs::File>) -> io::Result<()> {
        let mut state = self.lock();
        if state.free.len() + state.entering >= state.max_files {
            drop(state);
            match fs::remove_file(path) {
                Ok(()) => self.lock().counts.unlinked += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            return Ok(());
        }
        let n = state.next;
        state.next += 1;
        state.entering += 1;
        drop(state);
        let free = self.path(n);
        let renamed = fs::rename(path, &free);
        // Taken after the rename returned: only a sync started later covers it.
        let mark = queue_sync.mark();
        let entered = renamed.and_then(|()| self.admit(n, len));
        let mut state = self.lock();
        state.entering -= 1;
        match entered {
            Ok(len) => {
                state.free.push_back(Free { n, mark, len });
                state.counts.recycled += 1;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes a file a previous process left in the pool, `tmp/free-{n}`,
    /// at open, before the open's fsync of `queue/`. A file linked
    /// elsewhere too (possible only after a damaged file system was
    /// repaired) could still be a name in `queue/`: it is unlinked instead,
    /// as is everything beyond the pool's bound in files. Returns whether
    /// it was kept.
    pub fn adopt(&self, n: u64, queue_sync: &GroupSync<fs::File>) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path(n);
        let meta = fs::symlink_metadata(&path)?;
        let mut state = self.lock();
        state.next = state.next.max(n.saturating_add(1));
        if !meta.file_type().is_file() || meta.nlink() != 1 || state.free.len() >= state.max_files {
            drop(state);
            fs::remove_file(&path)?;
            return Ok(false);
        }
        drop(state);
        // The open's fsync of `queue/` starts after this mark.
        let mark = queue_sync.mark();
        let len = self.admit(n, None)?;
        let mut state = self.lock();
        state.free.push_back(Free { n, mark, len });
        state.counts.recycled += 1;
        Ok(true)
    }

    /// Makes `tmp/free-{n}` ready to join the pool: counts its bytes in, or
    /// cuts it to length 0 if they would take the pool past its bound.
    /// `known`: its length, if the caller knows it. Returns its length in
    /// the pool. On error the file is unlinked (best effort): it does not
    /// join.
    fn admit(&self, n: u64, known: Option<u64>) -> io::Result<u64> {
        let path = self.path(n);
        let result = (|| {
            let len = match known {
                Some(len) => len,
                None => fs::symlink_metadata(&path)?.len(),
            };
            let mut state = self.lock();
            if state.bytes + len <= state.max_bytes {
                state.bytes += len;
                return Ok(len);
            }
            state.counts.truncated += 1;
            drop(state);
            // Frees its blocks as an unlink would, but keeps the inode.
            OpenOptions::new().write(true).truncate(true).open(&path)?;
            Ok(0)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// A free file whose old name in `queue/` is durably gone, if any. The
    /// caller owns it: it must rename it into `queue/` or unlink it.
    pub fn take(&self, queue_sync: &GroupSync<fs::File>) -> Option<PathBuf> {
        let mut state = self.lock();
        let mark = state.free.front()?.mark;
        if !queue_sync.covers(mark) {
            return None;
        }
        let free = state.free.pop_front()?;
        state.bytes -= free.len;
        state.counts.reused += 1;
        Some(self.path(free.n))
    }

    /// What went through the pool so far.
    pub fn counts(&self) -> PoolCounts {
        self.lock().counts
    }

    /// `(files, bytes)` in the pool now.
    #[cfg(test)]
    pub fn size(&self) -> (usize, u64) {
        let state = self.lock();
        (state.free.len(), state.bytes)
    }

    /// Lower bounds, for tests of what happens at them.
    #[cfg(test)]
    pub fn set_limits(&self, max_files: usize, max_bytes: u64) {
        let mut state = self.lock();
        (state.max_files, state.max_bytes) = (max_files, max_bytes);
    }

    fn path(&self, n: u64) -> PathBuf {
        self.tmp.join(format!("{FREE_PREFIX}{n}"))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `n` of a free file's name `free-{n}`, if `name` is one.
pub(crate) fn free_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FREE_PREFIX)?;
    // Canonical decimal only, so that the name made from `n` is this one.
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}
