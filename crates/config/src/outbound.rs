//! Validation of `[outbound]`: how dakiya talks to other mail servers, with its smart host
//! (`[outbound.relay_host]`) and static routes (`[outbound.routes]`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::locate::path as key_path;
use crate::names::{is_valid_domain, normalize_domain};
use crate::raw::{RawOutbound, RawRelayHost, RawRoute, SStr};
use crate::value::{count, duration, duration_or_zero, path, written};
use crate::{Domain, HostPort, IpPreference, Outbound, OutboundTls, RelayHost, Route};

/// The DNS port, for name servers given without one.
const DNS_PORT: u16 = 53;

/// How a host may be written, for error messages.
const HOST_HINT: &str = "expected a host name or IP address and an optional port, such as \
                         \"mx.example.org\", \"mx.example.org:2525\", \"192.0.2.1:25\" or \"[2001:db8::1]:25\"";

/// `[outbound]`. `tls` is read first: routes and the relay host default to it.
pub(crate) fn outbound(
    cx: &Ctx,
    raw: RawOutbound,
    hostname: &str,
    domains: &BTreeMap<String, Domain>,
) -> Result<Outbound, ConfigError> {
    let d = Outbound::defaults(hostname);
    let key = |k: &str| format!("outbound.{k}");
    let tls = match &raw.tls {
        None => d.tls,
        Some(value) => tls_mode(cx, &key("tls"), value)?,
    };
    let helo_name = match raw.helo_name {
        None => d.helo_name,
        Some(value) => helo(value.get_ref()).map_err(|m| cx.err(key("helo_name"), Some(value.span()), m))?,
    };
    let smtp_port = match raw.smtp_port {
        None => d.smtp_port,
        Some(value) => u16::try_from(*value.get_ref()).ok().filter(|&p| p != 0).ok_or_else(|| {
            cx.err(
                key("smtp_port"),
                Some(value.span()),
                format!("must be a port from 1 to 65535, not {}", value.get_ref()),
            )
        })?,
    };
    let idle_timeout = match raw.idle_timeout {
        None => d.idle_timeout,
        Some(value) => duration_or_zero(cx, &key("idle_timeout"), value, "")?,
    };
    let mta_sts_port = match raw.mta_sts_port {
        None => d.mta_sts_port,
        Some(value) => u16::try_from(*value.get_ref()).ok().filter(|&p| p != 0).ok_or_else(|| {
            cx.err(
                key("mta_sts_port"),
                Some(value.span()),
                format!("must be a port from 1 to 65535, not {}", value.get_ref()),
            )
        })?,
    };
    let tls_report_interval = match raw.tls_report_interval {
        None => d.tls_report_interval,
        Some(value) => duration_or_zero(cx, &key("tls_report_interval"), value, "")?,
    };
    Ok(Outbound {
        mta_sts_port,
        tls_report_interval,
        helo_name,
        nameservers: nameservers(cx, raw.nameservers)?,
        smtp_port,
        tls,
        tls_ca_file: raw.tls_ca_file.map(|file| path(cx, &key("tls_ca_file"), &file)).transpose()?,
        dnssec_trust_anchor: raw
            .dnssec_trust_anchor
            .map(|file| path(cx, &key("dnssec_trust_anchor"), &file))
            .transpose()?,
        ip_preference: match &raw.ip_preference {
            None => d.ip_preference,
            Some(value) => ip_preference(cx, &key("ip_preference"), value)?,
        },
        concurrency: count(cx, &key("concurrency"), raw.concurrency, d.concurrency)?,
        per_destination: count(cx, &key("per_destination"), raw.per_destination, d.per_destination)?,
        connect_timeout: duration(cx, &key("connect_timeout"), raw.connect_timeout, d.connect_timeout)?,
        idle_timeout,
        relay_host: raw.relay_host.map(|r| relay_host(cx, r, tls)).transpose()?,
        routes: routes(cx, raw.routes, tls, domains)?,
    })
}

/// `tls`: one of the four [`OutboundTls`] names.
fn tls_mode(cx: &Ctx, key: &str, value: &SStr) -> Result<OutboundTls, ConfigError> {
    value.get_ref().parse().map_err(|_| {
        cx.err(
            key,
            Some(value.span()),
            format!(
                "unknown TLS mode {:?} (expected \"none\", \"opportunistic\", \"require\", \"verify\", \"mta-sts\" or \"dane\")",
                value.get_ref()
            ),
        )
    })
}

