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

/// What the validated MX lookup says about DANE for a destination.
#[derive(Debug)]
pub(crate) enum MxDane {
    /// The MX RRset validated and is not empty: DANE applies (RFC 7672 §2.2.1).
    Applies,
    /// An insecure (provably unsigned) MX RRset, no MX records, or name servers that
    /// carry no DNSSEC at all: no DANE; the text says why.
    NotApplicable(String),
    /// A bogus or indeterminate MX RRset: a lookup error, the delivery is deferred
    /// (RFC 7672 §2.1.1, §2.2.1), never downgraded. The text says why.
    LookupError(String),
}

/// Whether DANE applies to an MX destination: its MX RRset must be DNSSEC-validated
/// (RFC 7672 §2.2.1). RFC 7672 §2.1.1: a "bogus" or "indeterminate" answer is a lookup
/// error, not "no records": the mail waits, as for a failed MX lookup, rather than going
/// without the DANE protection the domain may have asked for. The one exception is a
/// resolver path that carries no DNSSEC at all (the trust anchor's own keys do not
/// validate): then no answer can be anything but indeterminate, DANE cannot work on this
/// system, and it is off — as for an MTA whose resolver does not validate.
pub(crate) async fn mx_secure(resolver: &SecureResolver, domain: &str) -> MxDane {
    // The trust anchor's DNSKEY is asked alongside, not after a failed MX answer: with
    // unreachable name servers the two timeouts then overlap instead of adding up (and in
    // service the answer comes from the resolver's cache).
    let (mx, dnssec_available) = tokio::join!(resolver.mx(domain), resolver.dnssec_available());
    match mx {
        Secured::Secure(hosts) if !hosts.is_empty() => MxDane::Applies,
        Secured::Secure(_) => MxDane::NotApplicable("no MX records".into()),
        Secured::Insecure => MxDane::NotApplicable("the MX records are not DNSSEC-signed".into()),
        Secured::Bogus(_) if !dnssec_available => MxDane::NotApplicable(
            "the name servers give no DNSSEC-validated answers (not even the trust anchor's DNSKEY)".into(),
        ),
        Secured::Bogus(why) => MxDane::LookupError(why),
    }
}

/// The deferral of a destination whose MX answer is a lookup error: 4.4.3 (RFC 3463
/// §3.5, a directory server failure), as for any other failed MX lookup.
pub(crate) fn mx_lookup_error(domain: &str, why: &str) -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Policy,
        status: Enhanced(4, 4, 3),
        reply: None,
        reason: format!("DANE: DNSSEC validation failed for the MX of {domain} ({why}); delivery deferred"),
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
    let (tlsa, addresses) = tokio::join!(resolver.tlsa(&hop.host, port), hop_addresses(resolver, hop));
    if let Secured::Bogus(why) = addresses {
        // RFC 7672 §2.1.1, §2.2.1: a bogus or indeterminate address answer of the MX host
        // is a lookup error; the host is not used now.
        let why = format!("the address lookup of {} failed DNSSEC validation ({why})", hop.host);
        return Err((refusal(hop, &why), ResultType::DnssecInvalid));
    }
    match HostPolicy::from_answer(tlsa) {
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

/// The validated addresses of the hop's host in the family of its address; an IP literal
/// (a route's) needs no lookup.
async fn hop_addresses(resolver: &SecureResolver, hop: &NextHop) -> Secured<Vec<std::net::IpAddr>> {
    if hop.host.parse::<std::net::IpAddr>().is_ok() {
        return Secured::Insecure;
    }
    resolver.addresses(&hop.host, hop.addr.is_ipv6()).await
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
