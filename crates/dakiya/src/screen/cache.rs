//! The DNS list answers remembered by TTL, bounded in size (pure; time passed in).
//!
//! Negative answers are remembered too (RFC 2308 §5), for the TTL of the negative answer —
//! the smaller of the SOA's TTL and its MINIMUM field — capped at [`MAX_NEGATIVE_TTL`];
//! positive ones for their records' TTL capped at [`MAX_TTL`]. Failures and timeouts are
//! never remembered.

use crate::screen::score::Answer;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest a listing is remembered (lists change; a delisted client should not wait).
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The longest a "not listed" is remembered (RFC 2308 §5 advises a cap of hours; a newly
/// listed spammer should not get through for that long).
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(900);

/// Answers by query name.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<String, (Answer, Instant)>,
    capacity: usize,
}

impl Cache {
    /// An empty cache holding at most `capacity` answers.
    pub fn new(capacity: usize) -> Cache {
        Cache { entries: HashMap::new(), capacity: capacity.max(1) }
    }

    /// The answer for `name`, if remembered and not expired at `now`.
    pub fn get(&self, name: &str, now: Instant) -> Option<&Answer> {
        self.entries.get(name).filter(|(_, until)| *until > now).map(|(a, _)| a)
    }

    /// Remembers `answer` for `ttl` (capped by kind; zero: not at all). A full cache first
    /// drops expired answers, then the one closest to expiry.
    pub fn insert(&mut self, name: String, answer: Answer, ttl: Duration, now: Instant) {
        let cap = match answer {
            Answer::Records(_) => MAX_TTL,
            Answer::NotListed => MAX_NEGATIVE_TTL,
        };
        let ttl = ttl.min(cap);
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&name) {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= self.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(name, (answer, now + ttl));
    }

    /// How many answers are held (expired ones included until they are pushed out).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Answer {
        Answer::Records(vec![[127, 0, 0, 2].into()])
    }

    #[test]
    fn answers_expire_with_their_ttl() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert("a.".into(), listed(), Duration::from_secs(60), t0);
        c.insert("b.".into(), Answer::NotListed, Duration::from_secs(30), t0);
        assert_eq!(c.get("a.", t0 + Duration::from_secs(59)), Some(&listed()));
        assert_eq!(c.get("a.", t0 + Duration::from_secs(60)), None);
        assert_eq!(c.get("b.", t0 + Duration::from_secs(29)), Some(&Answer::NotListed));
        assert_eq!(c.get("b.", t0 + Duration::from_secs(30)), None);
        assert_eq!(c.get("c.", t0), None);
    }

    #[test]
    fn ttls_are_capped_and_zero_is_not_cached() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert("neg.".into(), Answer::NotListed, Duration::from_secs(86_400), t0);
        c.insert("pos.".into(), listed(), Duration::from_secs(86_400), t0);
        c.insert("zero.".into(), listed(), Duration::ZERO, t0);
        assert!(c.get("neg.", t0 + MAX_NEGATIVE_TTL - Duration::from_secs(1)).is_some());
        assert!(c.get("neg.", t0 + MAX_NEGATIVE_TTL).is_none());
        assert!(c.get("pos.", t0 + MAX_TTL - Duration::from_secs(1)).is_some());
        assert!(c.get("pos.", t0 + MAX_TTL).is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn size_is_bounded_dropping_expired_then_soonest() {
        let t0 = Instant::now();
        let mut c = Cache::new(3);
        c.insert("old.".into(), listed(), Duration::from_secs(1), t0);
        c.insert("long.".into(), listed(), Duration::from_secs(100), t0);
        c.insert("short.".into(), listed(), Duration::from_secs(50), t0);
        // Full: the expired answer goes first.
        let t1 = t0 + Duration::from_secs(2);
        c.insert("new.".into(), listed(), Duration::from_secs(100), t1);
        assert_eq!(c.len(), 3);
        assert!(c.get("old.", t0).is_none());
        // Full, nothing expired: the one closest to expiry goes.
        c.insert("newer.".into(), listed(), Duration::from_secs(100), t1);
        assert_eq!(c.len(), 3);
        assert!(c.get("short.", t1).is_none());
        assert!(c.get("long.", t1).is_some() && c.get("new.", t1).is_some() && c.get("newer.", t1).is_some());
        // Replacing a held name never evicts another.
        c.insert("long.".into(), Answer::NotListed, Duration::from_secs(10), t1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("long.", t1), Some(&Answer::NotListed));
    }
}
