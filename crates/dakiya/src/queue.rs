//! The queue manager: one scheduler task with a due-time index (not a task sleeping per
//! message), a bounded number of concurrent delivery runs, retries on the configured schedule,
//! and the operator's controls (retry, hold, release, delete).
//!
//! The scheduler owns all queue bookkeeping: which messages are ready, which are due when,
//! which are running, which are held. A message is never in two runs at once; a request for
//! a running message is remembered and acted on when the run ends.

use crate::delivery::{self, Ctx, RunOutcome};
use dakiya_control::ControlOp;
use dakiya_spool::{QueueId, QueuedMessage, Spool};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

enum Msg {
    Enqueue(QueueId),
    Control(ControlOp, oneshot::Sender<Result<usize, String>>),
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

    /// Schedules a just-committed message for immediate delivery.
    pub fn enqueue(&self, id: QueueId) {
        // If the scheduler is gone we are shutting down; the message is safe in the spool
        // and is recovered at the next start.
        let _ = self.tx.send(Msg::Enqueue(id));
    }
}

/// Starts the scheduler with what recovery found in the spool.
pub fn start(ctx: Arc<Ctx>, recovered: Vec<QueuedMessage>) -> QueueHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let runs = ctx.cfg.delivery.local_concurrency + ctx.cfg.outbound.concurrency;
    let mut sched = Scheduler {
        ready: VecDeque::new(),
        due: BTreeSet::new(),
        due_at: HashMap::new(),
        running: HashMap::new(),
        held: HashSet::new(),
        forced: HashSet::new(),
        limit: Arc::new(Semaphore::new(runs.max(1))),
        ctx,
    };
    let now = crate::envelope::now();
    for m in recovered {
        let id = m.envelope.id.clone();
        if m.held {
            sched.held.insert(id);
            continue;
        }
        match delivery::next_attempt(&m.states, now) {
            Some(t) if t > now => sched.schedule(id, t),
            Some(_) => sched.ready.push_back(id),
            None => sched.ready.push_back(id), // all final: the run removes it
        }
    }
    if !sched.ready.is_empty() || !sched.due.is_empty() || !sched.held.is_empty() {
        tracing::info!(
            ready = sched.ready.len(),
            scheduled = sched.due.len(),
            held = sched.held.len(),
            "recovered queued messages"
        );
    }
    tokio::spawn(sched.run(rx));
    QueueHandle { tx }
}

/// What to do with a message when its current run ends.
#[derive(Default)]
struct After {
    /// Run again at once (and `force` it), whatever the run says.
    retry: bool,
    /// Held or deleted meanwhile: do not reschedule.
    drop: bool,
}

struct Scheduler {
    ctx: Arc<Ctx>,
    ready: VecDeque<QueueId>,
    /// (unix seconds of the next attempt, message)
    due: BTreeSet<(u64, QueueId)>,
    /// The time each message in `due` is filed under.
    due_at: HashMap<QueueId, u64>,
    running: HashMap<QueueId, After>,
    held: HashSet<QueueId>,
    /// Ready messages whose deferred recipients are due whatever their time (retry).
    forced: HashSet<QueueId>,
    limit: Arc<Semaphore>,
}

impl Scheduler {
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Msg>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<RunOutcome>();
        loop {
            self.dispatch(&done_tx);
            let next_due = self.due.first().map(|(t, _)| *t);
            let sleep = async {
                match next_due {
                    Some(t) => {
                        let wait = t.saturating_sub(crate::envelope::now());
                        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                msg = incoming.recv() => match msg {
                    Some(Msg::Enqueue(id)) => self.ready.push_back(id),
                    Some(Msg::Control(op, reply)) => {
                        let result = self.control(op).await;
                        let _ = reply.send(result);
                    }
                    None => return,
                },
                Some(outcome) = done_rx.recv() => self.finished(outcome),
                _ = sleep => self.promote_due(),
            }
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

    fn finished(&mut self, outcome: RunOutcome) {
        self.ready.extend(outcome.notices);
        let after = self.running.remove(&outcome.id).unwrap_or_default();
        if after.drop {
            return;
        }
        if after.retry {
            self.forced.insert(outcome.id.clone());
            self.ready.push_back(outcome.id);
            return;
        }
        if let Some(t) = outcome.retry_at {
            self.schedule(outcome.id, t);
        }
    }

    /// Starts delivery runs while there is work and capacity.
    fn dispatch(&mut self, done: &mpsc::UnboundedSender<RunOutcome>) {
        while !self.ready.is_empty() {
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                return;
            };
            let Some(id) = self.ready.pop_front() else {
                return;
            };
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
            let (ctx, done) = (self.ctx.clone(), done.clone());
            tokio::spawn(async move {
                let outcome = delivery::run(ctx, id, force).await;
                drop(permit);
                let _ = done.send(outcome);
            });
        }
    }

    fn promote_due(&mut self) {
        let now = crate::envelope::now();
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

    /// Whether `id` is in the queue at all (the spool's index is the authority).
    async fn exists(&self, id: &QueueId) -> bool {
        let (spool, id) = (self.ctx.spool.clone(), id.clone());
        tokio::task::spawn_blocking(move || spool.load(&id).is_ok()).await.unwrap_or(false)
    }

    async fn control(&mut self, op: ControlOp) -> Result<usize, String> {
        let unknown = |id: &QueueId| format!("no message {id} in the queue");
        match op {
            ControlOp::Retry(None) => {
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
                Ok(ids.len() + self.running.len())
            }
            ControlOp::Retry(Some(id)) => {
                if !self.exists(&id).await {
                    return Err(unknown(&id));
                }
                if self.held.contains(&id) {
                    return Err(format!("message {id} is held; release it first"));
                }
                if let Some(after) = self.running.get_mut(&id) {
                    after.retry = true;
                } else {
                    self.unschedule(&id);
                    self.forced.insert(id.clone());
                    self.ready.push_back(id);
                }
                Ok(1)
            }
            ControlOp::Hold(id) => {
                self.set_held(&id, true).await?;
                self.held.insert(id.clone());
                self.unschedule(&id);
                if let Some(after) = self.running.get_mut(&id) {
                    after.drop = true;
                }
                Ok(1)
            }
            ControlOp::Release(id) => {
                if !self.held.contains(&id) {
                    return Err(if self.exists(&id).await {
                        format!("message {id} is not held")
                    } else {
                        unknown(&id)
                    });
                }
                self.set_held(&id, false).await?;
                self.held.remove(&id);
                self.forced.insert(id.clone());
                self.ready.push_back(id);
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
                self.unschedule(&id);
                self.held.remove(&id);
                self.forced.remove(&id);
                if let Some(after) = self.running.get_mut(&id) {
                    after.drop = true;
                }
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
            Ok(Err(dakiya_spool::SpoolError::NotFound(_))) => Err(format!("no message {id} in the queue")),
            Ok(Err(e)) => Err(format!("cannot record the hold: {e}")),
            Err(e) => Err(format!("cannot record the hold: {e}")),
        }
    }
}
