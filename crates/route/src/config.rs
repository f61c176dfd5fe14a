//! What the router is told: name servers, static routes, a relay host, limits.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::RouteError;

/// The SMTP port (RFC 5321 §4.5.4.2 / IANA), used when a route names no port.
pub const SMTP_PORT: u16 = 25;
/// How many addresses [`Router::resolve`](crate::Router::resolve) returns at most by default.
pub const DEFAULT_MAX_HOPS: usize = 10;

/// How the router finds next hops. Build it with `..RouteConfig::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The recursive name servers to ask. Empty means the system's (`/etc/resolv.conf`).
    /// Each is asked over UDP, and over TCP when an answer is truncated.
    pub nameservers: Vec<SocketAddr>,
    /// Fixed next hops for some domains, tried in the order given, without MX lookup.
    /// Keys are domains (UTF-8 or ASCII, any case); they win over `relay_host`.
    pub static_routes: BTreeMap<String, Vec<HostPort>>,
    /// A smart host that takes all mail without a static route, instead of MX lookup.
    pub relay_host: Option<HostPort>,
    /// The port for MX hosts, address literals, and routes that name no port.
    pub smtp_port: u16,
    /// The most addresses one resolution returns (and MX hosts it looks up): a bound on
    /// the time one delivery attempt can spend (RFC 5321 §5.1 suggests a configurable limit).
    pub max_hops: usize,
    /// Which address families to use, and which first.
    pub ip_preference: IpPreference,
    /// How long to wait for one DNS answer.
    pub dns_timeout: Duration,
    /// How many times to ask before a query counts as a temporary failure.
    pub dns_attempts: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            nameservers: Vec::new(),
            static_routes: BTreeMap::new(),
            relay_host: None,
            smtp_port: SMTP_PORT,
            max_hops: DEFAULT_MAX_HOPS,
            ip_preference: IpPreference::default(),
            dns_timeout: Duration::from_secs(5),
            dns_attempts: 2,
        }
    }
}

/// Which addresses of a host become next hops, in what order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpPreference {
    /// AAAA addresses, then A addresses, for each host.
    #[default]
    Ipv6First,
    /// A addresses, then AAAA addresses, for each host.
    Ipv4First,
    /// A addresses only (for hosts without IPv6 connectivity).
    Ipv4Only,
    /// AAAA addresses only.
    Ipv6Only,
}

/// An address family, for the lookup order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl IpPreference {
    /// The families to look up, in the order their addresses are tried.
    pub(crate) fn families(self) -> &'static [Family] {
        match self {
            IpPreference::Ipv6First => &[Family::V6, Family::V4],
            IpPreference::Ipv4First => &[Family::V4, Family::V6],
            IpPreference::Ipv4Only => &[Family::V4],
            IpPreference::Ipv6Only => &[Family::V6],
        }
    }
}

/// A route target: a host name or IP address, and maybe a port.
///
/// Parses from `host`, `host:port`, `192.0.2.1`, `192.0.2.1:587`, `[2001:db8::1]`,
/// `[2001:db8::1]:587` or a bare `2001:db8::1`. A host name is resolved to its A/AAAA
/// addresses only, never through MX (like Postfix's `[host]`): a route names a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port; `None` means [`RouteConfig::smtp_port`].
    pub port: Option<u16>,
}

impl HostPort {
    /// A target from its parts.
    pub fn new(host: impl Into<String>, port: Option<u16>) -> HostPort {
        HostPort { host: host.into(), port }
    }

    /// The address, when the host is an IP address rather than a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> HostPort {
        HostPort { host: addr.ip().to_string(), port: Some(addr.port()) }
    }
}

impl FromStr for HostPort {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<HostPort, RouteError> {
        let bad = || RouteError::Config(format!("invalid host[:port] {s:?}"));
        let parse_port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                _ => Some(parse_port(after.strip_prefix(':').ok_or_else(bad)?)?),
            };
            inner.parse::<IpAddr>().map_err(|_| bad())?;
            return Ok(HostPort::new(inner, port));
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            return Ok(HostPort::new(s, None));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (s, None),
        };
        if host.is_empty() || host.contains([':', '[', ']']) || host.chars().any(|c| c.is_whitespace()) {
            return Err(bad());
        }
        Ok(HostPort::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(port)) => write!(f, "{}:{port}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    #[test]
    fn host_port_forms() {
        let cases = [
            ("relay.example.test", "relay.example.test", None),
            ("relay.example.test:587", "relay.example.test", Some(587)),
            ("127.0.0.1", "127.0.0.1", None),
            ("127.0.0.1:2525", "127.0.0.1", Some(2525)),
            ("[::1]", "::1", None),
            ("[::1]:2525", "::1", Some(2525)),
            ("[127.0.0.1]:25", "127.0.0.1", Some(25)),
            ("::1", "::1", None),
        ];
        for (input, host, port) in cases {
            let hp: HostPort = input.parse().unwrap();
            assert_eq!(hp, HostPort::new(host, port), "{input}");
            let again: HostPort = hp.to_string().parse().unwrap();
            assert_eq!(again, hp, "{input} round trip");
        }
    }

    #[test]
    fn host_port_rejects() {
        for input in ["", ":25", "host:", "host:0", "host:65536", "host:x", "[::1", "[::1]x", "[name]", "a b", "a:b:c"]
        {
            assert!(input.parse::<HostPort>().is_err(), "{input:?}");
        }
    }

    #[test]
    fn from_socket_addr() {
        let hp = HostPort::from("[::1]:2525".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(hp.to_string(), "[::1]:2525");
        assert_eq!(hp.ip(), Some("::1".parse().unwrap()));
    }
}
