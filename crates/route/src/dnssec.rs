//! A DNSSEC-validating resolver for DANE (RFC 7672 §2.2): TLSA records and the MX RRset,
//! each with whether its answer was validated. The trust anchor is a file of DNSKEY
//! records (the root's in production, a test zone's own key in tests).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::dnssec::{Algorithm, PublicKeyBuf, TrustAnchors};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::{Name, ResolveError, TokioResolver};

use crate::config::RouteConfig;
use crate::error::RouteError;
use crate::lookup::{Failure, classify};

/// One TLSA record (RFC 6698 §2.1), its fields as numbers so that unknown values survive
/// to be judged unusable by the caller (RFC 7672 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaData {
    /// Certificate usage (0–3).
    pub usage: u8,
    /// Selector (0 full certificate, 1 SubjectPublicKeyInfo).
    pub selector: u8,
    /// Matching type (0 exact, 1 SHA-256, 2 SHA-512).
    pub matching: u8,
    /// The association data.
    pub data: Vec<u8>,
}

/// A DNSSEC-aware answer (RFC 4035 §4.3 states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secured<T> {
    /// Validated: the records (empty for a validated "no such records").
    Secure(T),
    /// Not signed, or no chain of trust to it: the answer cannot be relied on.
    Insecure,
    /// Signed but failed validation ("bogus"), not provably signed or unsigned
    /// ("indeterminate"), or the lookup failed: a lookup error, never a downgrade
    /// (RFC 7672 §2.1.1). The text says why.
    Bogus(String),
}

/// A validating resolver, separate from the router's plain one.
#[derive(Debug, Clone)]
pub struct SecureResolver {
    resolver: TokioResolver,
    /// The zone of the trust anchor (the root by default), whose DNSKEY RRset tells
    /// whether the name servers carry DNSSEC at all ([`SecureResolver::dnssec_available`]).
    anchor_zone: Name,
}

impl SecureResolver {
    /// The router's name servers and timeouts, validating with the DNSKEY records in
    /// `trust_anchor` (zone-file lines: `NAME [TTL] [IN] DNSKEY FLAGS 3 ALG BASE64`), or
    /// with the root zone's keys built into hickory when `None`.
    pub fn new(cfg: &RouteConfig, trust_anchor: Option<&Path>) -> Result<SecureResolver, RouteError> {
        let (anchors, anchor_zone) = match trust_anchor {
            None => (TrustAnchors::default(), Name::root()),
            Some(path) => {
                let err = |e: String| RouteError::Config(format!("DNSSEC trust anchor {}: {e}", path.display()));
                parse_anchors(&std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?).map_err(err)?
            }
        };
        let mut builder = crate::router::resolver_builder(cfg)?.with_trust_anchor(Arc::new(anchors));
        builder.options_mut().validate = true;
        Ok(SecureResolver { resolver: builder.build(), anchor_zone })
    }

    /// Whether the name servers pass DNSSEC through at all: the trust anchor zone's own
    /// DNSKEY RRset validates. When it does not, every answer is indeterminate (RFC 4035
    /// §4.3) — a property of the local resolver path, not of a destination — and the
    /// caller may treat DANE as unavailable, as an MTA behind a non-validating resolver
    /// does. The answer is cached by the resolver for the key's TTL.
    pub async fn dnssec_available(&self) -> bool {
        let answer = self.resolver.lookup(self.anchor_zone.clone(), RecordType::DNSKEY).await;
        matches!(secured(answer, RecordType::DNSKEY, |_| Some(())), Secured::Secure(keys) if !keys.is_empty())
    }

