//! One delivery run of one queued message: local recipients into their Maildirs, remote
//! recipients over SMTP (one job per destination domain, in parallel), then the notices the
//! sender asked for (DSN), then the new recipient states made durable.
//!
//! A run has up to three steps so that the async runtime never blocks on disk: the local
//! step (load, loop check, Maildir deliveries) and the final step (DSNs, status records) run
//! on the blocking pool; the remote step in between is async. The local steps of the runs
//! waiting at the same time go together in one round on one blocking thread (round.rs),
//! which fsyncs each Maildir's `new/` once for all of them. A message with only local
//! recipients runs both blocking steps in one go. What the steps decide is decided by the
//! pure core: [`Transition::after`] for each recipient, [`Plan`] for the end of the run.

use crate::ctx::Ctx;
use crate::history::{self, Via};
use crate::local::{self, Target, Written};
use crate::loops::loop_failure;
use crate::notice;
use crate::outcome::Outcome;
use crate::plan::{Plan, Settlement};
use crate::remote;
use crate::state::{RetryPolicy, Transition};
use dakiya_deliver::{CopyBuffers, DeliverError, Maildir, Staged};
use dakiya_dsn::Action;
use dakiya_spool::{QueueId, QueuedMessage, RcptState};
use std::sync::Arc;

/// What a run leaves for the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The message run.
    pub id: QueueId,
    /// When to try again (unix seconds), if some recipient is still to do.
    pub retry_at: Option<u64>,
    /// Notices queued by this run, to deliver next.
    pub notices: Vec<QueueId>,
}

impl RunOutcome {
    fn retry(id: &QueueId, at: Option<u64>) -> RunOutcome {
        RunOutcome { id: id.clone(), retry_at: at, notices: Vec::new() }
    }
}

/// A run between its steps.
pub(crate) struct Run {
    m: QueuedMessage,
    states: Vec<RcptState>,
    changed: Vec<bool>,
    /// Recipients delivered in this run (for success notices), with the action to report:
    /// delivered (locally), or relayed (to a next hop without DSN).
    delivered: Vec<(usize, Action)>,
    /// Remote recipients due now.
    remote: Vec<usize>,
    /// Local recipients due now, for the LMTP server (`[delivery] method = "lmtp"`).
    lmtp: Vec<usize>,
    now: u64,
}

impl Run {
    fn set(&mut self, i: usize, state: RcptState) {
        self.states[i] = state;
        self.changed[i] = true;
    }

    /// Records the outcome of an attempt to recipient `i`.
    fn apply(&mut self, ctx: &Ctx, i: usize, outcome: &Outcome, via: &Via) {
        let policy = RetryPolicy::of(&ctx.cfg.delivery);
        let state = RcptState::after(&self.states[i], outcome, self.now, self.m.envelope.received_at, &policy);
        history::attempt(ctx, &self.m, i, outcome, &state, via);
        crate::measure::delivery(ctx, &self.m, i, outcome, &state, self.now);
        self.record(i, outcome, state);
    }

    /// Records recipient `i`'s new `state` after an attempt that came to `outcome`.
    fn record(&mut self, i: usize, outcome: &Outcome, state: RcptState) {
        if let Some(action) = outcome.success_action() {
            self.delivered.push((i, action));
        }
        self.set(i, state);
    }
}

/// Where a run stands after its local step.
pub(crate) enum Step {
    /// Finished.
    Done(RunOutcome),
    /// Remote (or LMTP) recipients are left, for the async step.
    Remote(Box<Run>),
}

/// Delivers every due recipient of message `id`; with `force`, deferred recipients are due
/// now whatever their next attempt time (`dakiya queue retry`).
pub async fn run(ctx: Arc<Ctx>, id: QueueId, force: bool) -> RunOutcome {
    run_counted(ctx, id, force, None).await
}

