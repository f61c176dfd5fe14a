//! From the raw TOML to a validated [`Config`]: top-level keys, listeners, limits, timeouts and
//! delivery. Domains and aliases are in [`crate::mail`]; TLS, AUTH, trusted networks and
//! `[send_as]` in [`crate::access`]; `[outbound]` in [`crate::outbound`]; single values (counts,
//! sizes, durations, paths) are read by [`crate::value`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::names::{is_valid_domain, normalize_domain};
use crate::raw::{RawConfig, RawDelivery, RawLimits, RawListener, RawTimeouts, SStr, SValue};
use crate::value::{count, duration, duration_or_zero, path, size, written};
use crate::{Checks, Config, Delivery, Limits, Listener, Role, Timeouts, access, mail, outbound};

/// Parses and validates `text`; the first problem found is the error.
pub(crate) fn build(text: &str, source: &str) -> Result<Config, ConfigError> {
    let cx = Ctx { text, file: source };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let data_dir = data_dir(&cx, raw.data_dir)?;
    let hostname = hostname(&cx, raw.hostname)?;
    let domains = mail::domains(&cx, raw.domains)?;
    // Needs hostname (the default helo_name) and domains (no route for a local domain).
    let outbound = outbound::outbound(&cx, raw.outbound, &hostname, &domains)?;
    let greylist = crate::greylist::greylist(&cx, raw.greylist)?;
    let rate_limits = crate::ratelimit::profiles(&cx, raw.rate_limits)?;
    let privileges = crate::privilege::privileges(&cx, raw.user, raw.group, raw.allow_root)?;
    let client = crate::client::client(&cx, raw.client, &hostname)?;
    let mta_sts = crate::client::mta_sts(&cx, raw.mta_sts, &client.host)?;
    let dns = crate::client::dns(&cx, raw.dns)?;
    let milters = crate::milter::milters(&cx, raw.milter)?;
    let acme_span = raw.tls.acme.as_ref().map(|a| a.span());
    let mut config = Config {
        source: source.to_owned(),
        hostname,
        auth: access::auth(&cx, raw.auth, &data_dir)?,
        data_dir,
        listeners: listeners(&cx, raw.listen, &greylist, &rate_limits, &milters)?,
        domains,
        aliases: BTreeMap::new(),
        recipient_delimiter: delimiter(&cx, raw.recipient_delimiter)?,
        limits: limits(&cx, raw.limits)?,
        timeouts: timeouts(&cx, raw.timeouts)?,
        delivery: delivery(&cx, raw.delivery)?,
        tls: access::tls(&cx, raw.tls)?,
        trusted_networks: access::trusted_networks(&cx, raw.trusted_networks)?,
        send_as: access::send_as(&cx, raw.send_as)?,
        outbound,
        log: crate::log::log(&cx, raw.log)?,
        history: crate::history::history(&cx, raw.history)?,
        screen: crate::screen::screen(&cx, raw.screen)?,
        greylist,
        rate_limits,
        privileges,
        client,
        mta_sts,
        dns,
        milters,
    };
    crate::acme::complete(&cx, &mut config, acme_span)?;
    // Aliases are checked last: resolving them needs the domains and the delimiter.
    mail::aliases(&cx, &mut config, raw.aliases)?;
    // Checked last, so that a mistake with a line number is reported first.
    if config.listeners.is_empty() {
        return Err(cx.err("listen", None, "no listeners: add at least one [[listen]] table with address and role"));
    }
    Ok(config)
}

fn hostname(cx: &Ctx, value: Option<SStr>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok("localhost".to_owned());
    };
    let name = normalize_domain(value.get_ref());
    if !is_valid_domain(&name) {
        return Err(cx.err(
            "hostname",
            Some(value.span()),
            format!(
                "{} is not a valid domain name (letters, digits, hyphens and dots; \
                 internationalized names as xn-- A-labels)",
                written(cx, value.span())
            ),
        ));
    }
    Ok(name)
}

fn data_dir(cx: &Ctx, value: Option<SStr>) -> Result<PathBuf, ConfigError> {
    match value {
        None => Ok(PathBuf::from(Config::DEFAULT_DATA_DIR)),
        Some(value) => path(cx, "data_dir", &value),
    }
}

