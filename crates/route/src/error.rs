//! Why a domain has no next hop, split into permanent and temporary failures.

use dakiya_proto::Enhanced;

/// Why [`Router::resolve`](crate::Router::resolve) found no next hop.
///
/// [`RouteError::is_permanent`] decides between a bounce and a retry (RFC 5321 §5.1: a
/// non-existent domain "MUST be reported as an error", a temporary DNS failure means "the
/// message MUST be queued and retried later").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail at all.
    #[error("domain does not accept mail (null MX)")]
    NullMx,
    /// The DNS says the domain does not exist (NXDOMAIN).
    #[error("domain does not exist (NXDOMAIN)")]
    NoSuchDomain,
    /// The domain exists, but neither its MX hosts nor (without MX) the domain itself have
    /// a usable address (RFC 5321 §5.1: "none of them are usable").
    #[error("no usable address for the domain's mail exchangers")]
    NoAddresses,
    /// The domain is not a valid domain name or address literal.
    #[error("invalid destination domain {0:?}")]
    InvalidDomain(String),
    /// A DNS failure that may go away: SERVFAIL, REFUSED, a timeout, no reachable name
    /// server, or an operator-configured route whose host does not resolve.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
    /// The routing configuration is unusable (from [`Router::new`](crate::Router::new) only).
    #[error("invalid routing configuration: {0}")]
    Config(String),
}

impl RouteError {
    /// Whether retrying later cannot help, so the recipients should bounce now.
    ///
    /// [`RouteError::Config`] counts as temporary: the mistake is the operator's, and the
    /// mail should wait for the fix rather than bounce.
    pub fn is_permanent(&self) -> bool {
        match self {
            RouteError::NullMx | RouteError::NoSuchDomain | RouteError::NoAddresses | RouteError::InvalidDomain(_) => {
                true
            }
            RouteError::Temporary(_) | RouteError::Config(_) => false,
        }
    }

    /// The enhanced status code (RFC 3463) for a delivery status notification.
    ///
    /// Null MX is 5.1.10 (RFC 7505 §4.2); a non-existent domain or invalid domain is
    /// 5.1.2 "bad destination system address"; no usable address is 5.4.4 "unable to
    /// route"; temporary DNS trouble is 4.4.3 "directory server failure"; a bad routing
    /// configuration is 4.3.5 "system incorrectly configured".
    pub fn enhanced_status(&self) -> Enhanced {
        match self {
            RouteError::NullMx => Enhanced(5, 1, 10),
            RouteError::NoSuchDomain | RouteError::InvalidDomain(_) => Enhanced(5, 1, 2),
            RouteError::NoAddresses => Enhanced(5, 4, 4),
            RouteError::Temporary(_) => Enhanced(4, 4, 3),
            RouteError::Config(_) => Enhanced(4, 3, 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RouteError;

    #[test]
    fn permanence_and_status_agree() {
        let all = [
            RouteError::NullMx,
            RouteError::NoSuchDomain,
            RouteError::NoAddresses,
            RouteError::InvalidDomain("x".into()),
            RouteError::Temporary("t".into()),
            RouteError::Config("c".into()),
        ];
        for e in all {
            let class = if e.is_permanent() { 5 } else { 4 };
            assert_eq!(e.enhanced_status().class(), class, "{e:?}");
        }
    }
}
