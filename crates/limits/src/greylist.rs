//! [`Greylist`]: the greylisting decision of RFC 6647 as pure logic, with time (Unix seconds)
//! passed in so that its state can be saved and restored across restarts.

use crate::net::Network;
use std::collections::HashMap;
use std::net::IpAddr;

/// The knobs of a [`Greylist`], all times in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistSettings {
    /// A first-seen triplet is deferred until this much time has passed (RFC 6647 §2.1).
    pub min_delay: u64,
    /// How long after first being seen a retry still passes; after that the triplet starts over.
    pub window: u64,
    /// How long a triplet that passed (and an auto-allowed network) is remembered after its
    /// last use.
    pub pass_ttl: u64,
    /// A network whose triplets passed this many times is allowed without delay; 0 turns
    /// auto-allow off.
    pub auto_allow_after: u32,
    /// The most entries (pending and passed triplets, and networks' pass counts) held.
    pub max_entries: usize,
}

/// What greylisting keys on: the client network, the sender and the recipient, lower-cased.
/// The null reverse-path is the empty sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triplet {
    pub(crate) net: Network,
    pub(crate) sender: String,
    pub(crate) recipient: String,
}

impl Triplet {
    /// The triplet of a client at `ip` sending from `sender` (`""` for `<>`) to `recipient`.
    pub fn new(ip: IpAddr, sender: &str, recipient: &str) -> Triplet {
        Triplet { net: Network::from(ip), sender: sender.to_lowercase(), recipient: recipient.to_lowercase() }
    }

    /// The client network of this triplet.
    pub fn network(&self) -> Network {
        self.net
    }
}

/// The answer for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreylistVerdict {
    /// The triplet passed before and is remembered.
    Known,
    /// The triplet was seen at least `min_delay` ago (and within `window`): it passes now.
    Retried,
    /// The network passed often enough to be allowed without delay.
    AutoAllowed,
    /// Refuse temporarily; the earliest retry that can pass is `retry_in` seconds from now.
    Deferred {
        /// Seconds until a retry can pass (at least 1).
        retry_in: u64,
    },
}

impl GreylistVerdict {
    /// True unless the verdict is [`GreylistVerdict::Deferred`].
    pub fn passes(self) -> bool {
        !matches!(self, GreylistVerdict::Deferred { .. })
    }
}

/// A network's history: how many triplets passed, and when it last passed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetRecord {
    pub passes: u32,
    pub last: u64,
}

/// Greylisting state: pending triplets (first seen), passed triplets (last used), and per
/// network the number of passes (for auto-allow).
///
/// Memory is bounded by `max_entries` over all three maps. When full, expired entries go
/// first, then the least valuable eighth: pending triplets (cheapest for anyone to create,
/// so an attacker cycling senders only ever displaces other pending triplets) oldest first,
/// then passed triplets least recently used, then networks' counts.
#[derive(Debug, Clone)]
pub struct Greylist {
    pub(crate) settings: GreylistSettings,
    pub(crate) pending: HashMap<Triplet, u64>,
    pub(crate) passed: HashMap<Triplet, u64>,
    pub(crate) networks: HashMap<Network, NetRecord>,
    dirty: bool,
}

impl Greylist {
    /// An empty greylist. `max_entries` of 0 is taken as 1 and `min_delay` of 0 as 1 second.
    pub fn new(mut settings: GreylistSettings) -> Greylist {
        settings.max_entries = settings.max_entries.max(1);
        settings.min_delay = settings.min_delay.max(1);
        settings.window = settings.window.max(settings.min_delay);
        Greylist { settings, pending: HashMap::new(), passed: HashMap::new(), networks: HashMap::new(), dirty: false }
    }

    /// The settings in force.
    pub fn settings(&self) -> GreylistSettings {
        self.settings
    }

