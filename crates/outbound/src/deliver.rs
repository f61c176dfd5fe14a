//! One delivery: pick the destination's TLS settings, reuse an idle connection or resolve
//! and walk the next hops (RFC 5321 §5.1), and turn the job's outcome into per-recipient
//! results.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dakiya_proto::client::{Failure, Job, Outcome, RecipientOutcome, TlsPolicy};
use dakiya_proto::logtext::Esc;
use dakiya_route::{HostPort, NextHop, Router};
use tracing::{debug, info, warn};

use crate::connection::{Connection, Setup};
use crate::dane::{DaneDest, HopDane, MxDane};
use crate::pool::{Key, Pool, Slot};
use crate::sts::{Applied, Sts, StsSettings};
use crate::tls::TlsConfigs;
use crate::{OutboundConfig, OutboundError, RcptResult, RelaySettings, TlsMode, failure};

/// The pool key of the relay host: every domain sent through it shares its connections and
/// its per-destination limit, as it is one machine. A space cannot occur in a domain.
const RELAY_DEST: &str = "relay host";

/// The state shared by all clones of an [`crate::Outbound`].
pub(crate) struct Inner {
    router: Router,
    helo_name: String,
    default_tls: TlsMode,
    /// TLS mode per static-route domain (normalised keys).
    routes: BTreeMap<String, TlsMode>,
    /// The relay host's settings; `Some` exactly when a relay host is configured.
    relay: Option<RelaySettings>,
    /// The relay host, to make sure its credentials go to no other host.
    relay_host: Option<HostPort>,
    tls: TlsConfigs,
    connect_timeout: Duration,
    pool: Arc<Pool>,
    /// MTA-STS policies and TLS-RPT counts (RFC 8461, RFC 8460).
    pub(crate) sts: Sts,
    /// The DNSSEC-validating resolver for DANE (RFC 7672), when a mode asks for it.
    dane: Option<dakiya_route::SecureResolver>,
    /// Where TLS sessions are counted, once the server has said ([`crate::Outbound::record_into`]).
    pub(crate) metrics: std::sync::OnceLock<Arc<dakiya_metrics::Metrics>>,
}

/// Where a domain's mail goes and how.
struct Destination {
    domain: String,
    key: Key,
    implicit_tls: bool,
    credentials: Option<dakiya_proto::client::AuthCredentials>,
    /// The MTA-STS policy that applies, for `mta-sts` mode toward MX hosts.
    sts: Option<Applied>,
    /// DANE applies (`dane` mode; the MX RRset validated, or a route).
    dane: Option<DaneDest>,
}

impl Destination {
    /// The mode for a hop without DANE: the pool key's, or under DANE the fallback's.
    fn mode(&self) -> TlsMode {
        self.dane.map_or(self.key.mode, |d| d.fallback)
    }
}

/// A host failed: why, and who said so (`None` when no server answered).
type HostFailure = (Failure, Option<String>);

/// Domains compare in lower case without a trailing dot, as the router's keys do.
fn normalise(domain: &str) -> String {
    domain.strip_suffix('.').unwrap_or(domain).to_lowercase()
}

