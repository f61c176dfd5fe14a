//! What every connection shares: the current configuration and what is derived from it
//! (`live`, replaced by a reload), the spool and queue, the user store and password checks,
//! the counters for the log summary, the message history, the metrics and health. Built
//! once at start (`listen.rs`); the connection driver and the policy checks read it.

use crate::health::Health;
use crate::live::Current;
use crate::summary::Counters;
use dakiya_auth::{Authenticator, UserStore};
use dakiya_history::History;
use dakiya_metrics::Metrics;
use dakiya_queue::QueueHandle;
use dakiya_spool::Spool;
use std::sync::Arc;
use tokio::sync::watch;

/// What every connection shares.
pub struct Shared {
    /// The configuration in force, its session limits, TLS and message authentication; a
    /// reload replaces them together (docs/reload.md).
    pub live: Current,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
    pub shutdown: watch::Receiver<bool>,
    pub users: Arc<UserStore>,
    pub authenticator: Authenticator,
    /// How sessions ended and why connections were refused, for the log summary.
    pub counters: Counters,
    /// The message history (`dakiya trace`): each committed message is recorded here.
    pub history: History,
    /// The server's Prometheus metrics (served by a `role = "metrics"` listener).
    pub metrics: Arc<Metrics>,
    /// Whether the server is healthy and ready (`/healthz`, `/readyz`, `dakiya status`).
    pub health: Arc<Health>,
    /// Greylisting state, when a listener greylists.
    pub greylist: Option<Arc<crate::greylisting::Greylisting>>,
    /// Pending ACME HTTP-01 challenges, answered by `http` listeners, filled by the ACME
    /// client (`acme.rs`) during an order.
    pub acme: Arc<crate::http::acme::AcmeChallenges>,
}
