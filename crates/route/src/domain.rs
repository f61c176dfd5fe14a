//! The destination of a recipient: a domain name (ASCII or UTF-8) or an address literal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_resolver::Name;

use crate::RouteError;

/// Where mail for one recipient domain goes, before any route or DNS is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3): that address, no DNS.
    Literal(IpAddr),
    /// A domain as a fully qualified DNS name, lower case, IDNA A-labels.
    Domain(Name),
}

impl Destination {
    /// Parses the domain part of an address.
    ///
    /// A UTF-8 domain (RFC 6531) becomes its A-label form through IDNA (UTS #46), as the DNS
    /// only holds those. One trailing dot is allowed. The name is made fully qualified so the
    /// resolver never tries search domains: RFC 5321 §5.1 forbids a relay to guess names.
    pub(crate) fn parse(domain: &str) -> Result<Destination, RouteError> {
        let invalid = || RouteError::InvalidDomain(domain.to_string());
        if let Some(inner) = domain.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
            return parse_literal(inner).map(Destination::Literal).ok_or_else(invalid);
        }
        let bare = domain.strip_suffix('.').unwrap_or(domain);
        let name = if bare.is_ascii() {
            if !is_ldh_domain(bare) {
                return Err(invalid());
            }
            Name::from_ascii(format!("{}.", bare.to_ascii_lowercase())).map_err(|_| invalid())?
        } else {
            let name = Name::from_utf8(format!("{bare}.")).map_err(|_| invalid())?;
            // IDNA may map characters to ones the mail grammar forbids; check the result.
            if !is_ldh_domain(ascii_of(&name).as_str()) {
                return Err(invalid());
            }
            name
        };
        Ok(Destination::Domain(name))
    }

    /// The key under which a static route for this destination is stored: the lower-case
    /// A-label domain without trailing dot, or the literal in canonical form.
    pub(crate) fn route_key(&self) -> String {
        match self {
            Destination::Literal(IpAddr::V4(ip)) => format!("[{ip}]"),
            Destination::Literal(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
            Destination::Domain(name) => ascii_of(name),
        }
    }
}

/// A name as ASCII text without the trailing dot of a fully qualified name.
pub(crate) fn ascii_of(name: &Name) -> String {
    let text = name.to_ascii();
    match text.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => text,
    }
}

/// The address inside an address literal's brackets (RFC 5321 §4.1.3): a dotted quad, or
/// `IPv6:` (tag in any case) and an IPv6 address. General address literals are not routable.
fn parse_literal(inner: &str) -> Option<IpAddr> {
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// RFC 5321 §4.1.2 `Domain`: dot-separated labels of letters, digits and inner hyphens, each
/// at most 63 octets, at most 253 in all (RFC 1035 §2.3.4).
fn is_ldh_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(domain: &str) -> String {
        Destination::parse(domain).unwrap().route_key()
    }

    #[test]
    fn ascii_domains_are_lowercased_and_qualified() {
        assert_eq!(key("Example.TEST"), "example.test");
        assert_eq!(key("example.test."), "example.test");
        let Destination::Domain(name) = Destination::parse("mx.example.test").unwrap() else { panic!() };
        assert!(name.is_fqdn());
    }

    #[test]
    fn utf8_domains_become_a_labels() {
        assert_eq!(key("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(key("BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(key("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(key("例え.テスト"), "xn--r8jz45g.xn--zckzah");
    }

    #[test]
    fn address_literals() {
        assert_eq!(Destination::parse("[127.0.0.1]").unwrap(), Destination::Literal("127.0.0.1".parse().unwrap()));
        assert_eq!(Destination::parse("[IPv6:::1]").unwrap(), Destination::Literal("::1".parse().unwrap()));
        assert_eq!(Destination::parse("[ipv6:::1]").unwrap(), Destination::Literal("::1".parse().unwrap()));
        assert_eq!(key("[IPV6:0:0::1]"), "[IPv6:::1]");
        assert_eq!(key("[127.0.0.2]"), "[127.0.0.2]");
    }

    #[test]
    fn invalid_destinations() {
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = format!("{}test", "abcdefghi.".repeat(26));
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "-a.test",
            "a-.test",
            "a_b.test",
            "a b.test",
            "a\\.b.test",
            "exa%mple.test",
            &long_label,
            &long_name,
            "[127.0.0.1",
            "[::1]",
            "[IPv6:127.0.0.1]",
            "[256.0.0.1]",
            "[x-tag:stuff]",
            "[]",
            "ex\u{0}ample.test",
        ] {
            let err = Destination::parse(bad).unwrap_err();
            assert!(matches!(err, RouteError::InvalidDomain(_)), "{bad:?}: {err:?}");
            assert!(err.is_permanent());
        }
    }
}
