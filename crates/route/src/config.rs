//! What the router is told: name servers, static routes, a relay host, limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use dakiya_proto::next_hop::{HostPort, IpPreference};

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

/// An address family, for the lookup order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// The families to look up for `pref`, in the order their addresses are tried.
pub(crate) fn families(pref: IpPreference) -> &'static [Family] {
    match pref {
        IpPreference::Ipv6First => &[Family::V6, Family::V4],
        IpPreference::Ipv4First => &[Family::V4, Family::V6],
        IpPreference::Ipv4Only => &[Family::V4],
        IpPreference::Ipv6Only => &[Family::V6],
    }
}
