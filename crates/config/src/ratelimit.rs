//! `[rate_limits.NAME]` profiles, a listener's `rate_limits = "NAME"`, and the defaults per
//! role when a listener names none.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Role;
use crate::error::{ConfigError, Ctx};
use crate::raw::{RawRateLimits, SStr};
use crate::units::{format_duration, parse_duration};
use crate::value::{count, written};

/// At most `count` events per `period` (written `"100/1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Events allowed per period (at least 1).
    pub count: u32,
    /// The period (at least one second).
    pub period: Duration,
}

impl RateSpec {
    /// `"100/1h"`: what the file says, read back exactly.
    pub fn to_text(self) -> String {
        format!("{}/{}", self.count, format_duration(self.period))
    }
}

/// The rate limits of one listener. `None` is off. Counters are in memory: a restart resets
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// New connections per client network (/24, /64), refused with `421 4.7.0` at connect
    /// (`connections_per_network`).
    pub connections_per_network: Option<RateSpec>,
    /// Messages (accepted MAIL commands) per client network, `450 4.7.1` at MAIL
    /// (`messages_per_network`).
    pub messages_per_network: Option<RateSpec>,
    /// Messages per authenticated user, `450 4.7.1` at MAIL (`messages_per_user`).
    pub messages_per_user: Option<RateSpec>,
    /// Recipients per authenticated user, `450 4.7.1` at RCPT (`recipients_per_user`).
    pub recipients_per_user: Option<RateSpec>,
    /// Messages per sender domain (the MAIL FROM domain), `450 4.7.1` at MAIL
    /// (`messages_per_sender_domain`).
    pub messages_per_sender_domain: Option<RateSpec>,
    /// The most networks, users or domains each counter holds (`max_entries`); beyond it
    /// the ones closest to their limit's end are forgotten. Default 100,000.
    pub max_entries: usize,
}

const DEFAULT_MAX_ENTRIES: usize = 100_000;

fn per(count: u32, secs: u64) -> Option<RateSpec> {
    Some(RateSpec { count, period: Duration::from_secs(secs) })
}

impl RateLimits {
    /// Everything off.
    pub fn off() -> RateLimits {
        RateLimits {
            connections_per_network: None,
            messages_per_network: None,
            messages_per_user: None,
            recipients_per_user: None,
            messages_per_sender_domain: None,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// The limits of a listener of `role` that names no profile: on `mx`, 60 connections a
    /// minute per client network (other servers send over few connections; this only stops
    /// floods); on the submission roles, also 200 messages an hour and 2,000 recipients a
    /// day per user (generous for a person, small for a stolen password).
    pub fn defaults(role: Role) -> RateLimits {
        // 600 a minute from one /24 or /64 stops a flood and never a real sender; clients in
        // trusted_networks are not counted (docs/greylisting.md).
        let connections_per_network = per(600, 60);
        match role {
            Role::Mx => RateLimits { connections_per_network, ..RateLimits::off() },
            _ => RateLimits {
                connections_per_network,
                messages_per_user: per(200, 3600),
                recipients_per_user: per(2000, 86_400),
                ..RateLimits::off()
            },
        }
    }

    /// The keys and values of this profile as TOML text values (`"off"` for none).
    pub fn entries(&self) -> [(&'static str, String); 5] {
        let t = |r: Option<RateSpec>| r.map_or_else(|| "off".to_owned(), RateSpec::to_text);
        [
            ("connections_per_network", t(self.connections_per_network)),
            ("messages_per_network", t(self.messages_per_network)),
            ("messages_per_user", t(self.messages_per_user)),
            ("recipients_per_user", t(self.recipients_per_user)),
            ("messages_per_sender_domain", t(self.messages_per_sender_domain)),
        ]
    }
}

/// Validates every `[rate_limits.NAME]` table.
pub(crate) fn profiles(
    cx: &Ctx,
    raw: BTreeMap<SStr, RawRateLimits>,
) -> Result<BTreeMap<String, RateLimits>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let name = name.into_inner();
        let key = |k: &str| format!("rate_limits.{}.{k}", crate::locate::key(&name));
        let rate = |k: &str, v: &Option<SStr>| v.as_ref().map_or(Ok(None), |v| spec(cx, &key(k), v));
        let limits = RateLimits {
            connections_per_network: rate("connections_per_network", &r.connections_per_network)?,
            messages_per_network: rate("messages_per_network", &r.messages_per_network)?,
            messages_per_user: rate("messages_per_user", &r.messages_per_user)?,
            recipients_per_user: rate("recipients_per_user", &r.recipients_per_user)?,
            messages_per_sender_domain: rate("messages_per_sender_domain", &r.messages_per_sender_domain)?,
            max_entries: count(cx, &key("max_entries"), r.max_entries, DEFAULT_MAX_ENTRIES)?,
        };
        out.insert(name, limits);
    }
    Ok(out)
}

/// `"N/PERIOD"` (`"100/1h"`, `"10/m"`, `"2000/1d"`) or `"off"`.
fn spec(cx: &Ctx, key: &str, value: &SStr) -> Result<Option<RateSpec>, ConfigError> {
    let text = value.get_ref().trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let parsed = text.split_once('/').and_then(|(n, p)| {
        let count: u32 = n.trim().parse().ok().filter(|&n| n > 0)?;
        let p = p.trim();
        let period = if p.starts_with(|c: char| c.is_ascii_digit()) {
            parse_duration(p)?
        } else {
            parse_duration(&format!("1{p}"))?
        };
        (period >= Duration::from_secs(1) && period.subsec_nanos() == 0).then_some(RateSpec { count, period })
    });
    parsed.map(Some).ok_or_else(|| {
        cx.err(
            key,
            Some(value.span()),
            format!(
                "expected a rate \"COUNT/PERIOD\" such as \"100/1h\" or \"10/m\" (count at least 1, \
                 period whole seconds), or \"off\"; got {}",
                written(cx, value.span())
            ),
        )
    })
}
