//! A listener's rate limits (`[rate_limits.NAME]`, or the role's defaults): the counters in
//! memory — a restart resets them — and the replies when one is exceeded.
//!
//! Each counter is a [`RateLimiter`] (GCRA, one instant per key) with at most `max_entries`
//! keys, so spoofed networks or forged sender domains cannot grow memory without bound. All
//! of a listener's counters share one lock: a message is counted against every limit only
//! if every limit allows it.

use crate::policy::Client;
use dakiya_config::{RateLimits, RateSpec};
use dakiya_limits::{Network, Rate, RateLimiter, RateVerdict};
use dakiya_proto::logtext::Esc;
use dakiya_proto::{Enhanced, Reply};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one listener guards with: its rate limits and whether it greylists.
pub struct Guards {
    pub rates: ListenerRates,
    /// The listener's `greylist` (mx listeners with `[greylist] enabled`).
    pub greylist: bool,
}

/// The counters of one listener.
pub struct ListenerRates {
    /// What the counters count against (to tell when a reload changed the listener's limits).
    limits: RateLimits,
    counters: Mutex<Counters>,
}

struct Counters {
    connections: Option<RateLimiter<Network>>,
    network_messages: Option<RateLimiter<Network>>,
    user_messages: Option<RateLimiter<String>>,
    user_recipients: Option<RateLimiter<String>>,
    domain_messages: Option<RateLimiter<String>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(spec: Option<RateSpec>, max: usize) -> Option<RateLimiter<K>> {
    spec.map(|s| RateLimiter::new(Rate::new(s.count, s.period), max))
}

impl ListenerRates {
    /// The limits these counters count against.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Counters for `limits`, all empty.
    pub fn new(limits: &RateLimits) -> ListenerRates {
        let max = limits.max_entries;
        ListenerRates {
            limits: limits.clone(),
            counters: Mutex::new(Counters {
                connections: limiter(limits.connections_per_network, max),
                network_messages: limiter(limits.messages_per_network, max),
                user_messages: limiter(limits.messages_per_user, max),
                user_recipients: limiter(limits.recipients_per_user, max),
                domain_messages: limiter(limits.messages_per_sender_domain, max),
            }),
        }
    }

    /// A new connection from `ip`. RFC 5321 §3.1: a server that will not serve the client
    /// now may greet with 421 and close; RFC 3463 X.7.0 is a policy reason.
    pub fn connect(&self, ip: IpAddr) -> Result<(), Reply> {
        let mut c = self.counters.lock().unwrap();
        let Some(limiter) = c.connections.as_mut() else { return Ok(()) };
        match limiter.take(&Network::from(ip), Instant::now()) {
            RateVerdict::Allowed => Ok(()),
            RateVerdict::Limited { retry_in } => {
                tracing::warn!(peer = %ip, limit = "connections_per_network", "rate limit reached");
                Err(Reply::new(
                    421,
                    Enhanced(4, 7, 0),
                    format!("Too many connections from your network, try again in {} seconds", secs(retry_in)),
                ))
            }
        }
    }

    /// MAIL: one message from `ip`, by `user` if authenticated, from `sender` (`""` for the
    /// null sender). RFC 5321 §4.2.5 / RFC 3463 X.7.1: a temporary refusal for a policy
    /// reason; the client may try again later.
    /// A client in `trusted_networks` is not limited per network or sender domain (our own
    /// machines); an authenticated user always is (a stolen password sends little).
    pub fn mail(&self, client: &Client, user: Option<&str>, sender: &str) -> Result<(), Reply> {
        let (ip, trusted) = (client.ip, client.trusted);
        let now = Instant::now();
        let net = Network::from(ip);
        let user = user.map(str::to_lowercase);
        let domain = sender.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_lowercase());
        let mut c = self.counters.lock().unwrap();
        let c = &mut *c;
        let mut checks: Vec<(&'static str, RateVerdict)> = Vec::new();
        let (network_messages, domain_messages) = match trusted {
            true => (None, None),
            false => (c.network_messages.as_mut(), c.domain_messages.as_mut()),
        };
        if let Some(l) = network_messages.as_deref() {
            checks.push(("messages_per_network", l.check(&net, now)));
        }
        if let (Some(l), Some(u)) = (&c.user_messages, &user) {
            checks.push(("messages_per_user", l.check(u, now)));
        }
        if let (Some(l), Some(d)) = (domain_messages.as_deref(), &domain) {
            checks.push(("messages_per_sender_domain", l.check(d, now)));
        }
        if let Some((limit, RateVerdict::Limited { retry_in })) = checks.iter().find(|(_, v)| !v.allowed()) {
            tracing::warn!(peer = %ip, user = %Esc(user.as_deref().unwrap_or("")), from = %Esc(sender), limit, "rate limit reached");
            return Err(refusal(limit, *retry_in));
        }
        if let Some(l) = network_messages {
            l.record(&net, now);
        }
        if let (Some(l), Some(u)) = (&mut c.user_messages, &user) {
            l.record(u, now);
        }
        if let (Some(l), Some(d)) = (domain_messages, &domain) {
            l.record(d, now);
        }
        Ok(())
    }

    /// RCPT: one more recipient for an authenticated `user`.
    pub fn rcpt(&self, ip: IpAddr, user: Option<&str>) -> Result<(), Reply> {
        let Some(user) = user.map(str::to_lowercase) else { return Ok(()) };
        let mut c = self.counters.lock().unwrap();
        let Some(l) = c.user_recipients.as_mut() else { return Ok(()) };
        match l.take(&user, Instant::now()) {
            RateVerdict::Allowed => Ok(()),
            RateVerdict::Limited { retry_in } => {
                tracing::warn!(peer = %ip, user = %Esc(&user), limit = "recipients_per_user", "rate limit reached");
                Err(refusal("recipients_per_user", retry_in))
            }
        }
    }
}

/// The 450 4.7.1 reply naming what was counted.
fn refusal(limit: &str, retry_in: Duration) -> Reply {
    let what = match limit {
        "messages_per_network" => "Too many messages from your network",
        "messages_per_user" => "Too many messages from this user",
        "recipients_per_user" => "Too many recipients from this user",
        _ => "Too many messages from this sender domain",
    };
    Reply::new(450, Enhanced(4, 7, 1), format!("{what}, rate limit reached; try again in {} seconds", secs(retry_in)))
}

/// Whole seconds, rounded up (never "0 seconds").
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
