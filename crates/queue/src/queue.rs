//! The queue manager's task: one scheduler with a due-time index (not a task sleeping per
//! message), a bounded number of concurrent delivery runs, retries on the configured schedule,
//! and the operator's controls (retry, hold, release, delete).
//!
//! The bookkeeping is [`Book`]'s, pure and unit-tested; this task only feeds it messages,
//! run results, the time and the spool's answers, and starts the runs it asks for.

use crate::book::{Book, Counts, unknown};
use crate::ctx::Ctx;
use crate::history;
use crate::run::{self, RunOutcome};
use dakiya_control::ControlOp;
use dakiya_spool::{QueueId, QueuedMessage, Spool};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

enum Msg {
    /// A new message, with its count of `Received:` fields when the session knew it.
    Enqueue(QueueId, Option<usize>),
    Control(ControlOp, oneshot::Sender<Result<usize, String>>),
    /// A reload: runs started from now on use this context.
    Reconfigure(Arc<Ctx>, oneshot::Sender<()>),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// The queue as the scheduler sees it now (for metrics and `dakiya status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages by where they are.
    pub counts: Counts,
    /// The oldest message's id (its [`QueueId::timestamp`] is when it was accepted).
    pub oldest: Option<QueueId>,
}

/// Hands newly accepted messages and operator requests to the scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl QueueHandle {
    /// Carries out an operator's request; `Ok(n)` is how many messages it affected, `Err` a
    /// message for the operator (such as an unknown queue id).
    pub async fn control(&self, op: ControlOp) -> Result<usize, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Control(op, tx)).map_err(|_| "the queue manager is shutting down".to_string())?;
        rx.await.map_err(|_| "the queue manager is shutting down".to_string())?
    }

    /// Makes `ctx` (from [`Ctx::reconfigured`]) the context of every delivery run started
    /// from now on, and returns once the scheduler has taken it; runs already under way
    /// finish with the context they started with. The bound on concurrent runs stays the
    /// one the queue started with.
    pub async fn reconfigure(&self, ctx: Ctx) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let gone = || "the queue manager is shutting down".to_string();
        self.tx.send(Msg::Reconfigure(Arc::new(ctx), tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The queue now; `None` when the scheduler is gone (shutting down).
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Snapshot(tx)).ok()?;
        rx.await.ok()
    }

    /// Schedules a just-committed message for immediate delivery.
    pub fn enqueue(&self, id: QueueId) {
        // If the scheduler is gone we are shutting down; the message is safe in the spool
        // and is recovered at the next start.
        let _ = self.tx.send(Msg::Enqueue(id, None));
    }

    /// [`enqueue`](Self::enqueue) for a message whose `Received:` fields were counted as it
    /// arrived ([`ReceivedCounter`](crate::ReceivedCounter)): its first delivery run takes
    /// the count from here instead of reading the stored message to count them (the loop
    /// check of RFC 5321 §6.3).
    pub fn enqueue_counted(&self, id: QueueId, received: usize) {
        let _ = self.tx.send(Msg::Enqueue(id, Some(received)));
    }
}

/// Starts the scheduler with what recovery found in the spool. Runs on the current tokio
/// runtime; at most `delivery.local_concurrency + outbound.concurrency` runs at once.
pub fn start(ctx: Arc<Ctx>, recovered: Vec<QueuedMessage>) -> QueueHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let runs = ctx.cfg.delivery.local_concurrency + ctx.cfg.outbound.concurrency;
    let now = ctx.clock.now();
    let book = Book::recover(recovered.iter().map(|m| (m.envelope.id.clone(), m.held, &m.states[..])), now);
    let counts = book.counts();
    if counts.ready > 0 || counts.scheduled > 0 || counts.held > 0 {
        tracing::info!(
            ready = counts.ready,
            scheduled = counts.scheduled,
            held = counts.held,
            "recovered queued messages"
        );
    }
    let limit = Arc::new(Semaphore::new(runs.max(1)));
    let sched = Scheduler { book, limit, ctx, received: HashMap::new() };
    tokio::spawn(sched.run(rx));
    QueueHandle { tx }
}

struct Scheduler {
    ctx: Arc<Ctx>,
    book: Book,
    limit: Arc<Semaphore>,
    /// The `Received:` counts of enqueued messages not started yet, for their first run.
    received: HashMap<QueueId, usize>,
}

/// More counts than this waiting means messages sit in the queue unstarted (held, or a
/// backlog): forget them; their runs count from the stored message instead.
const MAX_RECEIVED_COUNTS: usize = 100_000;

