//! The DNS side of screening: one [`Screener`] per server (a resolver and the answer cache),
//! asked once per client when its connection is accepted. Every DNS list and the FCrDNS
//! lookups run at once, all under one deadline (`[screen] timeout`), so they overlap the
//! greeting; what has not answered by then counts as a miss.

use crate::screen::cache::Cache;
use crate::screen::fcrdns;
use crate::screen::query::query_name;
use crate::screen::score::{self, Answer, Hit, Verdict};
use dakiya_config::Screen;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::{GenericNameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions, FirstAnswer, Protocol};
use hickory_resolver::{Name, ResolveError, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What screening found about one client.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// The DNS lists' verdict; `verdict.allow_listed` is the session's "allow-listed" flag
    /// (later checks such as greylisting skip such a client).
    pub verdict: Verdict,
    /// The client's forward-confirmed reverse DNS name, if it has one (and `fcrdns` is on).
    pub name: Option<String>,
}

/// The resolver and the cache of DNS list answers, shared by every session.
pub struct Screener {
    cfg: Screen,
    resolver: TokioResolver,
    /// The same name servers without the resolver's special-use rules, for PTR queries:
    /// the resolver answers every PTR in 127.in-addr.arpa and ::1 itself with `localhost`
    /// (RFC 6761 §6.3), which would hide what the name servers say (and what tests serve).
    pool: GenericNameServerPool<TokioRuntimeProvider>,
    cache: Mutex<Cache>,
}

