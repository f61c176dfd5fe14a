//! [`Throttle`]: brute-force protection per client address, as pure logic.
//!
//! Time is passed in, so the server decides when "now" is and tests need not sleep.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The longest delay [`Throttle::begin`] asks for before an attempt.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// How many clients a [`Throttle`] tracks at most unless told otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Longest window or lockout honoured; longer ones are shortened to this (and `Instant`
/// arithmetic cannot overflow).
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to do with an authentication attempt from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleVerdict {
    /// Go ahead, after waiting `delay` (zero for a client with no recent failures). The
    /// attempt is already counted as a failure; [`Throttle::release`] takes it back.
    Allowed {
        /// How long to wait before checking the password.
        delay: Duration,
        /// The reservation to [`release`](Throttle::release) if the attempt does not fail.
        attempt: Attempt,
    },
    /// Refuse without checking the password until `until`.
    Locked {
        /// When the lockout ends.
        until: Instant,
    },
}

/// One reserved authentication attempt, handed out by [`Throttle::begin`].
///
/// It counts as a failure from the moment it is handed out: dropping it (the check failed,
/// or the session went away) leaves it counted; [`Throttle::release`] takes it back (the
/// password was right, or it was never checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reservation not released stays counted as a failure"]
pub struct Attempt {
    client: Client,
    id: u64,
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

/// One client's recent attempts.
#[derive(Debug)]
struct Record {
    /// Attempts within the window that are not known to have succeeded (failures, and
    /// checks still running), oldest first, each with its reservation id; never more than
    /// `max_failures`. Frozen while the client is locked out.
    attempts: VecDeque<(Instant, u64)>,
    /// Set when the client reached `max_failures`.
    locked_until: Option<Instant>,
    /// The last attempt, for eviction.
    last: Instant,
}

/// Brute-force protection per client address, counting attempts *before* they are checked.
///
/// [`begin`](Self::begin) is asked before every password check. An allowed attempt is
/// counted as a failure at once (a reservation); [`release`](Self::release) takes back that
/// one reservation when the password turns out right (or was never checked). So however
/// many sessions a client runs at the same moment, at most `max_failures` of its attempts
/// are checked before it is locked out: the `max_failures`-th reservation within `window`
/// locks the client for `lockout`, after which it starts afresh. Each earlier attempt
/// within `window` adds `delay_per_failure` to the wait before the next (at most
/// [`MAX_DELAY`]).
///
/// A success releases only its own reservation, never the client's other failures: an
/// attacker who owns one valid account cannot log in between guesses to reset the count.
/// If that reservation was the one that locked the client, the lock is lifted (the client
/// has `max_failures - 1` failures, not `max_failures`).
///
/// IPv6 clients are counted per /64, IPv4 clients per address. Memory is bounded: records
/// with nothing left to remember are dropped as time passes, and at most `max_entries`
/// clients are tracked (when full, the least recently active eighth is forgotten). The
/// server holds it behind a `Mutex`; every call is short.
#[derive(Debug)]
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    delay_per_failure: Duration,
    max_entries: usize,
    records: HashMap<Client, Record>,
    last_prune: Option<Instant>,
    /// The id of the next reservation (unique for the throttle's lifetime, so a stale
    /// [`Attempt`] never releases someone else's reservation).
    next_id: u64,
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
            next_id: 0,
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

    /// May `ip` try to authenticate at `now`, and after what delay? An allowed attempt is
    /// counted as a failure from now on, until [`release`](Self::release)d.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> ThrottleVerdict {
        self.maybe_prune(now);
        let client = Client::from(ip);
        if !self.records.contains_key(&client) && self.records.len() >= self.max_entries {
            self.make_room(now);
        }
        let id = self.next_id;
        let record = self.records.entry(client).or_insert_with(|| Record {
            attempts: VecDeque::new(),
            locked_until: None,
            last: now,
        });
        record.forget_old(now, self.window);
        if let Some(until) = record.locked_until {
            return ThrottleVerdict::Locked { until };
        }
        self.next_id += 1;
        let earlier = u32::try_from(record.attempts.len()).unwrap_or(u32::MAX);
        record.attempts.push_back((now, id));
        record.last = now;
        if record.attempts.len() >= self.max_failures as usize {
            record.locked_until = Some(now + self.lockout);
        }
        let delay = self.delay_per_failure.saturating_mul(earlier).min(MAX_DELAY);
        ThrottleVerdict::Allowed { delay, attempt: Attempt { client, id } }
    }

    /// Takes back `attempt`'s reservation: the password was right, or it was never checked.
    /// Only that one reservation is released; the client's other failures stay counted. A
    /// lockout that this reservation caused is lifted. Nothing happens if the reservation
    /// is gone already (released before, expired with its window or lockout, or evicted).
    pub fn release(&mut self, attempt: Attempt) {
        let Some(record) = self.records.get_mut(&attempt.client) else { return };
        let Some(at) = record.attempts.iter().position(|&(_, id)| id == attempt.id) else { return };
        record.attempts.remove(at);
        if record.attempts.len() < self.max_failures as usize {
            record.locked_until = None;
        }
        if record.is_spent() {
            self.records.remove(&attempt.client);
        }
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
    /// still full, the eighth that was active least recently (one pass, amortized over the
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
    /// Ends a lockout that is over (the client then starts afresh, forgetting everything),
    /// and otherwise, unless the client is locked out, drops attempts older than `window`.
    fn forget_old(&mut self, now: Instant, window: Duration) {
        match self.locked_until {
            Some(until) if now >= until => {
                self.locked_until = None;
                self.attempts.clear();
            }
            // While locked, the attempts that locked it stay: a success among them must
            // still find its reservation to lift the lock it caused.
            Some(_) => {}
            None => {
                while let Some(&(t, _)) = self.attempts.front() {
                    if now.saturating_duration_since(t) < window {
                        break;
                    }
                    self.attempts.pop_front();
                }
            }
        }
    }

    /// Nothing left to remember.
    fn is_spent(&self) -> bool {
        self.attempts.is_empty() && self.locked_until.is_none()
    }
}