/// The mode a route or the relay host gets from `outbound.tls` when it names none: the
/// same, except `mta-sts` and `dane`, which are about a domain's MX hosts (RFC 8461 §4.1,
/// RFC 7672 §2.2.1): `mta-sts` would refuse every configured host under an enforced
/// policy, and `dane` on a route requires DANE, which only an explicit `tls` may ask for.
fn inherited(default_tls: OutboundTls) -> OutboundTls {
    if matches!(default_tls, OutboundTls::MtaSts | OutboundTls::Dane) {
        OutboundTls::Opportunistic
    } else {
        default_tls
    }
}

fn ip_preference(cx: &Ctx, key: &str, value: &SStr) -> Result<IpPreference, ConfigError> {
    value.get_ref().parse().map_err(|_| {
        cx.err(
            key,
            Some(value.span()),
            format!(
                "unknown IP preference {:?} (expected \"ipv6_first\", \"ipv4_first\", \"ipv4_only\" or \"ipv6_only\")",
                value.get_ref()
            ),
        )
    })
}

/// `nameservers`: IP addresses with optional ports, each at most once.
fn nameservers(cx: &Ctx, raw: Vec<SStr>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let key = format!("outbound.nameservers[{i}]");
        let addr = nameserver(item.get_ref())
            .map_err(|m| cx.err(&key, Some(item.span()), format!("{}: {m}", written(cx, item.span()))))?;
        if let Some(j) = out.iter().position(|a| *a == addr) {
            return Err(cx.err(
                key,
                Some(item.span()),
                format!("name server {addr} is listed twice (already outbound.nameservers[{j}])"),
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

/// `[outbound.relay_host]`. Its TLS defaults to `require` with AUTH (a password never travels
/// in plain text unless the file says so), else to `[outbound]` `tls`.
fn relay_host(cx: &Ctx, raw: RawRelayHost, default_tls: OutboundTls) -> Result<RelayHost, ConfigError> {
    let key = |k: &str| format!("outbound.relay_host.{k}");
    let host = host_port(raw.host.get_ref())
        .map_err(|m| cx.err(key("host"), Some(raw.host.span()), format!("{}: {m}", written(cx, raw.host.span()))))?;
    let (username, password_file) = match (raw.username, raw.password_file) {
        (None, None) => (None, None),
        (Some(user), Some(file)) => {
            (Some(username(cx, &key("username"), user)?), Some(path(cx, &key("password_file"), &file)?))
        }
        (Some(user), None) => {
            return Err(cx.err(
                key("username"),
                Some(user.span()),
                "given without outbound.relay_host.password_file: set both, or neither (no AUTH)",
            ));
        }
        (None, Some(file)) => {
            return Err(cx.err(
                key("password_file"),
                Some(file.span()),
                "given without outbound.relay_host.username: set both, or neither (no AUTH)",
            ));
        }
    };
    let tls = match &raw.tls {
        Some(value) => tls_mode(cx, &key("tls"), value)?,
        None if username.is_some() => OutboundTls::Require,
        None => inherited(default_tls),
    };
    let implicit_tls = match raw.implicit_tls {
        None => false,
        Some(value) if *value.get_ref() && tls == OutboundTls::None => {
            return Err(cx.err(
                key("implicit_tls"),
                Some(value.span()),
                "implicit TLS cannot go with tls = \"none\": set tls to \"require\" or \"verify\"",
            ));
        }
        Some(value) => *value.get_ref(),
    };
    Ok(RelayHost { host, tls, implicit_tls, username, password_file })
}

/// An AUTH user name: not empty, no control characters (SASL PLAIN separates its fields with
/// NUL, RFC 4616 §2).
fn username(cx: &Ctx, key: &str, value: SStr) -> Result<String, ConfigError> {
    let name = value.get_ref();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(cx.err(key, Some(value.span()), "must be a non-empty user name without control characters"));
    }
    Ok(value.into_inner())
}

/// `[outbound.routes]`: keyed by domain, each value a host, a list of hosts or a table.
fn routes(
    cx: &Ctx,
    raw: BTreeMap<SStr, Spanned<RawRoute>>,
    default_tls: OutboundTls,
    domains: &BTreeMap<String, Domain>,
) -> Result<BTreeMap<String, Route>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let key = key_path(&["outbound", "routes", name.get_ref()]);
        let domain = normalize_domain(name.get_ref());
        let refuse = |message: String| Err(cx.err(&key, Some(name.span()), message));
        if !is_valid_domain(&domain) {
            return refuse(format!("{:?} is not a valid domain name", name.get_ref()));
        }
        if domains.contains_key(&domain) {
            return refuse(format!(
                "{domain} is a local domain (in [domains]): its mail is delivered here, never routed"
            ));
        }
        if out.contains_key(&domain) {
            return refuse(format!("domain {domain} has two routes (names are case-insensitive)"));
        }
        let span = value.span();
        // Each host with its key and span.
        let (hosts, tls) = match value.into_inner() {
            RawRoute::One(host) => (vec![(key.clone(), span.clone(), host)], None),
            RawRoute::List(list) => (entries(&key, list), None),
            RawRoute::Table(table) => {
                let hosts_key = format!("{key}.hosts");
                let span = table.hosts.span();
                let tls = table.tls.map(|t| tls_mode(cx, &format!("{key}.tls"), &t)).transpose()?;
                let hosts = entries(&hosts_key, table.hosts.into_inner());
                if hosts.is_empty() {
                    return Err(cx.err(hosts_key, Some(span), "must list at least one host"));
                }
                (hosts, tls)
            }
        };
        if hosts.is_empty() {
            return Err(cx.err(key, Some(span), "must list at least one host"));
        }
        let route = Route { hosts: route_hosts(cx, hosts)?, tls: tls.unwrap_or_else(|| inherited(default_tls)) };
        out.insert(domain, route);
    }
    Ok(out)
}

/// The items of a list with their keys (`key[i]`) and spans.
fn entries(key: &str, list: Vec<SStr>) -> Vec<(String, Range<usize>, String)> {
    list.into_iter().enumerate().map(|(i, h)| (format!("{key}[{i}]"), h.span(), h.into_inner())).collect()
}

/// A route's hosts, each at most once.
fn route_hosts(cx: &Ctx, items: Vec<(String, Range<usize>, String)>) -> Result<Vec<HostPort>, ConfigError> {
    let mut out: Vec<HostPort> = Vec::with_capacity(items.len());
    for (key, span, text) in items {
        let host = host_port(&text).map_err(|m| cx.err(&key, Some(span.clone()), format!("{text:?}: {m}")))?;
        if out.contains(&host) {
            return Err(cx.err(key, Some(span), format!("host {host} is listed twice")));
        }
        out.push(host);
    }
    Ok(out)
}

/// A route or relay host: a host name (lowercased, no trailing dot) or an IP address (in its
/// canonical form), with an optional port.
fn host_port(text: &str) -> Result<HostPort, String> {
    let (host, bracketed, port) = split_host_port(text)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPort { host: ip.to_string(), port });
    }
    let name = normalize_domain(host);
    if bracketed || !is_valid_domain(&name) {
        return Err(HOST_HINT.to_owned());
    }
    Ok(HostPort { host: name, port })
}

