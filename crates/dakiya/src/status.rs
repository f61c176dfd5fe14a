//! What the server answers to `status` on its control socket (`dakiya status`): version,
//! uptime, health, listeners, the queue and the most recent warnings and errors.

use crate::health::Health;
use crate::logging::recent::Recent;
use dakiya_control::{ListenerStatus, LogEvent, QueueSummary, ServerStatus};
use dakiya_queue::QueueHandle;
use std::sync::Arc;

/// Where the status comes from.
pub struct StatusSource {
    pub health: Arc<Health>,
    pub queue: QueueHandle,
    /// The log's ring of recent warnings and errors (none when the log keeps no ring).
    pub recent: Option<Recent>,
}

impl StatusSource {
    /// The status now.
    pub async fn status(&self) -> ServerStatus {
        let verdict = self.health.check().await;
        let queue = crate::http::metrics::queue_snapshot(&self.queue).await.map(|q| QueueSummary {
            ready: q.ready,
            scheduled: q.scheduled,
            held: q.held,
            running: q.running,
            oldest_age: q.oldest_age,
        });
        let listeners = self.health.listeners();
        let recent = self.recent.as_ref().map(Recent::events).unwrap_or_default();
        ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.health.started_unix,
            uptime: self.health.started.elapsed().as_secs(),
            unhealthy: verdict.unhealthy,
            draining: verdict.draining,
            listeners: listeners
                .iter()
                .map(|(a, r)| ListenerStatus { address: a.to_string(), role: r.as_str().to_string() })
                .collect(),
            queue,
            recent_errors: recent
                .into_iter()
                .map(|e| LogEvent { at: e.at, level: e.level.to_string(), message: e.text })
                .collect(),
        }
    }
}
