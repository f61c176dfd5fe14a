//! [`Throttle`]: brute-force protection per client address, as pure logic.
//!
//! Time is passed in, so the server decides when "now" is and tests need not sleep.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The longest delay [`Throttle::check`] asks for before an attempt.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// How many clients a [`Throttle`] tracks at most unless told otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Longest window or lockout honoured; longer ones are shortened to this (and `Instant`
/// arithmetic cannot overflow).
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to do with an authentication attempt from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleVerdict {
    /// Go ahead, after waiting `delay` (zero for a client with no recent failures).
    Allowed {
        /// How long to wait before checking the password.
        delay: Duration,
    },
    /// Refuse without checking the password until `until`.
    Locked {
        /// When the lockout ends.
        until: Instant,
    },
}

/// Who is counted: an IPv4 address, or the /64 prefix of an IPv6 address (one host
/// usually holds a whole /64, RFC 7421, so counting single IPv6 addresses would count
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(a) => Client::V4(a.into()),
            // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; count them as IPv4.
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.into()),
                None => Client::V6Prefix((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// One client's recent failures.
#[derive(Debug)]
struct Record {
    /// Times of failures within the window, oldest first; never more than `max_failures`.
    failures: VecDeque<Instant>,
    /// Set when the client reached `max_failures`.
    locked_until: Option<Instant>,
    /// The last failure, for pruning and eviction.
    last: Instant,
}

/// Brute-force protection per client address.
///
/// Each failure within `window` adds `delay_per_failure` to the wait before the next
/// attempt (at most [`MAX_DELAY`]); `max_failures` failures within `window` lock the
/// client out for `lockout`, after which it starts afresh. A success clears the client.
/// IPv6 clients are counted per /64, IPv4 clients per address.
///
/// Memory is bounded: records with nothing left to remember are dropped as time passes,
/// and at most `max_entries` clients are tracked (when full, the least recently failing
/// eighth is forgotten). The server holds it behind a `Mutex`; every call is short.
#[derive(Debug)]
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    delay_per_failure: Duration,
    max_entries: usize,
    records: HashMap<Client, Record>,
    last_prune: Option<Instant>,
}

impl Throttle {
    /// A throttle tracking up to [`DEFAULT_MAX_ENTRIES`] clients. `max_failures` of 0 is
    /// taken as 1; `window` and `lockout` are capped at a year.
    pub fn new(max_failures: u32, window: Duration, lockout: Duration, delay_per_failure: Duration) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            window: window.min(MAX_PERIOD),
            lockout: lockout.min(MAX_PERIOD),
            delay_per_failure,
            max_entries: DEFAULT_MAX_ENTRIES,
            records: HashMap::new(),
            last_prune: None,
        }
    }

    /// The same throttle tracking at most `max_entries` clients (at least 1).
    pub fn with_max_entries(mut self, max_entries: usize) -> Throttle {
        self.max_entries = max_entries.max(1);
        self
    }

    /// How many clients are tracked now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// May `ip` try to authenticate at `now`, and after what delay?
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> ThrottleVerdict {
        self.maybe_prune(now);
        let client = Client::from(ip);
        let Some(record) = self.records.get_mut(&client) else {
            return ThrottleVerdict::Allowed { delay: Duration::ZERO };
        };
        if let Some(until) = record.locked_until
            && now < until
        {
            return ThrottleVerdict::Locked { until };
        }
        record.forget_old(now, self.window);
        let failures = record.failures.len();
        if record.is_spent() {
            self.records.remove(&client);
        }
        let factor = u32::try_from(failures).unwrap_or(u32::MAX);
        ThrottleVerdict::Allowed { delay: self.delay_per_failure.saturating_mul(factor).min(MAX_DELAY) }
    }

    /// Records a failed attempt by `ip` at `now`. Ignored while the client is locked out:
    /// the server does not check passwords then.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) {
        self.maybe_prune(now);
        let client = Client::from(ip);
        if !self.records.contains_key(&client) && self.records.len() >= self.max_entries {
            self.make_room(now);
        }
        let record = self.records.entry(client).or_insert_with(|| Record {
            failures: VecDeque::new(),
            locked_until: None,
            last: now,
        });
        if record.locked_until.is_some_and(|until| now < until) {
            return;
        }
        record.forget_old(now, self.window);
        record.failures.push_back(now);
        record.last = now;
        if record.failures.len() >= self.max_failures as usize {
            record.locked_until = Some(now + self.lockout);
            record.failures.clear();
        }
    }

    /// Records a successful login by `ip`: forgets its failures.
    pub fn success(&mut self, ip: IpAddr) {
        self.records.remove(&Client::from(ip));
    }

    /// Drops spent records, at most once per window (or whenever the table is full), so
    /// the cost is amortized over many calls.
    fn maybe_prune(&mut self, now: Instant) {
        let due = self.last_prune.is_none_or(|t| now.saturating_duration_since(t) >= self.window);
        if due {
            self.prune(now);
        }
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.records.retain(|_, r| {
            r.forget_old(now, window);
            !r.is_spent()
        });
        self.last_prune = Some(now);
    }

    /// Makes room for a new client in a full table: first drop spent records, then, if
    /// still full, the eighth that failed least recently (one pass, amortized over the
    /// next `max_entries / 8` new clients).
    fn make_room(&mut self, now: Instant) {
        self.prune(now);
        if self.records.len() < self.max_entries {
            return;
        }
        let mut by_age: Vec<(Instant, Client)> = self.records.iter().map(|(&c, r)| (r.last, c)).collect();
        let evict = (by_age.len() / 8).max(1);
        by_age.select_nth_unstable_by_key(evict - 1, |&(last, _)| last);
        for (_, client) in &by_age[..evict] {
            self.records.remove(client);
        }
    }
}

impl Record {
    /// Drops failures older than `window` and a lockout that has ended (the client then
    /// starts afresh).
    fn forget_old(&mut self, now: Instant, window: Duration) {
        if self.locked_until.is_some_and(|until| now >= until) {
            self.locked_until = None;
            self.failures.clear();
        }
        while let Some(&t) = self.failures.front() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            self.failures.pop_front();
        }
    }

    /// Nothing left to remember.
    fn is_spent(&self) -> bool {
        self.failures.is_empty() && self.locked_until.is_none()
    }
}
