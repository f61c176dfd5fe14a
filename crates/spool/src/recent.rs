//! Messages just committed, kept in memory for their first delivery run.
//!
//! A commit round holds each small message's record line and body in memory until they are
//! written and fsynced; right after, the queue manager loads the message to deliver it, which
//! read it all back from the batch file (open, `pread` of the envelope, `pread` of the body,
//! close). The round hands those very buffers (the same `Vec`s that were written, moved, not
//! copied) to this cache, and the message's first [`crate::Spool::load_with_body`] takes them
//! from here instead (docs/performance.md, 7.10 "first delivery from memory").
//!
//! Bounded by design: only messages up to [`MAX_MESSAGE`] bytes, at most [`MAX_MESSAGES`]
//! messages and [`MAX_BYTES`] bytes (of the buffers' capacities) together; the oldest entry
//! goes first when a bound is reached, and its message is then read from disk as before. An
//! entry goes when it is loaded once, when its message is removed, or with the spool.
//!
//! The cache holds no state: what it returns is what the batch file holds (the bytes that
//! were fsynced), and the recipients' states still come from the status log when the batch
//! has one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::QueueId;

/// Messages larger than this (record line and body) are not kept.
pub(crate) const MAX_MESSAGE: usize = 256 << 10;
/// Messages kept at most.
pub(crate) const MAX_MESSAGES: usize = 8192;
/// Bytes (buffer capacities) kept at most.
pub(crate) const MAX_BYTES: usize = 32 << 20;

/// How the cache of just-committed messages served delivery runs so far (for metrics and
/// benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecentStats {
    /// Messages kept after their commit.
    pub kept: u64,
    /// Loads served from memory.
    pub hits: u64,
    /// Loads that read the batch file (not kept, evicted, or not the first load).
    pub misses: u64,
    /// Messages dropped to stay within the bounds before they were loaded.
    pub evictions: u64,
    /// Messages removed from the queue before they were loaded.
    pub dropped: u64,
}

/// A committed message's bytes, exactly as written into its batch file.
pub(crate) struct Committed {
    /// The record line (`M id lengths envelope\n`).
    pub line: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

impl Committed {
    fn size(&self) -> usize {
        self.line.capacity() + self.body.capacity()
    }
}

struct State {
    kept: HashMap<QueueId, Committed>,
    /// Ids in the order they were kept; ids no longer in `kept` are skipped (and compacted).
    order: VecDeque<QueueId>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    stats: RecentStats,
}

/// The spool's cache of just-committed messages.
pub(crate) struct Recent {
    state: Mutex<State>,
}

impl Recent {
    pub fn new() -> Recent {
        let state = State {
            kept: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_messages: MAX_MESSAGES,
            max_bytes: MAX_BYTES,
            stats: RecentStats::default(),
        };
        Recent { state: Mutex::new(state) }
    }

    /// Keeps the bytes of message `id`, just made durable, unless it is too large; evicts the
    /// oldest entries to stay within the bounds.
    pub fn keep(&self, id: QueueId, message: Committed) {
        if message.line.len() + message.body.len() > MAX_MESSAGE {
            return;
        }
        let size = message.size();
        let mut state = self.lock();
        if size > state.max_bytes || state.max_messages == 0 {
            return;
        }
        while state.kept.len() >= state.max_messages || state.bytes + size > state.max_bytes {
            let Some(oldest) = state.order.pop_front() else { break };
            if let Some(gone) = state.kept.remove(&oldest) {
                state.bytes -= gone.size();
                state.stats.evictions += 1;
            }
        }
        state.bytes += size;
        state.stats.kept += 1;
        if let Some(old) = state.kept.insert(id.clone(), message) {
            // Cannot happen (ids are unique); keep the count right all the same.
            state.bytes -= old.size();
        }
        state.order.push_back(id);
        // Ids taken or dropped stay in `order` until they reach its front: compact it when
        // they are most of it, so that it stays within twice the bound.
        if state.order.len() > 2 * state.kept.len().max(state.max_messages / 2).max(16) {
            let State { kept, order, .. } = &mut *state;
            order.retain(|id| kept.contains_key(id));
        }
    }