impl Inner {
    pub(crate) fn new(cfg: OutboundConfig, sts: StsSettings) -> Result<Inner, OutboundError> {
        let route_tls: BTreeMap<String, TlsMode> = cfg.route_tls.iter().map(|(d, m)| (normalise(d), *m)).collect();
        let routes: BTreeMap<String, TlsMode> = cfg
            .route
            .static_routes
            .keys()
            .map(|d| {
                let d = normalise(d);
                let mode = route_tls.get(&d).copied().unwrap_or(cfg.default_tls);
                (d, mode)
            })
            .collect();
        for domain in route_tls.keys().filter(|d| !routes.contains_key(*d)) {
            warn!(domain, "TLS mode given for a domain without a static route; ignored");
        }
        let relay = match (&cfg.route.relay_host, cfg.relay) {
            (Some(_), Some(settings)) => Some(settings),
            (Some(_), None) => Some(RelaySettings { tls: cfg.default_tls, implicit_tls: false, credentials: None }),
            (None, Some(_)) => {
                warn!("relay settings given without a relay host; ignored");
                None
            }
            (None, None) => None,
        };
        let relay_host = cfg.route.relay_host.clone();
        let wants_dane = cfg.default_tls == TlsMode::Dane || routes.values().any(|m| *m == TlsMode::Dane);
        let dane = if wants_dane {
            Some(dakiya_route::SecureResolver::new(&cfg.route, cfg.dnssec_trust_anchor.as_deref())?)
        } else {
            None
        };
        let router = Router::new(cfg.route)?;
        let tls = TlsConfigs::new(&cfg.extra_roots)?;
        Ok(Inner {
            dane,
            sts: Sts::new(router.clone(), tls.verified.clone(), sts),
            router,
            helo_name: cfg.helo_name,
            default_tls: cfg.default_tls,
            routes,
            relay,
            relay_host,
            tls,
            connect_timeout: cfg.connect_timeout,
            pool: Pool::new(cfg.idle_timeout, cfg.max_connections, cfg.max_per_destination),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// A static route's mode; else the relay's settings when a relay takes the mail; else
    /// the default (MX hosts).
    fn destination(&self, domain: &str) -> Destination {
        let name = normalise(domain);
        let (dest, mode, implicit_tls, credentials) = match (self.routes.get(&name), &self.relay) {
            (Some(&mode), _) => (name, mode, false, None),
            (None, Some(relay)) => {
                // MTA-STS is about the recipient domain's MX hosts, which a relay is not.
                let mode = if matches!(relay.tls, TlsMode::MtaSts | TlsMode::Dane) {
                    TlsMode::Opportunistic
                } else {
                    relay.tls
                };
                (RELAY_DEST.to_owned(), mode, relay.implicit_tls, relay.credentials.clone())
            }
            (None, None) => (name, self.default_tls, false, None),
        };
        Destination {
            domain: domain.to_owned(),
            key: Key { dest, mode },
            implicit_tls,
            credentials,
            sts: None,
            dane: None,
        }
    }

    /// For `mta-sts` mode: the domain's policy, if it publishes one, decides the mode
    /// (RFC 8461 §5): `enforce` is "verify" toward policy-listed hosts; anything else is
    /// opportunistic (the slot where a DANE policy would take precedence, once there is one).
    async fn apply_sts(&self, dest: &mut Destination) {
        let applied = self.sts.resolve(&dest.domain).await;
        dest.key.mode =
            if applied.as_ref().is_some_and(Applied::enforce) { TlsMode::Verify } else { TlsMode::Opportunistic };
        dest.sts = applied;
    }

    /// For `dane` mode: on a static route, DANE is required of its hosts; toward MX hosts,
    /// the MTA-STS policy is resolved as the fallback, and DANE applies when the MX RRset
    /// validates (RFC 7672 §2.2.1). Connections made under DANE are pooled apart. `Err`
    /// when the MX answer is bogus or indeterminate: a lookup error (RFC 7672 §2.1.1),
    /// the delivery is deferred.
    async fn apply_dane(&self, dest: &mut Destination) -> Result<(), Failure> {
        let Some(resolver) = &self.dane else {
            dest.key.mode = TlsMode::MtaSts;
            self.apply_sts(dest).await;
            return Ok(());
        };
        if self.routes.contains_key(&normalise(&dest.domain)) {
            dest.dane = Some(DaneDest { required: true, fallback: TlsMode::Require });
            return Ok(());
        }
        // The MTA-STS fallback and the MX check at once: neither needs the other.
        let domain = dest.domain.clone();
        let (_, mx) = tokio::join!(self.apply_sts(dest), crate::dane::mx_secure(resolver, &domain));
        match mx {
            MxDane::Applies => {
                dest.dane = Some(DaneDest { required: false, fallback: dest.key.mode });
                dest.key.mode = TlsMode::Dane;
            }
            MxDane::NotApplicable(why) => debug!(domain = %Esc(&dest.domain), why, "DANE does not apply"),
            MxDane::LookupError(why) => {
                let info = dakiya_mtasts::report::PolicyInfo { kind: "tlsa".into(), lines: vec![], mx_host: vec![] };
                let result = Some(dakiya_mtasts::ResultType::DnssecInvalid);
                self.sts.reporter().count(&dest.domain, &info, result, None);
                return Err(crate::dane::mx_lookup_error(&dest.domain, &why));
            }
        }
        Ok(())
    }

    /// The hop's DANE settings, when DANE applies to the destination; `Err` when the host
    /// must not be used now (counted for TLS-RPT).
    async fn hop_dane(&self, dest: &Destination, hop: &NextHop) -> Result<Option<HopDane>, HostFailure> {
        let (Some(resolver), Some(dane)) = (&self.dane, &dest.dane) else { return Ok(None) };
        match crate::dane::for_hop(resolver, dane, hop, &self.tls.unverified).await {
            Ok(Some(hop_dane)) => {
                let records = hop_dane.records.len();
                info!(host = %Esc(&hop.host), authenticated = hop_dane.authenticated, records, "DANE applies");
                if !hop_dane.authenticated {
                    // Validated records, none usable: TLS is mandatory, unauthenticated.
                    let info = crate::dane::policy_info(hop, &hop_dane.records);
                    let result = Some(dakiya_mtasts::ResultType::TlsaInvalid);
                    self.sts.reporter().count(&dest.domain, &info, result, Some(&hop.host));
                }
                Ok(Some(hop_dane))
            }
            Ok(None) => Ok(None),
            Err((failure, result)) => {
                info!(host = %Esc(&hop.host), reason = %Esc(&failure.reason), "next hop refused by DANE");
                let info = crate::dane::policy_info(hop, &[]);
                self.sts.reporter().count(&dest.domain, &info, Some(result), Some(&hop.host));
                Err((failure, None))
            }
        }
    }

    /// Counts a session made under DANE for TLS-RPT (policy type `tlsa`).
    fn count_dane(&self, dest: &Destination, hop: &NextHop, hop_dane: &HopDane, conn: &Connection) {
        let Some(seen) = conn.tls_seen() else { return };
        let info = crate::dane::policy_info(hop, &hop_dane.records);
        let result = crate::sts::outcome_type(seen);
        // An unusable set was counted as `tlsa-invalid` already.
        if hop_dane.authenticated || result.is_some() {
            self.sts.reporter().count(&dest.domain, &info, result, Some(&hop.host));
        }
    }

    /// Under an enforced policy, only the MX hosts it lists (RFC 8461 §4.1); the others
    /// are counted as validation failures. `Err` when none is left.
    fn sts_hops(&self, dest: &Destination, hops: Vec<NextHop>) -> Result<Vec<NextHop>, Failure> {
        let Some(sts) = dest.sts.as_ref().filter(|s| s.enforce()) else { return Ok(hops) };
        let Some(policy) = &sts.policy else { return Ok(hops) };
        let (kept, refused): (Vec<NextHop>, Vec<NextHop>) = hops.into_iter().partition(|h| policy.matches(&h.host));
        let mut names: Vec<&str> = refused.iter().map(|h| h.host.as_str()).collect();
        names.dedup();
        for name in &names {
            self.sts.reporter().failure(sts, dakiya_mtasts::ResultType::ValidationFailure, Some(name));
        }
        if kept.is_empty() {
            return Err(failure::sts_no_mx(&sts.domain, &names.join(", ")));
        }
        Ok(kept)
    }

    /// Counts a session for TLS-RPT when a policy applies.
    fn count_session(&self, dest: &Destination, hop: &NextHop, conn: &Connection) {
        let (Some(sts), Some(seen)) = (&dest.sts, conn.tls_seen()) else { return };
        match crate::sts::outcome_type(seen) {
            None => self.sts.reporter().success(sts),
            Some(result) => self.sts.reporter().failure(sts, result, Some(&hop.host)),
        }
    }

    fn setup(&self, dest: &Destination, hop: &NextHop, policy: TlsPolicy, dane: Option<&HopDane>) -> Setup {
        let tls_config = match dane {
            Some(hop_dane) => hop_dane.config.clone(),
            None if dest.mode() == TlsMode::Verify => self.tls.verified.clone(),
            None => self.tls.unverified.clone(),
        };
        // The credentials are the relay's alone. Should a domain's static route be missed
        // here (a key spelled differently from the router's), its hosts must not get them.
        let credentials = dest.credentials.clone().filter(|_| self.is_relay(hop));
        Setup {
            helo_name: self.helo_name.clone(),
            policy,
            implicit_tls: dest.implicit_tls,
            credentials,
            tls_config,
            connect_timeout: self.connect_timeout,
            metrics: self.metrics.get().cloned(),
            // Under an MTA-STS policy that is not enforced, the certificate is checked after
            // the handshake, for the TLS report only.
            report_verifier: dest
                .sts
                .as_ref()
                .filter(|s| !s.enforce() && dane.is_none())
                .map(|_| self.tls.verifier.clone()),
        }
    }

    /// Whether `hop` is the configured relay host.
    fn is_relay(&self, hop: &NextHop) -> bool {
        self.relay_host.as_ref().is_some_and(|relay| match relay.ip() {
            Some(ip) => ip == hop.addr.ip(),
            None => normalise(&relay.host) == hop.host,
        })
    }

    pub(crate) async fn deliver(&self, domain: &str, job: &Job, message: &[u8]) -> Vec<RcptResult> {
        let count = job.recipients.len();
        if count == 0 {
            return Vec::new();
        }
        let mut dest = self.destination(domain);
        match dest.key.mode {
            // RFC 8689 §5.1 (`TLS-Required: No`): DANE and MTA-STS failures must not stop
            // the message; it goes as it would without either, opportunistically.
            TlsMode::MtaSts | TlsMode::Dane if job.tls_optional => {
                info!(domain, "TLS-Required: No: delivering without DANE or MTA-STS");
                dest.key.mode = TlsMode::Opportunistic;
            }
            TlsMode::MtaSts => self.apply_sts(&mut dest).await,
            TlsMode::Dane => {
                if let Err(failure) = self.apply_dane(&mut dest).await {
                    info!(domain, reason = %Esc(&failure.reason), "MX lookup failed DNSSEC validation; deferred");
                    let outcome = RecipientOutcome::Temporary(failure);
                    return vec![RcptResult { outcome, remote_mta: None, next_hop_dsn: false }; count];
                }
            }
            _ => {}
        }
        if job.require_tls {
            // Connections for REQUIRETLS messages are pooled apart: each was authenticated
            // (a space cannot occur in a domain).
            dest.key.dest.push_str(" requiretls");
        }
        let results = self.deliver_to(&dest, job, message).await;
        self.sts.reporter().maybe_flush();
        results
    }

    async fn deliver_to(&self, dest: &Destination, job: &Job, message: &[u8]) -> Vec<RcptResult> {
        let (domain, count) = (dest.domain.as_str(), job.recipients.len());
        // An idle connection first: it needs no DNS lookup.
        while let Some(conn) = self.pool.take(&dest.key) {
            if let Some(results) = self.reuse(conn, dest, job, message).await {
                return results;
            }
        }
        let hops = match self.router.resolve(domain).await.map(|hops| self.sts_hops(dest, hops)) {
            Ok(Ok(hops)) => Ok(hops),
            Ok(Err(failure)) => {
                info!(domain, reason = %Esc(&failure.reason), "no next hop allowed by the MTA-STS policy");
                let outcome = RecipientOutcome::Temporary(failure);
                return vec![RcptResult { outcome, remote_mta: None, next_hop_dsn: false }; count];
            }
            Err(e) => Err(e),
        };
        let hops = match hops {
            Ok(hops) => hops,
            Err(e) => {
                info!(domain, error = %e, permanent = e.is_permanent(), "no route");
                let outcome = failure::route(&e);
                return vec![RcptResult { outcome, remote_mta: None, next_hop_dsn: false }; count];
            }
        };
        let mut last = None;
        for hop in &hops {
            match self.try_hop(dest, hop, job, message).await {
                Ok(results) => return results,
                Err(host_failure) => last = Some(host_failure),
            }
        }
        let (mut failure, remote_mta) = last.unwrap_or_else(|| (failure::no_hops(), None));
        if failure.status == dakiya_proto::Enhanced(5, 7, 30) {
            // RFC 8689 §5: no next hop could take the REQUIRETLS message: it bounces.
            info!(domain, reason = %Esc(&failure.reason), "REQUIRETLS cannot be met");
            let outcome = RecipientOutcome::Permanent(failure);
            return vec![RcptResult { outcome, remote_mta, next_hop_dsn: false }; count];
        }
        if let Some(sts) = dest.sts.as_ref().filter(|s| s.enforce() && !failure.reason.starts_with("DANE")) {
            // Said in the DSN and the history: why a policy-bound delivery waits.
            failure.reason = format!("MTA-STS policy of {}: {}", sts.domain, failure.reason);
        }
        info!(domain, hops = hops.len(), status = %failure.status, reason = %Esc(&failure.reason), "all next hops failed");
        vec![RcptResult { outcome: RecipientOutcome::Temporary(failure), remote_mta, next_hop_dsn: false }; count]
    }

    /// Runs the job on an idle connection. `None` when the connection turned out to be
    /// broken before the message was handed over: the caller gets another.
    async fn reuse(
        &self,
        mut conn: Connection,
        dest: &Destination,
        job: &Job,
        message: &[u8],
    ) -> Option<Vec<RcptResult>> {
        if conn.next_job(job.clone()).is_err() {
            debug!(remote_mta = %Esc(&conn.remote_mta()), "idle connection no longer usable");
            tokio::spawn(conn.close());
            return None;
        }
        let outcome = conn.run(message).await;
        if failure::try_elsewhere(&outcome) {
            let reason = outcome.failure().map(ToString::to_string).unwrap_or_default();
            debug!(remote_mta = %Esc(&conn.remote_mta()), reason, "reused connection failed; trying a new one");
            tokio::spawn(conn.close());
            return None;
        }
        Some(self.finish(conn, dest, outcome, job.recipients.len()))
    }

    /// Delivers through one next hop. `Err` when the host failed and the next may do better.
    async fn try_hop(
        &self,
        dest: &Destination,
        hop: &NextHop,
        job: &Job,
        message: &[u8],
    ) -> Result<Vec<RcptResult>, HostFailure> {
        let hop_dane = self.hop_dane(dest, hop).await?;
        if job.require_tls {
            // RFC 8689 §5: only over TLS authenticated by DANE or MTA-STS (or a route in
            // `verify` mode, whose certificate check is as strong).
            let authenticated = match &hop_dane {
                Some(hop_dane) => hop_dane.authenticated,
                None => dest.mode() == TlsMode::Verify,
            };
            if !authenticated {
                let mode = if hop_dane.is_some() { "unusable TLSA records" } else { dest.mode().as_str() };
                return Err((failure::requiretls(hop, mode), None));
            }
        }
        let mut policy = match dest.mode() {
            // Validated TLSA records make TLS mandatory (RFC 7672 §2.2).
            _ if hop_dane.is_some() => TlsPolicy::Required,
            TlsMode::None => TlsPolicy::None,
            TlsMode::Opportunistic => TlsPolicy::Opportunistic,
            TlsMode::Require | TlsMode::Verify => TlsPolicy::Required,
            // Resolved by `apply_sts`/`apply_dane` before; should it not be, never less
            // than opportunistic.
            TlsMode::MtaSts | TlsMode::Dane => TlsPolicy::Opportunistic,
        };
        loop {
            let permits = loop {
                match self.pool.slot(&dest.key).await {
                    Slot::Reuse(conn) => {
                        if let Some(results) = self.reuse(*conn, dest, job, message).await {
                            return Ok(results);
                        }
                    }
                    Slot::Fresh(permits) => break permits,
                }
            };
            let setup = self.setup(dest, hop, policy, hop_dane.as_ref());
            let mut conn = match Connection::open(hop, &setup, permits, job.clone()).await {
                Ok(conn) => conn,
                Err((mut failure, remote_mta)) => {
                    if hop_dane.is_some() {
                        failure.reason = format!("{}: {}", crate::dane::label(hop), failure.reason);
                    }
                    info!(host = %Esc(&hop.host), addr = %hop.addr, reason = %Esc(&failure.reason), "outbound connection failed");
                    return Err((failure, remote_mta));
                }
            };
            let mut outcome = conn.run(message).await;
            match &hop_dane {
                Some(hop_dane) => self.count_dane(dest, hop, hop_dane, &conn),
                None => self.count_session(dest, hop, &conn),
            }
            if let (Some(_), Outcome::Temporary(failure)) = (&hop_dane, &mut outcome) {
                // Said in the DSN and the history: why a DANE-bound delivery waits.
                failure.reason = format!("{}: {}", crate::dane::label(hop), failure.reason);
            }
            if !failure::try_elsewhere(&outcome) {
                return Ok(self.finish(conn, dest, outcome, job.recipients.len()));
            }
            let remote_mta = conn.remote_mta();
            let dsn = conn.offers_dsn();
            log_result(&dest.domain, &remote_mta, &outcome, job.recipients.len());
            let retry_in_clear = conn.tls_failed() && dest.mode() == TlsMode::Opportunistic && hop_dane.is_none();
            tokio::spawn(conn.close());
            if retry_in_clear && policy != TlsPolicy::None {
                // Opportunistic TLS (RFC 7435): a server whose TLS we cannot speak (an old
                // protocol version, a broken stack) still gets the mail, in clear, as it
                // would had it not offered STARTTLS.
                info!(host = %Esc(&hop.host), addr = %hop.addr, "TLS handshake failed; trying again without TLS");
                policy = TlsPolicy::None;
                continue;
            }
            return match outcome {
                Outcome::Temporary(failure) => Err((failure, Some(remote_mta))),
                other => Ok(results(other, job.recipients.len(), &remote_mta, dsn)),
            };
        }
    }

    /// Records the final outcome of a job; keeps the connection for reuse or closes it.
    fn finish(&self, conn: Connection, dest: &Destination, outcome: Outcome, count: usize) -> Vec<RcptResult> {
        let remote_mta = conn.remote_mta();
        let dsn = conn.offers_dsn();
        log_result(&dest.domain, &remote_mta, &outcome, count);
        if conn.is_reusable() {
            self.pool.put(dest.key.clone(), conn);
        } else {
            tokio::spawn(conn.close());
        }
        results(outcome, count, &remote_mta, dsn)
    }

    pub(crate) async fn close_idle(&self) {
        self.sts.reporter().flush();
        self.pool.close_all().await;
    }
}

/// One result per recipient, all naming the host that answered.
fn results(outcome: Outcome, count: usize, remote_mta: &str, next_hop_dsn: bool) -> Vec<RcptResult> {
    let mut all = outcome.into_recipients(count);
    if all.len() != count {
        // The client reports every recipient; should it ever not, the contract of one
        // result per recipient still holds, and nothing unreported counts as delivered.
        warn!(expected = count, got = all.len(), "recipient results do not match the job");
        all.resize(count, RecipientOutcome::Temporary(failure::closed_early()));
    }
    all.into_iter()
        .map(|outcome| RcptResult { outcome, remote_mta: Some(remote_mta.to_owned()), next_hop_dsn })
        .collect()
}

/// One log line per job: counts and the first failure's status. No addresses or content.
fn log_result(domain: &str, remote_mta: &str, outcome: &Outcome, count: usize) {
    let (mut delivered, mut deferred, mut bounced, mut first) = (0, 0, 0, None);
    let recipients: Vec<&RecipientOutcome> = match outcome {
        Outcome::Recipients(all) => all.iter().collect(),
        _ => Vec::new(),
    };
    // A whole-job failure counts for every recipient of the job.
    match outcome {
        Outcome::Temporary(_) => deferred = count,
        Outcome::Permanent(_) => bounced = count,
        _ => {}
    }
    for r in &recipients {
        match r {
            RecipientOutcome::Delivered(_) => delivered += 1,
            RecipientOutcome::Temporary(f) => {
                deferred += 1;
                first = first.or(Some(f));
            }
            RecipientOutcome::Permanent(f) => {
                bounced += 1;
                first = first.or(Some(f));
            }
            _ => {}
        }
    }
    let whole = outcome.failure();
    let failure = whole.or(first);
    let result = match outcome {
        Outcome::Recipients(_) => "per recipient",
        Outcome::Temporary(_) => "deferred",
        Outcome::Permanent(_) => "bounced",
        _ => "unknown",
    };
    let status = failure.map(|f| f.status.to_string()).unwrap_or_default();
    let reason = failure.map(|f| f.to_string()).unwrap_or_default();
    info!(domain, remote_mta, result, delivered, deferred, bounced, status, reason, "outbound job");
}
