//! `[[milter]]` (content filters spoken to over the milter protocol) and a listener's
//! `milters = ["NAME", ...]`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::raw::{RawMilter, SStr};
use crate::value::{duration, written};

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterAddress {
    /// `inet:HOST:PORT` (an IP address; `[v6]` brackets allowed).
    Inet(std::net::SocketAddr),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl std::fmt::Display for MilterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilterAddress::Inet(a) => write!(f, "inet:{}:{}", a.ip(), a.port()),
            MilterAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What happens to mail when the milter cannot be asked (down, too slow, speaking garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// `451 4.7.1`: the client tries again later (the default: no mail passes unfiltered).
    Tempfail,
    /// Go on as if the milter had said continue.
    Accept,
}

impl DefaultAction {
    /// The name as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Tempfail => "tempfail",
            DefaultAction::Accept => "accept",
        }
    }
}

/// One content filter (`[[milter]]`); listeners name the ones they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milter {
    /// The name listeners refer to (`name`).
    pub name: String,
    /// `address`: `inet:IP:PORT` or `unix:/path`.
    pub address: MilterAddress,
    /// How long connecting and option negotiation may take (`connect_timeout`, default 5s).
    pub connect_timeout: Duration,
    /// How long the milter may take to answer one stage (`command_timeout`, default 30s).
    pub command_timeout: Duration,
    /// How long it may take to answer the end of message, progress included
    /// (`eom_timeout`, default 2m).
    pub eom_timeout: Duration,
    /// `default_action`: when the milter fails.
    pub default_action: DefaultAction,
    /// Whether authenticated and trusted clients go past this milter unfiltered
    /// (`skip_authenticated`, default false: everyone is filtered).
    pub skip_authenticated: bool,
}

/// Validates the `[[milter]]` tables: names unique and non-empty, addresses parse.
pub(crate) fn milters(cx: &Ctx, raw: Vec<RawMilter>) -> Result<Vec<Milter>, ConfigError> {
    let mut out: Vec<Milter> = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("milter[{i}].{k}");
        let name = m.name.get_ref().trim().to_string();
        if name.is_empty() || out.iter().any(|o| o.name == name) {
            let why = if name.is_empty() { "must not be empty" } else { "another [[milter]] has this name" };
            return Err(cx.err(key("name"), Some(m.name.span()), why));
        }
        let address = address(m.address.get_ref()).ok_or_else(|| {
            cx.err(
                key("address"),
                Some(m.address.span()),
                format!(
                    "{} is not a milter address (expected \"inet:IP:PORT\" or \"unix:/path\")",
                    written(cx, m.address.span())
                ),
            )
        })?;
        let default_action = match m.default_action {
            None => DefaultAction::Tempfail,
            Some(a) => match a.get_ref().as_str() {
                "tempfail" => DefaultAction::Tempfail,
                "accept" => DefaultAction::Accept,
                _ => return Err(cx.err(key("default_action"), Some(a.span()), "must be \"tempfail\" or \"accept\"")),
            },
        };
        out.push(Milter {
            name,
            address,
            connect_timeout: duration(cx, &key("connect_timeout"), m.connect_timeout, Duration::from_secs(5))?,
            command_timeout: duration(cx, &key("command_timeout"), m.command_timeout, Duration::from_secs(30))?,
            eom_timeout: duration(cx, &key("eom_timeout"), m.eom_timeout, Duration::from_secs(120))?,
            default_action,
            skip_authenticated: m.skip_authenticated.unwrap_or(false),
        });
    }
    Ok(out)
}

fn address(s: &str) -> Option<MilterAddress> {
    if let Some(path) = s.strip_prefix("unix:") {
        return path.starts_with('/').then(|| MilterAddress::Unix(PathBuf::from(path)));
    }
    let rest = s.strip_prefix("inet:").or_else(|| s.strip_prefix("inet6:"))?;
    if let Ok(a) = rest.parse() {
        return Some(MilterAddress::Inet(a));
    }
    // `inet:::1:11332` style: the port after the last colon.
    let (host, port) = rest.rsplit_once(':')?;
    let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some(MilterAddress::Inet(std::net::SocketAddr::new(ip, port.parse().ok()?)))
}

/// `listen[i].milters`: names of `[[milter]]` tables, in the order they are asked. Absent:
/// none (a listener is filtered only where the configuration says so).
pub(crate) fn listener_milters(
    cx: &Ctx,
    i: usize,
    raw: Option<Spanned<Vec<SStr>>>,
    defined: &[Milter],
) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for name in raw.into_inner() {
        if !defined.iter().any(|m| &m.name == name.get_ref()) {
            return Err(cx.err(
                format!("listen[{i}].milters"),
                Some(name.span()),
                format!("no [[milter]] table is named {}", written(cx, name.span())),
            ));
        }
        if !out.contains(name.get_ref()) {
            out.push(name.get_ref().clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("inet:127.0.0.1:11332"), Some(MilterAddress::Inet("127.0.0.1:11332".parse().unwrap())));
        assert_eq!(address("inet:[::1]:11332"), Some(MilterAddress::Inet("[::1]:11332".parse().unwrap())));
        assert_eq!(address("inet6:::1:11332"), Some(MilterAddress::Inet("[::1]:11332".parse().unwrap())));
        assert_eq!(address("unix:/run/m.sock"), Some(MilterAddress::Unix("/run/m.sock".into())));
        assert_eq!(address("unix:rel"), None);
        assert_eq!(address("inet:localhost:1"), None, "no name lookups");
        assert_eq!(address("127.0.0.1:1"), None);
    }
}