/// [`run()`] for a message whose `Received:` fields are already counted (`received`, from
/// the session that accepted it): the loop check uses the count instead of reading the
/// stored message's header section.
pub async fn run_counted(ctx: Arc<Ctx>, id: QueueId, force: bool, received: Option<usize>) -> RunOutcome {
    let retry_soon = || RunOutcome::retry(&id, Some(ctx.clock.now() + 60));
    // The local step runs in a round with the local steps of other messages (round.rs).
    let (reply, done) = tokio::sync::oneshot::channel();
    let prepare = local_prepare(ctx.clone(), id.clone(), force, received, reply);
    let step = crate::round::local_step(&ctx.rounds, &ctx.local_limit, &id, prepare, done, step_failed).await;
    let mut run = match step {
        Some(Step::Done(outcome)) => return outcome,
        Some(Step::Remote(run)) => run,
        None => return retry_soon(),
    };
    for (i, outcome, via) in remote::deliver(&ctx, &run.m, &run.remote).await {
        run.apply(&ctx, i, &outcome, &via);
    }
    if let Some(lmtp) = &ctx.lmtp {
        let via = Via { local: true, hop: Some("LMTP".into()), reply: None };
        for (i, outcome) in crate::lmtp::deliver(&ctx, lmtp, &run.m, &run.lmtp).await {
            run.apply(&ctx, i, &outcome, &via);
        }
    }
    let Ok(_permit) = ctx.local_limit.acquire().await else { return retry_soon() };
    let c = ctx.clone();
    match tokio::task::spawn_blocking(move || finish(&c, *run)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            step_failed(&id, &e);
            retry_soon()
        }
    }
}

/// A blocking step that did not finish. Cancelled means the runtime is shutting down (it
/// cancels blocking tasks that have not started): nothing failed, and the message, whose
/// state is durable, is delivered after the next start. Only a panic is an error.
pub(crate) fn step_failed(id: &QueueId, e: &tokio::task::JoinError) {
    if e.is_cancelled() {
        tracing::debug!(queue_id = %id, "delivery run cancelled by shutdown; it runs again after the next start");
    } else {
        tracing::error!(queue_id = %id, error = %e, "delivery run failed; will retry");
    }
}

/// A run whose local copies are written and wait for the round's phases: their fsync, their
/// link (rename) into `new/`, then the fsync of their Maildirs' `new/` directories, which the
/// round makes once per directory.
pub(crate) struct Copies {
    run: Run,
    /// Per local recipient: its copy, or why it could not be written.
    copies: Vec<(usize, Result<Written, DeliverError>)>,
}

impl Copies {
    /// The round's second phase: fsyncs every written copy's file.
    fn fsync(&mut self) {
        for (_, copy) in &mut self.copies {
            local::fsync_copy(copy);
        }
    }

    /// The round's third phase: links (renames) every written copy into `new/`.
    fn link(&mut self, hostname: &str, bufs: &mut CopyBuffers) {
        for (_, copy) in &mut self.copies {
            local::link_copy(copy, hostname, bufs);
        }
    }

    /// The staged copies, to commit.
    pub(crate) fn staged(&self) -> impl Iterator<Item = (&Arc<Maildir>, &Staged)> {
        self.copies.iter().filter_map(|(_, c)| match c {
            Ok(Written::Staged(md, staged)) => Some((md, staged)),
            _ => None,
        })
    }
}

/// The first half of the local step.
pub(crate) enum Prepared {
    /// Nothing waits for a directory fsync: the step is over.
    Done(Step),
    /// Copies wait for their directory fsync ([`complete`]).
    Copies(Box<Copies>),
}

/// The local step of message `id` for a round (round.rs): [`prepare`], and when copies wait
/// for their directory fsync, [`complete`] once the round has committed them. The step's
/// result goes to `reply`.
fn local_prepare(
    ctx: Arc<Ctx>,
    id: QueueId,
    force: bool,
    received: Option<usize>,
    reply: tokio::sync::oneshot::Sender<Step>,
) -> crate::round::Prepare {
    Box::new(move |bufs| match prepare(&ctx, &id, force, received, bufs) {
        Prepared::Done(step) => {
            let _ = reply.send(step);
            None
        }
        Prepared::Copies(copies) => Some(Box::new(Waiting { ctx, copies, reply })),
    })
}

