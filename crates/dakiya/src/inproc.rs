//! A server started inside the calling process (tests): on its own runtime and threads,
//! with its own log, stopped by the same shutdown as a signal stops `dakiya serve`.

use crate::listen::{self, StartError};
use crate::logging::{self, Buffer};
use crate::reload::{ReloadError, ReloadHandle};
use dakiya_config::{Config, Role};
use dakiya_control::ReloadSummary;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Worker threads of an in-process server's runtime: a few servers run at once in a test
/// binary, and two workers keep the concurrency of a multi-threaded runtime.
const WORKERS: usize = 2;

/// A listener of a running [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The bound address: the real port where the configuration says port 0.
    pub address: SocketAddr,
    /// What the listener is for.
    pub role: Role,
}

/// A dakiya server running in this process, as `dakiya serve` runs it: its own tokio
/// runtime on its own threads, logging into memory (see [`Server::log`]) instead of stderr.
/// Dropping it shuts it down ([`Server::shutdown`]).
pub struct Server {
    listeners: Vec<Listener>,
    /// Reloads it, on its own runtime.
    reloader: ReloadHandle,
    runtime: tokio::runtime::Handle,
    log: Buffer,
    /// Fires the shutdown; `None` once fired.
    stop: Option<oneshot::Sender<()>>,
    /// The thread that runs the server and ends when it has shut down.
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("listeners", &self.listeners).finish_non_exhaustive()
    }
}

impl Server {
    /// Starts a server with `cfg` and returns once every listener accepts connections (the
    /// log says "dakiya started"), or with the error that stopped it (as `dakiya serve`
    /// would exit with it). It has no file to reload (as with the embedded default).
    pub fn start(cfg: Config) -> Result<Server, StartError> {
        Server::launch(cfg, None)
    }

    /// Starts a server from the configuration `file`, as `dakiya serve --config FILE` does:
    /// [`Server::reload`] re-reads it.
    pub fn start_from_file(file: &Path) -> Result<Server, StartError> {
        let cfg = Config::from_file(file).map_err(StartError::Config)?;
        Server::launch(cfg, Some(file.to_path_buf()))
    }

    /// Re-reads the configuration file and applies it, as SIGHUP and `dakiya reload` do
    /// (docs/reload.md); returns once it is applied or refused. Not from inside an async
    /// runtime's thread: it blocks.
    pub fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let reloader = self.reloader.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(reloader.reload().await);
        });
        rx.recv().unwrap_or(Err(ReloadError::ShuttingDown))
    }

    fn launch(cfg: Config, file: Option<PathBuf>) -> Result<Server, StartError> {
        let log = Buffer::default();
        let dispatch = logging::to_buffer(log.clone(), &cfg.log);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dakiya-server".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                let rt = match runtime(&dispatch) {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                rt.block_on(async move {
                    tokio::spawn(logging::report_counts());
                    let started = match listen::start(cfg, file).await {
                        Ok(started) => started,
                        Err(e) => return drop(ready_tx.send(Err(e))),
                    };
                    let listeners = started.listeners().iter().map(|&(address, role)| Listener { address, role });
                    let handles = (started.reloader(), tokio::runtime::Handle::current());
                    let _ = ready_tx.send(Ok((listeners.collect(), handles)));
                    // A dropped sender (the `Server` gone without a shutdown) stops it too.
                    started.serve_until(async move { _ = stopped.await }).await;
                });
                // The runtime goes down here, while the log is still this server's.
                drop(rt);
            })
            .map_err(StartError::Runtime)?;
        let started = ready_rx.recv();
        match started {
            Ok(Ok((listeners, (reloader, runtime)))) => {
                Ok(Server { listeners, reloader, runtime, log, stop: Some(stop), thread: Some(thread) })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended without a word: it panicked.
            Err(_) => match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the server thread always reports its start"),
            },
        }
    }

    /// Every listener at start, in the order of the configuration (a reload's changes are in
    /// its [`ReloadSummary`]).
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Everything the server has logged so far: the lines `dakiya serve` writes to stderr
    /// at the `info` level, one per event, each ending in a line feed.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Shuts the server down as SIGTERM shuts down `dakiya serve` (no new connections, idle
    /// sessions told at once, transactions given the shutdown grace) and waits until it
    /// has, and its threads have ended.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The runtime of `dakiya serve` with `dispatch` as the log of each of its threads (the
/// workers and the blocking pool).
fn runtime(dispatch: &tracing::Dispatch) -> Result<tokio::runtime::Runtime, StartError> {
    let dispatch = dispatch.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("dakiya-worker")
        .on_thread_start(move || {
            // For the thread's whole life: the guard would only restore "no log".
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        })
        .enable_all()
        .build()
        .map_err(StartError::Runtime)
}
