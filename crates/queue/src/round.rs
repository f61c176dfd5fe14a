//! Local delivery in rounds: the local steps of the runs waiting at the same time go
//! together on one blocking thread, and each Maildir's `new/` is fsynced once per round
//! instead of once per message (group commit of the directory fsync).
//!
//! A run asks for its local step with [`local_step`]: its request joins the pending round,
//! and whoever gets one of the `delivery.local_concurrency` permits first takes the pending
//! requests (up to [`MAX_ROUND`]) and runs them as one round. While every permit is busy,
//! requests pile up, so rounds grow with the load and stay a single message when it is
//! light. A round:
//!
//! 1. for each message: loads it, checks for a loop, writes each local copy to `tmp/`,
//!    fsyncs the file and renames it into `new/` ([`run::prepare`]);
//! 2. fsyncs the `new/` of each Maildir written to, once (through the Maildir's
//!    `GroupSync`, shared with concurrent rounds);
//! 3. only then settles each copy and records the message's new state in the spool
//!    ([`run::complete`]).
//!
//! The durability rule is the same for one message or a round (docs/maildir.md, "Delivery
//! steps and durability"): a copy is delivered, and may be recorded done in the spool, only
//! once its file and its directory entry in `new/` are fsynced. A failed fsync of `new/` takes back every copy staged in that Maildir in the
//! round; each is retried like any temporary failure.

use crate::ctx::Ctx;
use crate::run::{self, Copies, Prepared, Step};
use dakiya_deliver::{CopyBuffers, Maildir, Staged};
use dakiya_spool::QueueId;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most local steps in one round: beyond it, other permits run rounds in parallel.
pub(crate) const MAX_ROUND: usize = 64;

/// The local steps waiting for a round. Shared by every context of a queue (a reload keeps
/// it), like the permits.
#[derive(Default)]
pub struct Rounds {
    pending: Mutex<Vec<Request>>,
    /// Copy buffers for the next rounds: at most one set per concurrent round, reused.
    buffers: Mutex<Vec<CopyBuffers>>,
}

/// One run's local step, waiting for a round.
struct Request {
    ctx: Arc<Ctx>,
    id: QueueId,
    force: bool,
    received: Option<usize>,
    reply: oneshot::Sender<Step>,
}

impl Rounds {
    fn push(&self, request: Request) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).push(request);
    }

    /// Up to [`MAX_ROUND`] pending requests, oldest first.
    fn take(&self) -> Vec<Request> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let n = pending.len().min(MAX_ROUND);
        pending.drain(..n).collect()
    }
}

/// The local step of message `id` (see [`run::prepare`]), run in a round. `None` if the
/// step did not finish (the runtime is shutting down, or it panicked, which is logged): the
/// message's state is durable and it is run again.
pub(crate) async fn local_step(ctx: &Arc<Ctx>, id: &QueueId, force: bool, received: Option<usize>) -> Option<Step> {
    let (reply, mut done) = oneshot::channel();
    ctx.rounds.push(Request { ctx: ctx.clone(), id: id.clone(), force, received, reply });
    loop {
        let permit = tokio::select! {
            biased;
            step = &mut done => return step.ok(),
            permit = ctx.local_limit.clone().acquire_owned() => permit.ok()?,
        };
        let round = ctx.rounds.take();
        if round.is_empty() {
            // Ours is in a round that another run leads.
            drop(permit);
            return done.await.ok();
        }
        let ids: Vec<QueueId> = round.iter().map(|r| r.id.clone()).collect();
        let rounds = ctx.rounds.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut bufs = rounds.buffers.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
            run_round(round, &mut bufs);
            rounds.buffers.lock().unwrap_or_else(PoisonError::into_inner).push(bufs);
        })
        .await;
        if let Err(e) = finished {
            for id in &ids {
                run::step_failed(id, &e);
            }
        }
    }
}

/// Runs one round on this (blocking) thread: every message's copies, one fsync of `new/` per
/// Maildir, then every message's outcome. A panic in one message's step is caught and ends
/// only that message's step.
fn run_round(round: Vec<Request>, bufs: &mut CopyBuffers) {
    let mut waiting: Vec<(Request, Box<Copies>)> = Vec::with_capacity(round.len());
    for r in round {
        let prepared = catch_unwind(AssertUnwindSafe(|| run::prepare(&r.ctx, &r.id, r.force, r.received, bufs)));
        match prepared {
            Ok(Prepared::Done(step)) => {
                let _ = r.reply.send(step);
            }
            Ok(Prepared::Copies(copies)) => waiting.push((r, copies)),
            Err(_) => panicked(&r.id),
        }
    }
    let failed = commit(waiting.iter().flat_map(|(_, c)| c.staged()));
    let failed_in = |md: &Arc<Maildir>| failed.iter().find(|(f, _)| Arc::ptr_eq(f, md)).map(|(_, why)| why.clone());
    for (r, copies) in waiting {
        match catch_unwind(AssertUnwindSafe(|| run::complete(&r.ctx, *copies, &failed_in))) {
            Ok(step) => {
                let _ = r.reply.send(step);
            }
            Err(_) => panicked(&r.id),
        }
    }
}

/// Makes the staged copies durable: one fsync of `new/` per Maildir, after all the renames
/// into it (a directory fsync persists every entry changed before it started). Returns the
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
