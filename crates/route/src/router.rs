//! The router: a domain in, an ordered list of next hops out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use tracing::{debug, warn};

use crate::domain::{Destination, ascii_of};
use crate::lookup::{self, Failure, worse};
use crate::{HostPort, IpPreference, RouteConfig, RouteError, order};

/// One place to try: connect to `addr`, expecting to talk to `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The host the address belongs to, lower case, A-labels, no trailing dot: the MX
    /// exchange, the domain itself (implicit MX), the route's host, or the textual IP
    /// address (address literal, IP route, MX naming an IP). For TLS SNI and certificate
    /// checks, and the `Remote-MTA` of a DSN.
    pub host: String,
    /// The address and port to connect to.
    pub addr: SocketAddr,
    /// The MX preference (0 for an implicit MX or address literal; the position in the list
    /// for a static route).
    pub preference: u16,
}

/// Where a configured route points, checked and normalized once.
#[derive(Debug, Clone)]
enum Target {
    Ip(IpAddr, u16),
    Name(Name, u16),
}

/// Finds the next hops for a recipient domain (RFC 5321 §5.1, RFC 7505). Cheap to clone:
/// clones share the resolver and its cache.
#[derive(Debug, Clone)]
pub struct Router {
    resolver: TokioResolver,
    static_routes: BTreeMap<String, Vec<Target>>,
    relay_host: Option<Target>,
    smtp_port: u16,
    max_hops: usize,
    ip_preference: IpPreference,
}

impl Router {
    /// Checks the configuration and builds the resolver.
    ///
    /// With no `nameservers`, reads the system resolver configuration (the resolver's own
    /// options from it are replaced by `dns_timeout` and `dns_attempts`). The hosts file is
    /// never consulted: mail routing is DNS only, as in Postfix's default.
    pub fn new(cfg: RouteConfig) -> Result<Router, RouteError> {
        let config = |msg: String| Err(RouteError::Config(msg));
        if cfg.smtp_port == 0 {
            return config("smtp_port must not be 0".into());
        }
        if cfg.max_hops == 0 {
            return config("max_hops must be at least 1".into());
        }
        if cfg.dns_attempts == 0 || cfg.dns_timeout.is_zero() {
            return config("dns_attempts and dns_timeout must be above zero".into());
        }
        let mut static_routes = BTreeMap::new();
        for (domain, hosts) in &cfg.static_routes {
            let key = Destination::parse(domain)
                .map_err(|_| RouteError::Config(format!("static route for {domain:?}: not a domain")))?
                .route_key();
            if hosts.is_empty() {
                return config(format!("static route for {domain:?} has no hosts"));
            }
            let targets = hosts.iter().map(|h| target(h, cfg.smtp_port)).collect::<Result<Vec<_>, _>>()?;
            if static_routes.insert(key, targets).is_some() {
                return config(format!("static route for {domain:?} given twice"));
            }
        }
        let relay_host = cfg.relay_host.as_ref().map(|h| target(h, cfg.smtp_port)).transpose()?;
        Ok(Router {
            resolver: build_resolver(&cfg)?,
            static_routes,
            relay_host,
            smtp_port: cfg.smtp_port,
            max_hops: cfg.max_hops,
            ip_preference: cfg.ip_preference,
        })
    }

