//! Slots: batch files whose names and blocks are durable once and for all, written in place by
//! commit rounds (docs/spool-slots.md).
//!
//! A round that writes a new batch file makes the file system commit its journal twice before
//! the clients get their 250: once for the file's new blocks and name (its fsync), once for the
//! directory (the `queue/` fsync). Overwriting a slot, a file of fixed length whose name and
//! blocks are already durable, at offset 0 and `fdatasync`ing it needs neither: only the data
//! and one device cache flush (docs/performance.md 7.16 and 7.18).
//!
//! A slot is `queue/slot-N.msg` (its status log `queue/slot-N.status`), of [`SLOT_CAPACITY`]
//! bytes; at most [`SLOTS_MAX`] are made, each on demand by the first round that finds no slot
//! free (with the new-file protocol: fsync of the file and of `queue/`). A batch of more than
//! [`SLOT_CAPACITY`] bytes, or a round that finds every slot busy and the bound reached, writes
//! a batch file as before: slots only speed up the common case.
//!
//! A slot is busy while its batch has a queued message. When the last one is removed its first
//! line is overwritten with zeros and its status log emptied (neither fsynced): the slot is
//! free. A crash may bring its batch back (its messages are then delivered again, as for any
//! batch whose done records a crash lost); a batch is never lost, because a slot is only
//! rewritten once its messages are all done. A slot whose batch a reader still holds (a
//! [`crate::Body`], a listing) is not rewritten until the reader lets go.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::format::SLOT_HEADER_LEN;
use crate::index::{BatchFile, MSG_EXT, STATUS_EXT};

/// Slots made at most: bounds the disk they keep, [`SLOTS_MAX`] × [`SLOT_CAPACITY`] (64 MiB).
pub(crate) const SLOTS_MAX: usize = 256;
/// A slot's length: a round's batch up to this size (header included) is written in place.
/// 256 KiB holds the ~10–50 messages of a few KB that a round carries under load.
pub(crate) const SLOT_CAPACITY: u64 = 256 << 10;
/// Slot numbers above this are not slots (a name `slot-N` with a larger `N` is foreign).
const SLOT_NUMBER_MAX: u32 = 1 << 16;
/// Name prefix of slot files in `queue/`.
const SLOT_PREFIX: &str = "slot-";

/// What the spool knows about slot number `n`.
enum Entry {
    /// No such file: the slot may be made.
    Absent,
    /// A round is making it now.
    Making,
    /// Made: its descriptor, kept open (read and write) for the life of the spool.
    Ready(Arc<File>),
    /// A file of that name that is not a usable slot (an unknown format version, unreadable):
    /// left alone, never made again by this process.
    Foreign,
}

/// A slot handed to a commit round.
pub(crate) enum Claim {
    /// A free slot: write the batch at offset 0 and `fdatasync`.
    Free(u32, Arc<File>),
    /// A slot to make (`queue/slot-N.msg` does not exist).
    New(u32),
}

/// How slots were used so far (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotStats {
    /// Slot files that exist (made by this process or found at open).
    pub slots: u64,
    /// Of those, the ones free now (a reader may still hold a few of the others).
    pub free: u64,
    /// Batches written into a slot that existed (no new name, no directory fsync).
    pub in_place: u64,
    /// Slots made by commit rounds.
    pub made: u64,
    /// Slots whose live messages were copied out into a batch file, freeing them
    /// (`Spool::copy_out_slots`).
    pub copied_out: u64,
}

struct State {
    entries: Vec<Entry>,
    /// Free slots, the most recently freed last (taken first: its pages are warm).
    free: Vec<u32>,
    /// Slots whose batch is all done but may still be read; free once nobody holds it.
    held: Vec<(u32, Weak<BatchFile>)>,
    max: usize,
    in_place: u64,
    made: u64,
    copied_out: u64,
}

/// The spool's slots.
pub(crate) struct Slots {
    queue: PathBuf,
    state: Mutex<State>,
}

impl Slots {
    pub fn new(queue: PathBuf) -> Slots {
        let state = State {
            entries: Vec::new(),
            free: Vec::new(),
            held: Vec::new(),
            max: SLOTS_MAX,
            in_place: 0,
            made: 0,
            copied_out: 0,
        };
        Slots { queue, state: Mutex::new(state) }
    }

    /// `queue/slot-N.msg`.
    pub fn path(&self, n: u32) -> PathBuf {
        slot_path(&self.queue, n, MSG_EXT)
    }

    /// `(queue/slot-N.msg, queue/slot-N.status)`.
    pub fn paths(&self, n: u32) -> (PathBuf, PathBuf) {
        (self.path(n), self.log_path(n))
    }

    /// `queue/slot-N.status`.
    pub fn log_path(&self, n: u32) -> PathBuf {
        slot_path(&self.queue, n, STATUS_EXT)
    }

