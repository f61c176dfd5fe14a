//! The routes of a `role = "metrics"` listener: `GET /metrics` (Prometheus text format),
//! `GET /healthz` and `GET /readyz` (200, or 503 with a short reason). See
//! docs/operations.md.

use super::{HttpBody, Routes, method_not_allowed, not_found, respond, text};
use crate::health::Health;
use dakiya_metrics::{HistogramSnapshot, Metrics, QueueSnapshot, RecentSnapshot, Scrape, SlotSnapshot};
use dakiya_queue::QueueHandle;
use dakiya_spool::Spool;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// How long a scrape waits for the queue manager's counts (it answers between runs).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the metrics routes read.
pub struct MetricsRoutes {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
}

impl Routes for MetricsRoutes {
    async fn route(&self, req: &Parts) -> Response<HttpBody> {
        let (method, path) = (&req.method, req.uri.path());
        if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
            return not_found();
        }
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        match path {
            "/metrics" => {
                let text = self.metrics.encode(&self.scrape().await);
                if wants_openmetrics(req) {
                    respond(StatusCode::OK, dakiya_metrics::CONTENT_TYPE, text)
                } else {
                    respond(StatusCode::OK, dakiya_metrics::CLASSIC_CONTENT_TYPE, dakiya_metrics::to_classic(&text))
                }
            }
            "/healthz" => match self.health.check().await.unhealthy {
                None => text(StatusCode::OK, "ok\n"),
                Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            _ => match self.health.check().await.not_ready() {
                None => text(StatusCode::OK, "ready\n"),
                Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
        }
    }
}

/// Whether the client asks for OpenMetrics (Prometheus does); others get the classic
/// format.
fn wants_openmetrics(req: &Parts) -> bool {
    let accept = req.headers.get_all(hyper::header::ACCEPT);
    accept.iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("application/openmetrics-text"))
}

impl MetricsRoutes {
    /// Reads what is exported as it is now.
    async fn scrape(&self) -> Scrape {
        let commits = self.spool.commit_stats();
        let (dir, file) = self.spool.fsync_latency();
        let histogram =
            |l: dakiya_spool::LatencyStats| HistogramSnapshot { bounds: l.bounds, counts: l.counts, sum: l.sum };
        Scrape {
            queue: queue_snapshot(&self.queue).await,
            batch_sizes: commits.batch_sizes,
            commit_rounds: commits.rounds,
            dir_sync: self.spool.dir_sync_stats(),
            start_time: self.health.started_unix,
            spool_writable: self.health.spool_writable().await.is_ok(),
            fsync: vec![("directory", histogram(dir)), ("file", histogram(file))],
            pool: self.spool.pool_stats(),
            recent: recent_snapshot(self.spool.recent_stats()),
            commit_paced: commits.paced,
            slots: slot_snapshot(self.spool.slot_stats()),
        }
    }
}

/// The spool's in-memory copies' counters, as the metrics crate takes them.
fn recent_snapshot(r: dakiya_spool::RecentStats) -> RecentSnapshot {
    RecentSnapshot { kept: r.kept, hits: r.hits, misses: r.misses, evictions: r.evictions, dropped: r.dropped }
}

/// The spool's slots, as the metrics crate takes them.
fn slot_snapshot(s: dakiya_spool::SlotStats) -> SlotSnapshot {
    SlotSnapshot { slots: s.slots, free: s.free, in_place: s.in_place, made: s.made, copied_out: s.copied_out }
}

/// The queue's counts and the age of its oldest message, when the manager answers in time.
pub async fn queue_snapshot(queue: &QueueHandle) -> Option<QueueSnapshot> {
    let s = tokio::time::timeout(QUEUE_TIMEOUT, queue.snapshot()).await.ok()??;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let n = |v: usize| v as u64;
    Some(QueueSnapshot {
        ready: n(s.counts.ready),
        scheduled: n(s.counts.scheduled),
        held: n(s.counts.held),
        running: n(s.counts.running),
        oldest_age: s.oldest.map_or(0, |id| now.saturating_sub(id.timestamp())),
    })
}