    /// The next hops for `domain`, best first, at most `max_hops` of them.
    ///
    /// In order: a static route for the domain; else the relay host; else an address
    /// literal's own address; else the MX hosts by preference (shuffled among equals), each
    /// with its addresses; else (no MX) the domain's own addresses. Addresses that cannot be
    /// a mail server (unspecified, multicast, broadcast) and duplicates are left out.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<NextHop>, RouteError> {
        let dest = Destination::parse(domain)?;
        let hops = if let Some(targets) = self.static_routes.get(&dest.route_key()) {
            self.via_targets(targets).await?
        } else if let Some(relay) = &self.relay_host {
            self.via_targets(std::slice::from_ref(relay)).await?
        } else {
            match &dest {
                Destination::Literal(ip) => {
                    let mut hops = Hops::new(self.max_hops);
                    hops.push(&ip.to_string(), *ip, self.smtp_port, 0);
                    hops.into_result(None, "")?
                }
                Destination::Domain(name) => self.via_mx(name).await?,
            }
        };
        debug!(domain, hops = ?hops, "routed");
        Ok(hops)
    }

    /// The TXT records at `label.domain` (e.g. `_mta-sts` and `example.org`, RFC 8461
    /// §3.1), each record's strings joined. NXDOMAIN and NODATA give an empty list, as does
    /// an address literal; DNS trouble is a [`RouteError::Temporary`].
    pub async fn txt(&self, label: &str, domain: &str) -> Result<Vec<String>, RouteError> {
        let Destination::Domain(name) = Destination::parse(domain)? else {
            return Ok(Vec::new());
        };
        let name = Name::from_ascii(format!("{label}.{}", ascii_of(&name)))
            .map_err(|_| RouteError::InvalidDomain(format!("{label}.{domain}")))?;
        lookup::txt(&self.resolver, &name).await.map_err(|f| RouteError::Temporary(format!("TXT lookup: {f}")))
    }

    /// The addresses of a host name (e.g. `mta-sts.example.org`, RFC 8461 §3.3), in the
    /// configured families and order. No address is [`RouteError::NoAddresses`].
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RouteError> {
        let Destination::Domain(name) = Destination::parse(host)? else {
            return Err(RouteError::InvalidDomain(host.to_owned()));
        };
        lookup::addresses(&self.resolver, &name, self.ip_preference).await.map_err(|f| match f {
            Failure::Temporary(msg) => RouteError::Temporary(format!("addresses of {host}: {msg}")),
            Failure::NxDomain => RouteError::NoSuchDomain,
            Failure::NoData => RouteError::NoAddresses,
        })
    }

    /// A configured route: each target in order, names resolved to addresses. Any failure
    /// here is temporary: the route is the operator's, and a fix should not cost the mail.
    async fn via_targets(&self, targets: &[Target]) -> Result<Vec<NextHop>, RouteError> {
        let mut hops = Hops::new(self.max_hops);
        let mut failures = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let preference = u16::try_from(i).unwrap_or(u16::MAX);
            match target {
                Target::Ip(ip, port) => hops.push(&ip.to_string(), *ip, *port, preference),
                Target::Name(name, port) => match lookup::addresses(&self.resolver, name, self.ip_preference).await {
                    Ok(ips) => ips.into_iter().for_each(|ip| hops.push(&ascii_of(name), ip, *port, preference)),
                    Err(failure) => failures.push(format!("{}: {failure}", ascii_of(name))),
                },
            }
            if hops.full() {
                break;
            }
        }
        if hops.list.is_empty() {
            return Err(RouteError::Temporary(format!(
                "no address for the configured route ({})",
                failures.join(", ")
            )));
        }
        Ok(hops.list)
    }

    /// MX lookup, null MX, implicit MX (RFC 5321 §5.1, RFC 7505).
    async fn via_mx(&self, name: &Name) -> Result<Vec<NextHop>, RouteError> {
        let domain = ascii_of(name);
        let records = lookup::mx(&self.resolver, name).await.map_err(|failure| match failure {
            Failure::NxDomain => RouteError::NoSuchDomain,
            Failure::Temporary(msg) => RouteError::Temporary(format!("MX lookup for {domain}: {msg}")),
            // lookup::mx turns NODATA into an empty list; this arm is never taken.
            Failure::NoData => RouteError::NoAddresses,
        })?;
        if records.is_empty() {
            return self.implicit_mx(name).await;
        }
        // RFC 7505 §3: a null MX is a single record with exchange "."; a "." host can never
        // be reached, so a set of nothing but "." means the same. Mixed with real hosts (a
        // misconfiguration §3 forbids), the "." records are skipped and the rest used.
        if records.iter().all(|(_, exchange)| exchange.is_root()) {
            return Err(RouteError::NullMx);
        }
        if records.iter().any(|(_, exchange)| exchange.is_root()) {
            warn!(domain, "null MX mixed with other MX records; ignoring the null MX");
        }
        let records: Vec<_> = records.into_iter().filter(|(_, exchange)| !exchange.is_root()).collect();
        let ordered = order::by_preference(records, &mut rand::rng());

        let mut hops = Hops::new(self.max_hops);
        let mut failure = None;
        // At most max_hops hosts are looked up: each usable one yields at least one hop.
        for (preference, exchange) in ordered.into_iter().take(self.max_hops) {
            let host = ascii_of(&exchange);
            // RFC 5321 §5.1 wants a name here; an MX naming an IPv4 address is a common
            // mistake, and looking it up as a name would only fail. Tolerated: the address
            // is used as written.
            if let Ok(ip) = host.parse::<Ipv4Addr>() {
                warn!(domain, exchange = host, "MX names an IP address; using it as is");
                hops.push(&host, IpAddr::V4(ip), self.smtp_port, preference);
            } else {
                // An exchange that is a CNAME (RFC 2181 §10.3 forbids it) is followed by the
                // resolver like any alias; `host` stays the name the MX record gave.
                match lookup::addresses(&self.resolver, &exchange, self.ip_preference).await {
                    Ok(ips) => ips.into_iter().for_each(|ip| hops.push(&host, ip, self.smtp_port, preference)),
                    Err(f) => {
                        debug!(domain, exchange = host, failure = ?f, "MX host has no address");
                        failure = worse(failure, f);
                    }
                }
            }
            if hops.full() {
                break;
            }
        }
        hops.into_result(failure, &format!("addresses of the MX hosts of {domain}"))
    }

    /// No MX records: the domain itself is the mail host, with preference 0 (RFC 5321 §5.1).
    async fn implicit_mx(&self, name: &Name) -> Result<Vec<NextHop>, RouteError> {
        let host = ascii_of(name);
        let mut hops = Hops::new(self.max_hops);
        let failure = match lookup::addresses(&self.resolver, name, self.ip_preference).await {
            Ok(ips) => {
                ips.into_iter().for_each(|ip| hops.push(&host, ip, self.smtp_port, 0));
                None
            }
            Err(f) => Some(f),
        };
        hops.into_result(failure, &format!("addresses of {host} (no MX)"))
    }
}

