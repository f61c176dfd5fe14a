//! [`RateLimiter`]: "at most N per period" per key, as a GCRA (generic cell rate algorithm)
//! counter with time passed in.
//!
//! GCRA keeps one instant per key — the theoretical arrival time (TAT) of the next event —
//! instead of a log of past events, so a limit of 2,000 recipients a day costs the same
//! memory as one of 10 connections a minute. It allows a burst of N at once and then one
//! event every period/N: after a burst the window recovers gradually, not all at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Longest period honoured (longer ones are shortened, so `Instant` arithmetic cannot
/// overflow).
const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A limit: at most `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (at least 1).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `count` per `period`; a `count` of 0 is taken as 1, a zero period as one second.
    pub fn new(count: u32, period: Duration) -> Rate {
        let period = if period.is_zero() { Duration::from_secs(1) } else { period.min(MAX_PERIOD) };
        Rate { count: count.max(1), period }
    }

    /// The steady-state spacing of events: period / count.
    fn interval(self) -> Duration {
        (self.period / self.count).max(Duration::from_nanos(1))
    }
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit.
    Allowed,
    /// Over the limit; the next event would be allowed `retry_in` from now.
    Limited {
        /// How long until one more event fits.
        retry_in: Duration,
    },
}

impl RateVerdict {
    /// True for [`RateVerdict::Allowed`].
    pub fn allowed(self) -> bool {
        self == RateVerdict::Allowed
    }
}

/// "At most N per period" for each key, with at most `max_keys` keys held.
///
/// [`check`](Self::check) asks without counting and [`record`](Self::record) counts, so
/// that a caller with several limits on one event (a message counted per network, per user
/// and per sender domain) counts it only when every limit allows it — under one lock.
///
/// Memory is bounded: a key whose TAT has passed is the same as an absent key and is
/// dropped when room is needed; if the map is still full, the eighth of the keys closest
/// to being spent goes (a little leniency for them, never an unbounded map).
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    tats: HashMap<K, Instant>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter of `rate` per key, holding at most `max_keys` keys (at least 1).
    pub fn new(rate: Rate, max_keys: usize) -> RateLimiter<K> {
        RateLimiter { rate, max_keys: max_keys.max(1), tats: HashMap::new() }
    }

    /// The limit.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Keys held now (never above `max_keys`).
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// Would one more event for `key` at `now` be within the limit? Counts nothing.
    pub fn check(&self, key: &K, now: Instant) -> RateVerdict {
        let Some(&tat) = self.tats.get(key) else { return RateVerdict::Allowed };
        // Allowed while the TAT after this event stays within one period of now.
        let after = tat.max(now) + self.rate.interval();
        match after.checked_duration_since(now + self.rate.period) {
            Some(excess) if !excess.is_zero() => RateVerdict::Limited { retry_in: excess },
            _ => RateVerdict::Allowed,
        }
    }

    /// Counts one event for `key` at `now` (whether or not it was within the limit).
    pub fn record(&mut self, key: &K, now: Instant) {
        if !self.tats.contains_key(key) && self.tats.len() >= self.max_keys {
            self.make_room(now);
        }
        let interval = self.rate.interval();
        let tat = self.tats.entry(key.clone()).or_insert(now);
        // Never more than one period ahead: a refused event recorded anyway cannot push
        // the key's recovery further out.
        *tat = ((*tat).max(now) + interval).min(now + self.rate.period + interval);
    }

    /// [`check`](Self::check), then [`record`](Self::record) if allowed.
    pub fn take(&mut self, key: &K, now: Instant) -> RateVerdict {
        let verdict = self.check(key, now);
        if verdict.allowed() {
            self.record(key, now);
        }
        verdict
    }

    fn make_room(&mut self, now: Instant) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() < self.max_keys {
            return;
        }
        let mut by_tat: Vec<(Instant, K)> = self.tats.iter().map(|(k, t)| (*t, k.clone())).collect();
        let evict = (by_tat.len() / 8).max(1);
        by_tat.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, k) in &by_tat[..evict] {
            self.tats.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exactly_n_in_a_burst_then_refused_for_one_interval() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Rate::new(3, secs(60)), 10);
        for _ in 0..3 {
            assert_eq!(r.take(&"a", t0), RateVerdict::Allowed);
        }
        assert_eq!(r.take(&"a", t0), RateVerdict::Limited { retry_in: secs(20) });
        assert_eq!(r.take(&"a", t0 + secs(19)), RateVerdict::Limited { retry_in: secs(1) });
        assert_eq!(r.take(&"a", t0 + secs(20)), RateVerdict::Allowed);
        assert!(!r.take(&"a", t0 + secs(20)).allowed());
    }

    #[test]
    fn the_window_recovers_fully_after_one_period() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Rate::new(3, secs(60)), 10);
        for _ in 0..3 {
            r.take(&"a", t0);
        }
        for _ in 0..3 {
            assert!(r.take(&"a", t0 + secs(60)).allowed());
        }
        assert!(!r.take(&"a", t0 + secs(60)).allowed());
    }

    #[test]
    fn keys_are_independent() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Rate::new(1, secs(60)), 10);
        assert!(r.take(&"a", t0).allowed());
        assert!(!r.take(&"a", t0).allowed());
        assert!(r.take(&"b", t0).allowed());
    }

    #[test]
    fn check_counts_nothing_and_refused_records_do_not_extend_the_wait() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Rate::new(2, secs(10)), 10);
        for _ in 0..10 {
            assert!(r.check(&"a", t0).allowed());
        }
        for _ in 0..50 {
            r.record(&"a", t0);
        }
        assert_eq!(r.check(&"a", t0), RateVerdict::Limited { retry_in: secs(10) });
        assert!(r.check(&"a", t0 + secs(10)).allowed());
    }

    #[test]
    fn spoofed_keys_cannot_grow_the_map() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Rate::new(1, secs(3600)), 64);
        for i in 0..100_000u64 {
            r.take(&i, t0 + Duration::from_millis(i));
            assert!(r.len() <= 64);
        }
        // Every key stays limited for an hour, so eviction had to drop limited keys (those
        // limited longest ago first): the bound holds whatever the keys are.
        assert_eq!(r.len(), 64);
    }

    #[test]
    fn degenerate_rates_are_made_safe() {
        let r = Rate::new(0, Duration::ZERO);
        assert_eq!(r, Rate { count: 1, period: secs(1) });
        assert_eq!(Rate::new(1, secs(u64::MAX)).period, MAX_PERIOD);
    }
}
