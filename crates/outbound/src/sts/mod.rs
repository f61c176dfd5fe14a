//! MTA-STS for MX delivery (RFC 8461): the destination's policy, from the cache or fetched,
//! and the TLS-RPT counts (RFC 8460). The rules are `dakiya_mtasts`'; this is the shell:
//! DNS, HTTPS, files, and one fetch in flight per domain.

mod applied;
mod clock;
mod fetch;
mod rpt;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dakiya_mtasts::cache::{self, Decision};
use dakiya_mtasts::record::{self, RecordError};
use dakiya_mtasts::{Cached, Mode, ResultType};
use dakiya_route::Router;

pub(crate) use applied::Applied;
pub(crate) use clock::now;
use tracing::{debug, info, warn};

pub(crate) use rpt::Reporter;

/// Where and how policies are fetched and kept.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// The directory for cached policies and the TLS-RPT counts; `None` keeps them in
    /// memory only.
    pub dir: Option<PathBuf>,
    /// The HTTPS port of policy hosts: 443 (RFC 8461 §3.3); tests change it.
    pub https_port: u16,
    /// The most time one policy fetch may take.
    pub fetch_timeout: Duration,
}

impl Default for StsSettings {
    fn default() -> Self {
        StsSettings { dir: None, https_port: 443, fetch_timeout: Duration::from_secs(10) }
    }
}

/// What outlives one [`Sts`]: the policy cache, the fetches in flight and the report
/// counts. Services built on the same directory share it while one of them lives, so a
/// reload (a new outbound service) keeps the counts and never fetches twice at once.
pub(crate) struct Shared {
    memory: Mutex<HashMap<String, Cached>>,
    /// One lock per domain being resolved, so concurrent deliveries fetch once.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    reporter: Reporter,
}

/// The [`Shared`] state of each directory in use.
static BY_DIR: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

impl Shared {
    fn new(dir: Option<&PathBuf>) -> Shared {
        let reporter = Reporter::new(dir.map(|d| d.join("tlsrpt.json")));
        Shared { memory: Mutex::new(HashMap::new()), inflight: Mutex::new(HashMap::new()), reporter }
    }

    /// The state of `dir`: the one in use, or a new one (read from its files).
    fn for_dir(dir: Option<&PathBuf>) -> Arc<Shared> {
        let Some(dir) = dir else { return Arc::new(Shared::new(None)) };
        let mut all = BY_DIR.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, w)| w.strong_count() > 0);
        if let Some(shared) = all.iter().find(|(d, _)| d == dir).and_then(|(_, w)| w.upgrade()) {
            return shared;
        }
        let shared = Arc::new(Shared::new(Some(dir)));
        all.push((dir.clone(), Arc::downgrade(&shared)));
        shared
    }
}

/// Policies of MX destinations: looked up, fetched, cached; and the report counts.
pub(crate) struct Sts {
    router: Router,
    http_tls: Arc<rustls::ClientConfig>,
    settings: StsSettings,
    shared: Arc<Shared>,
}

impl Sts {
    pub(crate) fn new(router: Router, http_tls: Arc<rustls::ClientConfig>, settings: StsSettings) -> Sts {
        let shared = Shared::for_dir(settings.dir.as_ref());
        Sts { router, http_tls, settings, shared }
    }

    /// The TLS-RPT counts.
    pub(crate) fn reporter(&self) -> &Reporter {
        &self.shared.reporter
    }

    fn cached(&self, domain: &str) -> Option<Cached> {
        if let Some(c) = self.shared.memory.lock().unwrap_or_else(|e| e.into_inner()).get(domain) {
            return Some(c.clone());
        }
        let c = store::load(&self.settings.dir.as_ref()?.join("policies"), domain)?;
        self.shared.memory.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_owned(), c.clone());
        Some(c)
    }

    fn keep(&self, domain: &str, c: Cached) {
        if let Some(dir) = &self.settings.dir
            && let Err(e) = store::save(&dir.join("policies"), domain, &c)
        {
            warn!(domain, error = %e, "cannot write the MTA-STS policy cache");
        }
        self.shared.memory.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_owned(), c);
    }

    /// The policy for `domain`, or `None` when it publishes none (or `mode: none`).
    pub(crate) async fn resolve(&self, domain: &str) -> Option<Applied> {
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase();
        let lock = {
            let mut inflight = self.shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(domain.clone()).or_default().clone()
        };
        let applied = {
            let _one = lock.lock().await;
            self.resolve_locked(&domain).await
        };
        // Forget the lock when nobody else holds it (2 = the map's and ours).
        let mut inflight = self.shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) == 2 {
            inflight.remove(&domain);
        }
        applied.filter(|a| a.policy.as_ref().is_none_or(|p| p.mode != Mode::None))
    }

    /// The `mailto:` addresses of the domain's TLS-RPT record (RFC 8460 §3).
    pub(crate) async fn report_addresses(&self, domain: &str) -> Vec<String> {
        match self.router.txt("_smtp._tls", domain).await.map(|t| record::parse_tlsrpt(&t)) {
            Ok(Ok(r)) => {
                if !r.https.is_empty() {
                    info!(domain, "TLS-RPT https: reporting is not supported; only mailto: is used");
                }
                r.mailto
            }
            Ok(Err(e)) => {
                debug!(domain, error = %e, "no usable _smtp._tls record");
                Vec::new()
            }
            Err(e) => {
                debug!(domain, error = %e, "_smtp._tls lookup failed");
                Vec::new()
            }
        }
    }

    async fn resolve_locked(&self, domain: &str) -> Option<Applied> {
        let id = match self.router.txt("_mta-sts", domain).await {
            Ok(txts) => match record::parse_sts(&txts) {
                Ok(r) => Some(r.id),
                Err(RecordError::None) => None,
                Err(e) => {
                    debug!(domain, error = %e, "unusable _mta-sts record");
                    None
                }
            },
            Err(e) => {
                debug!(domain, error = %e, "_mta-sts lookup failed");
                None
            }
        };
        let now = now();
        let cached = self.cached(domain);
        let policy = match cache::decide(cached.as_ref(), id.as_deref(), now) {
            Decision::NoPolicy => return None,
            Decision::UseCached => cached?.policy,
            Decision::Fetch => {
                let limit = self.settings.fetch_timeout;
                match fetch::fetch(&self.router, self.http_tls.clone(), domain, self.settings.https_port, limit).await {
                    Ok(policy) => {
                        info!(domain, mode = %policy.mode, max_age = policy.max_age, "MTA-STS policy fetched");
                        self.keep(domain, Cached { id: id.unwrap_or_default(), fetched: now, policy: policy.clone() });
                        policy
                    }
                    Err(e) => {
                        let fallback = cache::fallback(cached.as_ref(), now).map(|c| c.policy.clone());
                        warn!(domain, reason = %e.reason, cached = fallback.is_some(), "MTA-STS policy fetch failed");
                        let applied = Applied { domain: domain.to_owned(), policy: fallback };
                        self.shared.reporter.failure(&applied, e.result, None);
                        return Some(applied);
                    }
                }
            }
        };
        Some(Applied { domain: domain.to_owned(), policy: Some(policy) })
    }
}

/// The result type of a session that met a policy or not, as the connection saw it.
pub(crate) fn outcome_type(seen: crate::connection::TlsSeen) -> Option<ResultType> {
    use crate::connection::TlsSeen;
    match seen {
        TlsSeen::Established => None,
        TlsSeen::NotOffered | TlsSeen::HandshakeFailed => Some(ResultType::StarttlsNotSupported),
        TlsSeen::Certificate(t) => Some(t),
    }
}
