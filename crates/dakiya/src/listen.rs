//! Start-up, listeners, connection limits and shutdown.

use crate::admission::{Admission, Limits, Refusal};
use crate::conn::{self, Door};
use crate::health::Health;
use crate::live::{Current, Live};
use crate::ratelimits::{Guards, ListenerRates};
use crate::reload::{ListenerKey, ReloadHandle, Reloader, Running};
use crate::screen::Screening;
use crate::shared::Shared;
use crate::status::StatusSource;
use crate::summary::Counters;
use crate::tls::TlsManager;
use dakiya_auth::{CheckPool, Throttle, UserStore};
use dakiya_config::{Config, Role};
use dakiya_metrics::{ListenerMetrics, Metrics};
use dakiya_outbound::Outbound;
use dakiya_proto::sasl::Mechanism;
use dakiya_spool::{Spool, SpoolOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The tokio runtime (or the thread of an in-process server) could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The spool could not be opened or recovered.
    #[error("cannot open the spool in {path}: {source}")]
    Spool { path: String, source: dakiya_spool::SpoolError },
    /// A listener's address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    /// The certificate and key could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(String),
    /// The users file could not be read.
    #[error("user store: {0}")]
    Users(String),
    /// The password check threads could not be started.
    #[error("cannot start the password check threads: {0}")]
    CheckPool(std::io::Error),
    /// Outbound delivery could not be set up (such as an unreadable relay-host password file).
    #[error("outbound delivery: {0}")]
    Outbound(String),
    /// Message authentication could not be set up (its DNS resolver, the DKIM keys).
    #[error("message authentication: {0}")]
    Auth(String),
    /// The configuration file could not be read or is not valid (in-process servers started
    /// from a file).
    #[error("{0}")]
    Config(dakiya_config::ConfigError),
    /// Connection screening could not be set up (its DNS resolver).
    #[error("screening: {0}")]
    Screen(String),
    /// `user`, `group` or `allow_root` cannot be applied: an unknown name, a data directory
    /// of another owner, or root without `allow_root` (docs/hosting.md).
    #[error("{0}")]
    Privileges(String),
}

