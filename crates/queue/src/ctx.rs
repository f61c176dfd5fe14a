//! [`Ctx`]: what every delivery run shares, and the [`Clock`] the queue reads time from.

use crate::local::Mailboxes;
use crate::round::Rounds;
use dakiya_auth::UserStore;
use dakiya_config::Config;
use dakiya_config::{DeliveryMethod, Endpoint};
use dakiya_history::History;
use dakiya_metrics::Metrics;
use dakiya_outbound::{Lmtp, LmtpTarget, Outbound};
use dakiya_spool::Spool;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Where the queue reads the time from, in unix seconds. The server uses the system clock;
/// tests set their own.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        }))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time now, in unix seconds.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Everything a delivery run needs, shared by all runs.
pub struct Ctx {
    /// The server's configuration (`[delivery]`, local domains, host name).
    pub cfg: Arc<Config>,
    /// The queue on disk.
    pub spool: Arc<Spool>,
    /// The users, to resolve a local sender's mailbox for a notice.
    pub users: Arc<UserStore>,
    /// Open Maildirs, shared by concurrent local deliveries.
    pub boxes: Arc<Mailboxes>,
    /// Bounds the blocking steps (rounds of Maildir deliveries, status records) running at
    /// once.
    pub local_limit: Arc<Semaphore>,
    /// The local steps waiting for a round (round.rs).
    pub rounds: Arc<Rounds>,
    /// The outbound SMTP service.
    pub outbound: Outbound,
    /// The LMTP server local mailboxes are delivered to, with `[delivery] method = "lmtp"`.
    pub lmtp: Option<Arc<Lmtp>>,
    /// The time.
    pub clock: Clock,
    /// Where delivery attempts, notices and operator actions are recorded (`dakiya trace`).
    pub history: History,
    /// The server's metrics (deliveries, latencies).
    pub metrics: Arc<Metrics>,
}

impl Ctx {
    /// The context with the system clock and `delivery.local_concurrency` blocking steps.
    pub fn new(cfg: Arc<Config>, spool: Arc<Spool>, users: Arc<UserStore>, outbound: Outbound) -> Ctx {
        let local_limit = Arc::new(Semaphore::new(cfg.delivery.local_concurrency.max(1)));
        let metrics = Arc::new(Metrics::new());
        let lmtp = lmtp_of(&cfg).map(Arc::new);
        Ctx {
            cfg,
            spool,
            users,
            boxes: Arc::default(),
            local_limit,
            rounds: Arc::default(),
            outbound,
            lmtp,
            clock: Clock::system(),
            history: History::disabled(),
            metrics,
        }
    }

    /// The same context delivering local mailboxes through `lmtp` (tests).
    pub fn with_lmtp(mut self, lmtp: Lmtp) -> Ctx {
        self.lmtp = Some(Arc::new(lmtp));
        self
    }

    /// The same context recording message events in `history`.
    pub fn with_history(mut self, history: History) -> Ctx {
        self.history = history;
        self
    }

    /// The same context recording into `metrics` (the server's own; [`Ctx::new`] makes a
    /// private one).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Ctx {
        self.metrics = metrics;
        self
    }

    /// The same context with a new configuration and outbound service (a reload): the spool,
    /// the users, the open Maildirs, the bound on blocking steps, the pending rounds, the
    /// clock, the history and the metrics are shared with this one, so runs under either context count against the
    /// same limits and into the same records. The LMTP client (and its kept sessions) stays
    /// unless `[delivery]` changed.
    pub fn reconfigured(&self, cfg: Arc<Config>, outbound: Outbound) -> Ctx {
        let lmtp = if cfg.delivery == self.cfg.delivery { self.lmtp.clone() } else { lmtp_of(&cfg).map(Arc::new) };
        Ctx {
            cfg,
            spool: self.spool.clone(),
            users: self.users.clone(),
            boxes: self.boxes.clone(),
            local_limit: self.local_limit.clone(),
            rounds: self.rounds.clone(),
            outbound,
            lmtp,
            clock: self.clock.clone(),
            history: self.history.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The same context reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Ctx {
        self.clock = clock;
        self
    }
}

/// How long connecting to the LMTP server may take.
const LMTP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The LMTP server of `[delivery] method = "lmtp"`, one session per local delivery slot.
fn lmtp_of(cfg: &Config) -> Option<Lmtp> {
    let DeliveryMethod::Lmtp(endpoint) = &cfg.delivery.method else { return None };
    let target = match endpoint {
        Endpoint::Unix(path) => LmtpTarget::Unix(path.clone()),
        Endpoint::Inet(addr) => LmtpTarget::Inet(addr.clone()),
    };
    Some(Lmtp::new(target, cfg.hostname.clone(), LMTP_CONNECT_TIMEOUT, cfg.delivery.local_concurrency))
}
