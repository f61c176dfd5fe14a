//! [`OpenLog`]: a batch's status log kept open for appending (append.rs opens
//! and writes it; the batch's lock in the index holds it).

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Status logs kept open at most, so that a queue of many batches with logs
/// (deferred mail) cannot use up the process's descriptors.
pub(crate) const OPEN_LOGS_MAX: usize = 256;

/// A status log open for appending, its tail known to end a line.
pub(crate) struct OpenLog {
    pub(crate) file: File,
    /// The log's length after the last append through this descriptor (so that the pool
    /// need not ask for it when the log is recycled).
    pub(crate) len: u64,
    /// The spool's count of open logs; decremented on drop.
    pub(crate) slot: Arc<AtomicUsize>,
}

impl Drop for OpenLog {
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::Relaxed);
    }
}
