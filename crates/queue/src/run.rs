//! One delivery run of one queued message: local recipients into their Maildirs, remote
//! recipients over SMTP (one job per destination domain, in parallel), then the notices the
//! sender asked for (DSN), then the new recipient states made durable.
//!
//! A run has up to three steps so that the async runtime never blocks on disk: the local
//! step (load, loop check, Maildir deliveries) and the final step (DSNs, status records) run
//! on the blocking pool; the remote step in between is async. A message with only local
//! recipients runs both blocking steps in one go. What the steps decide is decided by the
//! pure core: [`Transition::after`] for each recipient, [`Plan`] for the end of the run.

use crate::ctx::Ctx;
use crate::history::{self, Via};
use crate::local::{self, Target};
use crate::loops::loop_failure;
use crate::notice;
use crate::outcome::Outcome;
use crate::plan::{Plan, Settlement};
use crate::remote;
use crate::state::{RetryPolicy, Transition};
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
struct Run {
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

enum Step {
    Done(RunOutcome),
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
    let first = {
        let Ok(_permit) = ctx.local_limit.acquire().await else { return retry_soon() };
        let (c, i) = (ctx.clone(), id.clone());
        tokio::task::spawn_blocking(move || local_step(&c, &i, force, received)).await
    };
    let mut run = match first {
        Ok(Step::Done(outcome)) => return outcome,
        Ok(Step::Remote(run)) => run,
        Err(e) => {
            step_failed(&id, &e);
            return retry_soon();
        }
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
fn step_failed(id: &QueueId, e: &tokio::task::JoinError) {
    if e.is_cancelled() {
        tracing::debug!(queue_id = %id, "delivery run cancelled by shutdown; it runs again after the next start");
    } else {
        tracing::error!(queue_id = %id, error = %e, "delivery run failed; will retry");
    }
}

/// Loads the message, checks for a mail loop and delivers the local recipients. The batch
/// file is opened once: the envelope, then the body through the same descriptor.
fn local_step(ctx: &Ctx, id: &QueueId, force: bool, received: Option<usize>) -> Step {
    let now = ctx.clock.now();
    let (m, body) = match ctx.spool.load_with_body(id) {
        Ok(loaded) => loaded,
        Err(dakiya_spool::SpoolError::NotFound(_)) => return Step::Done(RunOutcome::retry(id, None)),
        Err(e) => {
            tracing::warn!(queue_id = %id, error = %e, "cannot load queued message; will retry");
            return Step::Done(RunOutcome::retry(id, Some(now + 60)));
        }
    };
    if m.held {
        return Step::Done(RunOutcome::retry(id, None));
    }
    let n = m.states.len();
    let mut run = Run {
        states: m.states.clone(),
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
            return Step::Done(finish(ctx, run));
        }
    }
    for i in due {
        let rcpt = &run.m.envelope.recipients[i];
        match &rcpt.mailbox {
            // Handed to the LMTP server in the async step, all in one transaction.
            Some(_) if ctx.lmtp.is_some() => run.lmtp.push(i),
            Some((domain, mailbox)) => {
                let target = Target { address: &rcpt.address, domain, mailbox };
                let (outcome, state) =
                    local::deliver_one(&ctx.cfg, &mut body, &ctx.boxes, &run.m, target, &run.states[i], now);
                history::attempt(ctx, &run.m, i, &outcome, &state, &Via::local());
                crate::measure::delivery(ctx, &run.m, i, &outcome, &state, now);
                run.record(i, &outcome, state);
            }
            None => run.remote.push(i),
        }
    }
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
