//! DANE for SMTP (RFC 7672): the TLSA records of the next hops, looked up through a
//! DNSSEC-validating resolver, decide whether TLS is mandatory and how the server is
//! authenticated. See `docs/dane.md`.
//!
//! The rules are pure ([`tlsa`], [`verify`]); this file asks the resolver and turns its
//! answer into what one connection attempt needs.

pub(crate) mod tlsa;
pub(crate) mod verify;

use std::sync::Arc;

use dakiya_mtasts::ResultType;
use dakiya_mtasts::report::PolicyInfo;
use dakiya_proto::Enhanced;
use dakiya_proto::client::{Failure, FailureKind, Phase};
use dakiya_proto::next_hop::TlsMode;
use dakiya_route::{NextHop, SecureResolver, Secured, TlsaData};

pub(crate) use tlsa::HostPolicy;

/// DANE applies to a destination: its MX RRset validated (RFC 7672 §2.2.1), or it is a
/// static route with `tls = "dane"` (its hosts are configured, so trusted names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaneDest {
    /// A host without validated TLSA records is refused (a route in `dane` mode), rather
    /// than reached as `fallback` says.
    pub(crate) required: bool,
    /// The mode for hosts without TLSA records: MTA-STS's or opportunistic.
    pub(crate) fallback: TlsMode,
}

/// How one connection attempt goes under DANE.
#[derive(Debug, Clone)]
pub(crate) struct HopDane {
    /// The TLS configuration: authenticating by the records, or unverified when none is
    /// usable (TLS is mandatory all the same, RFC 7672 §2.2).
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// Whether the records authenticate the server.
    pub(crate) authenticated: bool,
    /// The validated TLSA records, for TLS reports.
    pub(crate) records: Vec<TlsaData>,
}

/// Whether DANE applies to an MX destination: its MX RRset must be DNSSEC-validated
/// (RFC 7672 §2.2.1). A bogus MX answer is treated as insecure here: a resolver path
/// that strips DNSSEC cannot be told from tampering, and without DANE the mail goes as it
/// would have anyway (MTA-STS or opportunistic); the TLSA answers are held to the
/// stricter rule (a bogus one defers the host).
pub(crate) async fn mx_secure(resolver: &SecureResolver, domain: &str) -> Result<(), String> {
    match resolver.mx(domain).await {
        Secured::Secure(hosts) if !hosts.is_empty() => Ok(()),
        Secured::Secure(_) => Err("no MX records".into()),
        Secured::Insecure => Err("the MX records are not DNSSEC-signed".into()),
        Secured::Bogus(why) => Err(format!("the MX lookup did not validate: {why}")),
    }
}

/// The TLSA records of a hop, and what they make of the attempt: `Ok(None)` when DANE
/// does not apply to this host; `Err` (with the TLS-RPT result) when the host must not
/// be used now.
pub(crate) async fn for_hop(
    resolver: &SecureResolver,
    dest: &DaneDest,
    hop: &NextHop,
    unverified: &Arc<rustls::ClientConfig>,
) -> Result<Option<HopDane>, (Failure, ResultType)> {
    let port = hop.addr.port();
    match HostPolicy::from_answer(resolver.tlsa(&hop.host, port).await) {
        HostPolicy::None if dest.required => Err((
            refusal(hop, "DANE is required, but there are no DNSSEC-validated TLSA records"),
            ResultType::DaneRequired,
        )),
        HostPolicy::None => Ok(None),
        HostPolicy::Bogus(why) => {
            Err((refusal(hop, &format!("the TLSA lookup failed DNSSEC validation ({why})")), ResultType::DnssecInvalid))
        }
        HostPolicy::Unusable(records) => {
            Ok(Some(HopDane { config: unverified.clone(), authenticated: false, records }))
        }
        HostPolicy::Usable(records) => {
            let config = verify::client_config(records.clone())
                .map_err(|e| (refusal(hop, &format!("TLS setup: {e}")), ResultType::ValidationFailure))?;
            Ok(Some(HopDane { config, authenticated: true, records }))
        }
    }
}

/// Why a hop is not used: 4.7.5 (RFC 3463 §3.8, cryptographic failure), temporary: the
/// DNS may be fixed; never a downgrade to clear text (RFC 7672 §2.2).
fn refusal(hop: &NextHop, why: &str) -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Policy,
        status: Enhanced(4, 7, 5),
        reply: None,
        reason: format!("{}: {why}", label(hop)),
    }
}

/// `DANE (TLSA of _25._tcp.mx.example.org)`, the prefix of every DANE reason.
pub(crate) fn label(hop: &NextHop) -> String {
    format!("DANE (TLSA of _{}._tcp.{})", hop.addr.port(), hop.host)
}

/// The policy as TLS-RPT describes it (RFC 8460 §4.3: `tlsa`, the records, the host).
pub(crate) fn policy_info(hop: &NextHop, records: &[TlsaData]) -> PolicyInfo {
    PolicyInfo {
        kind: "tlsa".into(),
        lines: records.iter().map(tlsa::presentation).collect(),
        mx_host: vec![hop.host.clone()],
    }
}