    /// The addresses of `host` of one family (A, or AAAA when `v6`).
    pub async fn addresses(&self, host: &str, v6: bool) -> Secured<Vec<IpAddr>> {
        let Ok(name) = Name::from_ascii(format!("{}.", host.trim_end_matches('.'))) else {
            return Secured::Bogus(format!("bad host name {host:?}"));
        };
        let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
        let answer = self.resolver.lookup(name, rtype).await;
        secured(answer, rtype, |r| match r {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
    }

    /// The TLSA records of `_PORT._tcp.HOST` (RFC 6698 §3).
    pub async fn tlsa(&self, host: &str, port: u16) -> Secured<Vec<TlsaData>> {
        let Ok(name) = Name::from_ascii(format!("_{port}._tcp.{}.", host.trim_end_matches('.'))) else {
            return Secured::Bogus(format!("bad host name {host:?}"));
        };
        let answer = self.resolver.lookup(name, RecordType::TLSA).await;
        secured(answer, RecordType::TLSA, |r| match r {
            RData::TLSA(t) => Some(TlsaData {
                usage: t.cert_usage().into(),
                selector: t.selector().into(),
                matching: t.matching().into(),
                data: t.cert_data().to_vec(),
            }),
            _ => None,
        })
    }

    /// The MX host names of `domain`, lower case without the trailing dot.
    pub async fn mx(&self, domain: &str) -> Secured<Vec<String>> {
        let Ok(name) = Name::from_ascii(format!("{}.", domain.trim_end_matches('.'))) else {
            return Secured::Bogus(format!("bad domain {domain:?}"));
        };
        let answer = self.resolver.lookup(name, RecordType::MX).await;
        secured(answer, RecordType::MX, |r| match r {
            RData::MX(mx) => Some(mx.exchange().to_ascii().trim_end_matches('.').to_lowercase()),
            _ => None,
        })
    }
}

/// The records of type `rtype` in an answer, and how well they are proven: every one
/// secure → secure; any bogus or indeterminate → bogus (a lookup error, RFC 7672
/// §2.1.1); else (proven insecure) insecure. A validated NODATA/NXDOMAIN is an empty
/// secure answer; an unvalidated one is insecure.
fn secured<T>(
    answer: Result<hickory_resolver::lookup::Lookup, ResolveError>,
    rtype: RecordType,
    convert: impl Fn(&RData) -> Option<T>,
) -> Secured<Vec<T>> {
    let lookup = match answer {
        Ok(lookup) => lookup,
        Err(e) => return negative(&e),
    };
    let records: Vec<&Record> = lookup.records().iter().filter(|r| r.record_type() == rtype).collect();
    if records.iter().any(|r| r.proof() == Proof::Bogus) {
        return Secured::Bogus(format!("{rtype} answer failed DNSSEC validation"));
    }
    if records.iter().any(|r| r.proof() == Proof::Indeterminate) {
        return Secured::Bogus(format!("the DNSSEC state of the {rtype} answer is indeterminate"));
    }
    if records.is_empty() || records.iter().any(|r| r.proof() != Proof::Secure) {
        return Secured::Insecure;
    }
    Secured::Secure(records.iter().filter_map(|r| convert(r.data())).collect())
}

/// A failed lookup: a denial whose SOA validated is a secure empty answer (the validating
/// handle has checked the NSEC proof by then, RFC 4035 §5.4); an unvalidated one is
/// insecure; anything else (validation failure, no answer) bogus.
fn negative<T>(e: &ResolveError) -> Secured<Vec<T>> {
    use hickory_resolver::proto::ProtoErrorKind;
    if let Some(ProtoErrorKind::NoRecordsFound { soa, .. }) = e.proto().map(|p| p.kind()) {
        let proven = soa.as_ref().is_some_and(|soa| soa.proof() == Proof::Secure);
        return if proven { Secured::Secure(Vec::new()) } else { Secured::Insecure };
    }
    match classify(e) {
        Failure::NoData | Failure::NxDomain => Secured::Insecure,
        _ => Secured::Bogus(e.to_string()),
    }
}

/// Reads DNSKEY records from zone-file lines; comments (`;`) and blank lines are skipped.
/// Also returns the owner of the first record (the zone whose keys they are).
fn parse_anchors(text: &str) -> Result<(TrustAnchors, Name), String> {
    let mut anchors = TrustAnchors::empty();
    let mut zone = None;
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = fields.iter().position(|f| f.eq_ignore_ascii_case("DNSKEY")) else {
            return Err(format!("not a DNSKEY record: {line:?}"));
        };
        let (Some(alg), Some(key)) = (fields.get(at + 3), fields.get(at + 4..)) else {
            return Err(format!("short DNSKEY record: {line:?}"));
        };
        let alg: u8 = alg.parse().map_err(|_| format!("bad algorithm in {line:?}"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.concat())
            .map_err(|_| format!("bad key in {line:?}"))?;
        anchors.insert(&PublicKeyBuf::new(key, Algorithm::from_u8(alg)));
        if zone.is_none() && at > 0 {
            zone = Some(Name::from_ascii(fields[0]).map_err(|_| format!("bad owner name in {line:?}"))?);
        }
    }
    if anchors.is_empty() {
        return Err("no DNSKEY record".into());
    }
    Ok((anchors, zone.unwrap_or_else(Name::root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse() {
        let text = "; test\nexample.test. 3600 IN DNSKEY 257 3 13 AAEC AwQ=\n";
        let (anchors, zone) = parse_anchors(text).unwrap();
        assert_eq!((anchors.len(), zone.to_ascii().as_str()), (1, "example.test."));
        assert!(parse_anchors("").is_err());
        assert!(parse_anchors("example.test. IN A 1.2.3.4").is_err());
        assert!(parse_anchors("x. IN DNSKEY 257 3 13 !!!").is_err());
    }
}
