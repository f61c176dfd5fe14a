//! Local delivery in rounds: the local steps of the runs waiting at the same time go
//! together on one blocking thread, and each Maildir's `new/` is fsynced once per round
//! instead of once per message (group commit of the directory fsync).
//!
//! A run asks for its local step with [`local_step`]: its request joins the pending round,
//! and whoever gets the turn (one round runs at a time) and then one of the
//! `delivery.local_concurrency` permits first takes the pending requests (up to
//! [`MAX_ROUND`]) and runs them as one round. While a round runs, requests pile up, so
//! rounds grow with the load and stay a single message when it is light. Under load a round
//! also waits until [`ROUND_PACE`] after the previous one started, or until [`MAX_ROUND`]
//! steps wait, so that it is full: every round costs two journal commits whatever its size,
//! and each one slows the sessions' commits that share the journal (docs/performance.md
//! 7.15). After a quiet spell the first step starts at once. A round:
//!
//! 1. for each message: loads it, checks for a loop, writes each local copy (an anonymous
//!    file, or one in `tmp/`) and starts its writeback ([`run::prepare`]);
//! 2. fsyncs every copy of the round, all at once from a small pool of threads
//!    ([`fsyncs`]): the writeback started in 1 put the block allocation of all of them in one
//!    journal transaction, so the first fsync commits them all, and the others, waiting on
//!    that commit rather than arriving after it, share its device cache flush (one journal
//!    commit and about one flush per round, not one flush per copy);
//! 3. links (renames) every fsynced copy into `new/`;
//! 4. fsyncs the `new/` of each Maildir written to, once (through the Maildir's
//!    `GroupSync`, shared with concurrent rounds);
//! 5. only then settles each copy and records the message's new state in the spool
//!    ([`run::complete`]).
//!
//! Copies into a mailbox with a quota are written, fsynced, linked and committed one by one
//! in 1 (the next copy's quota check must see the one before).
//!
//! The durability rule is the same for one message or a round (docs/maildir.md, "Delivery
//! steps and durability"): a copy is delivered, and may be recorded done in the spool, only
//! once its file and its directory entry in `new/` are fsynced. A failed fsync of `new/` takes back every copy staged in that Maildir in the
//! round; each is retried like any temporary failure.

use dakiya_deliver::{CopyBuffers, Maildir, Staged};
use dakiya_spool::QueueId;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;

mod fsyncs;

/// The most local steps in one round: beyond it, the rest wait for the next round.
pub(crate) const MAX_ROUND: usize = 64;

/// The threads that fsync a round's copies: with the round's own thread, one per step of a
/// full round, so that every copy of a round (one per step in the common case) is in flight at
/// once. Measured on the benchmark's journaled ext4 (docs/performance.md 7.15): 8 threads left
/// 0.67 cache flushes per message, 63 left 0.52 (against 1.27 one by one). They are idle
/// between rounds and cost a few pages of stack each.
pub(crate) const FSYNC_THREADS: usize = MAX_ROUND - 1;

/// The least time between the starts of two rounds, unless [`MAX_ROUND`] steps wait. A step
/// that arrives after a quiet spell does not wait; under load a message is delivered at most
/// this much later, in a round of many.
pub(crate) const ROUND_PACE: std::time::Duration = std::time::Duration::from_millis(20);

/// The local steps waiting for a round. Shared by every context of a queue (a reload keeps
/// it), like the permits. It knows nothing of what a step does (run.rs builds the steps):
/// only that it writes copies, which wait for their Maildirs' `new/` fsync, then completes.
pub struct Rounds {
    pending: Mutex<Vec<Request>>,
    /// Copy buffers for the next rounds: at most one set per concurrent round, reused.
    buffers: Mutex<Vec<CopyBuffers>>,
    /// One round at a time: while a round runs, the steps that arrive wait and form the next
    /// one, instead of a second, smaller round linking into the same `new/` at once and
    /// paying its own journal commits (docs/performance.md §7).
    one_at_a_time: Arc<Semaphore>,
    /// When the last round started (for [`ROUND_PACE`]).
    last_start: Mutex<Option<Instant>>,
    /// Told when a round's worth of steps wait, to end the pace early.
    full: Notify,
    /// The threads that fsync a round's copies together.
    fsyncs: fsyncs::Fsyncs,
}

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds {
            pending: Mutex::default(),
            buffers: Mutex::default(),
            one_at_a_time: Arc::new(Semaphore::new(1)),
            last_start: Mutex::default(),
            full: Notify::new(),
            fsyncs: fsyncs::Fsyncs::new(FSYNC_THREADS),
        }
    }
}

