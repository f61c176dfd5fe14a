//! The vocabulary of next hops, shared by the configuration (`[outbound]`), the router and
//! the outbound SMTP client: a host with an optional port, the TLS mode towards it, and which
//! address families to use. Defined once here so that no crate converts one copy into another.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Text that is not a value of one of the types here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}")]
pub struct ParseError {
    /// What was expected: `host[:port]`, `TLS mode`, `IP preference`.
    pub what: &'static str,
    /// The text given.
    pub text: String,
}

impl ParseError {
    fn new(what: &'static str, text: &str) -> ParseError {
        ParseError { what, text: text.to_owned() }
    }
}

/// A next hop as configured: a host name or IP address, and maybe a port.
///
/// Parses from `host`, `host:port`, `192.0.2.1`, `192.0.2.1:587`, `[2001:db8::1]`,
/// `[2001:db8::1]:587` or a bare `2001:db8::1`. A host name is resolved to its A/AAAA
/// addresses only, never through MX (like Postfix's `[host]`): a route names a machine.
/// `FromStr` checks the form only; the configuration also checks and normalises the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port; `None` means the configured SMTP port.
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
    type Err = ParseError;

    fn from_str(s: &str) -> Result<HostPort, ParseError> {
        let bad = || ParseError::new("host[:port]", s);
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

/// As written in the configuration: `host`, `host:port`, `[2001:db8::1]:port`, `[2001:db8::1]`.
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

/// When and how to use TLS towards a next hop (RFC 3207 STARTTLS, RFC 8314 implicit TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Never use TLS (`"none"`).
    None,
    /// STARTTLS when offered, certificate not checked, clear text otherwise
    /// (`"opportunistic"`, RFC 7435).
    Opportunistic,
    /// TLS must be used; the certificate is not checked (`"require"`).
    Require,
    /// TLS must be used and the certificate must be valid for the next hop's host name
    /// (`"verify"`).
    Verify,
    /// The destination's MTA-STS policy (RFC 8461) when it publishes one: with
    /// `mode: enforce`, TLS with a certificate valid for a policy-listed MX host; else as
    /// [`TlsMode::Opportunistic`] (`"mta-sts"`). Applies to MX delivery; a relay host with
    /// this mode is treated as opportunistic.
    MtaSts,
    /// DANE (RFC 7672) where the next hop publishes DNSSEC-validated TLSA records, else as
    /// [`TlsMode::MtaSts`] (`"dane"`). On a static route, DANE is required: its hosts'
    /// TLSA records must validate, or the mail waits. A relay host with this mode is
    /// treated as opportunistic.
    Dane,
}

impl TlsMode {
    /// Every mode, in the order the configuration documents them.
    pub const ALL: [TlsMode; 6] =
        [TlsMode::None, TlsMode::Opportunistic, TlsMode::Require, TlsMode::Verify, TlsMode::MtaSts, TlsMode::Dane];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Opportunistic => "opportunistic",
            TlsMode::Require => "require",
            TlsMode::Verify => "verify",
            TlsMode::MtaSts => "mta-sts",
            TlsMode::Dane => "dane",
        }
    }
}

/// One of the names of [`TlsMode::as_str`], exactly (lowercase).
impl FromStr for TlsMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<TlsMode, ParseError> {
        TlsMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| ParseError::new("TLS mode", s))
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which addresses of a host become next hops, in what order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IpPreference {
    /// AAAA addresses, then A addresses, for each host (`"ipv6_first"`).
    #[default]
    Ipv6First,
    /// A addresses, then AAAA addresses, for each host (`"ipv4_first"`).
    Ipv4First,
    /// A addresses only, for hosts without IPv6 connectivity (`"ipv4_only"`).
    Ipv4Only,
    /// AAAA addresses only (`"ipv6_only"`).
    Ipv6Only,
}

impl IpPreference {
    /// Every preference, in the order the configuration documents them.
    pub const ALL: [IpPreference; 4] =
        [IpPreference::Ipv6First, IpPreference::Ipv4First, IpPreference::Ipv4Only, IpPreference::Ipv6Only];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            IpPreference::Ipv6First => "ipv6_first",
            IpPreference::Ipv4First => "ipv4_first",
            IpPreference::Ipv4Only => "ipv4_only",
            IpPreference::Ipv6Only => "ipv6_only",
        }
    }
}

/// One of the names of [`IpPreference::as_str`], exactly (lowercase).
impl FromStr for IpPreference {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<IpPreference, ParseError> {
        IpPreference::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| ParseError::new("IP preference", s))
    }
}

impl fmt::Display for IpPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(input.parse::<HostPort>(), Err(ParseError::new("host[:port]", input)), "{input:?}");
        }
        assert_eq!(":25".parse::<HostPort>().unwrap_err().to_string(), "invalid host[:port] \":25\"");
    }

    #[test]
    fn from_socket_addr() {
        let hp = HostPort::from("[::1]:2525".parse::<SocketAddr>().unwrap());
        assert_eq!(hp.to_string(), "[::1]:2525");
        assert_eq!(hp.ip(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn configuration_names_round_trip() {
        for mode in TlsMode::ALL {
            assert_eq!(mode.as_str().parse(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        for pref in IpPreference::ALL {
            assert_eq!(pref.as_str().parse(), Ok(pref));
            assert_eq!(pref.to_string(), pref.as_str());
        }
        assert_eq!(IpPreference::default(), IpPreference::Ipv6First);
        for bad in ["", "Verify", "tls", " none"] {
            assert_eq!(bad.parse::<TlsMode>(), Err(ParseError::new("TLS mode", bad)));
        }
        assert_eq!("IPV4_ONLY".parse::<IpPreference>(), Err(ParseError::new("IP preference", "IPV4_ONLY")));
    }
}
