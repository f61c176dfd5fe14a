//! Live reload (issue #16, docs/reload.md): SIGHUP, `dakiya reload` (the control socket) and
//! in-process test servers re-read the configuration file and apply it without dropping open
//! sessions or losing queue state.
//!
//! All or nothing: everything derived from the new file — the configuration itself, the files
//! it names (checked as `dakiya check-config` checks them), the outbound service, the TLS
//! certificate, message authentication, the new listeners' sockets — is built before anything
//! is swapped. Any failure refuses the reload, logs it and leaves the running configuration in
//! force. Then, in order: the queue takes the new configuration and outbound service for its
//! next delivery runs, sessions see the new [`Live`] at their next decision, new listeners
//! start accepting, removed ones stop (their open sessions finish).

mod plan;

pub use plan::{ListenerDiff, ListenerKey, NEEDS_RESTART, needs_restart};

use crate::admission::Admission;
use crate::checkconfig::{check_files, problem};
use crate::live::Live;
use crate::msgauth::MailAuth;
use crate::setup;
use crate::shared::Shared;
use crate::tls::TlsManager;
use dakiya_config::{Config, ConfigError, Listener, Role};
use dakiya_control::ReloadSummary;
use dakiya_outbound::Outbound;
use dakiya_proto::ServerConfig;
use dakiya_queue::Ctx;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;

/// A listener accepting connections.
pub struct Running {
    /// Its configured address and role.
    pub key: ListenerKey,
    /// The address it is bound to (the real port where the configuration says 0).
    pub bound: SocketAddr,
    /// The socket, shared with the accept loop (and handed over when only the role changes).
    pub socket: Arc<TcpListener>,
    /// The accept loop; aborting it closes the socket once nothing else holds it.
    pub task: JoinHandle<()>,
}

/// How a listener is opened on a bound socket (the accept loop is `listen.rs`'s; start-up
/// opens its listeners with the same function). `Err`: the bound address cannot be read.
pub type OpenListener =
    fn(ListenerKey, &Listener, Arc<TcpListener>, &Arc<Shared>, &Arc<Admission>) -> std::io::Result<Running>;

/// Why a reload was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The server runs with the embedded default configuration: there is no file to re-read.
    #[error(
        "this server runs with the embedded default configuration, which has no file to re-read; start it with `dakiya serve --config FILE` to reload"
    )]
    NoFile,
    /// The file, or a file it names, has problems (each names the file, line and key where
    /// known); or a key that needs a restart changed.
    #[error("{}", join(.0))]
    Invalid(Vec<ConfigError>),
    /// A new listener's address could not be bound.
    #[error("{file}: cannot listen on {address} ({role}): {source}")]
    Bind { file: String, address: SocketAddr, role: Role, source: std::io::Error },
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A step of the reload panicked (a bug); nothing was changed unless the log says so.
    #[error("internal error while reloading: {0}")]
    Internal(String),
}