impl Screener {
    /// A screener asking `nameservers` (UDP, then TCP for truncated answers), or the
    /// system's resolvers when the list is empty. The resolver's own cache is off: answers
    /// are remembered here, bounded, with negative answers capped (see [`Cache`]).
    pub fn new(cfg: Screen, nameservers: &[SocketAddr]) -> Result<Screener, String> {
        let config = if nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("reading the system resolver configuration: {e}"))?
                .0
        } else {
            let mut config = ResolverConfig::new();
            for &addr in nameservers {
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            config
        };
        let group = NameServerConfigGroup::from(config.name_servers().to_vec());
        let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        let opts = builder.options_mut();
        opts.timeout = cfg.timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        let pool = GenericNameServerPool::from_config(group, opts.clone(), TokioConnectionProvider::default());
        let cache = Mutex::new(Cache::new(cfg.cache_size));
        Ok(Screener { cfg, resolver: builder.build(), pool, cache })
    }

    /// The configuration it screens with.
    pub fn config(&self) -> &Screen {
        &self.cfg
    }

    /// Starts screening `ip` in a task of its own; the session asks for the result when it
    /// needs it (at the greeting, at RCPT, for `Received:`).
    pub fn start(self: &Arc<Self>, ip: IpAddr) -> Pending {
        let me = self.clone();
        Pending::Running(Task(tokio::spawn(async move { me.examine(ip).await })))
    }

    async fn examine(self: Arc<Self>, ip: IpAddr) -> Findings {
        let deadline = Instant::now() + self.cfg.timeout;
        let (verdict, name) = tokio::join!(self.clone().lists(ip, deadline), self.fcrdns(ip, deadline));
        if !verdict.listed.is_empty() {
            tracing::info!(
                peer = %ip,
                score = verdict.score,
                listed = %verdict.listed.join(","),
                allow_listed = verdict.allow_listed,
                "client found on DNS lists"
            );
        }
        Findings { verdict, name }
    }

    /// Asks every zone at once; each answer (or its absence by `deadline`) is scored.
    async fn lists(self: Arc<Self>, ip: IpAddr, deadline: Instant) -> Verdict {
        let zones = &self.cfg.zones;
        let mut answers: Vec<Option<Answer>> = vec![None; zones.len()];
        let mut set = JoinSet::new();
        for (i, zone) in zones.iter().enumerate() {
            let me = self.clone();
            let name = query_name(ip, &zone.name);
            set.spawn(async move { (i, me.zone_answer(name, deadline).await) });
        }
        // Dropping the set at the deadline aborts the lookups still running.
        let _ = tokio::time::timeout_at(deadline, async {
            while let Some(Ok((i, answer))) = set.join_next().await {
                answers[i] = answer;
            }
        })
        .await;
        let hits: Vec<Hit> = zones.iter().zip(&answers).map(|(z, a)| score::hit(z, a.as_ref())).collect();
        for (zone, hit) in zones.iter().zip(&hits) {
            if let Hit::Unexpected(code) = hit
                && crate::logging::DNSBL_UNEXPECTED.admit()
            {
                tracing::warn!(zone = %zone.name, peer = %ip, answer = %code, "DNS list answered a code it is not configured to count");
            }
        }
        score::verdict(zones, &hits, self.cfg.threshold)
    }

    /// One zone's answer: from the cache, or asked and remembered. `None`: no answer.
    async fn zone_answer(&self, name: String, deadline: Instant) -> Option<Answer> {
        let now = std::time::Instant::now();
        if let Some(a) = lock(&self.cache).get(&name, now) {
            return Some(a.clone());
        }
        let result = tokio::time::timeout_at(deadline, self.resolver.ipv4_lookup(name.as_str())).await.ok()?;
        let (answer, ttl) = match result {
            Ok(lookup) => {
                let ttl = lookup.as_lookup().valid_until().saturating_duration_since(std::time::Instant::now());
                (Answer::Records(lookup.iter().map(|a| a.0).collect()), ttl)
            }
            Err(e) => negative(&e)?,
        };
        lock(&self.cache).insert(name, answer.clone(), ttl, std::time::Instant::now());
        Some(answer)
    }

    /// The client's forward-confirmed name: its PTR names (a few), each looked up forward.
    async fn fcrdns(&self, ip: IpAddr, deadline: Instant) -> Option<String> {
        if !self.cfg.fcrdns {
            return None;
        }
        let ip = ip.to_canonical();
        tokio::time::timeout_at(deadline, async {
            let names = self.ptr(ip).await;
            let mut forward = Vec::new();
            for name in fcrdns::candidates(&names) {
                let fqdn = format!("{name}.");
                let addrs: Vec<IpAddr> = match ip {
                    IpAddr::V4(_) => {
                        self.resolver.ipv4_lookup(fqdn).await.map(|l| l.iter().map(|a| IpAddr::V4(a.0)).collect())
                    }
                    IpAddr::V6(_) => {
                        self.resolver.ipv6_lookup(fqdn).await.map(|l| l.iter().map(|a| IpAddr::V6(a.0)).collect())
                    }
                }
                .unwrap_or_default();
                forward.push((name, addrs));
                if let Some(found) = fcrdns::confirmed(ip, &forward) {
                    return Some(found);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

impl Screener {
    /// The PTR names of `ip`, asked of the name servers directly (not through the resolver: see `pool`).
    async fn ptr(&self, ip: IpAddr) -> Vec<String> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        let Ok(response) = self.pool.lookup(query, DnsRequestOptions::default()).first_answer().await else {
            return Vec::new();
        };
        let names = response.answers().iter().filter_map(|r| match r.data() {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        });
        names.collect()
    }
}

/// NXDOMAIN or NODATA: "not listed", remembered for the negative TTL (RFC 2308 §5; none
/// without an SOA). Anything else (SERVFAIL, REFUSED, I/O) is no answer at all.
fn negative(e: &ResolveError) -> Option<(Answer, Duration)> {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, negative_ttl, .. })
            if matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError) =>
        {
            Some((Answer::NotListed, Duration::from_secs(u64::from(negative_ttl.unwrap_or(0)))))
        }
        _ => None,
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// The screening task of one connection; aborted if the connection ends first.
#[derive(Debug)]
pub struct Task(JoinHandle<Findings>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A session's screening: not done here, running, or done.
#[derive(Debug, Default)]
pub enum Pending {
    /// Screening does not apply to this session.
    #[default]
    Off,
    Running(Task),
    Done(Findings),
}

impl Pending {
    /// The findings, waiting for them if they are still being looked up (never longer than
    /// `[screen] timeout`); `None` when screening is off.
    pub async fn findings(&mut self) -> Option<&Findings> {
        if let Pending::Running(task) = self {
            let found = (&mut task.0).await.unwrap_or_default();
            *self = Pending::Done(found);
        }
        match self {
            Pending::Done(f) => Some(f),
            _ => None,
        }
    }
}
