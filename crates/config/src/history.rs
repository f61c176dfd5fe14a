//! `[history]`: the message history `dakiya trace` reads (docs/history.md).

use crate::error::{ConfigError, Ctx};
use crate::raw::RawHistory;
use crate::value::count;

/// `[history]`: whether the server keeps a history of each message's events, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// `enabled`: write the history (default true).
    pub enabled: bool,
    /// `days`: how many days of history files to keep, today's included (default 7, at
    /// least 1).
    pub days: u32,
}

impl Default for History {
    fn default() -> Self {
        History { enabled: true, days: 7 }
    }
}

pub(crate) fn history(cx: &Ctx, raw: RawHistory) -> Result<History, ConfigError> {
    let d = History::default();
    Ok(History {
        enabled: raw.enabled.map_or(d.enabled, |b| *b.get_ref()),
        days: count(cx, "history.days", raw.days, d.days)?,
    })
}
