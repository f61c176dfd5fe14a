//! Connection admission: limits in total, per client address and per network, and room for
//! a new client when the server is full.
//!
//! A server that only counts connections can be filled by a few hostile addresses that
//! open their share and then say nothing (or a byte now and then): every new client is
//! then refused. Here a full server closes the session that has gone longest without
//! progress — idle sessions first, preferring the networks that hold the most connections,
//! then transactions that have stalled — with `421 4.4.2`, and serves the newcomer.
//!
//! The choice is pure logic ([`choose_victim`], time passed in); the registry around it is a
//! mutex held for a hash-map update per connection, and for a scan of the sessions only when
//! the server is full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// An idle session younger than this is never closed to make room: a client that has just
/// been greeted gets the chance to speak.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// A session inside a transaction is closed to make room only after this long without
/// progress (a complete command, or message content).
pub const MIN_STALL: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections`, and no session could be closed to make room.
    Total,
    /// `max_connections_per_ip`.
    Address,
    /// `max_connections_per_network`.
    Network,
}

impl Refusal {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::Address => "per client address",
            Refusal::Network => "per client network",
        }
    }
}

/// A client network: an IPv4 /24, or an IPv6 /64 (one host usually holds a whole /64, RFC
/// 7421). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Net {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Net {
    fn from(ip: IpAddr) -> Net {
        match ip.to_canonical() {
            IpAddr::V4(a) => Net::V4(u32::from(a) >> 8),
            IpAddr::V6(a) => Net::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// What a session tells admission about itself, and how admission asks it to leave.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    busy: AtomicBool,
    /// Milliseconds after `epoch` of the last progress.
    since_ms: AtomicU64,
    evict: Notify,
}

impl Activity {
    fn new(epoch: Instant, now: Instant) -> Activity {
        Activity {
            epoch,
            busy: AtomicBool::new(false),
            since_ms: AtomicU64::new(millis(epoch, now)),
            evict: Notify::new(),
        }
    }

    /// The session made progress at `now`; `busy` is true inside a mail transaction.
    pub fn progress(&self, busy: bool, now: Instant) {
        self.busy.store(busy, Ordering::Relaxed);
        self.since_ms.store(millis(self.epoch, now), Ordering::Relaxed);
    }

    /// Marks the session as inside a transaction or not, without counting progress.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Resolves once admission asked this session to close (at once if it already has).
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
    }
}

fn millis(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// A session as [`choose_victim`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: u64,
    /// Inside a mail transaction.
    pub busy: bool,
    /// The last progress.
    pub since: Instant,
    /// Sessions from the same network.
    pub net_sessions: usize,
}

/// The session to close to make room for a new client, if any: the idle session (at least
/// [`MIN_IDLE`] without progress) from the network with the most sessions, longest idle
/// among those; failing that, the transaction longest without progress (at least
/// [`MIN_STALL`]). `None` when every session is young or active.
pub fn choose_victim(candidates: impl IntoIterator<Item = Candidate>, now: Instant) -> Option<u64> {
    let mut idle: Option<(usize, Duration, u64)> = None;
    let mut stalled: Option<(Duration, u64)> = None;
    for c in candidates {
        let quiet = now.saturating_duration_since(c.since);
        if !c.busy && quiet >= MIN_IDLE {
            let key = (c.net_sessions, quiet, c.id);
            if idle.is_none_or(|best| (key.0, key.1) > (best.0, best.1)) {
                idle = Some(key);
            }
        } else if c.busy && quiet >= MIN_STALL && stalled.is_none_or(|best| quiet > best.0) {
            stalled = Some((quiet, c.id));
        }
    }
    idle.map(|(_, _, id)| id).or(stalled.map(|(_, id)| id))
}

/// The configured limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_ip: usize,
    pub per_net: usize,
}

struct Entry {
    ip: IpAddr,
    net: Net,
    activity: Arc<Activity>,
    evicting: bool,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sessions: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    per_net: HashMap<Net, usize>,
    /// Sessions asked to close that have not closed yet.
    evicting: usize,
}

/// The registry of open sessions.
pub struct Admission {
    limits: Limits,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Signalled whenever a session ends (shutdown waits on it).
    ended: Notify,
}

/// A session's place; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// Shared with the registry.
    pub activity: Arc<Activity>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

/// A successful admission: the ticket, and the address of a session that was asked to close
/// to make room for it.
pub struct Admitted {
    pub ticket: Ticket,
    pub evicted: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission { limits, epoch: Instant::now(), inner: Mutex::new(Inner::default()), ended: Notify::new() })
    }

    /// Sessions in the registry now (including those asked to close).
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Waits until no session is left, or `deadline`; true if none is left.
    pub async fn drained(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let ended = self.ended.notified();
            if self.len() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.len() == 0;
            }
        }
    }

    /// Admits a client from `ip` at `now`, making room if the server is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let ip = ip.to_canonical();
        let net = Net::from(ip);
        let mut inner = self.lock();
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
            return Err(Refusal::Address);
        }
        if inner.per_net.get(&net).copied().unwrap_or(0) >= self.limits.per_net {
            return Err(Refusal::Network);
        }
        let mut evicted = None;
        if inner.sessions.len() - inner.evicting >= self.limits.total {
            let candidates = inner.sessions.iter().filter(|(_, e)| !e.evicting).map(|(&id, e)| Candidate {
                id,
                busy: e.activity.busy.load(Ordering::Relaxed),
                since: e.activity.since(),
                net_sessions: inner.per_net.get(&e.net).copied().unwrap_or(0),
            });
            let Some(victim) = choose_victim(candidates, now) else {
                return Err(Refusal::Total);
            };
            if let Some(e) = inner.sessions.get_mut(&victim) {
                e.evicting = true;
                e.activity.evict.notify_one();
                evicted = Some(e.ip);
            }
            inner.evicting += 1;
        }
        // Sessions asked to close usually go at once; while they drain, at most an eighth
        // more than the limit are open, so memory stays bounded whatever the churn.
        if inner.sessions.len() >= self.limits.total + (self.limits.total / 8).max(1) {
            return Err(Refusal::Total);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = Arc::new(Activity::new(self.epoch, now));
        inner.sessions.insert(id, Entry { ip, net, activity: activity.clone(), evicting: false });
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        *inner.per_net.entry(net).or_insert(0) += 1;
        drop(inner);
        Ok(Admitted { ticket: Ticket { admission: self.clone(), id, activity }, evicted })
    }

    fn release(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.sessions.remove(&id) {
            if e.evicting {
                inner.evicting -= 1;
            }
            decrement(&mut inner.per_ip, e.ip);
            decrement(&mut inner.per_net, e.net);
        }
        drop(inner);
        self.ended.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cand(id: u64, busy: bool, since: Instant, net_sessions: usize) -> Candidate {
        Candidate { id, busy, since, net_sessions }
    }

    #[test]
    fn networks() {
        assert_eq!(Net::from(ip("192.0.2.1")), Net::from(ip("192.0.2.254")));
        assert_ne!(Net::from(ip("192.0.2.1")), Net::from(ip("192.0.3.1")));
        assert_eq!(Net::from(ip("::ffff:192.0.2.1")), Net::from(ip("192.0.2.9")));
        assert_eq!(Net::from(ip("2001:db8:1:2::1")), Net::from(ip("2001:db8:1:2:ffff::1")));
        assert_ne!(Net::from(ip("2001:db8:1:2::1")), Net::from(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn victim_is_idle_from_the_most_crowded_network_then_longest_idle() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let c = [
            cand(1, false, t0, 1),                           // idle 100 s, alone
            cand(2, false, t0 + Duration::from_secs(50), 5), // idle 50 s, crowded network
            cand(3, false, t0 + Duration::from_secs(10), 5), // idle 90 s, crowded network
            cand(4, true, t0, 9),                            // stalled transaction
        ];
        assert_eq!(choose_victim(c, now), Some(3));
    }

    #[test]
    fn young_sessions_and_active_transactions_are_spared() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let young = now - MIN_IDLE + Duration::from_millis(1);
        let active = now - MIN_STALL + Duration::from_millis(1);
        assert_eq!(choose_victim([cand(1, false, young, 3), cand(2, true, active, 3)], now), None);
        // At the edges they become candidates.
        assert_eq!(choose_victim([cand(1, false, now - MIN_IDLE, 3)], now), Some(1));
        assert_eq!(choose_victim([cand(2, true, now - MIN_STALL, 3)], now), Some(2));
        assert_eq!(choose_victim([], now), None);
    }

    #[test]
    fn stalled_transactions_only_when_no_session_is_idle() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let c = [cand(1, true, t0 + Duration::from_secs(80), 1), cand(2, true, t0 + Duration::from_secs(20), 1)];
        assert_eq!(choose_victim(c, now), Some(2));
        let c = [cand(1, true, t0, 1), cand(2, false, now - MIN_IDLE, 1)];
        assert_eq!(choose_victim(c, now), Some(2));
    }

    #[test]
    fn per_address_and_per_network_limits() {
        let a = Admission::new(Limits { total: 100, per_ip: 2, per_net: 3 });
        let now = Instant::now();
        let t1 = a.admit(ip("192.0.2.1"), now).ok().unwrap();
        let _t2 = a.admit(ip("192.0.2.1"), now).ok().unwrap();
        assert_eq!(a.admit(ip("192.0.2.1"), now).err(), Some(Refusal::Address));
        let _t3 = a.admit(ip("192.0.2.2"), now).ok().unwrap();
        assert_eq!(a.admit(ip("192.0.2.3"), now).err(), Some(Refusal::Network));
        assert!(a.admit(ip("192.0.3.1"), now).is_ok());
        drop(t1);
        assert!(a.admit(ip("192.0.2.3"), now).is_ok());
        // IPv6 counts per address and per /64.
        let _v = a.admit(ip("2001:db8::1"), now).ok().unwrap();
        let _w = a.admit(ip("2001:db8::2"), now).ok().unwrap();
        let _x = a.admit(ip("2001:db8::3"), now).ok().unwrap();
        assert_eq!(a.admit(ip("2001:db8::4"), now).err(), Some(Refusal::Network));
    }

    #[test]
    fn a_full_server_evicts_an_idle_session_and_admits() {
        let a = Admission::new(Limits { total: 2, per_ip: 10, per_net: 10 });
        let t0 = Instant::now();
        let idle = a.admit(ip("192.0.2.1"), t0).ok().unwrap();
        let busy = a.admit(ip("198.51.100.1"), t0).ok().unwrap();
        busy.ticket.activity.progress(true, t0 + Duration::from_secs(5));
        // Too early: both are young.
        assert_eq!(a.admit(ip("203.0.113.1"), t0).err(), Some(Refusal::Total));
        let later = t0 + Duration::from_secs(6);
        let new = a.admit(ip("203.0.113.1"), later).ok().unwrap();
        assert_eq!(new.evicted, Some(ip("192.0.2.1")));
        // The victim was told.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), idle.ticket.activity.evicted()).await.unwrap();
        });
        // While the victim drains, the active transaction is spared and the hard cap holds
        // (2 + 2/8 rounded up to 1 = 3 sessions at most).
        assert_eq!(a.admit(ip("203.0.113.2"), later).err(), Some(Refusal::Total));
        assert_eq!(a.len(), 3);
        drop(idle);
        assert_eq!(a.len(), 2);
        drop(new);
        drop(busy);
        assert_eq!(a.len(), 0);
    }
}