/// A name server: an IP address, with port 53 unless another is given.
fn nameserver(text: &str) -> Result<SocketAddr, String> {
    let (host, _, port) = split_host_port(text)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        "expected an IP address and an optional port, such as \"192.0.2.53\", \"127.0.0.1:5353\", \"::1\" \
         or \"[::1]:5353\" (a name server cannot be given by name)"
            .to_owned()
    })?;
    Ok(SocketAddr::new(ip, port.unwrap_or(DNS_PORT)))
}

/// Splits `host`, `host:port`, `[ip]`, `[ip]:port` or a bare IPv6 address into the host (without
/// brackets), whether it was bracketed, and the port. The host is not checked here.
fn split_host_port(text: &str) -> Result<(&str, bool, Option<u16>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| HOST_HINT.to_owned())?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or_else(|| HOST_HINT.to_owned())?)?),
        };
        return Ok((inner, true, port));
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, false, None));
    }
    match text.rsplit_once(':') {
        Some((host, p)) => Ok((host, false, Some(port(p)?))),
        None => Ok((text, false, None)),
    }
}

fn port(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed (ports are 1 to 65535)".to_owned()),
        Ok(p) if digits => Ok(p),
        _ => Err(format!("{text:?} is not a port (1 to 65535)")),
    }
}

