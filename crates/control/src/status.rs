//! `status`: the running server at a glance (`dakiya status`, docs/operations.md).

use serde::{Deserialize, Serialize};

/// What `status` answers.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStatus {
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// When it started (unix seconds).
    pub started_at: u64,
    /// Seconds since then.
    pub uptime: u64,
    /// `None` when healthy, else why not (what `/healthz` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<String>,
    /// Shutdown has begun.
    #[serde(default)]
    pub draining: bool,
    /// Every listener, in the order of the configuration.
    pub listeners: Vec<ListenerStatus>,
    /// The queue, when the queue manager answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSummary>,
    /// The most recent warnings and errors the server logged, oldest first.
    #[serde(default)]
    pub recent_errors: Vec<LogEvent>,
}

/// One listener.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The bound address (`IP:PORT`).
    pub address: String,
    /// Its role (`mx`, `submission`, `submissions`, `metrics`, ...).
    pub role: String,
}

/// The queue by where its messages are.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSummary {
    /// Waiting for a free delivery slot.
    pub ready: u64,
    /// Waiting for their next attempt.
    pub scheduled: u64,
    /// Held by the operator.
    pub held: u64,
    /// Being delivered now.
    pub running: u64,
    /// Seconds since the oldest queued message was accepted (0: the queue is empty).
    pub oldest_age: u64,
}

/// A warning or error the server logged.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// When (unix seconds).
    pub at: u64,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The message and its `error` field, if any (other fields are left out: they may name
    /// users or carry client text).
    pub message: String,
}