/// A local step whose copies wait for the round's directory fsyncs.
struct Waiting {
    ctx: Arc<Ctx>,
    copies: Box<Copies>,
    reply: tokio::sync::oneshot::Sender<Step>,
}

impl crate::round::StagedStep for Waiting {
    fn fsync(&mut self) {
        self.copies.fsync();
    }

    fn link(&mut self, bufs: &mut CopyBuffers) {
        self.copies.link(&self.ctx.cfg.hostname, bufs);
    }

    fn staged(&self) -> Vec<(&Arc<Maildir>, &Staged)> {
        self.copies.staged().collect()
    }

    fn complete(self: Box<Self>, failed: &dyn Fn(&Arc<Maildir>) -> Option<String>) {
        let Waiting { ctx, copies, reply } = *self;
        let _ = reply.send(complete(&ctx, *copies, failed));
    }
}

/// Loads the message, checks for a mail loop and writes the local recipients' copies (not
/// yet durable: see [`complete`]). The batch file is opened once: the envelope, then the
/// body through the same descriptor.
pub(crate) fn prepare(
    ctx: &Ctx,
    id: &QueueId,
    force: bool,
    received: Option<usize>,
    bufs: &mut CopyBuffers,
) -> Prepared {
    let now = ctx.clock.now();
    let (mut m, body) = match ctx.spool.load_with_body(id) {
        Ok(loaded) => loaded,
        Err(dakiya_spool::SpoolError::NotFound(_)) => return Prepared::Done(Step::Done(RunOutcome::retry(id, None))),
        Err(e) => {
            tracing::warn!(queue_id = %id, error = %e, "cannot load queued message; will retry");
            return Prepared::Done(Step::Done(RunOutcome::retry(id, Some(now + 60))));
        }
    };
    if m.held {
        return Prepared::Done(Step::Done(RunOutcome::retry(id, None)));
    }
    let n = m.states.len();
    // The run keeps the states (the message's copy is not read again).
    let mut run = Run {
        states: std::mem::take(&mut m.states),
        m,
        changed: vec![false; n],
        delivered: Vec::new(),
        remote: Vec::new(),
        lmtp: Vec::new(),
        now,
    };
    let due: Vec<usize> = (0..n).filter(|&i| run.states[i].is_due(now, force)).collect();
    let mut body = local::Source::new(body);
    if !due.is_empty() {
        let received = received.unwrap_or_else(|| body.count_received());
        if let Some(failure) = loop_failure(received) {
            tracing::warn!(queue_id = %id, received, "mail loop detected; failing the message");
            for &i in &due {
                run.apply(ctx, i, &failure, &Via::default());
            }
            return Prepared::Done(Step::Done(finish(ctx, run)));
        }
    }
    let mut copies = Vec::new();
    for i in due {
        let rcpt = &run.m.envelope.recipients[i];
        match &rcpt.mailbox {
            // Handed to the LMTP server in the async step, all in one transaction.
            Some(_) if ctx.lmtp.is_some() => run.lmtp.push(i),
            Some((domain, mailbox)) => {
                let target = Target { address: &rcpt.address, domain, mailbox };
                copies.push((i, local::write_copy(&ctx.cfg, &mut body, &ctx.boxes, &run.m, target, bufs)));
            }
            None => run.remote.push(i),
        }
    }
    if copies.is_empty() {
        return Prepared::Done(end_of_local_step(ctx, run));
    }
    Prepared::Copies(Box::new(Copies { run, copies }))
}

