//! `[screen]`: connection screening on the listeners that opt in (docs/screening.md) — DNS
//! block and allow lists (RFC 5782) with weights and a threshold, forward-confirmed reverse
//! DNS, HELO checks and the refusal of unoffered pipelining.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::names::{is_valid_domain, normalize_domain};
use crate::raw::{RawScreen, RawZone, SStr};
use crate::value::{count, duration, written};

/// `[screen]`: what screening does on the listeners where `screen = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// `[[screen.zone]]`: the DNS lists asked, block lists with positive weights and allow
    /// lists with negative ones. May be empty (FCrDNS and HELO checks only).
    pub zones: Vec<Zone>,
    /// `threshold`: a client whose score (the weights of the zones listing it) reaches this
    /// is refused. Default 1.
    pub threshold: i32,
    /// `action`: when a client over the threshold is refused. Default `reject-at-connect`.
    pub action: ScreenAction,
    /// `timeout`: how long the DNS lookups of one client may take; a zone that has not
    /// answered by then counts as not listing it. Default 2 s.
    pub timeout: Duration,
    /// `cache_size`: DNS list answers remembered (by TTL). Default 10000.
    pub cache_size: usize,
    /// `fcrdns`: look up the client's forward-confirmed reverse DNS name and show it in
    /// `Received:`. Default true.
    pub fcrdns: bool,
    /// `require_fcrdns`: refuse RCPT with `450 4.7.25` (RFC 7372 §3.2) when the client has no
    /// forward-confirmed name. Default false.
    pub require_fcrdns: bool,
    /// `reject_pipelining`: refuse with `554 5.5.1` a client that pipelines commands where
    /// PIPELINING was not offered (RFC 2920 §3.1). Default true.
    pub reject_pipelining: bool,
    /// `helo_checks`: which HELO/EHLO names are refused at MAIL. Default none.
    pub helo: HeloChecks,
}

impl Screen {
    /// The default `threshold`.
    pub const DEFAULT_THRESHOLD: i32 = 1;
    /// The default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default `cache_size`.
    pub const DEFAULT_CACHE_SIZE: usize = 10_000;
}

/// When a listed client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScreenAction {
    /// Instead of the greeting: `554 5.7.1`, then close (RFC 5321 §3.1).
    #[default]
    RejectAtConnect,
    /// At every RCPT except to postmaster (RFC 5321 §4.5.1), so a listed sender can still
    /// ask to be delisted.
    RejectAtRcpt,
}

impl ScreenAction {
    /// The name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ScreenAction::RejectAtConnect => "reject-at-connect",
            ScreenAction::RejectAtRcpt => "reject-at-rcpt",
        }
    }
}

/// One DNS list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// `name`: the list's zone, lowercase, no trailing dot (e.g. `zen.spamhaus.org`).
    pub name: String,
    /// `weight`: added to the score when the zone lists the client; negative for an allow
    /// list. Never zero. Default 1.
    pub weight: i32,
    /// `codes`: the answers that mean "listed"; any other answer (such as 127.255.255.254,
    /// "query refused") does not count. Default 127.0.0.2–127.0.0.255.
    pub codes: Vec<CodeRange>,
}

/// An inclusive range of answers, in 127.0.0.0/8 (RFC 5782 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl CodeRange {
    /// Whether `answer` is in the range.
    pub fn contains(&self, answer: Ipv4Addr) -> bool {
        self.first <= answer && answer <= self.last
    }
}

impl fmt::Display for CodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

/// Which HELO names are refused (`helo_checks`), for clients neither authenticated nor
/// trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeloChecks {
    /// `"bare-ip"`: an IP address without the brackets of an address literal.
    pub bare_ip: bool,
    /// `"our-name"`: our own host name.
    pub our_name: bool,
    /// `"our-address"`: an address literal of the address the client connected to.
    pub our_address: bool,
}

impl HeloChecks {
    const NAMES: [&'static str; 3] = ["bare-ip", "our-name", "our-address"];

    /// The names of the checks that are on, in the file's spelling.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [self.bare_ip, self.our_name, self.our_address];
        Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect()
    }
}