/// The delimiter must be one character that can appear in a dot-atom local part but is not a
/// letter or digit (so that ordinary names are never split).
fn delimiter(cx: &Ctx, value: Option<SStr>) -> Result<Option<char>, ConfigError> {
    let Some(value) = value else {
        return Ok(Some('+'));
    };
    let mut chars = value.get_ref().chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) if "!#$%&'*+-/=?^_`{|}~.".contains(c) => Ok(Some(c)),
        (Some(_), None) => Err(cx.err(
            "recipient_delimiter",
            Some(value.span()),
            format!(
                "{} cannot separate a tag: use one of !#$%&'*+-/=?^_`{{|}}~. or \"\" to disable",
                written(cx, value.span())
            ),
        )),
        (Some(_), Some(_)) => {
            Err(cx.err("recipient_delimiter", Some(value.span()), "must be a single character, or \"\" to disable"))
        }
    }
}

fn listeners(
    cx: &Ctx,
    raw: Vec<RawListener>,
    greylist: &crate::Greylist,
    profiles: &BTreeMap<String, crate::RateLimits>,
    milters: &[crate::Milter],
) -> Result<Vec<Listener>, ConfigError> {
    let mut out: Vec<Listener> = Vec::with_capacity(raw.len());
    for (i, l) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("listen[{i}].{field}");
        let address: SocketAddr = l.address.get_ref().parse().map_err(|_| {
            cx.err(
                key("address"),
                Some(l.address.span()),
                format!(
                    "{} is not a socket address (expected IP:PORT, e.g. \"0.0.0.0:25\" or \"[::]:25\")",
                    written(cx, l.address.span())
                ),
            )
        })?;
        // Port 0 asks the system for a free port, so it may appear several times (tests).
        if let Some(j) = out.iter().position(|o| o.address == address && address.port() != 0) {
            return Err(cx.err(
                key("address"),
                Some(l.address.span()),
                format!("duplicate listener address {address} (already used by listen[{j}])"),
            ));
        }
        let role = role(l.role.get_ref()).map_err(|m| cx.err(key("role"), Some(l.role.span()), m))?;
        let checks = checks(cx, i, role, &l)?;
        let screen = l.screen.unwrap_or(role == Role::Mx);
        let greet_delay = match l.greet_delay {
            Some(v) => duration_or_zero(cx, &key("greet_delay"), v, "")?,
            None => Duration::ZERO,
        };
        let greylist = crate::listener::greylist(cx, i, role, l.greylist.as_ref(), greylist)?;
        let (rate_limits_name, rate_limits) = crate::listener::rate_limits(cx, i, role, l.rate_limits, profiles)?;
        let milters = crate::milter::listener_milters(cx, i, l.milters, milters)?;
        out.push(Listener {
            address,
            role,
            checks,
            screen,
            greet_delay,
            greylist,
            rate_limits_name,
            rate_limits,
            milters,
        });
    }
    Ok(out)
}

/// The message authentication switches of `listen[i]`: allowed on `mx` only, where those
/// not given take [`Checks::defaults`].
fn checks(cx: &Ctx, i: usize, role: Role, l: &RawListener) -> Result<Checks, ConfigError> {
    let given = [
        ("verify", &l.verify),
        ("dmarc_reject", &l.dmarc_reject),
        ("dmarc_quarantine", &l.dmarc_quarantine),
        ("spf_reject", &l.spf_reject),
    ];
    if role != Role::Mx
        && let Some((name, value)) = given.iter().find_map(|(name, v)| Some((name, v.as_ref()?)))
    {
        // Submitted mail comes from our own authenticated users: it is signed, not checked.
        return Err(cx.err(
            format!("listen[{i}].{name}"),
            Some(value.span()),
            "message authentication checks apply to mx listeners only; submitted mail is signed instead",
        ));
    }
    let d = Checks::defaults(role);
    let or = |value: &Option<Spanned<bool>>, default: bool| value.as_ref().map_or(default, |v| *v.get_ref());
    Ok(Checks {
        verify: or(&l.verify, d.verify),
        dmarc_reject: or(&l.dmarc_reject, d.dmarc_reject),
        dmarc_quarantine: or(&l.dmarc_quarantine, d.dmarc_quarantine),
        spf_reject: or(&l.spf_reject, d.spf_reject),
    })
}