    /// A slot for a batch of `len` bytes (first line included), if one fits: a free slot, or
    /// the number of one to make. `None`: write a batch file.
    pub fn claim(&self, len: u64) -> Option<Claim> {
        let mut state = self.lock();
        if len > SLOT_CAPACITY || state.max == 0 {
            return None;
        }
        let State { held, free, .. } = &mut *state;
        held.retain(|(n, batch)| {
            let read = batch.strong_count() > 0;
            if !read {
                free.push(*n);
            }
            read
        });
        while let Some(n) = state.free.pop() {
            if let Some(Entry::Ready(file)) = state.entries.get(n as usize) {
                return Some(Claim::Free(n, Arc::clone(file)));
            }
        }
        let made = state.entries.iter().filter(|e| matches!(e, Entry::Ready(_) | Entry::Making)).count();
        if made >= state.max {
            return None;
        }
        let n = match state.entries.iter().position(|e| matches!(e, Entry::Absent)) {
            Some(n) => n,
            None if state.entries.len() < SLOT_NUMBER_MAX as usize => {
                state.entries.push(Entry::Absent);
                state.entries.len() - 1
            }
            None => return None,
        };
        state.entries[n] = Entry::Making;
        Some(Claim::New(n as u32))
    }

    /// A slot the round made: busy (its batch is being committed).
    pub fn made(&self, n: u32, file: Arc<File>) {
        let mut state = self.lock();
        state.made += 1;
        state.entries[n as usize] = Entry::Ready(file);
    }

    /// A slot the round could not make: `Foreign` if a file had its name already, else it may
    /// be made again.
    pub fn unmake(&self, n: u32, foreign: bool) {
        self.lock().entries[n as usize] = if foreign { Entry::Foreign } else { Entry::Absent };
    }

    /// A slot made by a round whose `queue/` fsync failed: its name may not be durable, and no
    /// client got a 250 for its batch. Unlinked, to be made again.
    pub fn discard(&self, n: u32) {
        let path = self.path(n);
        let gone = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        self.lock().entries[n as usize] = if gone { Entry::Absent } else { Entry::Foreign };
    }

    /// Counts a slot whose messages were copied out.
    pub fn copied_out(&self) {
        self.lock().copied_out += 1;
    }

    /// Counts a batch written into an existing slot.
    pub fn wrote_in_place(&self) {
        self.lock().in_place += 1;
    }

    /// A slot whose batch could not be committed (its write or fdatasync failed), its first
    /// line zeroed again by the caller if `zeroed`: free again, or never used again by this
    /// process if its contents are unknown.
    pub fn spoiled(&self, n: u32, zeroed: bool) {
        let mut state = self.lock();
        if zeroed {
            state.free.push(n);
        } else {
            state.entries[n as usize] = Entry::Foreign;
        }
    }

    /// The descriptor of a made slot.
    pub fn file(&self, n: u32) -> Option<Arc<File>> {
        match self.lock().entries.get(n as usize) {
            Some(Entry::Ready(file)) => Some(Arc::clone(file)),
            _ => None,
        }
    }

    /// A slot whose batch has no queued message left: free once `batch` is read by nobody.
    pub fn release(&self, n: u32, batch: Weak<BatchFile>) {
        self.lock().held.push((n, batch));
    }

    /// A slot found at open: `Some(file)` for a slot file, free or busy; `None` for a name
    /// that is not a usable slot (left alone).
    pub fn adopt(&self, n: u32, file: Option<File>, free: bool) {
        let mut state = self.lock();
        let at = n as usize;
        if state.entries.len() <= at {
            state.entries.resize_with(at + 1, || Entry::Absent);
        }
        state.entries[at] = match file {
            Some(file) => Entry::Ready(Arc::new(file)),
            None => Entry::Foreign,
        };
        if free && matches!(state.entries[at], Entry::Ready(_)) {
            state.free.push(n);
        }
    }

    pub fn stats(&self) -> SlotStats {
        let state = self.lock();
        let ready = |e: &&Entry| matches!(e, Entry::Ready(_));
        let free = state.free.len() + state.held.iter().filter(|(_, b)| b.strong_count() == 0).count();
        SlotStats {
            slots: state.entries.iter().filter(ready).count() as u64,
            free: free as u64,
            in_place: state.in_place,
            made: state.made,
            copied_out: state.copied_out,
        }
    }

    /// Sets the number of slots made at most; 0 writes no round into a slot (slots found at
    /// open are still read and their messages delivered).
    pub fn set_max(&self, max: usize) {
        self.lock().max = max;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Overwrites a slot's first line with zeros, not synced: it holds no batch (a free slot, or
/// one whose new batch failed).
pub(crate) fn zero_first_line(file: &File) -> io::Result<()> {
    file.write_all_at(&[0; SLOT_HEADER_LEN], 0)
}

/// Empties a slot's status log, not synced; a slot without one is left without.
pub(crate) fn empty_log(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(log) => log.set_len(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `queue/slot-N.EXT`.
fn slot_path(queue: &Path, n: u32, ext: &str) -> PathBuf {
    queue.join(format!("{SLOT_PREFIX}{n}.{ext}"))
}

/// The `N` of a slot file's stem `slot-N`, if `stem` is one (canonical decimal, so that the
/// name made from `N` is this one).
pub(crate) fn slot_number(stem: &str) -> Option<u32> {
    let digits = stem.strip_prefix(SLOT_PREFIX)?;
    let n: u32 = digits.parse().ok()?;
    (n.to_string() == digits && n < SLOT_NUMBER_MAX).then_some(n)
}
