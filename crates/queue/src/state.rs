//! The state machine of one recipient, as pure functions of time passed in.
//!
//! ```text
//!   Pending ──Delivered/Relayed──▶ Delivered
//!      │  └──Permanent────────────▶ Failed{notified:false} ──notice queued──▶ Failed{notified:true}
//!      └──Temporary──▶ Deferred{attempts, next_attempt}
//!                        │ Temporary, younger than max_age ──▶ Deferred{attempts+1, …}
//!                        │ Temporary, older than max_age ────▶ Failed 4.4.7 (expired)
//!                        └ Delivered / Permanent ────────────▶ as from Pending
//! ```

use crate::outcome::{Failure, Outcome};
use dakiya_config::Delivery;
use dakiya_proto::Enhanced;
use dakiya_spool::{FailureDetail, RcptState, next_retry_delay};
use std::time::Duration;

/// How long a failed recipient waits between attempts and how long it is tried at all.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy<'a> {
    /// Delays between attempts; the last one repeats ([`next_retry_delay`]).
    pub schedule: &'a [Duration],
    /// A temporary failure of a message older than this fails the recipient (4.4.7).
    pub max_age: Duration,
}

impl<'a> RetryPolicy<'a> {
    /// The policy of the `[delivery]` section.
    pub fn of(delivery: &'a Delivery) -> RetryPolicy<'a> {
        RetryPolicy { schedule: &delivery.retry_schedule, max_age: delivery.max_age }
    }

    /// The wait after `attempts` failed attempts.
    pub fn delay(&self, attempts: u32) -> Duration {
        next_retry_delay(attempts, self.schedule)
    }

    /// Whether a message received at `received_at` is too old to try again at `now`:
    /// strictly older than `max_age`.
    pub fn expired(&self, received_at: u64, now: u64) -> bool {
        now.saturating_sub(received_at) > self.max_age.as_secs()
    }
}

/// The recipient state transitions (an extension of the spool's [`RcptState`]).
pub trait Transition {
    /// The state after an attempt that came to `outcome` at `now`, for a message received at
    /// `received_at`. This is the one "deferred or expired" rule: a temporary failure is
    /// deferred on the retry schedule (attempts counted, an earlier delay notice
    /// remembered) until the message is older than `max_age`, then it fails with 4.4.7.
    fn after(previous: &RcptState, outcome: &Outcome, now: u64, received_at: u64, policy: &RetryPolicy) -> RcptState;

    /// Whether the recipient is to be attempted in a run at `now`; `force` makes deferred
    /// recipients due whatever their time (`dakiya queue retry`).
    fn is_due(&self, now: u64, force: bool) -> bool;
}

impl Transition for RcptState {
    fn after(previous: &RcptState, outcome: &Outcome, now: u64, received_at: u64, policy: &RetryPolicy) -> RcptState {
        match outcome {
            Outcome::Delivered | Outcome::Relayed { .. } => RcptState::Delivered { at: now },
            Outcome::Permanent(f) => failed(now, f.error.clone(), f.detail()),
            Outcome::Temporary(f) => deferred(previous, f, now, received_at, policy),
        }
    }

