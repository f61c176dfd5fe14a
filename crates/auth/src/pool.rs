//! [`CheckPool`]: a fixed set of threads that run password checks, so the memory argon2
//! needs is bounded by the pool's size whatever the load.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

/// The most workers a pool runs: checks are CPU-bound, so more workers than cores only add
/// memory (19 MiB each with the default argon2 parameters).
pub const MAX_CHECK_WORKERS: usize = 256;

/// Why a job did not run to completion on a [`CheckPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No worker became free within the queue timeout; the job was not run.
    #[error("no password check worker free within {0:?}")]
    Busy(Duration),
    /// The job panicked, or the pool's workers are gone.
    #[error("the password check did not complete")]
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of worker threads for password checks.
///
/// Every argon2 verification allocates its memory cost (19 MiB with
/// [`ARGON2_PARAMS`](crate::ARGON2_PARAMS)) for the time it runs. Running checks only on
/// `workers` dedicated threads bounds that memory to `workers` × 19 MiB by design — and, as
/// each thread reuses its own allocator arena, the memory the allocator keeps after a check
/// is bounded the same way. A caller waits for a free worker at most `queue_timeout`
/// (first come, first served), then gets [`PoolError::Busy`] without the job having run.
///
/// The wait happens on an async semaphore with one permit per worker; the permit travels
/// with the job and is returned when the job has finished (its memory freed), even if the
/// caller has gone away meanwhile. The threads end when the pool is dropped.
pub struct CheckPool {
    permits: Arc<Semaphore>,
    jobs: Sender<Job>,
    workers: usize,
    queue_timeout: Duration,
}

impl std::fmt::Debug for CheckPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckPool")
            .field("workers", &self.workers)
            .field("free", &self.permits.available_permits())
            .field("queue_timeout", &self.queue_timeout)
            .finish()
    }
}

impl CheckPool {
    /// Starts `workers` threads (at least 1, at most [`MAX_CHECK_WORKERS`]); callers wait
    /// at most `queue_timeout` for one of them. Errors if a thread cannot be started.
    pub fn new(workers: usize, queue_timeout: Duration) -> std::io::Result<CheckPool> {
        let workers = workers.clamp(1, MAX_CHECK_WORKERS);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        // The workers log where their creator logs (one server's log when several run in
        // one process).
        let log = tracing::dispatcher::get_default(|d| d.clone());
        for i in 0..workers {
            let (queue, log) = (queue.clone(), log.clone());
            std::thread::Builder::new()
                .name(format!("auth-check-{i}"))
                .spawn(move || tracing::dispatcher::with_default(&log, || work(&queue)))?;
        }
        Ok(CheckPool { permits: Arc::new(Semaphore::new(workers)), jobs, workers, queue_timeout })
    }

    /// How many workers the pool runs.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `job` on a worker once one is free, waiting at most the queue timeout.
    ///
    /// Must be called within a tokio runtime with time enabled. If the returned future is
    /// dropped after the job has started, the job still runs to its end (and holds its
    /// worker until then); its result is discarded.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like a lost worker if it were.
            Ok(Err(_)) => return Err(PoolError::Failed),
            Err(_) => return Err(PoolError::Busy(self.queue_timeout)),
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = job();
            // The job's memory is freed by now: the next check may start.
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs.send(job).map_err(|_| PoolError::Failed)?;
        rx.await.map_err(|_| PoolError::Failed)
    }
}

/// A worker: runs jobs until the pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking job must not take its worker with it (the pool would shrink while
        // its permits stayed); unwinding drops the job's permit and its result channel.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}