    /// Entries held now (pending + passed triplets + networks); never above `max_entries`.
    pub fn len(&self) -> usize {
        self.pending.len() + self.passed.len() + self.networks.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once since the last call if anything changed (for saving periodically).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Marks the state changed (a save that failed is retried next time).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// True if `triplet` passed before and is remembered (for tests and diagnostics).
    pub fn is_known(&self, triplet: &Triplet) -> bool {
        self.passed.contains_key(triplet)
    }

    /// Decides on `triplet` at `now` (Unix seconds) and records what happened.
    pub fn check(&mut self, triplet: &Triplet, now: u64) -> GreylistVerdict {
        self.dirty = true;
        let s = self.settings;
        if s.auto_allow_after > 0
            && let Some(n) = self.networks.get_mut(&triplet.net)
            && n.passes >= s.auto_allow_after
            && now.saturating_sub(n.last) < s.pass_ttl
        {
            n.last = n.last.max(now);
            return GreylistVerdict::AutoAllowed;
        }
        if let Some(last) = self.passed.get_mut(triplet)
            && now.saturating_sub(*last) < s.pass_ttl
        {
            *last = (*last).max(now);
            return GreylistVerdict::Known;
        }
        match self.pending.get(triplet).copied() {
            Some(first) if now < first.saturating_add(s.min_delay) => {
                GreylistVerdict::Deferred { retry_in: first + s.min_delay - now }
            }
            Some(first) if now <= first.saturating_add(s.window) => {
                self.pending.remove(triplet);
                self.remember_pass(triplet, now);
                GreylistVerdict::Retried
            }
            // Never seen, or its window is over: (re)start the wait.
            _ => {
                self.passed.remove(triplet);
                if !self.pending.contains_key(triplet) {
                    self.make_room(now);
                }
                self.pending.insert(triplet.clone(), now);
                GreylistVerdict::Deferred { retry_in: s.min_delay }
            }
        }
    }

    fn remember_pass(&mut self, triplet: &Triplet, now: u64) {
        self.make_room(now);
        self.passed.insert(triplet.clone(), now);
        match self.networks.get_mut(&triplet.net) {
            Some(n) => {
                n.passes = n.passes.saturating_add(1);
                n.last = n.last.max(now);
            }
            None if self.settings.auto_allow_after > 0 => {
                self.make_room(now);
                self.networks.insert(triplet.net, NetRecord { passes: 1, last: now });
            }
            None => {}
        }
    }

    /// Drops what has expired at `now`.
    pub fn prune(&mut self, now: u64) {
        let s = self.settings;
        let before = self.len();
        self.pending.retain(|_, first| now <= first.saturating_add(s.window));
        self.passed.retain(|_, last| now.saturating_sub(*last) < s.pass_ttl);
        self.networks.retain(|_, n| now.saturating_sub(n.last) < s.pass_ttl);
        self.dirty |= self.len() != before;
    }

    /// Makes room for one more entry: expired entries first, then, if still full, the least
    /// valuable eighth (amortized over the next `max_entries / 8` insertions).
    pub(crate) fn make_room(&mut self, now: u64) {
        if self.len() < self.settings.max_entries {
            return;
        }
        self.prune(now);
        let target = self.settings.max_entries - 1;
        if self.len() <= target {
            return;
        }
        let evict = (self.len() / 8).max(self.len() - target);
        self.evict_least_valuable(evict);
    }

    /// Evicts `n` entries: pending oldest first, then passed, then networks.
    fn evict_least_valuable(&mut self, mut n: usize) {
        n -= evict_oldest(&mut self.pending, n);
        n -= evict_oldest(&mut self.passed, n);
        let mut nets: Vec<(u64, Network)> = self.networks.iter().map(|(k, r)| (r.last, *k)).collect();
        let take = n.min(nets.len());
        if take > 0 {
            nets.select_nth_unstable(take - 1);
            for (_, k) in &nets[..take] {
                self.networks.remove(k);
            }
        }
    }
}

/// Removes up to `n` entries with the smallest times from `map`; returns how many.
fn evict_oldest(map: &mut HashMap<Triplet, u64>, n: usize) -> usize {
    let take = n.min(map.len());
    if take == 0 {
        return 0;
    }
    if take == map.len() {
        map.clear();
        return take;
    }
    let mut times: Vec<u64> = map.values().copied().collect();
    let (_, &mut cutoff, _) = times.select_nth_unstable(take - 1);
    // Entries strictly older than the cutoff, then as many at the cutoff as still needed.
    let mut left = take;
    map.retain(|_, t| {
        if left > 0 && *t < cutoff {
            left -= 1;
            return false;
        }
        true
    });
    map.retain(|_, t| {
        if left > 0 && *t == cutoff {
            left -= 1;
            return false;
        }
        true
    });
    take - left
}

#[cfg(test)]
#[path = "greylist_tests.rs"]
mod tests;
