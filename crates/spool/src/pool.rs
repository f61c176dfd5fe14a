//! Recycled inodes: finished batch files and status logs are renamed into
//! `tmp/` and rewritten as the next batch file or status log, instead of
//! being unlinked and created again.
//!
//! On ext4 without a journal every file create scans past the inodes freed
//! in the last 60–360 s (`recently_deleted()` in `fs/ext4/ialloc.c`), which
//! made the spool's create/unlink per batch its most expensive step
//! (docs/performance.md, section 3). A rename allocates no inode.
//!
//! A file may be taken again only once a fsync of `queue/` that **started
//! after** it left `queue/` has succeeded: until then a crash could bring its
//! old name back, and that name must not point at new contents. A reader
//! that still holds the batch (a [`crate::Body`], a listing) keeps it out of
//! the pool: such a batch is unlinked as before, so its bytes stay readable.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::GroupSync;

/// Free files kept at most; more finished files are unlinked.
pub(crate) const POOL_MAX: usize = 64;

/// Name prefix of free files in `tmp/` (deleted at open, like all of `tmp/`).
const FREE_PREFIX: &str = "free-";

struct State {
    /// Free files, oldest first, with the queue-directory sync mark taken
    /// right after each left `queue/`.
    free: VecDeque<(PathBuf, u64)>,
    /// Suffix of the next free file's name.
    next: u64,
    /// Files recycled and taken again so far (for tests and metrics).
    recycled: u64,
    reused: u64,
}

/// The spool's pool of free files in `tmp/`.
pub(crate) struct Pool {
    tmp: PathBuf,
    state: Mutex<State>,
}

impl Pool {
    pub fn new(tmp: PathBuf) -> Pool {
        Pool { tmp, state: Mutex::new(State { free: VecDeque::new(), next: 0, recycled: 0, reused: 0 }) }
    }

    /// Takes `path` (a file in `queue/` whose messages are all done) out of
    /// the queue: renames it into the pool, or unlinks it if the pool is
    /// full. A missing file is not an error. Nothing is fsynced.
    pub fn recycle(&self, path: &Path, queue_sync: &GroupSync<fs::File>) -> io::Result<()> {
        let mut state = self.lock();
        if state.free.len() >= POOL_MAX {
            drop(state);
            return ignore_missing(fs::remove_file(path));
        }
        let free = self.tmp.join(format!("{FREE_PREFIX}{}", state.next));
        state.next += 1;
        match fs::rename(path, &free) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        // Taken after the rename returned: only a sync started later covers it.
        let mark = queue_sync.mark();
        state.free.push_back((free, mark));
        state.recycled += 1;
        Ok(())
    }

    /// A free file whose old name in `queue/` is durably gone, if any. The
    /// caller owns it: it must rename it into `queue/` or unlink it.
    pub fn take(&self, queue_sync: &GroupSync<fs::File>) -> Option<PathBuf> {
        let mut state = self.lock();
        let (_, mark) = state.free.front()?;
        if !queue_sync.covers(*mark) {
            return None;
        }
        state.reused += 1;
        state.free.pop_front().map(|(path, _)| path)
    }

    /// `(recycled, reused)`: files that went into the pool, and out of it.
    pub fn stats(&self) -> (u64, u64) {
        let state = self.lock();
        (state.recycled, state.reused)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
