//! One TOML value to a typed setting (a count, a size, a duration, a path), with the error
//! naming the key and the value as written; shared by [`crate::build`], [`crate::access`] and
//! [`crate::outbound`].

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::raw::{SStr, SValue};
use crate::units::{DURATION_HINT, SIZE_HINT, parse_duration, parse_size};

/// The text of a value as written in the file, for error messages.
pub(crate) fn written<'t>(cx: &Ctx<'t>, span: std::ops::Range<usize>) -> &'t str {
    cx.text.get(span).unwrap_or("?")
}

/// A file system path: non-empty, without NUL (which no system call accepts).
pub(crate) fn path(cx: &Ctx, key: &str, value: &SStr) -> Result<PathBuf, ConfigError> {
    let text = value.get_ref();
    if text.is_empty() || text.contains('\0') {
        return Err(cx.err(key, Some(value.span()), "must be a non-empty path without NUL characters"));
    }
    Ok(PathBuf::from(text))
}

/// A count that must be at least 1 and fit `T`.
pub(crate) fn count<T: TryFrom<i64>>(
    cx: &Ctx,
    key: &str,
    value: Option<Spanned<i64>>,
    default: T,
) -> Result<T, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n = *value.get_ref();
    if n < 1 {
        return Err(cx.err(key, Some(value.span()), format!("must be at least 1, not {n}")));
    }
    T::try_from(n).map_err(|_| cx.err(key, Some(value.span()), format!("{n} is too large")))
}

/// A size in bytes: an integer, or a string with a binary suffix; never zero.
pub(crate) fn size(cx: &Ctx, key: &str, value: Option<SValue>, default: u64) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let span = value.span();
    let bytes = match value.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(s) => parse_size(s),
        _ => None,
    };
    match bytes {
        None => Err(cx.err(key, Some(span.clone()), format!("{SIZE_HINT}; got {}", written(cx, span)))),
        Some(0) => Err(cx.err(key, Some(span), "must be greater than zero")),
        Some(n) => Ok(n),
    }
}

/// A duration: a humantime string or an integer number of seconds; never zero.
pub(crate) fn duration(cx: &Ctx, key: &str, value: Option<SValue>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let span = value.span();
    match duration_or_zero(cx, key, value, "")? {
        Duration::ZERO => Err(cx.err(key, Some(span), "must be greater than zero")),
        d => Ok(d),
    }
}

/// A duration that may be zero; `alternative` is added to the hint when it does not parse.
pub(crate) fn duration_or_zero(cx: &Ctx, key: &str, value: SValue, alternative: &str) -> Result<Duration, ConfigError> {
    let span = value.span();
    let parsed = match value.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        toml::Value::String(s) => parse_duration(s),
        _ => None,
    };
    parsed.ok_or_else(|| {
        cx.err(key, Some(span.clone()), format!("{DURATION_HINT}{alternative}; got {}", written(cx, span)))
    })
}
