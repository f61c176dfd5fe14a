//! A small pool of threads that fsync a round's copies at the same time.
//!
//! Why at the same time (docs/performance.md 7.15): the writeback that a round starts for
//! all its copies puts their blocks in one journal transaction. An fsync that arrives while
//! that transaction commits waits for the commit and needs nothing more; an fsync that
//! arrives after it finds its data committed, and ext4 then asks the device for a cache flush
//! of its own. One by one from one thread, every copy after the first arrives late: one flush
//! per copy. Issued together, they wait on the first one's commit, or ask for flushes that
//! the block layer merges while they are pending together. Durability does not change: each
//! copy's own fsync has returned before it is linked into `new/`.
//!
//! Why a pool of our own rather than tokio's blocking pool: a round runs on a blocking thread
//! already, and these threads do nothing but wait in `fsync(2)`; keeping them apart means a
//! burst of rounds never takes the blocking threads that the spool's commits and the
//! sessions' other blocking work need, and their number is a fixed bound.
//!
//! The pool knows nothing of steps or copies: it runs one function on every item of a list at
//! once. The threads are started the first time a list has more than one item, live as long
//! as the pool (the queue's `Rounds`, which a reload keeps) and end when it is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Work for a thread of the pool.
type Job = Box<dyn FnOnce() + Send>;

/// The pool: how many threads it may start, and the sending side of its job queue, made with
/// the threads on first use (`None` if no thread could start).
pub(crate) struct Fsyncs {
    threads: usize,
    jobs: OnceLock<Option<Sender<Job>>>,
}

impl Fsyncs {
    pub(crate) fn new(threads: usize) -> Fsyncs {
        Fsyncs { threads, jobs: OnceLock::new() }
    }

    /// Runs `work` on every item at once: the items after the first go to the pool's threads,
    /// and the calling thread does the first. Returns what `work` gave back, in the items'
    /// order, less the `None`s. `work` is expected to catch its own panics; one that does not
    /// loses its item, wherever it ran (the thread survives). Without threads (none could be
    /// started) the calling thread does the items one by one.
    pub(crate) fn all_at_once<T: Send + 'static>(&self, items: Vec<T>, work: fn(T) -> Option<T>) -> Vec<T> {
        let n = items.len();
        let mut items = items.into_iter();
        let Some(first) = items.next() else { return Vec::new() };
        let (back, done) = channel::<(usize, Option<T>)>();
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let mut here = vec![(0, first)];
        // A single item never starts the threads.
        match (n > 1).then(|| self.jobs()).flatten() {
            Some(jobs) => {
                for (at, item) in (1..n).zip(items) {
                    let back = back.clone();
                    let job: Job = Box::new(move || {
                        let _ = back.send((at, work(item)));
                    });
                    // The threads cannot be gone while the pool lives; if they were, the job
                    // runs here and answers all the same.
                    if let Err(returned) = jobs.send(job) {
                        let _ = catch_unwind(AssertUnwindSafe(returned.0));
                    }
                }
            }
            None => here.extend((1..n).zip(items)),
        }
        drop(back);
        for (at, item) in here {
            out[at] = catch_unwind(AssertUnwindSafe(|| work(item))).ok().flatten();
        }
        // Every job holds a sender: when the last one has answered or been dropped, this ends.
        for (at, item) in done.iter() {
            out[at] = item;
        }
        out.into_iter().flatten().collect()
    }

    /// The job queue, starting the threads the first time. `None` if no thread could start.
    fn jobs(&self) -> Option<&Sender<Job>> {
        self.jobs
            .get_or_init(|| {
                let (jobs, queue) = channel::<Job>();
                let queue = Arc::new(Mutex::new(queue));
                let started = (0..self.threads)
                    .filter(|i| {
                        let queue = queue.clone();
                        let spawned =
                            std::thread::Builder::new().name(format!("dakiya-fsync-{i}")).spawn(move || serve(&queue));
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

/// A thread of the pool: runs the next job until the pool is dropped.
fn serve(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, not while running it.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}
