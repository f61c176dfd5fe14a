//! A small pool of threads that fsync a round's copies at the same time.
//!
//! Why at the same time (docs/performance.md 7.15): the writeback that a round starts for
//! all its copies puts their blocks in one journal transaction. An fsync that arrives while
//! that transaction commits waits for the commit and needs nothing more; an fsync that
//! arrives after it finds its data committed, and ext4 then asks the device for a cache flush
//! of its own. One by one from one thread, every copy after the first arrives late: one flush
//! per copy. Issued together, most of them wait on the first one's commit and share its
//! flush. Durability does not change: each copy's own fsync has returned before it is linked
//! into `new/`.
//!
//! Why a pool of our own rather than tokio's blocking pool: a round runs on a blocking thread
//! already, and these threads do nothing but wait in `fsync(2)`; keeping them apart means a
//! burst of rounds never takes the blocking threads that the spool's commits and the
//! sessions' other blocking work need, and their number is a fixed, small bound.
//!
//! The threads are started on the first round that has more than one step, live as long as
//! the [`Rounds`](super::Rounds) (a reload keeps them) and end when it is dropped.

use super::{StagedStep, panicked};
use dakiya_spool::QueueId;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The pool's threads: with the round's own thread, one per step of a full round, so that
/// every copy of a round (one per step in the common case) is in flight at once. Measured on
/// the benchmark's journaled ext4 (docs/performance.md 7.15): 8 threads left 0.67 cache flushes
/// per message, 63 left 0.52 (against 1.27 one by one). They are idle between rounds and
/// cost a few pages of stack each.
pub(crate) const FSYNC_THREADS: usize = super::MAX_ROUND - 1;

/// One step of a round to fsync, and where to send it back (with its place in the round).
struct Job {
    at: usize,
    id: QueueId,
    step: Box<dyn StagedStep>,
    back: Sender<Done>,
}

/// A step back from a thread: `None` if its fsync panicked (it is dropped, as in the round's
/// other phases).
type Done = (usize, QueueId, Option<Box<dyn StagedStep>>);

/// The pool: the sending side of its job queue, created with the threads on first use.
#[derive(Default)]
pub(crate) struct Fsyncs {
    jobs: OnceLock<Option<Sender<Job>>>,
}

impl Fsyncs {
    /// Fsyncs every step's copies, all at once: the steps go to the pool's threads and the
    /// calling thread takes the first one itself. Returns the steps in their order, less
    /// any that panicked (logged). Without threads (none could be started) the calling thread
    /// does them one by one.
    pub(crate) fn fsync_all(
        &self,
        waiting: Vec<(QueueId, Box<dyn StagedStep>)>,
    ) -> Vec<(QueueId, Box<dyn StagedStep>)> {
        let n = waiting.len();
        let mut steps = waiting.into_iter();
        let Some(first) = steps.next() else { return Vec::new() };
        let (back, done) = channel::<Done>();
        let mut here = vec![first];
        if n > 1
            && let Some(jobs) = self.jobs()
        {
            for (i, (id, step)) in steps.by_ref().enumerate() {
                if let Err(returned) = jobs.send(Job { at: i + 1, id, step, back: back.clone() }) {
                    // The threads are gone: this one does the rest.
                    let Job { id, step, .. } = returned.0;
                    here.push((id, step));
                    break;
                }
            }
        }
        here.extend(steps);
        let sent = n - here.len();
        drop(back);
        let mut out: Vec<Option<(QueueId, Box<dyn StagedStep>)>> = (0..n).map(|_| None).collect();
        // The steps kept here: the first, and any the pool could not take (they follow the
        // sent ones in the round's order).
        for (k, (id, step)) in here.into_iter().enumerate() {
            let at = if k == 0 { 0 } else { sent + k };
            out[at] = fsync_one(&id, step).map(|step| (id, step));
        }
        // Every job holds a sender: when the last one is answered or dropped, this ends.
        for (at, id, step) in done.iter() {
            out[at] = step.map(|step| (id, step));
        }
        out.into_iter().flatten().collect()
    }

    /// The job queue, starting the threads the first time. `None` if no thread could start.
    fn jobs(&self) -> Option<&Sender<Job>> {
        self.jobs
            .get_or_init(|| {
                let (jobs, queue) = channel::<Job>();
                let queue = Arc::new(Mutex::new(queue));
                let started = (0..FSYNC_THREADS)
                    .filter(|i| {
                        let queue = queue.clone();
                        let spawned =
                            std::thread::Builder::new().name(format!("dakiya-fsync-{i}")).spawn(move || work(&queue));
                        if let Err(e) = &spawned {
                            tracing::warn!(error = %e, "cannot start an fsync thread; the round's thread fsyncs alone");
                        }
                        spawned.is_ok()
                    })
                    .count();
                (started > 0).then_some(jobs)
            })
            .as_ref()
    }
}

/// A thread of the pool: takes the next job until the pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, not while fsyncing it.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(Job { at, id, step, back }) = job else { return };
        let step = fsync_one(&id, step);
        let _ = back.send((at, id, step));
    }
}

/// One step's fsync phase; a step that panics is dropped (logged) and its result never sent.
fn fsync_one(id: &QueueId, mut step: Box<dyn StagedStep>) -> Option<Box<dyn StagedStep>> {
    match catch_unwind(AssertUnwindSafe(|| step.fsync())) {
        Ok(()) => Some(step),
        Err(_) => {
            panicked(id);
            None
        }
    }
}