pub(crate) fn screen(cx: &Ctx, raw: Option<RawScreen>) -> Result<Option<Screen>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut zones: Vec<Zone> = Vec::new();
    for (i, z) in raw.zone.into_iter().enumerate() {
        let span = z.name.span();
        let zone = zone(cx, i, z)?;
        if let Some(j) = zones.iter().position(|o| o.name == zone.name) {
            let message = format!("zone {} is listed twice (already screen.zone[{j}])", zone.name);
            return Err(cx.err(format!("screen.zone[{i}].name"), Some(span), message));
        }
        zones.push(zone);
    }
    let threshold = match raw.threshold {
        None => Screen::DEFAULT_THRESHOLD,
        Some(t) => small(cx, "screen.threshold", &t, 1)?,
    };
    let action = match raw.action {
        None => ScreenAction::default(),
        Some(a) => action(cx, &a)?,
    };
    Ok(Some(Screen {
        zones,
        threshold,
        action,
        timeout: duration(cx, "screen.timeout", raw.timeout, Screen::DEFAULT_TIMEOUT)?,
        cache_size: count(cx, "screen.cache_size", raw.cache_size, Screen::DEFAULT_CACHE_SIZE)?,
        fcrdns: raw.fcrdns.unwrap_or(true),
        require_fcrdns: raw.require_fcrdns.unwrap_or(false),
        reject_pipelining: raw.reject_pipelining.unwrap_or(true),
        helo: helo_checks(cx, &raw.helo_checks)?,
    }))
}

fn zone(cx: &Ctx, i: usize, z: RawZone) -> Result<Zone, ConfigError> {
    let name = normalize_domain(z.name.get_ref());
    if !is_valid_domain(&name) || !name.contains('.') {
        return Err(cx.err(
            format!("screen.zone[{i}].name"),
            Some(z.name.span()),
            format!("{} is not a DNS list zone (a domain name such as zen.spamhaus.org)", written(cx, z.name.span())),
        ));
    }
    let weight = match z.weight {
        None => 1,
        Some(w) => {
            let key = format!("screen.zone[{i}].weight");
            let n = small(cx, &key, &w, -1000)?;
            if n == 0 {
                return Err(cx.err(key, Some(w.span()), "must not be 0 (positive: block list, negative: allow list)"));
            }
            n
        }
    };
    let mut codes = Vec::new();
    for (j, c) in z.codes.iter().enumerate() {
        codes.push(code_range(cx, &format!("screen.zone[{i}].codes[{j}]"), c)?);
    }
    if codes.is_empty() {
        codes.push(CodeRange { first: Ipv4Addr::new(127, 0, 0, 2), last: Ipv4Addr::new(127, 0, 0, 255) });
    }
    Ok(Zone { name, weight, codes })
}

/// An integer between `min` and 1000.
fn small(cx: &Ctx, key: &str, v: &Spanned<i64>, min: i64) -> Result<i32, ConfigError> {
    let n = *v.get_ref();
    if n < min || n > 1000 {
        return Err(cx.err(key, Some(v.span()), format!("must be between {min} and 1000, not {n}")));
    }
    Ok(n as i32)
}

fn action(cx: &Ctx, a: &SStr) -> Result<ScreenAction, ConfigError> {
    [ScreenAction::RejectAtConnect, ScreenAction::RejectAtRcpt]
        .into_iter()
        .find(|o| o.as_str() == a.get_ref())
        .ok_or_else(|| {
            cx.err(
                "screen.action",
                Some(a.span()),
                format!("unknown value {:?} (expected \"reject-at-connect\" or \"reject-at-rcpt\")", a.get_ref()),
            )
        })
}

/// `"127.0.0.2"` or `"127.0.0.2-127.0.0.11"`, inside 127.0.0.0/8.
fn code_range(cx: &Ctx, key: &str, c: &SStr) -> Result<CodeRange, ConfigError> {
    let text = c.get_ref();
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| s.trim().parse::<Ipv4Addr>().ok().filter(|ip| ip.octets()[0] == 127);
    match (parse(a), parse(b)) {
        (Some(first), Some(last)) if first <= last => Ok(CodeRange { first, last }),
        _ => Err(cx.err(
            key,
            Some(c.span()),
            format!(
                "{} is not a DNS list answer or range in 127.0.0.0/8 (e.g. \"127.0.0.2\" or \"127.0.0.2-127.0.0.11\")",
                written(cx, c.span())
            ),
        )),
    }
}

fn helo_checks(cx: &Ctx, raw: &[SStr]) -> Result<HeloChecks, ConfigError> {
    let mut h = HeloChecks::default();
    for (i, name) in raw.iter().enumerate() {
        let flag = match name.get_ref().as_str() {
            "bare-ip" => &mut h.bare_ip,
            "our-name" => &mut h.our_name,
            "our-address" => &mut h.our_address,
            other => {
                return Err(cx.err(
                    format!("screen.helo_checks[{i}]"),
                    Some(name.span()),
                    format!("unknown check {other:?} (expected \"bare-ip\", \"our-name\" or \"our-address\")"),
                ));
            }
        };
        *flag = true;
    }
    Ok(h)
}
