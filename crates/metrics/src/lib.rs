//! dakiya's Prometheus metrics: one [`Metrics`] per server (in-process test servers run
//! several in one process, so there is no global registry), holding typed metric families
//! and small functions that record into them.
//!
//! Label values always come from closed sets named here ([`Rejection`], [`Delivery`], ...)
//! or from the configuration (a listener's address): never a client address, domain or user
//! name, so the number of series stays bounded whatever clients send.
//!
//! Recording is cheap: every series of a closed set is created when [`Metrics::new`] runs
//! (so it is exported as 0 before its first event, and rates work from the start), and
//! recording then finds it under the family's uncontended read lock and adds with an atomic.
//! What is a state rather than an event (the queue's size, its oldest message) is not kept
//! here but read at scrape time: see [`Scrape`].

mod classic;
mod labels;
mod scrape;

pub use classic::to_classic;
pub use labels::{Delivery, DeliveryKind, Direction, Rejection, Verification};
pub use scrape::{HistogramSnapshot, QueueSnapshot, RecentSnapshot, Scrape, SlotSnapshot};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// A label set of fixed names with values from closed sets.
type Labels<const N: usize> = [(&'static str, &'static str); N];
/// A listener's labels: its address (from the configuration) and role.
type ListenerLabels = [(&'static str, String); 2];
/// A listener's labels and the limit that refused a connection.
type RefusedLabels = [(&'static str, String); 3];

/// The `Content-Type` of [`Metrics::encode`]'s output (the OpenMetrics text format).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`to_classic`]'s output (the classic Prometheus text format).
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family of one server.
pub struct Metrics {
    registry: Registry,
    connections_open: Family<ListenerLabels, Gauge>,
    connections: Family<ListenerLabels, Counter>,
    connections_refused: Family<RefusedLabels, Counter>,
    messages_accepted: Counter,
    recipients_accepted: Counter,
    rejections: Family<Labels<2>, Counter>,
    received_bytes: Counter,
    auth: Family<Labels<2>, Counter>,
    tls: Family<Labels<2>, Counter>,
    verification: Family<Labels<2>, Counter>,
    deliveries: Family<Labels<2>, Counter>,
    delivery_latency: Family<Labels<1>, Histogram>,
    attempt_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Handles to one listener's connection series, created once when the listener starts
/// (so counting a connection is two atomic operations).
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    open: Gauge,
    total: Counter,
    refused: [Counter; 3],
}

impl ListenerMetrics {
    /// A connection was accepted; the gauge goes down when the returned guard drops.
    pub fn opened(&self) -> OpenConnection {
        self.total.inc();
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    /// A connection was refused by a connection limit: `0` the total limit, `1` per
    /// address, `2` per network (the order of [`REFUSAL_LIMITS`]).
    pub fn refused(&self, limit: usize) {
        if let Some(c) = self.refused.get(limit) {
            c.inc();
        }
    }
}

/// The limits a connection may be refused by, as label values.
pub const REFUSAL_LIMITS: [&str; 3] = ["total", "per-address", "per-network"];

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A registry with every family, their closed-set series at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dakiya");
        let m = Metrics {
            connections_open: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            messages_accepted: Counter::default(),
            recipients_accepted: Counter::default(),
            rejections: Family::default(),
            received_bytes: Counter::default(),
            auth: Family::default(),
            tls: Family::default(),
            verification: Family::default(),
            deliveries: Family::default(),
            delivery_latency: Family::new_with_constructor(|| {
                // 1 s to about 4.5 days.
                Histogram::new(exponential_buckets(1.0, 4.0, 10))
            }),
            // 10 ms to about 10 minutes.
            attempt_duration: Histogram::new(exponential_buckets(0.01, 3.0, 11)),
            registry: Registry::default(),
        };
        m.register(&mut registry);
        m.precreate();
        Metrics { registry, ..m }
    }

    fn register(&self, r: &mut Registry) {
        r.register("connections_open", "Connections open now, by listener", self.connections_open.clone());
        r.register("connections", "Connections accepted, by listener", self.connections.clone());
        r.register(
            "connections_refused",
            "Connections refused by a connection limit, by listener and limit",
            self.connections_refused.clone(),
        );
        r.register("messages_accepted", "Messages accepted (committed to the spool)", self.messages_accepted.clone());
        r.register("recipients_accepted", "Recipients accepted at RCPT", self.recipients_accepted.clone());
        r.register(
            "smtp_rejections",
            "Commands refused, by stage (mail, rcpt, data) and reason",
            self.rejections.clone(),
        );
        r.register_with_unit(
            "received",
            "Message bytes received (as spooled)",
            Unit::Bytes,
            self.received_bytes.clone(),
        );
        r.register("auth_attempts", "SMTP AUTH attempts, by mechanism and result", self.auth.clone());
        r.register("tls_handshakes", "TLS sessions established, by direction and version", self.tls.clone());
        r.register(
            "verifications",
            "Inbound message authentication verdicts, by method (spf, dkim, dmarc, arc) and result",
            self.verification.clone(),
        );
        r.register(
            "deliveries",
            "Delivery attempts to one recipient, by kind (local, remote) and result",
            self.deliveries.clone(),
        );
        r.register_with_unit(
            "delivery_latency",
            "Time from acceptance to delivery, by kind",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        r.register_with_unit(
            "outbound_attempt_duration",
            "Duration of one outbound delivery attempt to one destination domain",
            Unit::Seconds,
            self.attempt_duration.clone(),
        );
    }

    /// Creates the series of every closed label set, so they are exported from the start.
    fn precreate(&self) {
        for r in Rejection::ALL {
            let _ = self.rejections.get_or_create(&[("stage", r.stage()), ("reason", r.as_str())]);
        }
        for kind in DeliveryKind::ALL {
            for d in Delivery::ALL {
                let _ = self.deliveries.get_or_create(&[("kind", kind.as_str()), ("result", d.as_str())]);
            }
            let _ = self.delivery_latency.get_or_create(&[("kind", kind.as_str())]);
        }
    }

    /// The handles of a listener at `address` with `role`.
    pub fn listener(&self, address: &str, role: &str) -> ListenerMetrics {
        let labels: ListenerLabels = [("listener", address.to_string()), ("role", role.to_string())];
        let refused = REFUSAL_LIMITS.map(|limit| {
            let l: RefusedLabels =
                [("listener", address.to_string()), ("role", role.to_string()), ("limit", limit.to_string())];
            self.connections_refused.get_or_create(&l).clone()
        });
        ListenerMetrics {
            open: self.connections_open.get_or_create(&labels).clone(),
            total: self.connections.get_or_create(&labels).clone(),
            refused,
        }
    }

    /// A message of `bytes` was committed to the spool and acknowledged.
    pub fn message_accepted(&self, bytes: u64) {
        self.messages_accepted.inc();
        self.received_bytes.inc_by(bytes);
    }

    /// A recipient was accepted at RCPT.
    pub fn recipient_accepted(&self) {
        self.recipients_accepted.inc();
    }

    /// A command was refused for `why`.
    pub fn rejected(&self, why: Rejection) {
        self.rejections.get_or_create(&[("stage", why.stage()), ("reason", why.as_str())]).inc();
    }

    /// Exports the AUTH series of `mechanism` (success and failure) at 0 before any attempt.
    pub fn declare_auth_mechanism(&self, mechanism: &'static str) {
        for result in ["success", "failure"] {
            let _ = self.auth.get_or_create(&[("mechanism", mechanism), ("result", result)]);
        }
    }

    /// An AUTH attempt with `mechanism` (a name from the server's closed list, such as
    /// `PLAIN`) succeeded or not.
    pub fn auth(&self, mechanism: &'static str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.auth.get_or_create(&[("mechanism", mechanism), ("result", result)]).inc();
    }

    /// A TLS session was established with `version` (such as `TLSv1.3`; anything but the
    /// versions rustls speaks counts as `other`).
    pub fn tls(&self, direction: Direction, version: &str) {
        let version = labels::tls_version(version);
        self.tls.get_or_create(&[("direction", direction.as_str()), ("version", version)]).inc();
    }

    /// A message authentication method gave `result` (a lowercase result name such as
    /// `pass`; unknown names count as `other`).
    pub fn verified(&self, method: Verification, result: &str) {
        let result = labels::auth_result(result);
        self.verification.get_or_create(&[("method", method.as_str()), ("result", result)]).inc();
    }

    /// An attempt to deliver to one recipient came to `result`; `age` is the time since the
    /// message was accepted, observed as delivery latency when it was delivered.
    pub fn delivery(&self, kind: DeliveryKind, result: Delivery, age: Duration) {
        self.deliveries.get_or_create(&[("kind", kind.as_str()), ("result", result.as_str())]).inc();
        if result == Delivery::Delivered {
            self.delivery_latency.get_or_create(&[("kind", kind.as_str())]).observe(age.as_secs_f64());
        }
    }

    /// One outbound attempt to one destination (all its MX hosts) took `took`.
    pub fn outbound_attempt(&self, took: Duration) {
        self.attempt_duration.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition of every family, followed by what `scrape` read now
    /// ([`to_classic`] turns it into the classic format).
    pub fn encode(&self, scrape: &Scrape) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = scrape.encode(&mut out);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