    /// Takes the bytes of message `id`, if kept (counted as a hit, else as a miss).
    pub fn take(&self, id: &QueueId) -> Option<Committed> {
        let mut state = self.lock();
        let taken = state.kept.remove(id);
        match &taken {
            Some(message) => {
                state.bytes -= message.size();
                state.stats.hits += 1;
            }
            None => state.stats.misses += 1,
        }
        taken
    }

    /// Forgets message `id` (removed from the queue).
    pub fn forget(&self, id: &QueueId) {
        let mut state = self.lock();
        if let Some(gone) = state.kept.remove(id) {
            state.bytes -= gone.size();
            state.stats.dropped += 1;
        }
    }

    pub fn stats(&self) -> RecentStats {
        self.lock().stats
    }

    /// `(messages, bytes)` kept now.
    #[cfg(test)]
    pub fn size(&self) -> (usize, usize) {
        let state = self.lock();
        (state.kept.len(), state.bytes)
    }

    /// Lower bounds, for tests of what happens at them.
    #[cfg(test)]
    pub fn set_limits(&self, max_messages: usize, max_bytes: usize) {
        let mut state = self.lock();
        (state.max_messages, state.max_bytes) = (max_messages, max_bytes);
    }

    #[cfg(test)]
    pub fn order_len(&self) -> usize {
        self.lock().order.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: usize) -> Committed {
        Committed { line: b"M line\n".to_vec(), body: vec![b'x'; body] }
    }

    #[test]
    fn the_oldest_go_first_at_the_message_bound() {
        let recent = Recent::new();
        recent.set_limits(2, usize::MAX);
        let ids: Vec<QueueId> = (0..3).map(|_| QueueId::generate()).collect();
        for id in &ids {
            recent.keep(id.clone(), message(10));
        }
        assert!(recent.take(&ids[0]).is_none());
        assert_eq!(recent.take(&ids[1]).unwrap().body.len(), 10);
        assert!(recent.take(&ids[2]).is_some());
        let stats = recent.stats();
        assert_eq!((stats.kept, stats.hits, stats.misses, stats.evictions), (3, 2, 1, 1));
        assert_eq!(recent.size(), (0, 0));
    }

    #[test]
    fn the_byte_bound_counts_capacities() {
        let recent = Recent::new();
        let one = message(1000).size();
        recent.set_limits(100, 2 * one + one / 2);
        let ids: Vec<QueueId> = (0..3).map(|_| QueueId::generate()).collect();
        for id in &ids {
            recent.keep(id.clone(), message(1000));
        }
        assert_eq!(recent.size(), (2, 2 * one));
        assert!(recent.take(&ids[0]).is_none(), "the oldest was evicted");
        assert_eq!(recent.stats().evictions, 1);
    }

    #[test]
    fn too_large_messages_are_not_kept() {
        let recent = Recent::new();
        let id = QueueId::generate();
        recent.keep(id.clone(), message(MAX_MESSAGE));
        assert_eq!(recent.size(), (0, 0));
        assert!(recent.take(&id).is_none());
        assert_eq!(recent.stats().kept, 0);
    }

    #[test]
    fn forgotten_and_taken_ids_do_not_pile_up_in_the_order() {
        let recent = Recent::new();
        recent.set_limits(64, usize::MAX);
        for i in 0..10_000 {
            let id = QueueId::generate();
            recent.keep(id.clone(), message(1));
            if i % 2 == 0 {
                recent.take(&id);
            } else {
                recent.forget(&id);
            }
        }
        assert!(recent.order_len() <= 2 * 64, "{}", recent.order_len());
        let stats = recent.stats();
        assert_eq!((stats.hits, stats.dropped, stats.evictions), (5000, 5000, 0));
        assert_eq!(recent.size(), (0, 0));
    }
}
