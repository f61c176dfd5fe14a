//! Whether the server is healthy and ready, for `/healthz` and `/readyz` on a metrics
//! listener and for `dakiya status`.
//!
//! Healthy: the listeners are bound and the spool takes new messages. The spool check is a
//! probe ([`Spool::probe_writable`]: a small file created, written, fsynced and removed)
//! run at most once per [`PROBE_INTERVAL`] however often it is asked (a scraper cannot
//! turn it into disk load; concurrent askers share one result), together with the spool's
//! own last commit error, which counts until a later commit succeeds. Ready: healthy and
//! not draining for shutdown.

use dakiya_config::Role;
use dakiya_spool::Spool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the spool is probed at most.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The health of one server.
pub struct Health {
    spool: Arc<Spool>,
    /// When the server started (for uptime), and the same in unix seconds.
    pub started: Instant,
    pub started_unix: u64,
    /// Every listener is bound (set once start-up has bound them all).
    bound: AtomicBool,
    /// The listeners bound now (for `dakiya status`).
    listeners: Mutex<Vec<(SocketAddr, Role)>>,
    /// Shutdown began: sessions are draining.
    draining: AtomicBool,
    /// The last probe: when it ran and what it found. The lock is held while a probe runs,
    /// so concurrent askers wait for it instead of probing again.
    probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// The error of the last commit, while no later commit has succeeded.
    commit_error: Mutex<Option<String>>,
}

/// What [`Health::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `None` when healthy, else why not (a short sentence).
    pub unhealthy: Option<String>,
    /// Shutdown began.
    pub draining: bool,
}

impl Verdict {
    /// Why the server is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        match (&self.unhealthy, self.draining) {
            (Some(why), _) => Some(why.clone()),
            (None, true) => Some("draining for shutdown".into()),
            (None, false) => None,
        }
    }
}

impl Health {
    /// The health of a server using `spool`, starting now.
    pub fn new(spool: Arc<Spool>) -> Health {
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Health {
            spool,
            started: Instant::now(),
            started_unix,
            bound: AtomicBool::new(false),
            listeners: Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(None),
            commit_error: Mutex::new(None),
        }
    }

    /// Every listener is bound: these (start-up, and again after each reload).
    pub fn set_listeners(&self, listeners: Vec<(SocketAddr, Role)>) {
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners;
        self.bound.store(true, Ordering::Relaxed);
    }

    /// The listeners now, with their bound addresses.
    pub fn listeners(&self) -> Vec<(SocketAddr, Role)> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Shutdown began.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// A commit succeeded (`Ok`) or failed with an error.
    pub fn commit_result(&self, result: Result<(), &dyn std::fmt::Display>) {
        let mut last = self.commit_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if last.is_none() => {}
            Ok(()) => *last = None,
            Err(e) => *last = Some(e.to_string()),
        }
    }

    /// The spool probe's result, probing again when the last one is older than
    /// [`PROBE_INTERVAL`].
    pub async fn spool_writable(&self) -> Result<(), String> {
        let mut last = self.probe.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_INTERVAL
        {
            return result.clone();
        }
        let spool = self.spool.clone();
        let result = match tokio::task::spawn_blocking(move || spool.probe_writable()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("spool probe did not finish: {e}")),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }

    /// Checks everything now (the spool probe at most once per [`PROBE_INTERVAL`]).
    pub async fn check(&self) -> Verdict {
        let draining = self.draining.load(Ordering::Relaxed);
        let unhealthy = if !self.bound.load(Ordering::Relaxed) {
            Some("listeners not bound yet".to_string())
        } else if let Err(e) = self.spool_writable().await {
            Some(format!("spool not writable: {e}"))
        } else {
            let last = self.commit_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            last.map(|e| format!("last spool commit failed: {e}"))
        };
        Verdict { unhealthy, draining }
    }
}