fn join(problems: &[ConfigError]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// What a reload needs to reach: the running listeners and what they share.
pub struct Reloader {
    /// The configuration file the server was started from; `None`: the embedded default.
    file: Option<PathBuf>,
    running: Vec<Running>,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    /// The queue's context at start, which reloaded contexts share the spool and limits with.
    queue_ctx: Arc<Ctx>,
    open: OpenListener,
    /// Shutting down: the listeners are stopped and no reload may start new ones.
    stopped: bool,
}

impl Reloader {
    /// The reloader of a server started from `file` with these listeners.
    pub fn new(
        file: Option<PathBuf>,
        running: Vec<Running>,
        shared: Arc<Shared>,
        admission: Arc<Admission>,
        queue_ctx: Arc<Ctx>,
        open: OpenListener,
    ) -> Reloader {
        Reloader { file, running, shared, admission, queue_ctx, open, stopped: false }
    }

    async fn reload(&mut self) -> Result<ReloadSummary, ReloadError> {
        if self.stopped {
            return Err(ReloadError::ShuttingDown);
        }
        let file = self.file.clone().ok_or(ReloadError::NoFile)?;
        let old = self.shared.live.get();
        let old_config = old.config.clone();
        // Reading and checking files (and building resolvers) blocks.
        let prepared = tokio::task::spawn_blocking(move || prepare(&file, &old_config))
            .await
            .map_err(|e| ReloadError::Internal(e.to_string()))?
            .map_err(ReloadError::Invalid)?;
        let cfg = prepared.config.clone();
        let diff = ListenerDiff::between(&old.config.listeners, &cfg.listeners);
        // Bind every new listener before anything changes: a failure leaves all as it was
        // (the sockets bound so far close when dropped).
        let mut sockets = Vec::new();
        for (key, l) in &diff.added {
            let socket = match diff.takes_over(key).and_then(|k| self.find(k)) {
                Some(r) => r.socket.clone(),
                None => {
                    let socket = crate::bind::bind(l.address).and_then(crate::bind::into_tokio);
                    Arc::new(socket.map_err(|source| bind_error(&cfg, l, source))?)
                }
            };
            sockets.push((*key, l, socket));
        }
        // The swap. The queue goes first: it is the only step that can still fail (when the
        // queue manager has already stopped), and then nothing else has changed.
        prepared.outbound.record_into(self.shared.metrics.clone());
        let ctx = self.queue_ctx.reconfigured(cfg.clone(), prepared.outbound);
        self.shared.queue.reconfigure(ctx).await.map_err(|_| ReloadError::ShuttingDown)?;
        let tls_changed = prepared.tls.is_some();
        let tls = prepared.tls.unwrap_or_else(|| old.tls.clone());
        prepared.mailauth.spawn_reloader();
        let screener = prepared.screener.unwrap_or_else(|| old.screener.clone());
        let live = Live {
            config: cfg.clone(),
            session: prepared.session,
            tls: tls.clone(),
            mailauth: prepared.mailauth,
            screener,
        };
        self.shared.live.set(live);
        if tls_changed {
            tls.spawn_watcher();
        } else {
            // Same files: re-read them anyway (SIGHUP is how a renewed certificate is loaded
            // at once). They were checked above; a failure now (a race with a writer) keeps the
            // certificate served so far, as the file watcher does.
            reload_certificate(tls).await;
        }
        let mut summary = summary(&cfg);
        for (key, l, socket) in sockets {
            match (self.open)(key, l, socket, &self.shared, &self.admission) {
                Ok(r) => {
                    summary.listeners_added.push(format!("{} {}", r.bound, r.key.role));
                    self.running.push(r);
                }
                // Only the socket's own address could not be read: it is not listening.
                Err(e) => tracing::error!(address = %l.address, error = %e, "listener not started"),
            }
        }
        for key in &diff.removed {
            if let Some(i) = self.running.iter().position(|r| r.key == *key) {
                let r = self.running.remove(i);
                r.task.abort();
                tracing::info!(address = %r.bound, role = %r.key.role, "stopped listening; open sessions finish");
                summary.listeners_removed.push(format!("{} {}", r.bound, r.key.role));
            }
        }
        self.shared.health.set_listeners(self.running.iter().map(|r| (r.bound, r.key.role)).collect());
        Ok(summary)
    }

    fn find(&self, key: ListenerKey) -> Option<&Running> {
        self.running.iter().find(|r| r.key == key)
    }
}

/// Everything built from the new file, checked, not yet in force.
struct Prepared {
    config: Arc<Config>,
    session: Arc<ServerConfig>,
    outbound: Outbound,
    /// A new certificate manager when `[tls]` changed; `None`: keep the one running.
    tls: Option<Arc<TlsManager>>,
    mailauth: Arc<MailAuth>,
    /// A new screener when `[screen]` or the name servers changed; `None`: keep the one
    /// running (and its cache).
    screener: Option<Option<Arc<crate::screen::Screener>>>,
}

/// Reads `file` and builds what the server derives from it, with the functions start-up and
/// `check-config` use (blocking; inside the runtime, for the resolvers). `old` is the
/// configuration in force. Every problem names the file and the key.
fn prepare(file: &Path, old: &Config) -> Result<Prepared, Vec<ConfigError>> {
    let cfg = Config::from_file(file).map_err(|e| vec![e])?;
    let mut problems: Vec<ConfigError> =
        needs_restart(old, &cfg).into_iter().map(|key| problem(&cfg, key, NEEDS_RESTART.into())).collect();
    problems.extend(check_files(&cfg));
    if !problems.is_empty() {
        return Err(problems);
    }
    let one = |key: &str, message: String| vec![problem(&cfg, key, message)];
    let outbound_cfg = setup::outbound_config(&cfg).map_err(|e| one(e.key, e.message))?;
    let outbound =
        Outbound::with_mta_sts(outbound_cfg, setup::sts_settings(&cfg)).map_err(|e| one("outbound", e.to_string()))?;
    let tls = if cfg.tls == old.tls {
        None
    } else {
        Some(TlsManager::new(setup::tls_settings(&cfg)).map_err(|e| one("tls", e.to_string()))?)
    };
    let mailauth = Arc::new(setup::mail_auth(&cfg).map_err(|e| one("data_dir", e))?);
    let screener = if cfg.screen == old.screen && cfg.outbound.nameservers == old.outbound.nameservers {
        None
    } else {
        Some(setup::screener(&cfg).map_err(|e| one("screen", e))?)
    };
    let session = Arc::new(setup::session_config(&cfg));
    Ok(Prepared { config: Arc::new(cfg), session, outbound, tls, mailauth, screener })
}

fn bind_error(cfg: &Config, l: &Listener, source: std::io::Error) -> ReloadError {
    ReloadError::Bind { file: cfg.source.clone(), address: l.address, role: l.role, source }
}

/// The size of the configuration now in force, for the summary.
fn summary(cfg: &Config) -> ReloadSummary {
    ReloadSummary {
        file: cfg.source.clone(),
        domains: cfg.domains.len(),
        mailboxes: cfg.domains.values().map(|d| d.mailboxes.len()).sum(),
        aliases: cfg.aliases.len(),
        ..ReloadSummary::default()
    }
}

async fn reload_certificate(tls: Arc<TlsManager>) {
    match tokio::task::spawn_blocking(move || tls.reload()).await {
        Ok(Ok(true)) => tracing::info!("TLS certificate reloaded; new connections use it"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the current one"),
        Err(e) => tracing::warn!(error = %e, "TLS certificate check failed"),
    }
}

/// Reloads a server: shared by SIGHUP, the control socket and in-process test servers. One
/// reload at a time; each waits for the one before.
#[derive(Clone)]
pub struct ReloadHandle(Arc<tokio::sync::Mutex<Reloader>>);

impl ReloadHandle {
    /// The handle of `reloader`.
    pub fn new(reloader: Reloader) -> ReloadHandle {
        ReloadHandle(Arc::new(tokio::sync::Mutex::new(reloader)))
    }

    /// Re-reads the configuration file and applies it, or refuses it and changes nothing.
    /// Logs one INFO line for a reload applied, one ERROR line for a reload refused.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let started = std::time::Instant::now();
        // On a task of its own: a caller that stops waiting (the control socket's deadline,
        // a client gone) must not cut a reload short between its swaps.
        let reloader = self.0.clone();
        let task = tokio::spawn(async move { reloader.lock_owned().await.reload().await });
        let result = task.await.unwrap_or_else(|e| Err(ReloadError::Internal(e.to_string())));
        match &result {
            Ok(s) => tracing::info!(
                file = %s.file,
                listeners_added = %s.listeners_added.join(", "),
                listeners_removed = %s.listeners_removed.join(", "),
                domains = s.domains,
                mailboxes = s.mailboxes,
                aliases = s.aliases,
                ms = started.elapsed().as_millis() as u64,
                "configuration reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays in force")
            }
        }
        result
    }

    /// Shutdown: stops every listener (after a reload under way) and refuses later reloads.
    pub async fn stop_listeners(&self) {
        let mut r = self.0.lock().await;
        r.stopped = true;
        r.running.retain(|l| {
            // HTTP listeners (metrics) keep answering while sessions drain: `/readyz` says
            // "draining" to the load balancer. They stop in `stop_http_listeners`.
            let http = l.key.role == Role::Metrics;
            if !http {
                l.task.abort();
            }
            http
        });
    }

    /// Stops what [`ReloadHandle::stop_listeners`] left running: the HTTP listeners, once the
    /// sessions have drained.
    pub async fn stop_http_listeners(&self) {
        let mut r = self.0.lock().await;
        for l in r.running.drain(..) {
            l.task.abort();
        }
    }
}

/// SIGHUP, registered (so that from now on it cannot end the process); `None`, logged, when
/// it cannot be watched.
pub fn hangups() -> Option<Signal> {
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot watch SIGHUP; reload with `dakiya reload`"))
        .ok()
}

/// Reloads on every SIGHUP (the outcome is logged by [`ReloadHandle::reload`]).
pub fn reload_on(hup: Option<Signal>, reloader: ReloadHandle) {
    let Some(mut hup) = hup else { return };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloader.reload().await;
        }
    });
}
