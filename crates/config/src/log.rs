//! `[log]`: the format of the server's log lines and whether they carry a timestamp.

use crate::error::{ConfigError, Ctx};
use crate::raw::{RawLog, SStr};

/// `[log]`: how the server writes its log (docs/hardening.md, "Logs").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Log {
    /// `format`: `"text"` (default) or `"json"`.
    pub format: LogFormat,
    /// `timestamps`: `"auto"` (default), `"always"` or `"never"`.
    pub timestamps: Timestamps,
}

/// The form of a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text after the time and level, for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, message and the fields as values), for
    /// programs.
    Json,
}

/// Whether a log line starts with the time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Timestamps {
    /// Always, except text lines written to systemd's journal (stderr is the stream named by
    /// `JOURNAL_STREAM`, systemd.exec(5)), which stamps every line itself.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never (another program stamps the lines).
    Never,
}

impl LogFormat {
    /// The name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Timestamps {
    /// The name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Timestamps::Auto => "auto",
            Timestamps::Always => "always",
            Timestamps::Never => "never",
        }
    }
}

pub(crate) fn log(cx: &Ctx, raw: RawLog) -> Result<Log, ConfigError> {
    let d = Log::default();
    Ok(Log {
        format: choice(cx, "log.format", raw.format, d.format, &[LogFormat::Text, LogFormat::Json], LogFormat::as_str)?,
        timestamps: choice(
            cx,
            "log.timestamps",
            raw.timestamps,
            d.timestamps,
            &[Timestamps::Auto, Timestamps::Always, Timestamps::Never],
            Timestamps::as_str,
        )?,
    })
}

/// The one of `options` whose name is `value`.
fn choice<T: Copy>(
    cx: &Ctx,
    key: &str,
    value: Option<SStr>,
    default: T,
    options: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, ConfigError> {
    let Some(value) = value else { return Ok(default) };
    if let Some(found) = options.iter().find(|o| name(**o) == value.get_ref()) {
        return Ok(*found);
    }
    let names: Vec<String> = options.iter().map(|o| format!("{:?}", name(*o))).collect();
    Err(cx.err(key, Some(value.span()), format!("unknown value {:?} (expected {})", value.get_ref(), names.join(", "))))
}
