//! Validation of the settings that decide who may submit and relay: `[tls]`, `[auth]`,
//! `trusted_networks` and `[send_as]`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::locate::path as key_path;
use crate::names::{is_valid_domain, normalize_domain, normalize_local, parse_address};
use crate::raw::{RawAuth, RawTls, SStr, SValue};
use crate::units::format_duration;
use crate::value::{count, duration, path, written};
use crate::{Auth, Tls};

/// `[tls]`: certificate and key come together or not at all.
pub(crate) fn tls(cx: &Ctx, raw: RawTls) -> Result<Tls, ConfigError> {
    let d = Tls::default();
    let check_interval = duration(cx, "tls.check_interval", raw.check_interval, d.check_interval)?;
    let half = |present: &str, missing: &str, span| {
        cx.err(
            format!("tls.{present}"),
            Some(span),
            format!(
                "given without tls.{missing}: set both cert and key, or neither \
                 (then a self-signed certificate is created in data_dir/tls)"
            ),
        )
    };
    let acme = match raw.acme {
        None => None,
        Some(a) if raw.cert.is_some() => {
            return Err(cx.err(
                "tls.acme",
                Some(a.span()),
                "cannot be combined with tls.cert/tls.key: the ACME certificate is kept in data_dir/tls; \
                 remove either",
            ));
        }
        Some(a) => Some(crate::acme::acme(cx, a)?),
    };
    let (cert, key) = match (raw.cert, raw.key) {
        (None, None) => (None, None),
        (Some(cert), Some(key)) => (Some(path(cx, "tls.cert", &cert)?), Some(path(cx, "tls.key", &key)?)),
        (Some(cert), None) => return Err(half("cert", "key", cert.span())),
        (None, Some(key)) => return Err(half("key", "cert", key.span())),
    };
    Ok(Tls { cert, key, check_interval, acme })
}

/// `[auth]`; the user store defaults to `data_dir/users`.
pub(crate) fn auth(cx: &Ctx, raw: RawAuth, data_dir: &Path) -> Result<Auth, ConfigError> {
    let d = Auth::defaults(data_dir);
    let key = |k: &str| format!("auth.{k}");
    Ok(Auth {
        users_file: match raw.users_file {
            None => d.users_file,
            Some(file) => path(cx, &key("users_file"), &file)?,
        },
        plaintext_on_loopback: raw.plaintext_on_loopback.unwrap_or(d.plaintext_on_loopback),
        users_are_mailboxes: raw.users_are_mailboxes.unwrap_or(d.users_are_mailboxes),
        failure_delay: duration(cx, &key("failure_delay"), raw.failure_delay, d.failure_delay)?,
        max_failures: count(cx, &key("max_failures"), raw.max_failures, d.max_failures)?,
        failure_window: duration(cx, &key("failure_window"), raw.failure_window, d.failure_window)?,
        lockout: duration(cx, &key("lockout"), raw.lockout, d.lockout)?,
        max_concurrent_checks: concurrent_checks(cx, raw.max_concurrent_checks, d.max_concurrent_checks)?,
        check_queue_timeout: queue_timeout(cx, raw.check_queue_timeout, d.check_queue_timeout)?,
        backend: crate::endpoint::auth_backend(cx, raw.backend, raw.socket)?,
    })
}

/// `auth.max_concurrent_checks`: 1 to [`Auth::MAX_CONCURRENT_CHECKS`].
fn concurrent_checks(cx: &Ctx, raw: Option<Spanned<i64>>, default: usize) -> Result<usize, ConfigError> {
    const KEY: &str = "auth.max_concurrent_checks";
    let span = raw.as_ref().map(Spanned::span);
    let n = count(cx, KEY, raw, default)?;
    if n > Auth::MAX_CONCURRENT_CHECKS {
        let why = format!("at most {} (each check holds 19 MiB while it runs), not {n}", Auth::MAX_CONCURRENT_CHECKS);
        return Err(cx.err(KEY, span, why));
    }
    Ok(n)
}

/// `auth.check_queue_timeout`: more than zero, at most [`Auth::MAX_CHECK_QUEUE_TIMEOUT`].
fn queue_timeout(cx: &Ctx, raw: Option<SValue>, default: Duration) -> Result<Duration, ConfigError> {
    const KEY: &str = "auth.check_queue_timeout";
    let span = raw.as_ref().map(Spanned::span);
    let d = duration(cx, KEY, raw, default)?;
    if d > Auth::MAX_CHECK_QUEUE_TIMEOUT {
        let max = Auth::MAX_CHECK_QUEUE_TIMEOUT.as_secs();
        return Err(cx.err(KEY, span, format!("at most {max}s, not {}", format_duration(d))));
    }
    Ok(d)
}

