//! Outbound SMTP delivery: one message, one destination domain, the recipients' results.
//!
//! [`Outbound::deliver`] resolves the domain to next hops (`dakiya_route`), connects (with a
//! global and a per-destination connection limit), runs the sans-IO client of
//! `dakiya_proto::client` over TCP or TLS, and reuses idle connections for the next message
//! to the same destination. See `docs/outbound.md`.
//!
//! [`Lmtp`] drives the same client in its LMTP mode (RFC 2033) to a local delivery agent
//! such as Dovecot, over a unix or TCP socket (`[delivery] method = "lmtp"`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod connection;
mod dane;
mod deliver;
mod failure;
mod limits;
mod lmtp;
mod pool;
mod stream;
mod sts;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dakiya_proto::client::{AuthCredentials, Job, RecipientOutcome};
use dakiya_route::RouteConfig;
use rustls_pki_types::CertificateDer;

use crate::deliver::Inner;
pub use crate::sts::StsSettings;
/// A day's TLS-RPT counts for one policy domain (RFC 8460), as handed out for a report.
pub use dakiya_mtasts::report::Tally as TlsReportTally;

pub use lmtp::{Lmtp, LmtpTarget};

/// How to use TLS towards a next hop: the one definition, shared with the configuration.
pub use dakiya_proto::next_hop::TlsMode;

/// The smart host's connection settings (its address is `route.relay_host`).
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// TLS towards it.
    pub tls: TlsMode,
    /// TLS from the first byte (port 465, RFC 8314) rather than STARTTLS.
    pub implicit_tls: bool,
    /// AUTH credentials, if the relay wants them.
    pub credentials: Option<AuthCredentials>,
}

/// Everything [`Outbound`] needs.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Our EHLO name.
    pub helo_name: String,
    /// Name servers, static routes (hosts only), relay host, SMTP port, address families.
    pub route: RouteConfig,
    /// TLS towards MX hosts (and routes without a mode of their own).
    pub default_tls: TlsMode,
    /// TLS per static-route domain (lowercase keys, as in `route.static_routes`).
    pub route_tls: BTreeMap<String, TlsMode>,
    /// The smart host's settings, when `route.relay_host` is set.
    pub relay: Option<RelaySettings>,
    /// Trust anchors for [`TlsMode::Verify`] besides the built-in Mozilla roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The DNSSEC trust anchor for DANE ([`TlsMode::Dane`]): a file of DNSKEY records;
    /// `None` for the root zone's keys built into the resolver.
    pub dnssec_trust_anchor: Option<std::path::PathBuf>,
    /// Connection attempt timeout.
    pub connect_timeout: Duration,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once to one destination domain.
    pub max_per_destination: usize,
    /// How long an idle connection is kept for reuse.
    pub idle_timeout: Duration,
}

/// The result for one recipient of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// What became of it; failures carry the DSN status and the server's reply.
    pub outcome: RecipientOutcome,
    /// The host that gave the final answer (for `Remote-MTA` and logs), e.g.
    /// `mx.example.org [192.0.2.1]`; `None` when no server was reached.
    pub remote_mta: Option<String>,
    /// The server that answered offered DSN (RFC 3461), so it was handed NOTIFY, ORCPT,
    /// ENVID and RET and reports success itself; without it a `NOTIFY=SUCCESS` recipient is
    /// reported by us as `relayed` (RFC 3461 §6.2.2).
    pub next_hop_dsn: bool,
}

