//! Start-up, listeners, connection limits and shutdown.

use crate::admission::{Admission, Limits};
use crate::conn;
use crate::msgauth::MailAuth;
use crate::shared::Shared;
use crate::summary::Counters;
use crate::tls::TlsManager;
use dakiya_auth::{CheckPool, Throttle, UserStore};
use dakiya_config::{Checks, Config, Role};
use dakiya_mailauth::Verifier;
use dakiya_outbound::Outbound;
use dakiya_proto::ServerConfig;
use dakiya_spool::Spool;
use std::net::SocketAddr;
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
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> Result<(), StartError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(StartError::Runtime)?;
    rt.block_on(async {
        start(cfg).await?.serve_until(wait_for_signal()).await;
        Ok(())
    })
}

/// A started server: its listeners bound and accepting, its queue and control socket running.
/// [`Started::serve_until`] keeps it running until a trigger, then drains it.
pub(crate) struct Started {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    /// The accept loops, one per listener.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    summary: tokio::task::JoinHandle<()>,
    shutdown_tx: watch::Sender<bool>,
    /// Every listener: its bound address (the real port where the configuration says 0).
    listeners: Vec<(SocketAddr, Role)>,
}

/// Starts everything and logs "dakiya started"; must run inside a multi-threaded tokio runtime.
pub(crate) async fn start(cfg: Config) -> Result<Started, StartError> {
    let spool_dir = cfg.data_dir.join("spool");
    let spool = Spool::open(&spool_dir)
        .map_err(|source| StartError::Spool { path: spool_dir.display().to_string(), source })?;
    let cfg = Arc::new(cfg);
    let spool = Arc::new(spool);
    // Recover before accepting anything, so a message is never both recovered and enqueued.
    let recovered =
        spool.recover().map_err(|source| StartError::Spool { path: spool_dir.display().to_string(), source })?;
    let users = Arc::new(UserStore::open(&cfg.auth.users_file).map_err(|e| StartError::Users(e.to_string()))?);
    let outbound_cfg = crate::setup::outbound_config(&cfg).map_err(|e| StartError::Outbound(e.to_string()))?;
    let outbound = Outbound::new(outbound_cfg).map_err(|e| StartError::Outbound(e.to_string()))?;
    let ctx = Arc::new(dakiya_queue::Ctx::new(cfg.clone(), spool.clone(), users.clone(), outbound));
    let queue = dakiya_queue::start(ctx, recovered);
    let control_path = cfg.data_dir.join(crate::control::SOCKET_NAME);
    tokio::spawn({
        let (spool, queue) = (spool.clone(), queue.clone());
        async move {
            if let Err(e) = crate::control::serve(control_path.clone(), spool, queue).await {
                tracing::error!(path = %control_path.display(), error = %e, "control socket failed; `dakiya queue` will not work");
            }
        }
    });
    let session = Arc::new(ServerConfig {
        hostname: cfg.hostname.clone(),
        max_message_size: cfg.limits.max_message_size,
        max_recipients: cfg.limits.max_recipients,
        max_errors: cfg.limits.max_errors,
    });
    let tls = TlsManager::new(crate::setup::tls_settings(&cfg)).map_err(|e| StartError::Tls(e.to_string()))?;
    tls.spawn_watcher();
    let a = &cfg.auth;
    let throttle = Throttle::new(a.max_failures, a.failure_window, a.lockout, a.failure_delay);
    let pool = CheckPool::new(a.max_concurrent_checks, a.check_queue_timeout).map_err(StartError::CheckPool)?;
    let authenticator = crate::authbackend::authenticator(&cfg, users.clone(), throttle, pool);
    // One resolver for SPF/DKIM/DMARC, asking the same name servers as outbound delivery.
    let verifier = if cfg.listeners.iter().any(|l| l.checks.verify) {
        Some(Verifier::new(&cfg.outbound.nameservers, &cfg.hostname).map_err(|e| StartError::Auth(e.to_string()))?)
    } else {
        None
    };
    let mailauth = Arc::new(MailAuth::new(verifier, cfg.data_dir.join("dkim")).map_err(StartError::Auth)?);
    mailauth.spawn_reloader();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: cfg.clone(),
        session,
        spool,
        queue,
        shutdown: shutdown_rx,
        tls,
        users,
        authenticator,
        mailauth,
        counters: Counters::default(),
    });
    let admission = Admission::new(Limits {
        total: cfg.limits.max_connections,
        per_ip: cfg.limits.max_connections_per_ip,
        per_net: cfg.limits.max_connections_per_network,
    });
    let summary = tokio::spawn({
        let shared = shared.clone();
        async move { shared.counters.log_periodically().await }
    });
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    for l in &cfg.listeners {
        let listener =
            TcpListener::bind(l.address).await.map_err(|source| StartError::Bind { address: l.address, source })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind { address: l.address, source })?;
        tracing::info!(address = %local, role = %l.role.as_str(), "listening");
        listeners.push((local, l.role));
        let task = accept_loop(listener, l.role, l.checks, shared.clone(), admission.clone());
        tasks.push(tokio::spawn(task));
    }
    tracing::info!(hostname = %cfg.hostname, data_dir = %cfg.data_dir.display(), source = %cfg.source, "dakiya started");
    Ok(Started { cfg, shared, admission, tasks, summary, shutdown_tx, listeners })
}

impl Started {
    /// Every listener: its bound address and role, in the order of the configuration.
    pub(crate) fn listeners(&self) -> &[(SocketAddr, Role)] {
        &self.listeners
    }

    /// Serves until `trigger` completes (a signal, or a test's request), then shuts down:
    /// no new connections, sessions drained.
    pub(crate) async fn serve_until(self, trigger: impl std::future::Future<Output = ()>) {
        trigger.await;
        let Started { cfg, shared, admission, tasks, summary, shutdown_tx, listeners: _ } = self;
        tracing::info!("shutting down: no new connections; draining sessions");
        for t in &tasks {
            t.abort();
        }
        let _ = shutdown_tx.send(true);
        // Idle sessions close at once; a session inside a transaction gets `shutdown_grace` to
        // finish it, and every final write has a short deadline. The spool is crash-safe, so
        // anything cut short here was never acknowledged.
        let grace = cfg.timeouts.shutdown_grace + std::time::Duration::from_secs(5);
        if !admission.drained(tokio::time::Instant::now() + grace).await {
            tracing::warn!(sessions = admission.len(), "some sessions did not finish within the shutdown grace");
        }
        summary.abort();
        shared.counters.log("since the last summary");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
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

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    checks: Checks,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
) {
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
                let shared = shared.clone();
                tokio::spawn(conn::handle(stream, peer, role, checks, shared, admitted.ticket));
            }
            Err(why) => {
                shared.counters.refused(why);
                if crate::logging::TOO_MANY_CONNECTIONS.admit() {
                    tracing::warn!(peer = %peer, limit = %why.as_str(), "connection refused: too many connections");
                }
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// RFC 5321 §3.1: a server that cannot serve now may greet with 421 and close.
async fn refuse(mut stream: TcpStream) {
    let reply = b"421 4.7.0 Too many connections, try again later\r\n";
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(reply)).await;
    let _ = stream.shutdown().await;
}
