//! What a delivery attempt counts for in the metrics (`dakiya_deliveries_total`,
//! `dakiya_delivery_latency_seconds`).

use crate::ctx::Ctx;
use crate::outcome::Outcome;
use dakiya_metrics::{Delivery, DeliveryKind};
use dakiya_spool::{QueuedMessage, RcptState};
use std::time::Duration;

/// The result label of an attempt that came to `outcome` and left the recipient in `state`:
/// a temporary failure that failed the recipient is an expiry (too old to retry).
pub(crate) fn result(outcome: &Outcome, state: &RcptState) -> Delivery {
    match (outcome, state) {
        (Outcome::Delivered | Outcome::Relayed { .. }, _) => Delivery::Delivered,
        (Outcome::Permanent(_), _) => Delivery::Bounced,
        (Outcome::Temporary(_), RcptState::Failed { .. }) => Delivery::Expired,
        (Outcome::Temporary(_), _) => Delivery::Deferred,
    }
}

/// Counts the attempt to recipient `i` of `m` at `now` (unix seconds).
pub(crate) fn delivery(ctx: &Ctx, m: &QueuedMessage, i: usize, outcome: &Outcome, state: &RcptState, now: u64) {
    let local = m.envelope.recipients.get(i).is_some_and(|r| r.mailbox.is_some());
    let kind = if local { DeliveryKind::Local } else { DeliveryKind::Remote };
    let age = Duration::from_secs(now.saturating_sub(m.envelope.received_at));
    ctx.metrics.delivery(kind, result(outcome, state), age);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;
    use dakiya_proto::Enhanced;

    #[test]
    fn a_temporary_failure_that_fails_the_recipient_is_an_expiry() {
        let f = Failure::local(Enhanced(4, 4, 7), "too old");
        let failed = RcptState::Failed { at: 1, error: "x".into(), detail: None, notified: false };
        let deferred = RcptState::Pending;
        assert_eq!(result(&Outcome::Temporary(f.clone()), &failed), Delivery::Expired);
        assert_eq!(result(&Outcome::Temporary(f.clone()), &deferred), Delivery::Deferred);
        assert_eq!(result(&Outcome::Permanent(f), &failed), Delivery::Bounced);
        assert_eq!(
            result(&Outcome::Relayed { next_hop_dsn: true }, &RcptState::Delivered { at: 1 }),
            Delivery::Delivered
        );
    }
}