fn role(name: &str) -> Result<Role, String> {
    match name {
        "mx" => Ok(Role::Mx),
        "submission" => Ok(Role::Submission),
        "submissions" => Ok(Role::Submissions),
        "pop3" => Ok(Role::Pop3),
        "pop3s" => Ok(Role::Pop3s),
        "metrics" => Ok(Role::Metrics),
        "http" => Ok(Role::Http),
        "https" => Ok(Role::Https),
        _ => Err(format!(
            "unknown role {name:?} (expected \"mx\", \"submission\", \"submissions\", \"pop3\", \"pop3s\", \"metrics\", \"http\" or \"https\")"
        )),
    }
}

fn limits(cx: &Ctx, raw: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let key = |k: &str| format!("limits.{k}");
    Ok(Limits {
        max_message_size: size(cx, &key("max_message_size"), raw.max_message_size, d.max_message_size)?,
        max_recipients: count(cx, &key("max_recipients"), raw.max_recipients, d.max_recipients)?,
        max_errors: count(cx, &key("max_errors"), raw.max_errors, d.max_errors)?,
        max_connections: count(cx, &key("max_connections"), raw.max_connections, d.max_connections)?,
        max_connections_per_ip: count(
            cx,
            &key("max_connections_per_ip"),
            raw.max_connections_per_ip,
            d.max_connections_per_ip,
        )?,
        max_connections_per_network: count(
            cx,
            &key("max_connections_per_network"),
            raw.max_connections_per_network,
            d.max_connections_per_network,
        )?,
    })
}

fn timeouts(cx: &Ctx, raw: RawTimeouts) -> Result<Timeouts, ConfigError> {
    let d = Timeouts::default();
    Ok(Timeouts {
        command: duration(cx, "timeouts.command", raw.command, d.command)?,
        data: duration(cx, "timeouts.data", raw.data, d.data)?,
        data_min_rate: size(cx, "timeouts.data_min_rate", raw.data_min_rate, d.data_min_rate)?,
        write: duration(cx, "timeouts.write", raw.write, d.write)?,
        shutdown_grace: duration(cx, "timeouts.shutdown_grace", raw.shutdown_grace, d.shutdown_grace)?,
    })
}

fn delivery(cx: &Ctx, raw: RawDelivery) -> Result<Delivery, ConfigError> {
    let d = Delivery::default();
    let retry_schedule = match raw.retry_schedule {
        None => d.retry_schedule,
        Some(list) => {
            let key = "delivery.retry_schedule";
            if list.get_ref().is_empty() {
                return Err(cx.err(key, Some(list.span()), "must list at least one delay"));
            }
            let list = list.into_inner();
            let mut out = Vec::with_capacity(list.len());
            for (i, v) in list.into_iter().enumerate() {
                out.push(duration(cx, &format!("{key}[{i}]"), Some(v), Duration::ZERO)?);
            }
            out
        }
    };
    Ok(Delivery {
        retry_schedule,
        max_age: duration(cx, "delivery.max_age", raw.max_age, d.max_age)?,
        local_concurrency: count(cx, "delivery.local_concurrency", raw.local_concurrency, d.local_concurrency)?,
        spool_slots: spool_slots(cx, raw.spool_slots, d.spool_slots)?,
        delay_notice: delay_notice(cx, raw.delay_notice, d.delay_notice)?,
        method: crate::endpoint::delivery_method(cx, raw.method, raw.lmtp)?,
    })
}

/// `delivery.spool_slots`: 0 to [`crate::SPOOL_SLOTS_MAX`].
fn spool_slots(cx: &Ctx, value: Option<Spanned<i64>>, default: usize) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n = *value.get_ref();
    let max = crate::SPOOL_SLOTS_MAX;
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(cx.err("delivery.spool_slots", Some(value.span()), format!("must be between 0 and {max}, not {n}"))),
    }
}

/// `delivery.delay_notice`: a duration, or `"off"` (or zero) for no delay notices.
fn delay_notice(cx: &Ctx, value: Option<SValue>, default: Option<Duration>) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    if let toml::Value::String(s) = value.get_ref()
        && s.trim().eq_ignore_ascii_case("off")
    {
        return Ok(None);
    }
    let d = duration_or_zero(cx, "delivery.delay_notice", value, ", or \"off\"")?;
    Ok((d != Duration::ZERO).then_some(d))
}