/// `helo_name`: a domain, or an address literal (RFC 5321 §4.1.3) `[192.0.2.1]` or
/// `[IPv6:2001:db8::1]`, normalized.
fn helo(text: &str) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if let Some(v6) = inner.get(..5).filter(|tag| tag.eq_ignore_ascii_case("IPv6:")).map(|_| &inner[5..]) {
            let ip: Ipv6Addr = v6.parse().map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
            return Ok(format!("[IPv6:{ip}]"));
        }
        if inner.parse::<Ipv6Addr>().is_ok() {
            return Err(format!("an IPv6 address literal is written [IPv6:{inner}] (RFC 5321 §4.1.3)"));
        }
        let ip: Ipv4Addr = inner.parse().map_err(|_| format!("{text:?} is not an address literal"))?;
        return Ok(format!("[{ip}]"));
    }
    let name = normalize_domain(text);
    if !is_valid_domain(&name) {
        return Err(format!(
            "{text:?} is neither a valid domain name nor an address literal such as \"[192.0.2.1]\" \
             or \"[IPv6:2001:db8::1]\""
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        let hp = |s: &str| host_port(s).map(|h| (h.host, h.port)).unwrap_or_else(|e| panic!("{s}: {e}"));
        let some = |h: &str, p| (h.to_owned(), p);
        assert_eq!(hp("Relay.Example.TEST."), some("relay.example.test", None));
        assert_eq!(hp("relay.example.test:587"), some("relay.example.test", Some(587)));
        assert_eq!(hp("localhost"), some("localhost", None));
        assert_eq!(hp("127.0.0.1"), some("127.0.0.1", None));
        assert_eq!(hp("127.0.0.1:2525"), some("127.0.0.1", Some(2525)));
        assert_eq!(hp("[127.0.0.1]:25"), some("127.0.0.1", Some(25)));
        assert_eq!(hp("[::1]"), some("::1", None));
        assert_eq!(hp("[::1]:2525"), some("::1", Some(2525)));
        assert_eq!(hp("2001:DB8:0::1"), some("2001:db8::1", None));
        assert_eq!(hp("relay:65535"), some("relay", Some(65535)));
        for bad in [
            "",
            ":25",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "host:+25",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[name]",
            "[name]:25",
            "a b",
            "a:b:c",
            "mx_1.example",
            "999.1.1.1",
            "[::1]:0",
            "fe80::1%eth0",
        ] {
            assert!(host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_ports_display_and_read_back() {
        for text in ["relay.example.test", "relay.example.test:587", "127.0.0.1:25", "[::1]:2525", "[2001:db8::1]"] {
            let hp = host_port(text).unwrap();
            assert_eq!(hp.to_string(), text);
            assert_eq!(host_port(&hp.to_string()), Ok(hp));
        }
    }

    #[test]
    fn nameservers() {
        let ns = |s: &str| nameserver(s).unwrap().to_string();
        assert_eq!(ns("192.0.2.53"), "192.0.2.53:53");
        assert_eq!(ns("127.0.0.1:5353"), "127.0.0.1:5353");
        assert_eq!(ns("::1"), "[::1]:53");
        assert_eq!(ns("[::1]"), "[::1]:53");
        assert_eq!(ns("[::1]:5353"), "[::1]:5353");
        for bad in ["", "ns.example.org", "ns.example.org:53", "127.0.0.1:0", "127.0.0.1:x", "[::1]:99999"] {
            assert!(nameserver(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn helo_names() {
        assert_eq!(helo("Mail.Example.ORG.").as_deref(), Ok("mail.example.org"));
        assert_eq!(helo("[192.0.2.1]").as_deref(), Ok("[192.0.2.1]"));
        assert_eq!(helo("[ipv6:2001:DB8::1]").as_deref(), Ok("[IPv6:2001:db8::1]"));
        for bad in ["", "[]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[192.0.2.256]", "192.0.2.1", "mail_1.example"] {
            assert!(helo(bad).is_err(), "{bad:?}");
        }
        assert!(helo("[2001:db8::1]").unwrap_err().contains("[IPv6:2001:db8::1]"));
    }
}
