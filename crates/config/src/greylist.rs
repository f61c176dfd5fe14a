//! `[greylist]` (RFC 6647 greylisting on `mx` listeners) and its validation.

use std::collections::BTreeSet;
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{ConfigError, Ctx};
use crate::names::{is_valid_domain, normalize_domain, parse_address};
use crate::raw::{RawGreylist, SStr};
use crate::value::{count, duration, written};

/// `[greylist]`: defer first-seen (client network, sender, recipient) triplets with a
/// temporary failure (RFC 6647). Off unless `enabled = true`; applies to `mx` listeners only
/// (a listener may opt out with `greylist = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greylist {
    /// Whether `mx` listeners greylist (`enabled`). Default false.
    pub enabled: bool,
    /// How long a first-seen triplet is deferred (`min_delay`). Default 1 minute.
    pub min_delay: Duration,
    /// How long after first being seen a retry still passes (`window`). Default 24 hours.
    pub window: Duration,
    /// Days a passed triplet (and an auto-allowed network) is remembered after its last use
    /// (`pass_days`). Default 35.
    pub pass_days: u32,
    /// A client network whose triplets passed this many times is no longer greylisted
    /// (`auto_allow_after`); 0 turns auto-allow off. Default 5.
    pub auto_allow_after: u32,
    /// The most triplets and networks remembered (`max_entries`). Default 100,000.
    pub max_entries: usize,
    /// Mail from or to these is never greylisted (`exempt`): lowercase domains, lowercase
    /// addresses, and client networks.
    pub exempt: Exempt,
}

/// What `[greylist] exempt` lists, sorted by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exempt {
    /// Sender or recipient domains (`"example.org"`).
    pub domains: BTreeSet<String>,
    /// Sender or recipient addresses (`"postmaster@example.org"`), lower-cased.
    pub addresses: BTreeSet<String>,
    /// Client networks (`"192.0.2.0/24"`, or a single address).
    pub networks: Vec<IpNet>,
}

impl Default for Greylist {
    fn default() -> Greylist {
        Greylist {
            enabled: false,
            min_delay: Duration::from_secs(60),
            window: Duration::from_secs(24 * 3600),
            pass_days: 35,
            auto_allow_after: 5,
            max_entries: 100_000,
            exempt: Exempt::default(),
        }
    }
}

impl Greylist {
    /// True if mail from `sender` to `recipient` (addresses, `""` for the null sender) or
    /// from a client at `ip` is exempt from greylisting.
    pub fn is_exempt(&self, ip: std::net::IpAddr, sender: &str, recipient: &str) -> bool {
        let ip = ip.to_canonical();
        if self.exempt.networks.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        [sender, recipient].iter().any(|a| self.exempt_address(a))
    }

    fn exempt_address(&self, address: &str) -> bool {
        let Some((local, domain)) = address.rsplit_once('@') else { return false };
        let domain = normalize_domain(domain);
        self.exempt.domains.contains(&domain)
            || self.exempt.addresses.contains(&format!("{}@{domain}", local.to_lowercase()))
    }

    /// The exempt list as written back in TOML (domains, addresses, networks).
    pub fn exempt_list(&self) -> Vec<String> {
        let e = &self.exempt;
        let nets = e.networks.iter().map(ToString::to_string);
        e.domains.iter().cloned().chain(e.addresses.iter().cloned()).chain(nets).collect()
    }
}

/// Validates `[greylist]`.
pub(crate) fn greylist(cx: &Ctx, raw: RawGreylist) -> Result<Greylist, ConfigError> {
    let d = Greylist::default();
    let min_delay = duration(cx, "greylist.min_delay", raw.min_delay, d.min_delay)?;
    let window_span = raw.window.as_ref().map(|w| w.span());
    let window = duration(cx, "greylist.window", raw.window, d.window)?;
    if window < min_delay {
        return Err(cx.err("greylist.window", window_span, "must be at least greylist.min_delay"));
    }
    let auto_allow_after = match raw.auto_allow_after {
        Some(v) if *v.get_ref() == 0 => 0,
        v => count(cx, "greylist.auto_allow_after", v, d.auto_allow_after)?,
    };
    Ok(Greylist {
        enabled: raw.enabled.unwrap_or(d.enabled),
        min_delay,
        window,
        pass_days: count(cx, "greylist.pass_days", raw.pass_days, d.pass_days)?,
        auto_allow_after,
        max_entries: count(cx, "greylist.max_entries", raw.max_entries, d.max_entries)?,
        exempt: exempt(cx, &raw.exempt)?,
    })
}

fn exempt(cx: &Ctx, raw: &[SStr]) -> Result<Exempt, ConfigError> {
    let mut out = Exempt::default();
    for (i, item) in raw.iter().enumerate() {
        let key = format!("greylist.exempt[{i}]");
        let text = item.get_ref().trim();
        let bad = |m: &str| cx.err(&key, Some(item.span()), format!("{}: {m}", written(cx, item.span())));
        if text.contains('@') {
            let (local, domain) = parse_address(text).ok_or_else(|| bad("not a valid address"))?;
            out.addresses.insert(format!("{}@{domain}", local.to_lowercase()));
        } else if text.contains('/') || text.parse::<std::net::IpAddr>().is_ok() {
            out.networks.push(crate::access::network(text).map_err(|m| bad(&m))?);
        } else {
            let domain = normalize_domain(text);
            if !is_valid_domain(&domain) {
                return Err(bad("expected a domain, an address or a network"));
            }
            out.domains.insert(domain);
        }
    }
    Ok(out)
}
