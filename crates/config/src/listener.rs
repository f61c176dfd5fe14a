//! A listener's greylisting and rate-limit keys (`greylist`, `rate_limits`): what applies on
//! `mx` and what on the submission roles.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::raw::SStr;
use crate::value::written;
use crate::{Greylist, RateLimits, Role};

/// `listen[i].greylist`: on `mx` it follows `[greylist] enabled` unless set; on the
/// submission roles greylisting never applies (their clients are our own users, and RFC 6409
/// §4 puts their policy in authentication, not in delays).
pub(crate) fn greylist(
    cx: &Ctx,
    i: usize,
    role: Role,
    value: Option<&Spanned<bool>>,
    section: &Greylist,
) -> Result<bool, ConfigError> {
    match value {
        None => Ok(role == Role::Mx && section.enabled),
        Some(v) if role != Role::Mx && *v.get_ref() => Err(cx.err(
            format!("listen[{i}].greylist"),
            Some(v.span()),
            "greylisting applies to mx listeners only; submission clients authenticate instead",
        )),
        Some(v) if *v.get_ref() && !section.enabled => Err(cx.err(
            format!("listen[{i}].greylist"),
            Some(v.span()),
            "greylisting is off: set enabled = true in [greylist] to turn it on",
        )),
        Some(v) => Ok(*v.get_ref()),
    }
}

/// `listen[i].rate_limits`: the name of a `[rate_limits.NAME]` profile, or the role's
/// defaults ([`RateLimits::defaults`]) when absent.
pub(crate) fn rate_limits(
    cx: &Ctx,
    i: usize,
    role: Role,
    name: Option<SStr>,
    profiles: &BTreeMap<String, RateLimits>,
) -> Result<(Option<String>, RateLimits), ConfigError> {
    let Some(name) = name else {
        return Ok((None, RateLimits::defaults(role)));
    };
    match profiles.get(name.get_ref()) {
        Some(limits) => Ok((Some(name.get_ref().clone()), limits.clone())),
        None => Err(cx.err(
            format!("listen[{i}].rate_limits"),
            Some(name.span()),
            format!("no [rate_limits.{}] table defines this profile", written(cx, name.span()).trim_matches('"')),
        )),
    }
}