/// Why an [`Outbound`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The routing configuration is unusable.
    #[error(transparent)]
    Route(#[from] dakiya_route::RouteError),
    /// The TLS configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The outbound delivery service. Cheap to clone; clones share connections and limits.
///
/// Must be used inside a tokio runtime: it spawns tasks to close connections and to expire
/// idle ones.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    /// Checks the configuration and builds the resolver and TLS settings.
    ///
    /// `max_connections` and `max_per_destination` of 0 count as 1. With `idle_timeout` 0
    /// no connection is reused.
    pub fn new(cfg: OutboundConfig) -> Result<Outbound, OutboundError> {
        Outbound::with_mta_sts(cfg, StsSettings::default())
    }

    /// As [`Outbound::new`], with where MTA-STS policies and TLS-RPT counts are kept and
    /// how policies are fetched (RFC 8461, RFC 8460).
    pub fn with_mta_sts(cfg: OutboundConfig, sts: StsSettings) -> Result<Outbound, OutboundError> {
        Ok(Outbound { inner: Arc::new(Inner::new(cfg, sts)?) })
    }

    /// Takes the TLS-RPT counts due for a report at `now` (seconds since the Unix epoch):
    /// those of past days, and with `all` today's too. They are gone from the counts
    /// (and their file) afterwards.
    pub fn take_tls_reports(&self, now: u64, all: bool) -> Vec<TlsReportTally> {
        self.inner.sts.reporter().take_due(now, all)
    }

    /// Writes the TLS-RPT counts to their file now (they are otherwise written at most
    /// every 30 s, and at [`Outbound::close_idle`]).
    pub fn flush_tls_reports(&self) {
        self.inner.sts.reporter().flush();
    }

    /// The `rua` mail addresses of `domain`'s `_smtp._tls` record (RFC 8460 §3); empty
    /// when it has none (or only `https:` ones, which are not used).
    pub async fn tls_report_addresses(&self, domain: &str) -> Vec<String> {
        self.inner.sts.report_addresses(domain).await
    }

    /// Counts the TLS sessions this service establishes in `metrics` from now on (the
    /// server's; set once, later calls are ignored).
    pub fn record_into(&self, metrics: Arc<dakiya_metrics::Metrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Delivers `message` (as spooled: header section, blank line, body; CRLF line ends; not
    /// dot-stuffed) to the job's recipients, all in `domain`. Returns one result per job
    /// recipient, in order. Never panics on remote behaviour; every failure is a result.
    ///
    /// Next hops are tried in order while the failure is the host's (no connection, a
    /// temporary failure while setting up the session, a connection lost before the content
    /// was sent); any other result is final. See `docs/outbound.md`.
    pub async fn deliver(&self, domain: &str, job: &Job, message: Arc<[u8]>) -> Vec<RcptResult> {
        self.inner.deliver(domain, job, &message).await
    }

    /// Closes idle connections (QUIT) and waits for nothing else; call at shutdown.
    pub async fn close_idle(&self) {
        self.inner.close_idle().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue manager spawns deliveries on a multi-threaded runtime.
    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        fn check(o: &Outbound, job: &Job) {
            send(o.deliver("example.test", job, Arc::from(&b""[..])));
            send(o.close_idle());
        }
        let _ = check;
        fn sync<T: Send + Sync>() {}
        sync::<Outbound>();
    }

    fn config() -> OutboundConfig {
        OutboundConfig {
            helo_name: "client.test".into(),
            // Never asked: nothing here resolves anything.
            route: RouteConfig { nameservers: vec!["127.0.0.1:53".parse().unwrap()], ..RouteConfig::default() },
            default_tls: TlsMode::Opportunistic,
            route_tls: BTreeMap::new(),
            relay: None,
            extra_roots: Vec::new(),
            dnssec_trust_anchor: None,
            connect_timeout: Duration::from_secs(1),
            max_connections: 0,
            max_per_destination: 0,
            idle_timeout: Duration::ZERO,
        }
    }

    /// The queue manager may build it before its runtime runs.
    #[test]
    fn builds_outside_a_runtime() {
        assert!(Outbound::new(config()).is_ok());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut cfg = config();
        cfg.route.smtp_port = 0;
        assert!(matches!(Outbound::new(cfg), Err(OutboundError::Route(_))));
        let mut cfg = config();
        cfg.extra_roots.push(CertificateDer::from(vec![1, 2, 3]));
        assert!(matches!(Outbound::new(cfg), Err(OutboundError::Tls(_))));
    }
}