/// The second half of the local step, once the round has fsynced the `new/` directory of
/// every staged copy: `failed` says why a Maildir's fsync failed (its staged copies were
/// taken back). Each copy's outcome is recorded only now: a copy is delivered once its file
/// **and** its `new/` entry are durable, and only a delivered copy may be recorded done in
/// the spool (docs/durability.md).
pub(crate) fn complete(ctx: &Ctx, copies: Copies, failed: &dyn Fn(&Arc<Maildir>) -> Option<String>) -> Step {
    let Copies { mut run, copies } = copies;
    for (i, written) in copies {
        let result = match written {
            Ok(Written::Durable(path)) => Ok(path),
            // Never linked (the round always links before it commits): dropped, not delivered.
            Ok(Written::Pending(..)) => Err(DeliverError::temporary("copy written but not linked into new/")),
            Ok(Written::Staged(md, staged)) => match failed(&md) {
                Some(why) => Err(DeliverError::temporary(why)),
                None => Ok(staged.path),
            },
            Err(e) => Err(e),
        };
        let address = &run.m.envelope.recipients[i].address;
        let (outcome, state) = local::settle(&ctx.cfg, &run.m, address, result, &run.states[i], run.now);
        history::attempt(ctx, &run.m, i, &outcome, &state, &Via::local());
        crate::measure::delivery(ctx, &run.m, i, &outcome, &state, run.now);
        run.record(i, &outcome, state);
    }
    end_of_local_step(ctx, run)
}

/// After the local copies: done if nothing is left for the async step.
fn end_of_local_step(ctx: &Ctx, run: Run) -> Step {
    if run.remote.is_empty() && run.lmtp.is_empty() {
        Step::Done(finish(ctx, run))
    } else {
        Step::Remote(Box::new(run))
    }
}

/// Queues the notices the planner calls for, then makes the new states durable: the message
/// leaves the spool once every recipient is delivered or failed and notified. The planner's
/// order is the crash rule: notices first, then the states that say they were sent.
fn finish(ctx: &Ctx, run: Run) -> RunOutcome {
    let id = run.m.envelope.id.clone();
    let delay_notice = ctx.cfg.delivery.delay_notice;
    let mut plan = Plan::new(&run.m, run.states, run.changed, &run.delivered, run.now, delay_notice);
    let mut notices = Vec::new();
    for n in plan.notices().to_vec() {
        match notice::send(ctx, &run.m, n.kind, &n.recipients, plan.states(), run.now) {
            Ok(Some(dsn)) => {
                tracing::info!(queue_id = %id, notice = %dsn, kind = ?n.kind, recipients = n.recipients.len(), "queued delivery status notification");
                history::notice(ctx, &id, &dsn, n.kind);
                notices.push(dsn);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(queue_id = %id, kind = ?n.kind, error = %e, "cannot queue a delivery status notification; will try again");
                plan.notice_failed(&n);
            }
        }
    }
    let states = plan.states().to_vec();
    match plan.settle() {
        Settlement::Remove => {
            history::done(ctx, &id, &states);
            if let Err(e) = ctx.spool.remove(&id) {
                tracing::warn!(queue_id = %id, error = %e, "cannot remove delivered message from the spool");
            }
            RunOutcome { id, retry_at: None, notices }
        }
        Settlement::Keep { records, next_due } => {
            for (i, state) in &records {
                if let Err(e) = ctx.spool.record(&id, *i, state) {
                    tracing::error!(queue_id = %id, error = %e, "cannot record delivery state; the recipient may get a second copy");
                }
            }
            RunOutcome { id, retry_at: next_due, notices }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_cancelled_by_shutdown_is_not_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let cancelled = rt.block_on(async {
            let task = tokio::spawn(std::future::pending::<()>());
            task.abort();
            task.await.unwrap_err()
        });
        let panicked = rt.block_on(async { tokio::spawn(async { panic!("step panicked") }).await.unwrap_err() });
        let id: QueueId = "06B15C91CD0D88FB".parse().unwrap();
        let log = crate::testlog::capture(|| {
            step_failed(&id, &cancelled);
            step_failed(&id, &panicked);
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].starts_with("DEBUG delivery run cancelled by shutdown"), "{log}");
        assert!(lines[1].starts_with("ERROR delivery run failed; will retry"), "{log}");
    }
}