/// The first half of a local step: writes its copies with the round's buffers. `None` when
/// it is over already (it has sent its result); otherwise its copies wait for the fsync of
/// their directories.
pub(crate) type Prepare = Box<dyn FnOnce(&mut CopyBuffers) -> Option<Box<dyn StagedStep>> + Send>;

/// A local step whose copies are written: the round fsyncs them, links them into `new/`
/// and commits them, each phase for every step of the round before the next phase.
pub(crate) trait StagedStep: Send {
    /// Phase 2: fsyncs each written copy's file (a failed copy fails, and is dropped).
    fn fsync(&mut self);
    /// Phase 3: links (renames) each written copy into `new/`, fsyncing it first if phase 2
    /// did not.
    fn link(&mut self, bufs: &mut CopyBuffers);
    /// The staged copies, to commit.
    fn staged(&self) -> Vec<(&Arc<Maildir>, &Staged)>;
    /// The second half, once every Maildir of the round is committed: `failed` says why a
    /// Maildir's fsync failed (its staged copies were taken back). Sends the step's result.
    fn complete(self: Box<Self>, failed: &dyn Fn(&Arc<Maildir>) -> Option<String>);
}

/// One local step, waiting for a round.
struct Request {
    id: QueueId,
    prepare: Prepare,
}

impl Rounds {
    fn push(&self, request: Request) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.push(request);
        if pending.len() == MAX_ROUND {
            self.full.notify_one();
        }
    }

    fn waiting(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits, with the round's turn, until [`ROUND_PACE`] after the previous round started or
    /// until a whole round waits, and marks the start of this one.
    async fn pace(&self) {
        let last = *self.last_start.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = last.map(|t| t + ROUND_PACE) {
            loop {
                // Made before the check: a notice between the check and the wait is not lost.
                let full = self.full.notified();
                if self.waiting() >= MAX_ROUND || Instant::now() >= until {
                    break;
                }
                tokio::select! {
                    () = full => {}
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        }
        *self.last_start.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Up to [`MAX_ROUND`] pending requests, oldest first.
    fn take(&self) -> Vec<Request> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let n = pending.len().min(MAX_ROUND);
        pending.drain(..n).collect()
    }
}

/// Runs the local step of message `id` in a round and waits for its result on `done` (the
/// step sends it). `None` if the step did not finish (the runtime is shutting down, or it
/// panicked, which is logged): the message's state is durable and it is run again.
/// `failed_round` is told of the ids of a round whose blocking task did not finish.
pub(crate) async fn local_step<T>(
    rounds: &Arc<Rounds>,
    limit: &Arc<Semaphore>,
    id: &QueueId,
    prepare: Prepare,
    mut done: oneshot::Receiver<T>,
    failed_round: fn(&QueueId, &tokio::task::JoinError),
) -> Option<T> {
    rounds.push(Request { id: id.clone(), prepare });
    loop {
        // The round's turn first, then a permit: a run waiting for its turn holds no permit
        // that the final steps of other runs need.
        let turn = async {
            let turn = rounds.one_at_a_time.clone().acquire_owned().await.ok()?;
            // The pace with the turn only: the permits are for work that runs.
            if rounds.waiting() > 0 {
                rounds.pace().await;
            }
            Some((turn, limit.clone().acquire_owned().await.ok()?))
        };
        let permit = tokio::select! {
            biased;
            step = &mut done => return step.ok(),
            permit = turn => permit?,
        };
        let round = rounds.take();
        if round.is_empty() {
            // Ours is in a round that another run leads.
            drop(permit);
            return done.await.ok();
        }
        let ids: Vec<QueueId> = round.iter().map(|r| r.id.clone()).collect();
        let rounds = rounds.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut bufs = rounds.buffers.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
            run_round(round, &mut bufs, &rounds.fsyncs);
            rounds.buffers.lock().unwrap_or_else(PoisonError::into_inner).push(bufs);
        })
        .await;
        if let Err(e) = finished {
            for id in &ids {
                failed_round(id, &e);
            }
        }
    }
}