    fn is_due(&self, now: u64, force: bool) -> bool {
        match self {
            RcptState::Pending => true,
            RcptState::Deferred { next_attempt, .. } => force || *next_attempt <= now,
            _ => false,
        }
    }
}

fn failed(now: u64, error: String, detail: FailureDetail) -> RcptState {
    RcptState::Failed { at: now, error, detail: Some(detail), notified: false }
}

fn deferred(previous: &RcptState, f: &Failure, now: u64, received_at: u64, policy: &RetryPolicy) -> RcptState {
    let (attempts, delay_notified) = match previous {
        RcptState::Deferred { attempts, delay_notified, .. } => (attempts.saturating_add(1), *delay_notified),
        _ => (1, false),
    };
    if policy.expired(received_at, now) {
        return expired(now, attempts, f);
    }
    let next_attempt = now + policy.delay(attempts).as_secs().max(1);
    RcptState::Deferred { attempts, next_attempt, error: f.error.clone(), detail: Some(f.detail()), delay_notified }
}

/// The final state of a recipient given up at the queue lifetime. The status is 4.4.7,
/// "delivery time expired" (RFC 3463 §3.5: "useful only as a persistent transient error"),
/// keeping the last attempt's remote MTA and diagnostic — except a mailbox that stayed full
/// to the end, which is 5.2.2 (X.2.2 is transient or permanent, RFC 3463 §3.3).
fn expired(now: u64, attempts: u32, last: &Failure) -> RcptState {
    let error = format!("gave up after {attempts} attempts, the message is too old; last error: {}", last.error);
    let status = if last.status == crate::outcome::MAILBOX_FULL { Enhanced(5, 2, 2) } else { Enhanced(4, 4, 7) };
    let detail = Failure { status, ..last.clone() }.detail();
    failed(now, error, detail)
}

/// The earliest time some recipient is due (unix seconds), if any is still to do: a pending
/// one at once (0), a deferred one at its next attempt. A failed recipient whose notice
/// could not be queued is due again in a minute.
pub fn next_due(states: &[RcptState], now: u64) -> Option<u64> {
    states
        .iter()
        .filter_map(|s| match s {
            RcptState::Pending => Some(0),
            RcptState::Deferred { next_attempt, .. } => Some(*next_attempt),
            RcptState::Failed { notified: false, .. } => Some(now + 60),
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 60;
    const RECEIVED: u64 = 1_000_000;

    fn schedule() -> Vec<Duration> {
        [1, 5, 30].iter().map(|m| Duration::from_secs(m * M)).collect()
    }

    fn policy(schedule: &[Duration]) -> RetryPolicy<'_> {
        RetryPolicy { schedule, max_age: Duration::from_secs(3600) }
    }

    fn temp(error: &str) -> Outcome {
        Outcome::Temporary(Failure {
            error: error.into(),
            status: Enhanced(4, 4, 1),
            remote_mta: Some("mx.example.net [192.0.2.1]".into()),
            diagnostic: Some("smtp; 421 4.4.1 busy".into()),
        })
    }

    fn deferred(attempts: u32, next_attempt: u64, delay_notified: bool) -> RcptState {
        RcptState::Deferred { attempts, next_attempt, error: "e".into(), detail: None, delay_notified }
    }

    #[test]
    fn the_retry_schedule_is_followed_then_its_last_delay_repeats() {
        let s = schedule();
        let p = policy(&s);
        let mut state = RcptState::Pending;
        let mut now = RECEIVED;
        let mut waits = Vec::new();
        for _ in 0..5 {
            state = RcptState::after(&state, &temp("421"), now, RECEIVED, &p);
            let RcptState::Deferred { next_attempt, .. } = state else { panic!("{state:?}") };
            waits.push(next_attempt - now);
            now = next_attempt;
            if now - RECEIVED > 3000 {
                break;
            }
        }
        assert_eq!(waits, vec![M, 5 * M, 30 * M, 30 * M]);
        let RcptState::Deferred { attempts, ref error, ref detail, .. } = state else { panic!() };
        assert_eq!(attempts, 4);
        assert_eq!(error, "421");
        assert_eq!(detail.as_ref().unwrap().status, Enhanced(4, 4, 1));
    }

    #[test]
    fn a_schedule_longer_than_the_attempts_uses_only_its_start() {
        let long: Vec<Duration> = (1..=20).map(|m| Duration::from_secs(m * M)).collect();
        let p = policy(&long);
        let one = RcptState::after(&RcptState::Pending, &temp("x"), RECEIVED, RECEIVED, &p);
        assert!(matches!(one, RcptState::Deferred { attempts: 1, next_attempt, .. } if next_attempt == RECEIVED + M));
        let two = RcptState::after(&one, &temp("x"), RECEIVED + M, RECEIVED, &p);
        assert!(
            matches!(two, RcptState::Deferred { attempts: 2, next_attempt, .. } if next_attempt == RECEIVED + 3 * M)
        );
    }

    #[test]
    fn a_zero_delay_still_waits_a_second() {
        let zero = [Duration::ZERO];
        let s = RcptState::after(&RcptState::Pending, &temp("x"), RECEIVED, RECEIVED, &policy(&zero));
        assert!(matches!(s, RcptState::Deferred { next_attempt, .. } if next_attempt == RECEIVED + 1));
    }

    #[test]
    fn due_exactly_at_next_attempt_not_a_second_before() {
        let d = deferred(1, 500, false);
        assert!(!d.is_due(499, false));
        assert!(d.is_due(500, false));
        assert!(d.is_due(501, false));
        assert!(d.is_due(0, true), "forced");
        assert!(RcptState::Pending.is_due(0, false));
        assert!(!RcptState::Delivered { at: 1 }.is_due(u64::MAX, true));
        let failed = RcptState::Failed { at: 1, error: "x".into(), detail: None, notified: false };
        assert!(!failed.is_due(u64::MAX, true), "failed recipients are never attempted again");
    }

    #[test]
    fn max_age_boundary() {
        let s = schedule();
        let p = policy(&s);
        let at_limit = RcptState::after(&deferred(3, 0, false), &temp("421 busy"), RECEIVED + 3600, RECEIVED, &p);
        assert!(matches!(at_limit, RcptState::Deferred { attempts: 4, .. }), "exactly max_age old: still retried");
        let past = RcptState::after(&deferred(3, 0, true), &temp("421 busy"), RECEIVED + 3601, RECEIVED, &p);
        let RcptState::Failed { at, error, detail, notified } = past else { panic!("{past:?}") };
        assert_eq!(at, RECEIVED + 3601);
        assert!(!notified);
        assert_eq!(error, "gave up after 4 attempts, the message is too old; last error: 421 busy");
        let detail = detail.unwrap();
        assert_eq!(detail.status, Enhanced(4, 4, 7));
        assert_eq!(detail.remote_mta.as_deref(), Some("mx.example.net [192.0.2.1]"), "last remote MTA kept");
        assert_eq!(detail.diagnostic.as_deref(), Some("smtp; 421 4.4.1 busy"), "last diagnostic kept");
    }

    #[test]
    fn a_first_attempt_after_max_age_expires_at_once() {
        let s = schedule();
        let past = RcptState::after(&RcptState::Pending, &temp("x"), RECEIVED + 7200, RECEIVED, &policy(&s));
        assert!(matches!(past, RcptState::Failed { ref error, .. } if error.starts_with("gave up after 1 attempts")));
    }

    #[test]
    fn a_mailbox_full_to_the_end_bounces_as_5_2_2() {
        let s = schedule();
        let full = Outcome::Temporary(Failure::local(crate::outcome::MAILBOX_FULL, "mailbox full"));
        let past = RcptState::after(&RcptState::Pending, &full, RECEIVED + 7200, RECEIVED, &policy(&s));
        let RcptState::Failed { detail, .. } = past else { panic!("{past:?}") };
        assert_eq!(detail.unwrap().status, Enhanced(5, 2, 2));
        let before = RcptState::after(&RcptState::Pending, &full, RECEIVED + 10, RECEIVED, &policy(&s));
        assert!(matches!(before, RcptState::Deferred { .. }), "retried until max_age");
    }

    #[test]
    fn a_clock_before_the_arrival_is_not_expiry() {
        let s = schedule();
        let state = RcptState::after(&RcptState::Pending, &temp("x"), RECEIVED - 10, RECEIVED, &policy(&s));
        assert!(matches!(state, RcptState::Deferred { .. }));
    }

    #[test]
    fn delay_notified_is_carried_over_and_attempts_counted() {
        let s = schedule();
        let p = policy(&s);
        let next = RcptState::after(&deferred(2, 0, true), &temp("x"), RECEIVED + 10, RECEIVED, &p);
        assert!(matches!(next, RcptState::Deferred { attempts: 3, delay_notified: true, .. }));
        let fresh = RcptState::after(&RcptState::Pending, &temp("x"), RECEIVED + 10, RECEIVED, &p);
        assert!(matches!(fresh, RcptState::Deferred { attempts: 1, delay_notified: false, .. }));
        let saturated = RcptState::after(&deferred(u32::MAX, 0, false), &temp("x"), RECEIVED, RECEIVED, &p);
        assert!(matches!(saturated, RcptState::Deferred { attempts: u32::MAX, .. }));
    }

    #[test]
    fn success_and_permanent_failure_are_final_whatever_came_before() {
        let s = schedule();
        let p = policy(&s);
        for previous in [RcptState::Pending, deferred(4, 9, true)] {
            let now = RECEIVED + 99_999; // even past max_age
            assert_eq!(
                RcptState::after(&previous, &Outcome::Delivered, now, RECEIVED, &p),
                RcptState::Delivered { at: now }
            );
            let relayed = Outcome::Relayed { next_hop_dsn: false };
            assert_eq!(RcptState::after(&previous, &relayed, now, RECEIVED, &p), RcptState::Delivered { at: now });
            let f = Failure::local(Enhanced(5, 1, 3), "bad address");
            let failed = RcptState::after(&previous, &Outcome::Permanent(f), now, RECEIVED, &p);
            let expected = FailureDetail::new(Enhanced(5, 1, 3));
            assert_eq!(
                failed,
                RcptState::Failed { at: now, error: "bad address".into(), detail: Some(expected), notified: false }
            );
        }
    }

    #[test]
    fn next_due_is_the_earliest_of_what_is_left() {
        let failed = |notified| RcptState::Failed { at: 1, error: "x".into(), detail: None, notified };
        assert_eq!(next_due(&[RcptState::Delivered { at: 1 }, failed(true)], 100), None);
        assert_eq!(next_due(&[deferred(1, 500, false), deferred(1, 300, false)], 100), Some(300));
        assert_eq!(next_due(&[deferred(1, 500, false), failed(false)], 100), Some(160), "notice retried in a minute");
        assert_eq!(next_due(&[deferred(1, 500, false), RcptState::Pending], 100), Some(0), "pending: at once");
    }
}
