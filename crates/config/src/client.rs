//! `[client]`, `[mta_sts]` and `[dns]`: what clients are told about this server (autoconfig,
//! Autodiscover, Apple profiles, SRV records), the MTA-STS policy (RFC 8461) and the choices
//! in the DNS records `dakiya dns` prints (docs/clients.md, docs/dns.md).

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{ConfigError, Ctx};
use crate::names::{is_valid_domain, normalize_domain, parse_address};
use crate::raw::{RawClient, RawDns, RawMtaSts, SStr};
use crate::value::{duration, written};

/// `[client]`: the public face of the server. Ports come from the listeners (their port as
/// bound is the one clients use); the name clients connect to comes from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The name clients connect to and MX/SRV records point at (`host`); default the
    /// `hostname`.
    pub host: String,
    /// Where an IMAP server (Dovecot, reading the same Maildirs) runs (`imap_host`); default
    /// `host`. dakiya has no IMAP of its own.
    pub imap_host: String,
    /// The IMAP port with STARTTLS (`imap_port`, usually 143); `None`: not announced.
    pub imap_port: Option<u16>,
    /// The IMAP port over implicit TLS (`imaps_port`, usually 993); `None`: not announced.
    pub imaps_port: Option<u16>,
    /// The server's public addresses (`addresses`): SPF `ip4:`/`ip6:` terms and A/AAAA records
    /// of the helper names. Default none (SPF says `mx`, the helper names are CNAMEs).
    pub addresses: Vec<IpAddr>,
}

/// `[mta_sts] mode` (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtaStsMode {
    /// Senders report failures but deliver anyway.
    Testing,
    /// Senders refuse to deliver without a valid certificate for a listed MX.
    Enforce,
    /// Senders treat the domain as having no policy (how a policy is withdrawn).
    None,
}

impl MtaStsMode {
    /// The policy-file spelling: `testing`, `enforce` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::None => "none",
        }
    }
}

/// `[mta_sts]`: the policy served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaSts {
    /// `mode`; default `testing`.
    pub mode: MtaStsMode,
    /// `max_age`; default 7 days, at most 31557600 seconds (RFC 8461 §3.2).
    pub max_age: Duration,
    /// `mx` patterns (a name or `*.example.org`); default the client `host`.
    pub mx: Vec<String>,
}

/// `[dns] dmarc_policy`: the `p=` of the DMARC record (RFC 7489 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `none`: monitor only.
    None,
    /// `quarantine`.
    Quarantine,
    /// `reject`.
    Reject,
}

impl DmarcPolicy {
    /// The record spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// `[dns]`: choices in the records `dakiya dns` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// `dmarc_policy`; default `none` (start by watching the reports).
    pub dmarc_policy: DmarcPolicy,
    /// `report_address`: where DMARC aggregate and TLS-RPT reports go; `None`:
    /// `postmaster@DOMAIN` of each domain.
    pub report_address: Option<String>,
}

/// The longest `max_age` RFC 8461 §3.2 allows (about one year).
pub const MAX_MTA_STS_AGE: u64 = 31_557_600;

pub(crate) fn client(cx: &Ctx, raw: RawClient, hostname: &str) -> Result<Client, ConfigError> {
    let host = match raw.host {
        Some(h) => name(cx, "client.host", &h)?,
        None => hostname.to_owned(),
    };
    let imap_host = match raw.imap_host {
        Some(h) => name(cx, "client.imap_host", &h)?,
        None => host.clone(),
    };
    let mut addresses = Vec::new();
    for (i, a) in raw.addresses.iter().enumerate() {
        let ip = a.get_ref().trim().parse::<IpAddr>().map_err(|_| {
            cx.err(format!("client.addresses[{i}]"), Some(a.span()), "expected an IPv4 or IPv6 address")
        })?;
        addresses.push(ip.to_canonical());
    }
    Ok(Client {
        host,
        imap_host,
        imap_port: port(cx, "client.imap_port", raw.imap_port)?,
        imaps_port: port(cx, "client.imaps_port", raw.imaps_port)?,
        addresses,
    })
}

pub(crate) fn mta_sts(cx: &Ctx, raw: RawMtaSts, host: &str) -> Result<MtaSts, ConfigError> {
    let mode = match raw.mode {
        None => MtaStsMode::Testing,
        Some(m) => match m.get_ref().as_str() {
            "testing" => MtaStsMode::Testing,
            "enforce" => MtaStsMode::Enforce,
            "none" => MtaStsMode::None,
            _ => return Err(cx.err("mta_sts.mode", Some(m.span()), "expected \"testing\", \"enforce\" or \"none\"")),
        },
    };
    let span = raw.max_age.as_ref().map(|v| v.span());
    let max_age = duration(cx, "mta_sts.max_age", raw.max_age, Duration::from_secs(7 * 86_400))?;
    if max_age.as_secs() > MAX_MTA_STS_AGE {
        return Err(cx.err("mta_sts.max_age", span, "RFC 8461 allows at most 31557600 seconds (about a year)"));
    }
    let mx = match raw.mx {
        None => vec![host.to_owned()],
        Some(list) => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                let key = format!("mta_sts.mx[{i}]");
                let pattern = normalize_domain(m.get_ref().trim());
                let base = pattern.strip_prefix("*.").unwrap_or(&pattern);
                if !is_valid_domain(base) {
                    return Err(cx.err(key, Some(m.span()), "expected a host name or *.domain"));
                }
                out.push(pattern);
            }
            if out.is_empty() {
                return Err(cx.err("mta_sts.mx", None, "must name at least one MX host"));
            }
            out
        }
    };
    Ok(MtaSts { mode, max_age, mx })
}

pub(crate) fn dns(cx: &Ctx, raw: RawDns) -> Result<Dns, ConfigError> {
    let dmarc_policy = match raw.dmarc_policy {
        None => DmarcPolicy::None,
        Some(p) => match p.get_ref().as_str() {
            "none" => DmarcPolicy::None,
            "quarantine" => DmarcPolicy::Quarantine,
            "reject" => DmarcPolicy::Reject,
            _ => {
                return Err(cx.err(
                    "dns.dmarc_policy",
                    Some(p.span()),
                    "expected \"none\", \"quarantine\" or \"reject\"",
                ));
            }
        },
    };
    let report_address = match raw.report_address {
        None => None,
        Some(a) => {
            let (local, domain) = parse_address(a.get_ref().trim())
                .filter(|(l, _)| l.is_ascii())
                .ok_or_else(|| cx.err("dns.report_address", Some(a.span()), "expected an ASCII address"))?;
            Some(format!("{local}@{domain}"))
        }
    };
    Ok(Dns { dmarc_policy, report_address })
}

fn name(cx: &Ctx, key: &str, value: &SStr) -> Result<String, ConfigError> {
    let n = normalize_domain(value.get_ref().trim());
    if !is_valid_domain(&n) {
        let shown = written(cx, value.span());
        return Err(cx.err(key, Some(value.span()), format!("{shown} is not a valid host name")));
    }
    Ok(n)
}

fn port(cx: &Ctx, key: &str, value: Option<toml::Spanned<i64>>) -> Result<Option<u16>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    match u16::try_from(*v.get_ref()) {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(cx.err(key, Some(v.span()), "expected a port from 1 to 65535")),
    }
}