/// Runs one round on this (blocking) thread: every message's copies written, then every
/// copy fsynced, then every copy linked into `new/`, one fsync of `new/` per Maildir, then
/// every message's outcome. A panic in one message's step is caught and ends only that
/// message's step (its result is never sent).
fn run_round(round: Vec<Request>, bufs: &mut CopyBuffers, fsyncs: &fsyncs::Fsyncs) {
    let mut waiting: Vec<(QueueId, Box<dyn StagedStep>)> = Vec::with_capacity(round.len());
    for Request { id, prepare } in round {
        match catch_unwind(AssertUnwindSafe(|| prepare(bufs))) {
            Ok(None) => {}
            Ok(Some(staged)) => waiting.push((id, staged)),
            Err(_) => panicked(&id),
        }
    }
    let mut waiting = fsyncs.all_at_once(waiting, fsync_step);
    each(&mut waiting, |step| step.link(bufs));
    let failed = commit(waiting.iter().flat_map(|(_, s)| s.staged()));
    let failed_in = |md: &Arc<Maildir>| failed.iter().find(|(f, _)| Arc::ptr_eq(f, md)).map(|(_, why)| why.clone());
    for (id, staged) in waiting {
        if catch_unwind(AssertUnwindSafe(|| staged.complete(&failed_in))).is_err() {
            panicked(&id);
        }
    }
}

/// A step's fsync phase, on a thread of the pool; a step that panics is dropped (its copies
/// with it) and its result never sent.
fn fsync_step((id, mut step): (QueueId, Box<dyn StagedStep>)) -> Option<(QueueId, Box<dyn StagedStep>)> {
    match catch_unwind(AssertUnwindSafe(|| step.fsync())) {
        Ok(()) => Some((id, step)),
        Err(_) => {
            panicked(&id);
            None
        }
    }
}

/// Runs `phase` on every waiting step; a step that panics is dropped (its copies not yet in
/// `new/` with it) and its result never sent.
fn each(waiting: &mut Vec<(QueueId, Box<dyn StagedStep>)>, mut phase: impl FnMut(&mut dyn StagedStep)) {
    waiting.retain_mut(|(id, step)| {
        let ok = catch_unwind(AssertUnwindSafe(|| phase(step.as_mut()))).is_ok();
        if !ok {
            panicked(id);
        }
        ok
    });
}

/// Makes the staged copies durable: one fsync of `new/` per Maildir, after all the links
/// (renames) into it (a directory fsync persists every entry changed before it started). Returns the
/// Maildirs whose fsync failed, with why; their staged copies have been removed.
fn commit<'a>(staged: impl Iterator<Item = (&'a Arc<Maildir>, &'a Staged)>) -> Vec<(Arc<Maildir>, String)> {
    let mut by_dir: Vec<(&Arc<Maildir>, Vec<&Staged>)> = Vec::new();
    for (md, s) in staged {
        match by_dir.iter_mut().find(|(m, _)| Arc::ptr_eq(m, md)) {
            Some((_, list)) => list.push(s),
            None => by_dir.push((md, vec![s])),
        }
    }
    let mut failed = Vec::new();
    for (md, list) in by_dir {
        if let Err(e) = md.commit_staged(&list) {
            tracing::warn!(maildir = %md.path().display(), copies = list.len(), error = %e.error, "Maildir copies not durable; taken back, will retry");
            failed.push((md.clone(), e.error.to_string()));
        }
    }
    failed
}

fn panicked(id: &QueueId) {
    tracing::error!(queue_id = %id, "delivery run failed (panic in the local step); will retry");
}

#[cfg(test)]
mod tests;