impl Scheduler {
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Msg>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<RunOutcome>();
        loop {
            self.dispatch(&done_tx);
            let next_due = self.book.next_due();
            let clock = self.ctx.clock.clone();
            let sleep = async move {
                match next_due {
                    Some(t) => {
                        let wait = t.saturating_sub(clock.now());
                        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                msg = incoming.recv() => match msg {
                    Some(Msg::Enqueue(id, received)) => {
                        if let Some(n) = received {
                            if self.received.len() >= MAX_RECEIVED_COUNTS {
                                self.received.clear();
                            }
                            self.received.insert(id.clone(), n);
                        }
                        self.book.enqueue(id);
                    }
                    Some(Msg::Snapshot(reply)) => {
                        let oldest = self.book.oldest().cloned();
                        let _ = reply.send(Snapshot { counts: self.book.counts(), oldest });
                    }
                    Some(Msg::Control(op, reply)) => {
                        let result = self.control(op).await;
                        let _ = reply.send(result);
                    }
                    Some(Msg::Reconfigure(ctx, done)) => {
                        self.ctx = ctx;
                        let _ = done.send(());
                    }
                    None => return,
                },
                Some(o) = done_rx.recv() => self.book.finished(o.id, o.retry_at, o.notices),
                _ = sleep => self.book.promote_due(self.ctx.clock.now()),
            }
        }
    }

    /// Starts delivery runs while there is work and capacity.
    fn dispatch(&mut self, done: &mpsc::UnboundedSender<RunOutcome>) {
        while self.book.has_ready() {
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                return;
            };
            let Some(start) = self.book.start_next() else {
                return;
            };
            let (ctx, done) = (self.ctx.clone(), done.clone());
            let received = self.received.remove(&start.id);
            tokio::spawn(async move {
                let outcome = run::run_counted(ctx, start.id, start.force, received).await;
                drop(permit);
                let _ = done.send(outcome);
            });
        }
    }

    /// Whether `id` is in the queue at all (the spool's index is the authority).
    async fn exists(&self, id: &QueueId) -> bool {
        let (spool, id) = (self.ctx.spool.clone(), id.clone());
        tokio::task::spawn_blocking(move || spool.load(&id).is_ok()).await.unwrap_or(false)
    }

    async fn control(&mut self, op: ControlOp) -> Result<usize, String> {
        match op {
            ControlOp::Retry(None) => Ok(self.book.retry_all()),
            ControlOp::Retry(Some(id)) => {
                let exists = self.exists(&id).await;
                let n = self.book.retry(&id, exists)?;
                history::operator(&self.ctx, &id, "retry");
                Ok(n)
            }
            ControlOp::Hold(id) => {
                self.set_held(&id, true).await?;
                history::operator(&self.ctx, &id, "hold");
                self.book.hold(&id);
                Ok(1)
            }
            ControlOp::Release(id) => {
                if !self.book.is_held(&id) {
                    return Err(if self.exists(&id).await {
                        format!("message {id} is not held")
                    } else {
                        unknown(&id)
                    });
                }
                self.set_held(&id, false).await?;
                history::operator(&self.ctx, &id, "release");
                self.book.release(&id);
                Ok(1)
            }
            ControlOp::Delete(id) => {
                let (spool, target) = (self.ctx.spool.clone(), id.clone());
                let removed = tokio::task::spawn_blocking(move || spool.remove(&target))
                    .await
                    .map_err(|e| format!("delete failed: {e}"))?;
                match removed {
                    Ok(()) => {}
                    Err(dakiya_spool::SpoolError::NotFound(_)) => return Err(unknown(&id)),
                    Err(e) => return Err(format!("delete failed: {e}")),
                }
                tracing::info!(queue_id = %id, "deleted from the queue by the operator");
                history::operator(&self.ctx, &id, "delete");
                self.book.delete(&id);
                Ok(1)
            }
        }
    }

    async fn set_held(&self, id: &QueueId, held: bool) -> Result<(), String> {
        let (spool, target): (Arc<Spool>, QueueId) = (self.ctx.spool.clone(), id.clone());
        match tokio::task::spawn_blocking(move || spool.set_held(&target, held)).await {
            Ok(Ok(())) => {
                let what = if held { "held" } else { "released" };
                tracing::info!(queue_id = %id, "{what} by the operator");
                Ok(())
            }
            Ok(Err(dakiya_spool::SpoolError::NotFound(_))) => Err(unknown(id)),
            Ok(Err(e)) => Err(format!("cannot record the hold: {e}")),
            Err(e) => Err(format!("cannot record the hold: {e}")),
        }
    }
}