/// The growing answer: no duplicate addresses, no unusable ones, at most `cap`.
struct Hops {
    list: Vec<NextHop>,
    cap: usize,
}

impl Hops {
    fn new(cap: usize) -> Hops {
        Hops { list: Vec::new(), cap }
    }

    fn full(&self) -> bool {
        self.list.len() >= self.cap
    }

    fn push(&mut self, host: &str, ip: IpAddr, port: u16, preference: u16) {
        let addr = SocketAddr::new(ip, port);
        if !usable(ip) {
            // 0.0.0.0 in particular would connect to this very machine.
            warn!(host, %ip, "skipping an address that cannot be a mail server");
        } else if !self.full() && !self.list.iter().any(|hop| hop.addr == addr) {
            self.list.push(NextHop { host: host.to_string(), addr, preference });
        }
    }

    /// The hops, or why there are none: temporary if a lookup (`what`) failed for a reason
    /// that may pass, else no usable address (RFC 5321 §5.1: "MUST be reported as an error").
    fn into_result(self, failure: Option<Failure>, what: &str) -> Result<Vec<NextHop>, RouteError> {
        if !self.list.is_empty() {
            return Ok(self.list);
        }
        match failure {
            Some(Failure::Temporary(msg)) => Err(RouteError::Temporary(format!("{what}: {msg}"))),
            _ => Err(RouteError::NoAddresses),
        }
    }
}

/// Whether an address can be a remote mail server at all.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// A configured host checked once: an address that can be a server, or a valid name.
fn target(hp: &HostPort, smtp_port: u16) -> Result<Target, RouteError> {
    let port = hp.port.unwrap_or(smtp_port);
    if port == 0 {
        return Err(RouteError::Config(format!("route host {hp}: port 0")));
    }
    if let Some(ip) = hp.ip() {
        if !usable(ip) {
            return Err(RouteError::Config(format!("route host {hp}: not a usable address")));
        }
        return Ok(Target::Ip(ip, port));
    }
    match Destination::parse(&hp.host) {
        Ok(Destination::Domain(name)) => Ok(Target::Name(name, port)),
        _ => Err(RouteError::Config(format!("route host {hp}: not a host name or IP address"))),
    }
}

/// The resolver: the given name servers over UDP, and TCP for truncated answers; or the
/// system's. The hosts file is never read, names are always fully qualified.
fn build_resolver(cfg: &RouteConfig) -> Result<TokioResolver, RouteError> {
    Ok(resolver_builder(cfg)?.build())
}

/// The builder of [`build_resolver`], for the validating resolver to add to.
pub(crate) fn resolver_builder(
    cfg: &RouteConfig,
) -> Result<hickory_resolver::ResolverBuilder<TokioConnectionProvider>, RouteError> {
    let mut builder = if cfg.nameservers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| RouteError::Config(format!("reading the system resolver configuration: {e}")))?
    } else {
        let mut config = ResolverConfig::new();
        for &addr in &cfg.nameservers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let opts = builder.options_mut();
    opts.timeout = cfg.dns_timeout;
    opts.attempts = cfg.dns_attempts;
    opts.use_hosts_file = ResolveHosts::Never;
    Ok(builder)
}