/// `trusted_networks`: CIDR networks or bare addresses (host routes), each at most once.
pub(crate) fn trusted_networks(cx: &Ctx, raw: Vec<SStr>) -> Result<Vec<IpNet>, ConfigError> {
    let mut out: Vec<IpNet> = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let key = format!("trusted_networks[{i}]");
        let net = network(item.get_ref())
            .map_err(|m| cx.err(&key, Some(item.span()), format!("{}: {m}", written(cx, item.span()))))?;
        if let Some(j) = out.iter().position(|n| *n == net) {
            return Err(cx.err(
                key,
                Some(item.span()),
                format!("network {net} is listed twice (already trusted_networks[{j}])"),
            ));
        }
        out.push(net);
    }
    Ok(out)
}

/// One network: `addr/prefix`, or a bare address meaning `addr/32` or `addr/128`.
pub(crate) fn network(text: &str) -> Result<IpNet, String> {
    const HINT: &str = "expected an IP network such as \"192.0.2.0/24\" or \"2001:db8::/32\", \
                        or a single address";
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = text.parse().map_err(|_| HINT.to_owned())?;
    // "192.0.2.1/24" is ambiguous (one host or the network?): refuse rather than guess.
    if net.trunc() != net {
        return Err(format!(
            "host bits are set: write the network as \"{}\", or a single address without /prefix",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `[send_as]`: user address → addresses or `@domain`s, all lowercased.
pub(crate) fn send_as(
    cx: &Ctx,
    raw: BTreeMap<SStr, Spanned<Vec<SStr>>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, entries) in raw {
        let key = key_path(&["send_as", user.get_ref()]);
        let Some(name) = address(user.get_ref()) else {
            return Err(cx.err(key, Some(user.span()), format!("{:?} is not a valid user address", user.get_ref())));
        };
        if out.contains_key(&name) {
            return Err(cx.err(
                key,
                Some(user.span()),
                format!("user {name} is listed twice (addresses are case-insensitive)"),
            ));
        }
        if entries.get_ref().is_empty() {
            return Err(cx.err(key, Some(entries.span()), "must list at least one address or @domain"));
        }
        let mut list: Vec<String> = Vec::with_capacity(entries.get_ref().len());
        for (i, e) in entries.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let value = sender(e.get_ref()).ok_or_else(|| {
                cx.err(
                    &item_key,
                    Some(e.span()),
                    format!("{:?} is neither an address nor @domain (a domain name after @)", e.get_ref()),
                )
            })?;
            if list.contains(&value) {
                return Err(cx.err(
                    item_key,
                    Some(e.span()),
                    format!("{value} is listed twice (addresses are case-insensitive)"),
                ));
            }
            list.push(value);
        }
        out.insert(name, list);
    }
    Ok(out)
}

/// A valid address, lowercased (local part too: send_as compares case-insensitively).
fn address(text: &str) -> Option<String> {
    let (local, domain) = parse_address(text)?;
    Some(format!("{}@{domain}", normalize_local(&local)))
}

/// A `[send_as]` value: an address, or `@domain`.
fn sender(text: &str) -> Option<String> {
    match text.strip_prefix('@') {
        Some(domain) => {
            let domain = normalize_domain(domain);
            is_valid_domain(&domain).then(|| format!("@{domain}"))
        }
        None => address(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = |s: &str| network(s).unwrap().to_string();
        assert_eq!(n("192.0.2.0/24"), "192.0.2.0/24");
        assert_eq!(n("127.0.0.1"), "127.0.0.1/32");
        assert_eq!(n("::1"), "::1/128");
        assert_eq!(n("2001:DB8::/32"), "2001:db8::/32");
        assert_eq!(n("0.0.0.0/0"), "0.0.0.0/0");
        for bad in ["", "localhost", "192.0.2.0/33", "192.0.2.1/24", "fe80::1%eth0", "10/8"] {
            assert!(network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn senders() {
        assert_eq!(sender("Info@Example.ORG").as_deref(), Some("info@example.org"));
        assert_eq!(sender("@Example.NET.").as_deref(), Some("@example.net"));
        for bad in ["@", "@@x.org", "info", "@exa mple.org", "a@b@c", "@1.2.3.4"] {
            assert_eq!(sender(bad), None, "{bad}");
        }
    }
}
