//! How sessions ended and why connections were refused, counted for a periodic log summary
//! (one line per period instead of one per event when a flood or a slow-client attack is
//! going on).

use crate::admission::Refusal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the summary is logged (when anything happened).
pub const PERIOD: Duration = Duration::from_secs(300);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QUIT, or the client closed the connection.
    Client,
    /// The protocol ended it: too many errors, bad framing, an HTTP request, a failed
    /// handshake.
    Protocol,
    /// A command line did not arrive within `timeouts.command`.
    CommandDeadline,
    /// Message content was slower than `timeouts.data` / `timeouts.data_min_rate` allow.
    DataDeadline,
    /// The client did not read our replies within `timeouts.write`.
    WriteDeadline,
    /// Closed to make room for a new client on a full server.
    Evicted,
    /// Closed by shutdown (at once when idle, or after finishing or outliving the grace).
    Shutdown,
    /// Refused for speaking before the greeting (`greet_delay`).
    Pregreet,
    /// Refused for pipelining where PIPELINING was not offered.
    Pipelining,
    /// Refused at connect by the DNS lists.
    Listed,
}

const ENDINGS: [Ending; 10] = [
    Ending::Client,
    Ending::Protocol,
    Ending::CommandDeadline,
    Ending::DataDeadline,
    Ending::WriteDeadline,
    Ending::Evicted,
    Ending::Shutdown,
    Ending::Pregreet,
    Ending::Pipelining,
    Ending::Listed,
];

impl Ending {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Client => "client",
            Ending::Protocol => "protocol",
            Ending::CommandDeadline => "command-deadline",
            Ending::DataDeadline => "data-deadline",
            Ending::WriteDeadline => "write-deadline",
            Ending::Evicted => "evicted",
            Ending::Shutdown => "shutdown",
            Ending::Pregreet => "pregreet",
            Ending::Pipelining => "pipelining",
            Ending::Listed => "dns-listed",
        }
    }

    fn index(self) -> usize {
        ENDINGS.iter().position(|&e| e == self).unwrap_or(0)
    }
}

const REFUSALS: [Refusal; 3] = [Refusal::Total, Refusal::Address, Refusal::Network];

/// Counters since the last summary.
#[derive(Default)]
pub struct Counters {
    endings: [AtomicU64; ENDINGS.len()],
    refusals: [AtomicU64; REFUSALS.len()],
}

impl Counters {
    pub fn ended(&self, e: Ending) {
        self.endings[e.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, r: Refusal) {
        let i = REFUSALS.iter().position(|&x| x == r).unwrap_or(0);
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts and renders them (`None` when nothing worth a line happened; sessions
    /// that ended normally alone are not).
    pub fn take(&self) -> Option<String> {
        let endings: Vec<u64> = self.endings.iter().map(|c| c.swap(0, Ordering::Relaxed)).collect();
        let refusals: Vec<u64> = self.refusals.iter().map(|c| c.swap(0, Ordering::Relaxed)).collect();
        let notable = endings.iter().skip(2).any(|&n| n > 0) || refusals.iter().any(|&n| n > 0);
        if !notable {
            return None;
        }
        let mut parts: Vec<String> =
            ENDINGS.iter().zip(&endings).filter(|(_, n)| **n > 0).map(|(e, n)| format!("{}={n}", e.as_str())).collect();
        for (r, n) in REFUSALS.iter().zip(&refusals).filter(|(_, n)| **n > 0) {
            let name = match r {
                Refusal::Total => "refused-total",
                Refusal::Address => "refused-per-address",
                Refusal::Network => "refused-per-network",
            };
            parts.push(format!("{name}={n}"));
        }
        Some(parts.join(" "))
    }

    /// Logs a summary every [`PERIOD`] while anything notable happens.
    pub async fn log_periodically(&self) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.log("in the last 5 minutes");
        }
    }

    /// Logs what was counted since the last summary, if anything notable.
    pub fn log(&self, when: &str) {
        if let Some(counts) = self.take() {
            tracing::info!(counts = %counts, "sessions ended and connections refused {when}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_only_what_is_notable_and_resets() {
        let c = Counters::default();
        c.ended(Ending::Client);
        c.ended(Ending::Protocol);
        assert_eq!(c.take(), None);
        c.ended(Ending::Client);
        c.ended(Ending::WriteDeadline);
        c.ended(Ending::Evicted);
        c.ended(Ending::Evicted);
        c.refused(Refusal::Network);
        assert_eq!(c.take().as_deref(), Some("client=1 write-deadline=1 evicted=2 refused-per-network=1"));
        c.ended(Ending::Pregreet);
        c.ended(Ending::Pipelining);
        c.ended(Ending::Listed);
        assert_eq!(c.take().as_deref(), Some("pregreet=1 pipelining=1 dns-listed=1"));
        assert_eq!(c.take(), None);
    }
}