/// Runs the server until SIGINT or SIGTERM; SIGHUP reloads `file` (docs/reload.md). `file`
/// is where `cfg` was read from: `None` for the embedded default, which cannot be reloaded.
///
/// Started as root, it binds the listeners and then runs as the configured `user` before it
/// opens anything else or accepts a connection (`privdrop.rs`); the drop happens before the
/// runtime's threads exist.
pub fn run(cfg: Config, file: Option<PathBuf>) -> Result<(), StartError> {
    let sockets = bind_all(&cfg)?;
    crate::privdrop::drop_privileges(&cfg).map_err(|e| StartError::Privileges(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(StartError::Runtime)?;
    rt.block_on(async {
        // Registered before anything is started: from here on SIGHUP cannot end the process.
        let hup = crate::reload::hangups();
        // SIGTERM and SIGINT too: one that arrives while start-up finishes (or before the
        // serving task is first polled on a busy machine) still drains instead of killing.
        let stop = stop_signal();
        let started = start_bound(cfg, file, sockets).await?;
        crate::reload::reload_on(hup, started.reloader());
        started.serve_until(stop).await;
        Ok(())
    })
}

/// A started server: its listeners bound and accepting, its queue and control socket running.
/// [`Started::serve_until`] keeps it running until a trigger, then drains it.
pub(crate) struct Started {
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    /// The listeners (and what a reload changes), behind the lock that serialises reloads.
    reloader: ReloadHandle,
    summary: tokio::task::JoinHandle<()>,
    /// Saves the greylisting state every minute (when a listener greylists).
    greylist_saver: Option<tokio::task::JoinHandle<()>>,
    shutdown_tx: watch::Sender<bool>,
    /// Every listener at start: its bound address (the real port where the configuration says 0).
    listeners: Vec<(SocketAddr, Role)>,
}

/// Starts everything and logs "dakiya started"; must run inside a multi-threaded tokio runtime.
/// `file` is where `cfg` was read from, for reloads.
pub(crate) async fn start(cfg: Config, file: Option<PathBuf>) -> Result<Started, StartError> {
    let sockets = bind_all(&cfg)?;
    start_bound(cfg, file, sockets).await
}

/// Binds every listener of `cfg`, in order (`bind.rs`).
fn bind_all(cfg: &Config) -> Result<Vec<std::net::TcpListener>, StartError> {
    let bind = |l: &dakiya_config::Listener| {
        crate::bind::bind(l.address).map_err(|source| StartError::Bind { address: l.address, source })
    };
    cfg.listeners.iter().map(bind).collect()
}

/// [`start`] with the listeners' sockets already bound (one per listener, in order).
async fn start_bound(
    cfg: Config,
    file: Option<PathBuf>,
    sockets: Vec<std::net::TcpListener>,
) -> Result<Started, StartError> {
    let spool_dir = cfg.data_dir.join("spool");
    let options = SpoolOptions::with_slots(cfg.delivery.spool_slots);
    let spool = Spool::open_with(&spool_dir, options)
        .map_err(|source| StartError::Spool { path: spool_dir.display().to_string(), source })?;
    let cfg = Arc::new(cfg);
    let spool = Arc::new(spool);
    // Recover before accepting anything, so a message is never both recovered and enqueued.
    let recovered =
        spool.recover().map_err(|source| StartError::Spool { path: spool_dir.display().to_string(), source })?;
    let users = Arc::new(UserStore::open(&cfg.auth.users_file).map_err(|e| StartError::Users(e.to_string()))?);
    let outbound_cfg = crate::setup::outbound_config(&cfg).map_err(|e| StartError::Outbound(e.to_string()))?;
    let outbound = Outbound::with_mta_sts(outbound_cfg, crate::setup::sts_settings(&cfg))
        .map_err(|e| StartError::Outbound(e.to_string()))?;
    let report_outbound = outbound.clone();
    let history = crate::setup::history(&cfg);
    let metrics = Arc::new(Metrics::new());
    for m in [Mechanism::Plain, Mechanism::Login] {
        metrics.declare_auth_mechanism(m.name());
    }
    let health = Arc::new(Health::new(spool.clone()));
    outbound.record_into(metrics.clone());
    let ctx = dakiya_queue::Ctx::new(cfg.clone(), spool.clone(), users.clone(), outbound);
    let ctx = Arc::new(ctx.with_history(history.clone()).with_metrics(metrics.clone()));
    let queue = dakiya_queue::start(ctx.clone(), recovered);
    let session = Arc::new(crate::setup::session_config(&cfg));
    let tls = TlsManager::new(crate::setup::tls_settings(&cfg)).map_err(|e| StartError::Tls(e.to_string()))?;
    tls.spawn_watcher();
    let a = &cfg.auth;
    let throttle = Throttle::new(a.max_failures, a.failure_window, a.lockout, a.failure_delay);
    let pool = CheckPool::new(a.max_concurrent_checks, a.check_queue_timeout).map_err(StartError::CheckPool)?;
    let authenticator = crate::authbackend::authenticator(&cfg, users.clone(), throttle, pool);
    let mailauth = Arc::new(crate::setup::mail_auth(&cfg).map_err(StartError::Auth)?);
    mailauth.spawn_reloader();
    let screener = crate::setup::screener(&cfg).map_err(StartError::Screen)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let live = Live { config: cfg.clone(), session, tls, mailauth, screener };
    let shared = Arc::new(Shared {
        live: Current::new(live),
        spool: spool.clone(),
        queue: queue.clone(),
        shutdown: shutdown_rx,
        users,
        authenticator,
        counters: Counters::default(),
        history,
        metrics,
        health,
        greylist: crate::greylisting::Greylisting::open(&cfg),
        acme: Arc::default(),
    });
    let greylist_saver = shared.greylist.as_ref().map(|g| g.spawn_saver());
    // Runs for the life of the runtime; nothing waits for it (a copy cut short by the end of
    // the process is recovered at the next start: copyout.rs in crates/spool).
    let _slot_copier = spawn_slot_copier(shared.spool.clone());
    // Its end (at shutdown) writes the TLS-RPT counts; nothing waits for it.
    let _tls_reports = crate::tlsreport::spawn(shared.clone(), report_outbound);
    let admission = Admission::new(Limits {
        total: cfg.limits.max_connections,
        per_ip: cfg.limits.max_connections_per_ip,
        per_net: cfg.limits.max_connections_per_network,
    });
    let summary = tokio::spawn({
        let shared = shared.clone();
        async move { shared.counters.log_periodically().await }
    });
    let mut running = Vec::new();
    for ((key, l), socket) in ListenerKey::all(&cfg.listeners).into_iter().zip(&cfg.listeners).zip(sockets) {
        let bind_error = |source| StartError::Bind { address: l.address, source };
        let socket = crate::bind::into_tokio(socket).map_err(bind_error)?;
        running.push(open_listener(key, l, Arc::new(socket), &shared, &admission).map_err(bind_error)?);
    }
    let listeners: Vec<_> = running.iter().map(|r| (r.bound, r.key.role)).collect();
    shared.health.set_listeners(listeners.clone());
    // Runs for the life of the process; nothing waits for it.
    let _acme = crate::acme::spawn(&shared, &listeners);
    let reloader = Reloader::new(file, running, shared.clone(), admission.clone(), ctx, open_listener);
    let reloader = ReloadHandle::new(reloader);
    let status = Arc::new(StatusSource {
        health: shared.health.clone(),
        queue: queue.clone(),
        recent: crate::logging::recent::current(),
    });
    let control_path = cfg.data_dir.join(crate::control::SOCKET_NAME);
    tokio::spawn({
        let (spool, queue, reloader) = (spool, queue, reloader.clone());
        async move {
            if let Err(e) = crate::control::serve(control_path.clone(), spool, queue, reloader, status).await {
                tracing::error!(path = %control_path.display(), error = %e, "control socket failed; `dakiya queue` will not work");
            }
        }
    });
    tracing::info!(hostname = %cfg.hostname, data_dir = %cfg.data_dir.display(), source = %cfg.source, "dakiya started");
    Ok(Started { shared, admission, reloader, summary, greylist_saver, shutdown_tx, listeners })
}

/// Starts serving on `socket` for listener `l`: logs "listening" with the bound address and
/// spawns its loop: HTTP for a metrics listener, else the accept loop of SMTP and POP3
/// sessions. Start-up and reloads both open listeners here (a reload is given this function:
/// `reload.rs` does not import this file). `Err`: the bound address cannot be read.
fn open_listener(
    key: ListenerKey,
    l: &dakiya_config::Listener,
    socket: Arc<TcpListener>,
    shared: &Arc<Shared>,
    admission: &Arc<Admission>,
) -> std::io::Result<Running> {
    let bound = socket.local_addr()?;
    tracing::info!(address = %bound, role = %l.role.as_str(), "listening");
    let task = match l.role {
        // HTTP, not SMTP: it keeps answering while sessions drain (`/readyz` says so).
        Role::Metrics => tokio::spawn(crate::http::serve(socket.clone(), metrics_routes(shared))),
        Role::Http => tokio::spawn(crate::http::serve(socket.clone(), client_routes(shared))),
        Role::Https => {
            let tls_of = shared.clone();
            let acceptors: crate::http::Acceptors = Arc::new(move || tls_of.live.get().tls.acceptor());
            tokio::spawn(crate::http::serve_tls(socket.clone(), client_routes(shared), acceptors))
        }
        _ => {
            let counts = shared.metrics.listener(&bound.to_string(), l.role.as_str());
            let door = Door {
                checks: l.checks,
                screening: Screening::of(l),
                guards: guards_of(l),
                milters: l.milters.clone().into(),
            };
            tokio::spawn(accept_loop(socket.clone(), key, door, shared.clone(), admission.clone(), counts))
        }
    };
    Ok(Running { key, bound, socket, task })
}

impl Started {
    /// Every listener at start: its bound address and role, in the order of the configuration.
    pub(crate) fn listeners(&self) -> &[(SocketAddr, Role)] {
        &self.listeners
    }

    /// What reloads this server (the control socket, SIGHUP, an in-process test).
    pub(crate) fn reloader(&self) -> ReloadHandle {
        self.reloader.clone()
    }

    /// Serves until `trigger` completes (a signal, or a test's request), then shuts down:
    /// no new connections, sessions drained.
    pub(crate) async fn serve_until(self, trigger: impl std::future::Future<Output = ()>) {
        trigger.await;
        let Started { shared, admission, reloader, summary, greylist_saver, shutdown_tx, listeners: _ } = self;
        tracing::info!("shutting down: no new connections; draining sessions");
        shared.health.set_draining();
        // Waits for a reload under way; none starts after this. HTTP listeners keep
        // answering (`/readyz` says draining) until the sessions are gone.
        reloader.stop_listeners().await;
        let _ = shutdown_tx.send(true);
        // Idle sessions close at once; a session inside a transaction gets `shutdown_grace` to
        // finish it, and every final write has a short deadline. The spool is crash-safe, so
        // anything cut short here was never acknowledged.
        let grace = shared.live.get().config.timeouts.shutdown_grace + std::time::Duration::from_secs(5);
        if !admission.drained(tokio::time::Instant::now() + grace).await {
            tracing::warn!(sessions = admission.len(), "some sessions did not finish within the shutdown grace");
        }
        summary.abort();
        reloader.stop_http_listeners().await;
        if let Some(saver) = greylist_saver {
            saver.abort();
        }
        if let Some(g) = shared.greylist.clone() {
            let _ = tokio::task::spawn_blocking(move || g.save_if_changed()).await;
        }
        // The history writes on a tick (docs/history.md): write what was recorded now.
        let history = shared.history.clone();
        let _ = tokio::task::spawn_blocking(move || history.flush(std::time::Duration::from_secs(5))).await;
        shared.counters.log("since the last summary");
    }
}

/// SIGTERM or SIGINT, registered now (inside the runtime); the future completes at the first.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// A listener's rate-limit counters (fresh) and its greylisting switch.
fn guards_of(l: &dakiya_config::Listener) -> Arc<Guards> {
    Arc::new(Guards { rates: ListenerRates::new(&l.rate_limits), greylist: l.greylist })
}

/// The routes of a metrics listener, reading this server's metrics, health, spool and queue.
fn metrics_routes(shared: &Shared) -> Arc<crate::http::metrics::MetricsRoutes> {
    Arc::new(crate::http::metrics::MetricsRoutes {
        metrics: shared.metrics.clone(),
        health: shared.health.clone(),
        spool: shared.spool.clone(),
        queue: shared.queue.clone(),
    })
}

/// The routes of an `http`/`https` listener: client configuration, MTA-STS, ACME.
fn client_routes(shared: &Arc<Shared>) -> Arc<crate::http::client::ClientRoutes> {
    Arc::new(crate::http::client::ClientRoutes { shared: shared.clone(), acme: shared.acme.clone() })
}

/// Accepts SMTP and POP3 connections for the listener `key` until aborted (shutdown, or a
/// reload that removes it); never called for an HTTP listener. Each session gets the
/// listener's current checks: those of the configuration in force, or the ones it started
/// with once a reload has removed it.
async fn accept_loop(
    listener: Arc<TcpListener>,
    key: ListenerKey,
    mut door: Door,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    counts: ListenerMetrics,
) {
    let role = key.role;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                if crate::logging::ACCEPT_FAILED.admit() {
                    tracing::warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match admission.admit(peer.ip(), std::time::Instant::now()) {
            Ok(admitted) => {
                if let Some(ip) = admitted.evicted
                    && crate::logging::EVICTED.admit()
                {
                    tracing::info!(peer = %peer, evicted = %ip, "server full: closed the longest idle session to make room");
                }
                if let Some(l) = key.listener_in(&shared.live.get().config) {
                    // A reload changed this listener: its checks and screening apply at once;
                    // changed rate limits start from fresh counters.
                    if &l.rate_limits != door.guards.rates.limits() || l.greylist != door.guards.greylist {
                        door.guards = guards_of(l);
                    }
                    door.checks = l.checks;
                    door.screening = Screening::of(l);
                    if *door.milters != *l.milters {
                        door.milters = l.milters.clone().into();
                    }
                }
                let (shared, open, door) = (shared.clone(), counts.opened(), door.clone());
                if role.is_pop3() {
                    tokio::spawn(async move {
                        crate::pop3::handle(stream, peer, role, shared, admitted.ticket).await;
                        drop(open);
                    });
                    continue;
                }
                tokio::spawn(async move {
                    conn::handle(stream, peer, role, door, shared, admitted.ticket).await;
                    drop(open);
                });
            }
            Err(why) => {
                shared.counters.refused(why);
                counts.refused(match why {
                    Refusal::Total => 0,
                    Refusal::Address => 1,
                    Refusal::Network => 2,
                });
                if crate::logging::TOO_MANY_CONNECTIONS.admit() {
                    tracing::warn!(peer = %peer, limit = %why.as_str(), "connection refused: too many connections");
                }
                let reply: &'static [u8] = if role.is_pop3() { crate::pop3::TOO_MANY } else { TOO_MANY };
                tokio::spawn(refuse(stream, reply));
            }
        }
    }
}

/// How often the spool's long-busy slots are looked for, and how long a slot's batch must have
/// been queued for its messages to be copied out into a batch file (docs/spool-slots.md,
/// "Slots kept busy by deferred mail"): a slot under normal load is freed within seconds, so
/// five minutes means mail that waits for a retry.
const SLOT_COPY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// See [`SLOT_COPY_EVERY`].
const SLOT_BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Copies the messages of long-busy slots out every [`SLOT_COPY_EVERY`], on a blocking
/// thread, so that deferred mail does not keep every slot busy.
fn spawn_slot_copier(spool: Arc<Spool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + SLOT_COPY_EVERY;
        let mut tick = tokio::time::interval_at(start, SLOT_COPY_EVERY);
        loop {
            tick.tick().await;
            let spool = spool.clone();
            match tokio::task::spawn_blocking(move || spool.copy_out_slots(SLOT_BUSY_FOR)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "spool: copying long-busy slots out failed"),
                Err(e) => tracing::warn!(error = %e, "spool: the slot copier stopped"),
            }
        }
    })
}

/// RFC 5321 §3.1: a server that cannot serve now may greet with 421 and close.
const TOO_MANY: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

/// Greets a client that cannot be served now with `reply` and closes.
async fn refuse(mut stream: TcpStream, reply: &'static [u8]) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(reply)).await;
    let _ = stream.shutdown().await;
}
