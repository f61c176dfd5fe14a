//! [`Book`]: the scheduler's bookkeeping as plain data, with time passed in.
//!
//! Which messages are ready, which are due when (a due-time index, not a timer per
//! message), which are running, which are held, which are forced (retried by the operator).
//! A message is never in two runs at once; a request for a running message is remembered
//! and acted on when the run ends. The async task in `queue.rs` only moves messages
//! between this book, the delivery runs and the spool.

use crate::state::next_due;
use dakiya_spool::{QueueId, RcptState};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// What to do with a message when its current run ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct After {
    /// Run again at once (and force it), whatever the run says.
    retry: bool,
    /// Held or deleted meanwhile: do not reschedule.
    drop: bool,
}

/// A run to start: the message, and whether its deferred recipients are due whatever their
/// time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The message to deliver.
    pub id: QueueId,
    /// Deferred recipients are due now (`dakiya queue retry`, release).
    pub force: bool,
}

/// The scheduler's bookkeeping.
#[derive(Debug, Default)]
pub struct Book {
    ready: VecDeque<QueueId>,
    /// (unix seconds of the next attempt, message)
    due: BTreeSet<(u64, QueueId)>,
    /// The time each message in `due` is filed under.
    due_at: HashMap<QueueId, u64>,
    running: HashMap<QueueId, After>,
    held: HashSet<QueueId>,
    /// Ready messages whose deferred recipients are due whatever their time (retry).
    forced: HashSet<QueueId>,
}

/// How many messages a [`Book`] holds, by where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// To start as soon as there is capacity.
    pub ready: usize,
    /// Waiting for their time.
    pub scheduled: usize,
    /// Held by the operator.
    pub held: usize,
    /// In a delivery run.
    pub running: usize,
}

/// The operator's message for an unknown queue id.
pub fn unknown(id: &QueueId) -> String {
    format!("no message {id} in the queue")
}

impl Book {
    /// The book after a restart, from what recovery found: held messages stay held, a
    /// message with a pending recipient (or a failed one whose notice is not sent yet) is
    /// ready at once, one with only deferred recipients waits for the earliest of them, and
    /// one with every recipient final is ready (its run removes it).
    pub fn recover<'a>(messages: impl IntoIterator<Item = (QueueId, bool, &'a [RcptState])>, now: u64) -> Book {
        let mut book = Book::default();
        for (id, held, states) in messages {
            if held {
                book.held.insert(id);
                continue;
            }
            match next_due(states, now) {
                Some(t) if t > now => book.schedule(id, t),
                _ => book.ready.push_back(id),
            }
        }
        book
    }

    /// How many messages are where.
    pub fn counts(&self) -> Counts {
        Counts {
            ready: self.ready.len(),
            scheduled: self.due.len(),
            held: self.held.len(),
            running: self.running.len(),
        }
    }

    /// The oldest message the book holds, by its id (ids begin with the time they were
    /// issued): a scan, for metrics and `dakiya status`, not for the hot path.
    pub fn oldest(&self) -> Option<&QueueId> {
        let ready = self.ready.iter();
        ready.chain(self.due_at.keys()).chain(self.running.keys()).chain(self.held.iter()).min()
    }

    /// A just-committed message (or a notice) to deliver at once.
    pub fn enqueue(&mut self, id: QueueId) {
        self.ready.push_back(id);
    }

    /// Whether a run is waiting to be started.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next run to start, if any: skips held messages, and a message already running is
    /// remembered to run once more when its run ends.
    pub fn start_next(&mut self) -> Option<Start> {
        while let Some(id) = self.ready.pop_front() {
            if self.held.contains(&id) {
                continue;
            }
            if let Some(after) = self.running.get_mut(&id) {
                // Enqueued again while running (a notice for itself cannot happen; a retry
                // can): run it once more afterwards.
                after.retry = true;
                continue;
            }
            self.unschedule(&id);
            let force = self.forced.remove(&id);
            self.running.insert(id.clone(), After::default());
            return Some(Start { id, force });
        }
        None
    }

    /// A run ended: it asks to run again at `retry_at` (if some recipient is still to do)
    /// and queued `notices`, which are ready at once.
    pub fn finished(&mut self, id: QueueId, retry_at: Option<u64>, notices: Vec<QueueId>) {
        self.ready.extend(notices);
        let after = self.running.remove(&id).unwrap_or_default();
        if after.drop {
            return;
        }
        if after.retry {
            self.forced.insert(id.clone());
            self.ready.push_back(id);
            return;
        }
        if let Some(t) = retry_at {
            self.schedule(id, t);
        }
    }

    /// The earliest time a scheduled message is due.
    pub fn next_due(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Makes every message due at or before `now` ready.
    pub fn promote_due(&mut self, now: u64) {
        while let Some((t, _)) = self.due.first() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = self.due.pop_first() {
                self.due_at.remove(&id);
                self.ready.push_back(id);
            }
        }
    }

    /// `dakiya queue retry` of every message: scheduled ones become ready and forced, running
    /// ones run again when they end. Returns how many messages that affects.
    pub fn retry_all(&mut self) -> usize {
        let mut ids: Vec<QueueId> = self.due_at.keys().cloned().collect();
        ids.sort();
        for id in &ids {
            self.unschedule(id);
            self.forced.insert(id.clone());
            self.ready.push_back(id.clone());
        }
        for after in self.running.values_mut() {
            after.retry = true;
        }
        ids.len() + self.running.len()
    }

    /// `dakiya queue retry ID`; `exists` is whether the spool has the message.
    pub fn retry(&mut self, id: &QueueId, exists: bool) -> Result<usize, String> {
        if !exists {
            return Err(unknown(id));
        }
        if self.held.contains(id) {
            return Err(format!("message {id} is held; release it first"));
        }
        if let Some(after) = self.running.get_mut(id) {
            after.retry = true;
        } else {
            self.unschedule(id);
            self.forced.insert(id.clone());
            self.ready.push_back(id.clone());
        }
        Ok(1)
    }

    /// Whether `id` is held.
    pub fn is_held(&self, id: &QueueId) -> bool {
        self.held.contains(id)
    }

    /// `dakiya queue hold ID`, once the spool has recorded it: not run until released; a
    /// running message is not rescheduled when its run ends.
    pub fn hold(&mut self, id: &QueueId) {
        self.held.insert(id.clone());
        self.unschedule(id);
        if let Some(after) = self.running.get_mut(id) {
            after.drop = true;
        }
    }

    /// `dakiya queue release ID`, once the spool has recorded it: ready at once, forced.
    pub fn release(&mut self, id: &QueueId) {
        self.held.remove(id);
        self.forced.insert(id.clone());
        self.ready.push_back(id.clone());
    }

    /// `dakiya queue delete ID`, once the spool has removed it: forgotten; a running message
    /// is not rescheduled when its run ends.
    pub fn delete(&mut self, id: &QueueId) {
        self.unschedule(id);
        self.held.remove(id);
        self.forced.remove(id);
        if let Some(after) = self.running.get_mut(id) {
            after.drop = true;
        }
    }

    fn schedule(&mut self, id: QueueId, at: u64) {
        if let Some(old) = self.due_at.insert(id.clone(), at) {
            self.due.remove(&(old, id.clone()));
        }
        self.due.insert((at, id));
    }

    fn unschedule(&mut self, id: &QueueId) -> bool {
        match self.due_at.remove(id) {
            Some(at) => self.due.remove(&(at, id.clone())),
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
