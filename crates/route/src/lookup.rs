//! DNS queries for MX and address records, and what their failures mean.

use std::fmt;
use std::net::IpAddr;

use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use rand::seq::SliceRandom;

use crate::config::{Family, IpPreference, families};

/// Why a query gave no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// NXDOMAIN: the name does not exist. Permanent.
    NxDomain,
    /// NOERROR with no records of the type asked (NODATA). Permanent.
    NoData,
    /// SERVFAIL, REFUSED, timeout, no connection, malformed answer: ask again later.
    Temporary(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NxDomain => f.write_str("no such domain (NXDOMAIN)"),
            Failure::NoData => f.write_str("no records"),
            Failure::Temporary(msg) => f.write_str(msg),
        }
    }
}

/// Sorts a resolver error into NXDOMAIN, NODATA or temporary.
///
/// hickory reports every negative answer as `NoRecordsFound` with the response code; only
/// NXDOMAIN and NOERROR speak about the data. Everything else (SERVFAIL, REFUSED, I/O,
/// timeouts) says nothing about the domain, so it is temporary (RFC 5321 §5.1).
pub(crate) fn classify(err: &ResolveError) -> Failure {
    if let Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) = err.proto().map(|p| p.kind()) {
        match *response_code {
            ResponseCode::NXDomain => return Failure::NxDomain,
            ResponseCode::NoError => return Failure::NoData,
            _ => {}
        }
    }
    Failure::Temporary(err.to_string())
}

/// The MX records of a name as `(preference, exchange)`; NODATA gives an empty list.
pub(crate) async fn mx(resolver: &TokioResolver, name: &Name) -> Result<Vec<(u16, Name)>, Failure> {
    match resolver.mx_lookup(name.clone()).await {
        // The lookup may also hold the CNAME chain that led here; only MX data counts.
        Ok(lookup) => Ok(lookup.iter().map(|mx| (mx.preference(), mx.exchange().clone())).collect()),
        Err(err) => match classify(&err) {
            Failure::NoData => Ok(Vec::new()),
            other => Err(other),
        },
    }
}

/// The TXT records of a name, each record's strings concatenated (RFC 7208 §3.3 style,
/// as RFC 8461 §3.1 asks); NXDOMAIN and NODATA give an empty list.
pub(crate) async fn txt(resolver: &TokioResolver, name: &Name) -> Result<Vec<String>, Failure> {
    match resolver.txt_lookup(name.clone()).await {
        Ok(lookup) => Ok(lookup
            .iter()
            .map(|txt| txt.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
            .collect()),
        Err(err) => match classify(&err) {
            Failure::NoData | Failure::NxDomain => Ok(Vec::new()),
            other => Err(other),
        },
    }
}

/// The addresses of a host, in the families and order `pref` asks for, each family's
/// addresses shuffled (spreading load over a round-robin host as RFC 5321 §5.1 asks for
/// equal MX preferences).
///
/// Both families are asked at once. One family failing does not matter while the other has
/// addresses; with no address at all, a temporary failure of either wins over NXDOMAIN or
/// NODATA, because the missing family might have held the answer.
pub(crate) async fn addresses(
    resolver: &TokioResolver,
    name: &Name,
    pref: IpPreference,
) -> Result<Vec<IpAddr>, Failure> {
    let families = families(pref);
    let wants = |family| families.contains(&family);
    let v4 = async {
        if !wants(Family::V4) {
            return Ok(Vec::new());
        }
        resolver.ipv4_lookup(name.clone()).await.map(|l| l.iter().map(|a| IpAddr::V4(a.0)).collect::<Vec<_>>())
    };
    let v6 = async {
        if !wants(Family::V6) {
            return Ok(Vec::new());
        }
        resolver.ipv6_lookup(name.clone()).await.map(|l| l.iter().map(|a| IpAddr::V6(a.0)).collect::<Vec<_>>())
    };
    let (v4, v6) = tokio::join!(v4, v6);

    let mut found = Vec::new();
    let mut failure = None;
    for family in families {
        let result = match family {
            Family::V4 => &v4,
            Family::V6 => &v6,
        };
        match result {
            Ok(addrs) => {
                let mut addrs = addrs.clone();
                addrs.shuffle(&mut rand::rng());
                found.extend(addrs);
            }
            Err(err) => failure = worse(failure, classify(err)),
        }
    }
    match (found.is_empty(), failure) {
        (false, _) => Ok(found),
        (true, Some(failure)) => Err(failure),
        (true, None) => Err(Failure::NoData),
    }
}

/// Of two failures, the one that decides: temporary over NXDOMAIN over NODATA.
pub(crate) fn worse(a: Option<Failure>, b: Failure) -> Option<Failure> {
    let rank = |f: &Failure| match f {
        Failure::NoData => 0,
        Failure::NxDomain => 1,
        Failure::Temporary(_) => 2,
    };
    match a {
        Some(a) if rank(&a) >= rank(&b) => Some(a),
        _ => Some(b),
    }
}

#[cfg(test)]
mod tests {
    use super::{Failure, worse};

    #[test]
    fn temporary_failures_win() {
        let t = || Failure::Temporary("servfail".into());
        assert_eq!(worse(None, Failure::NoData), Some(Failure::NoData));
        assert_eq!(worse(Some(Failure::NoData), Failure::NxDomain), Some(Failure::NxDomain));
        assert_eq!(worse(Some(Failure::NxDomain), Failure::NoData), Some(Failure::NxDomain));
        assert_eq!(worse(Some(Failure::NxDomain), t()), Some(t()));
        assert_eq!(worse(Some(t()), Failure::NxDomain), Some(t()));
    }
}
