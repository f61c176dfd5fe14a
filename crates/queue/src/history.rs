//! The queue's events in the message history (`dakiya_history`): each delivery attempt and
//! the state it left the recipient in, notices queued, operator actions and how a message
//! left the queue. One call per event site; the history's writer does the I/O.

use crate::ctx::Ctx;
use crate::outcome::Outcome;
use dakiya_dsn::Kind;
use dakiya_history::{Attempt, AttemptState, Event, Final, NoticeKind, Received};
use dakiya_spool::{Enhanced, Envelope, QueueId, QueuedMessage, RcptState};

/// How an attempt was made, besides its [`Outcome`]: locally, or through which next hop and
/// with which reply (a failure carries both itself; a success only here).
#[derive(Debug, Clone, Default)]
pub(crate) struct Via {
    /// A Maildir delivery.
    pub local: bool,
    /// The next hop that answered, `host [address]`.
    pub hop: Option<String>,
    /// The next hop's reply to a successful delivery.
    pub reply: Option<String>,
}

impl Via {
    /// A local delivery.
    pub fn local() -> Via {
        Via { local: true, ..Via::default() }
    }
}

/// Records one attempt to recipient `i` of `m` and the recipient's new `state`.
pub(crate) fn attempt(ctx: &Ctx, m: &QueuedMessage, i: usize, outcome: &Outcome, state: &RcptState, via: &Via) {
    let (hop, reply) = match outcome {
        Outcome::Temporary(f) | Outcome::Permanent(f) => (
            f.remote_mta.clone().or_else(|| via.hop.clone()),
            Some(f.diagnostic.clone().unwrap_or_else(|| f.error.clone())),
        ),
        Outcome::Delivered | Outcome::Relayed { .. } => (via.hop.clone(), via.reply.clone()),
    };
    let (state, until) = match state {
        RcptState::Delivered { .. } => (AttemptState::Delivered, None),
        RcptState::Deferred { next_attempt, .. } => (AttemptState::Deferred, Some(*next_attempt)),
        RcptState::Failed { .. } => (AttemptState::Failed, None),
        // Not a result of an attempt; nothing to record.
        RcptState::Pending => return,
    };
    let rcpt = m.envelope.recipients.get(i).map(|r| r.address.clone()).unwrap_or_default();
    let a = Attempt { rcpt, local: via.local, hop, tls: None, reply, state, until };
    ctx.history.record(m.envelope.id.as_str(), Event::Attempt(a.clipped()));
}

/// Records that notice `notice` of `kind` about message `id` was queued.
pub(crate) fn notice(ctx: &Ctx, id: &QueueId, notice: &QueueId, kind: Kind) {
    let kind = match kind {
        Kind::Failure => NoticeKind::Failure,
        Kind::Delay => NoticeKind::Delay,
        Kind::Success => NoticeKind::Success,
    };
    ctx.history.record(id.as_str(), Event::Notice { notice: notice.to_string(), kind });
}

/// Records a notice's own arrival in the queue (`env`, `size` bytes): made here, not received.
pub(crate) fn queued_notice(ctx: &Ctx, env: &Envelope, id: &QueueId, size: usize) {
    let rx = Received {
        helo: env.helo.clone(),
        size: size as u64,
        sender: String::new(),
        rcpts: env.recipients.iter().map(|r| r.address.clone()).collect(),
        nrcpt: env.recipients.len(),
        listener: "queue".into(),
        ..Received::default()
    };
    ctx.history.record(id.as_str(), Event::Received(rx.clipped()));
}

/// Records that message `id` left the queue with its recipients in `states`.
pub(crate) fn done(ctx: &Ctx, id: &QueueId, states: &[RcptState]) {
    ctx.history.record(id.as_str(), Event::Done { state: final_state(states) });
}

/// Records an operator's `action` on message `id` (`hold`, `release`, `retry`, `delete`).
pub(crate) fn operator(ctx: &Ctx, id: &QueueId, action: &str) {
    ctx.history.record(id.as_str(), Event::Operator { action: action.into() });
    if action == "delete" {
        ctx.history.record(id.as_str(), Event::Done { state: Final::Deleted });
    }
}

/// How a message whose recipients ended in `states` ended: delivered when all were,
/// expired when one ran out of time (4.4.7, RFC 3463 §3.5), bounced otherwise.
fn final_state(states: &[RcptState]) -> Final {
    let failed = |s: &&RcptState| matches!(s, RcptState::Failed { .. });
    if !states.iter().any(|s| failed(&s)) {
        return Final::Delivered;
    }
    let expired = states.iter().filter(failed).any(|s| match s {
        RcptState::Failed { detail: Some(d), .. } => d.status == Enhanced(4, 4, 7),
        _ => false,
    });
    if expired { Final::Expired } else { Final::Bounced }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_spool::FailureDetail;

    fn failed(status: Enhanced) -> RcptState {
        let detail = Some(FailureDetail { status, remote_mta: None, diagnostic: None });
        RcptState::Failed { at: 1, error: "x".into(), detail, notified: true }
    }

    #[test]
    fn final_states() {
        let ok = RcptState::Delivered { at: 1 };
        assert_eq!(final_state(&[ok.clone(), ok.clone()]), Final::Delivered);
        assert_eq!(final_state(&[ok.clone(), failed(Enhanced(5, 1, 1))]), Final::Bounced);
        assert_eq!(final_state(&[failed(Enhanced(5, 1, 1)), failed(Enhanced(4, 4, 7))]), Final::Expired);
    }
}
