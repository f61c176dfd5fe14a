//! HELO/EHLO name checks (pure). RFC 5321 §4.1.4 says a server must not refuse a message
//! because the HELO name is wrong, so these are off unless configured (`helo_checks`), and
//! never apply to authenticated or trusted clients; the names they catch are the ones only
//! spamware sends: a bare IP address (not an address literal, RFC 5321 §4.1.3), or our own
//! name or address.

use dakiya_config::HeloChecks;
use std::net::IpAddr;

/// What is wrong with a HELO name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeloProblem {
    /// An IP address without brackets.
    BareIp,
    /// Our own host name.
    OurName,
    /// An address literal of the address the client connected to.
    OurAddress,
}

impl HeloProblem {
    /// The reply text (after `550 5.7.1`).
    pub fn text(self) -> &'static str {
        match self {
            HeloProblem::BareIp => "HELO name refused: an IP address must be an address literal in brackets",
            HeloProblem::OurName => "HELO name refused: that is my name, not yours",
            HeloProblem::OurAddress => "HELO name refused: that is my address, not yours",
        }
    }

    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HeloProblem::BareIp => "bare-ip",
            HeloProblem::OurName => "our-name",
            HeloProblem::OurAddress => "our-address",
        }
    }
}

/// The problem with `helo` that `checks` refuse, if any; `hostname` is ours, `local` the
/// address the client connected to.
pub fn classify(helo: &str, hostname: &str, local: IpAddr, checks: HeloChecks) -> Option<HeloProblem> {
    let name = helo.trim_end_matches('.');
    if checks.bare_ip && name.parse::<IpAddr>().is_ok() {
        return Some(HeloProblem::BareIp);
    }
    if checks.our_name && name.eq_ignore_ascii_case(hostname) {
        return Some(HeloProblem::OurName);
    }
    if checks.our_address && literal(helo).is_some_and(|ip| ip.to_canonical() == local.to_canonical()) {
        return Some(HeloProblem::OurAddress);
    }
    None
}

/// The address of an address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn literal(helo: &str) -> Option<IpAddr> {
    let inner = helo.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: HeloChecks = HeloChecks { bare_ip: true, our_name: true, our_address: true };

    fn c(helo: &str, checks: HeloChecks) -> Option<HeloProblem> {
        classify(helo, "mx.example.test", "127.0.0.1".parse().unwrap(), checks)
    }

    #[test]
    fn each_problem_is_caught_only_when_its_check_is_on() {
        assert_eq!(c("192.0.2.7", ALL), Some(HeloProblem::BareIp));
        assert_eq!(c("2001:db8::1", ALL), Some(HeloProblem::BareIp));
        assert_eq!(c("MX.Example.Test", ALL), Some(HeloProblem::OurName));
        assert_eq!(c("mx.example.test.", ALL), Some(HeloProblem::OurName));
        assert_eq!(c("[127.0.0.1]", ALL), Some(HeloProblem::OurAddress));
        assert_eq!(c("192.0.2.7", HeloChecks::default()), None);
        assert_eq!(c("mx.example.test", HeloChecks { our_name: false, ..ALL }), None);
        assert_eq!(c("[127.0.0.1]", HeloChecks { our_address: false, ..ALL }), None);
    }

    #[test]
    fn ordinary_names_and_other_literals_pass() {
        assert_eq!(c("client.example.org", ALL), None);
        assert_eq!(c("[192.0.2.7]", ALL), None);
        assert_eq!(c("[IPv6:::1]", ALL), None);
        assert_eq!(classify("[IPv6:::1]", "h", "::1".parse().unwrap(), ALL), Some(HeloProblem::OurAddress));
        assert_eq!(
            classify("[127.0.0.1]", "h", "::ffff:127.0.0.1".parse().unwrap(), ALL),
            Some(HeloProblem::OurAddress)
        );
    }
}
