//! The queue manager: one scheduler task with a due-time index (not a task sleeping per
//! message), a bounded number of concurrent deliveries, and retries on the configured
//! schedule.

use crate::local::{self, Mailboxes, Outcome};
use dakiya_config::Config;
use dakiya_spool::{QueueId, QueuedMessage, Spool};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Hands newly accepted messages to the scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<QueueId>,
}

/// An operator's request from `dakiya queue` (via the control socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOp {
    /// Deliver now: one message, or every queued message when `None`. Held messages stay held.
    Retry(Option<QueueId>),
    /// Stop delivering this message until released (survives restarts).
    Hold(QueueId),
    /// Undo [`ControlOp::Hold`] and deliver now.
    Release(QueueId),
    /// Remove the message from the queue without delivering it or notifying anyone.
    Delete(QueueId),
}

impl QueueHandle {
    /// Carries out an operator's request; `Ok(n)` is how many messages it affected, `Err` a
    /// message for the operator (such as an unknown queue id).
    pub async fn control(&self, op: ControlOp) -> Result<usize, String> {
        let _ = op;
        Err("not implemented yet".into())
    }

    /// Schedules a just-committed message for immediate delivery.
    pub fn enqueue(&self, id: QueueId) {
        // If the scheduler is gone we are shutting down; the message is safe in the spool
        // and is recovered at the next start.
        let _ = self.tx.send(id);
    }
}

/// Starts the scheduler with what recovery found in the spool.
pub fn start(cfg: Arc<Config>, spool: Arc<Spool>, recovered: Vec<QueuedMessage>) -> QueueHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut sched = Scheduler {
        ready: VecDeque::new(),
        due: BTreeSet::new(),
        limit: Arc::new(Semaphore::new(cfg.delivery.local_concurrency.max(1))),
        boxes: Arc::new(Mailboxes::default()),
        cfg,
        spool,
    };
    let now = crate::envelope::now();
    for m in recovered {
        match local::next_attempt(&m) {
            Some(t) if t > now => {
                sched.due.insert((t, m.envelope.id.clone()));
            }
            Some(_) => sched.ready.push_back(m.envelope.id.clone()),
            None => {}
        }
    }
    if !sched.ready.is_empty() || !sched.due.is_empty() {
        tracing::info!(ready = sched.ready.len(), scheduled = sched.due.len(), "recovered queued messages");
    }
    tokio::spawn(sched.run(rx));
    QueueHandle { tx }
}

struct Scheduler {
    cfg: Arc<Config>,
    spool: Arc<Spool>,
    ready: VecDeque<QueueId>,
    /// (unix seconds of the next attempt, message)
    due: BTreeSet<(u64, QueueId)>,
    limit: Arc<Semaphore>,
    boxes: Arc<Mailboxes>,
}

impl Scheduler {
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<QueueId>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
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
                id = incoming.recv() => match id {
                    Some(id) => self.ready.push_back(id),
                    None => return,
                },
                Some(outcome) = done_rx.recv() => {
                    if let Some(t) = outcome.retry_at {
                        self.due.insert((t, outcome.id));
                    }
                }
                _ = sleep => self.promote_due(),
            }
        }
    }

    /// Starts deliveries while there is work and capacity.
    fn dispatch(&mut self, done: &mpsc::UnboundedSender<Outcome>) {
        while !self.ready.is_empty() {
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                return;
            };
            let Some(id) = self.ready.pop_front() else {
                return;
            };
            let (cfg, spool, boxes, done) = (self.cfg.clone(), self.spool.clone(), self.boxes.clone(), done.clone());
            tokio::task::spawn_blocking(move || {
                let outcome = local::deliver_message(&cfg, &spool, &boxes, &id);
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
                self.ready.push_back(id);
            }
        }
    }
}
