//! The planner: what a finished delivery run leaves behind, decided without I/O.
//!
//! From a message, its recipients' states after the run and which of them were delivered
//! (or relayed) in it, [`Plan::new`] decides the notices the sender asked for (failure,
//! delay, success: RFC 3461 §4.1 NOTIFY, never for the null sender, RFC 5321 §4.5.5) and
//! marks the recipients they are about. The caller queues each notice; one that cannot be
//! queued is handed back to [`Plan::notice_failed`], which clears the marks so that it is
//! tried again. Only then does [`Plan::settle`] say whether the message leaves the spool,
//! which recipient records to write and when the message is next due.
//!
//! That order is the crash rule: a notice is committed to the spool before the recipient
//! states that say it was sent, so a crash in between can send a notice twice but never
//! lose one.

use crate::state::next_due;
use dakiya_dsn::{Action, Kind, should_notify};
use dakiya_spool::{QueuedMessage, RcptState};
use std::time::Duration;

/// One notice to queue: its kind and the recipients it reports on, each with its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Failure, delay or success.
    pub kind: Kind,
    /// Recipient index in the envelope, and what the notice says happened to it.
    pub recipients: Vec<(usize, Action)>,
}

/// The states of a message's recipients after a run, and the notices they call for.
#[derive(Debug, Clone)]
pub struct Plan {
    states: Vec<RcptState>,
    changed: Vec<bool>,
    notices: Vec<Notice>,
    now: u64,
}

/// What becomes of the message once its notices are queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every recipient is delivered, or failed with the sender told: the message leaves the
    /// spool.
    Remove,
    /// The message stays: write the state of these recipients (index, state), in order, and
    /// run it again at `next_due` (unix seconds; 0 is at once) if set.
    Keep {
        /// Recipient records to append to the status log.
        records: Vec<(usize, RcptState)>,
        /// When some recipient is due again.
        next_due: Option<u64>,
    },
}

impl Plan {
    /// Plans the notices for message `m` whose recipients are now in `states` (`changed`
    /// marks those this run changed), `delivered` the recipients delivered or relayed in this
    /// run with the action a success notice would report. `delay_notice` is the age after
    /// which a still-deferred recipient gets one delay notice (`None`: never).
    pub fn new(
        m: &QueuedMessage,
        states: Vec<RcptState>,
        changed: Vec<bool>,
        delivered: &[(usize, Action)],
        now: u64,
        delay_notice: Option<Duration>,
    ) -> Plan {
        let mut plan = Plan { states, changed, notices: Vec::new(), now };
        let null_sender = m.envelope.sender.is_empty();
        let delay_after = delay_notice.map(|d| d.as_secs());
        let age = now.saturating_sub(m.envelope.received_at);
        let mut failed = Vec::new();
        let mut delayed = Vec::new();
        for i in 0..plan.states.len() {
            match &plan.states[i] {
                RcptState::Failed { notified: false, .. } => {
                    // RFC 5321 §4.5.5: never a notice about a message from <>. The flag is
                    // set all the same: the recipient needs no notice.
                    if !null_sender && wants(m, i, Kind::Failure) {
                        failed.push((i, Action::Failed));
                    }
                    plan.set_flag(i, true);
                }
                RcptState::Deferred { delay_notified: false, .. } if delay_after.is_some_and(|d| age >= d) => {
                    if !null_sender && wants(m, i, Kind::Delay) {
                        delayed.push((i, Action::Delayed));
                    }
                    plan.set_flag(i, true);
                }
                _ => {}
            }
        }
        // Success notices only on request (NOTIFY=SUCCESS), never for a message from <>.
        let succeeded: Vec<(usize, Action)> =
            delivered.iter().copied().filter(|&(i, _)| !null_sender && wants(m, i, Kind::Success)).collect();
        for (kind, recipients) in [(Kind::Failure, failed), (Kind::Delay, delayed), (Kind::Success, succeeded)] {
            if !recipients.is_empty() {
                plan.notices.push(Notice { kind, recipients });
            }
        }
        plan
    }

    /// The notices to queue, failure first, then delay, then success.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// The recipients' states as planned so far.
    pub fn states(&self) -> &[RcptState] {
        &self.states
    }

    /// `notice` could not be queued: its recipients are marked as not told, so that the next
    /// run tries again. A success notice is not retried (the recipients are delivered: there
    /// is no state to carry the wish).
    pub fn notice_failed(&mut self, notice: &Notice) {
        if notice.kind == Kind::Success {
            return;
        }
        for &(i, _) in &notice.recipients {
            self.set_flag(i, false);
        }
    }

    /// Whether the message leaves the spool, and otherwise what to record and when it is due.
    pub fn settle(self) -> Settlement {
        let done = self
            .states
            .iter()
            .all(|s| matches!(s, RcptState::Delivered { .. } | RcptState::Failed { notified: true, .. }));
        if done {
            return Settlement::Remove;
        }
        let next_due = next_due(&self.states, self.now);
        let records = self.states.into_iter().enumerate().filter(|(i, _)| self.changed[*i]).collect();
        Settlement::Keep { records, next_due }
    }

    /// Sets the "notified" flag of a failed or deferred recipient.
    fn set_flag(&mut self, i: usize, value: bool) {
        match &mut self.states[i] {
            RcptState::Failed { notified, .. } => *notified = value,
            RcptState::Deferred { delay_notified, .. } => *delay_notified = value,
            _ => return,
        }
        self.changed[i] = true;
    }
}

/// Whether recipient `i` of `m` wants a notice of `kind` (RFC 3461 §4.1).
fn wants(m: &QueuedMessage, i: usize, kind: Kind) -> bool {
    should_notify(m.envelope.recipients[i].notify, kind)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
