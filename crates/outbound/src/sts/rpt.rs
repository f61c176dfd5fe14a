//! The TLS-RPT counts (RFC 8460 §4) in memory, written to a small JSON file so that a
//! restart keeps them (at most one flush interval's worth is lost to a crash).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dakiya_mtasts::report::{PolicyInfo, Tally};
use dakiya_mtasts::{ResultType, Tallies};
use tracing::warn;

use super::applied::Applied;

/// How often changed counts are written at most (besides at shutdown).
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// The counts and their file.
pub(crate) struct Reporter {
    path: Option<PathBuf>,
    state: Mutex<(Tallies, bool)>,
    last_flush: Mutex<Option<Instant>>,
}

impl Reporter {
    /// Loads the counts from `path` if it holds them.
    pub(crate) fn new(path: Option<PathBuf>) -> Reporter {
        let tallies = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| Tallies::from_json(&t))
            .unwrap_or_default();
        Reporter { path, state: Mutex::new((tallies, false)), last_flush: Mutex::new(None) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tallies) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = true;
        f(&mut state.0)
    }

    /// Counts a session that met the policy.
    pub(crate) fn success(&self, applied: &Applied) {
        self.with(|t| t.success(&applied.domain, &applied.info(), super::clock::now()));
    }

    /// Counts a session under another kind of policy (DANE's `tlsa`, RFC 8460 §4.3):
    /// `None` a success.
    pub(crate) fn count(&self, domain: &str, policy: &PolicyInfo, failure: Option<ResultType>, mx: Option<&str>) {
        self.with(|t| match failure {
            None => t.success(domain, policy, super::now()),
            Some(result) => t.failure(domain, policy, result, mx, super::now()),
        });
    }

    /// Counts a failure.
    pub(crate) fn failure(&self, applied: &Applied, result: ResultType, mx: Option<&str>) {
        self.with(|t| t.failure(&applied.domain, &applied.info(), result, mx, super::clock::now()));
    }

    /// Writes the counts if they changed and the last write is [`FLUSH_EVERY`] ago.
    pub(crate) fn maybe_flush(&self) {
        {
            let mut last = self.last_flush.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < FLUSH_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.flush();
    }

    /// Writes the counts if they changed since the last flush.
    pub(crate) fn flush(&self) {
        let Some(path) = &self.path else { return };
        let json = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.1 {
                return;
            }
            state.1 = false;
            state.0.to_json()
        };
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        if let Err(e) = super::store::write_atomic(dir, path, json.as_bytes()) {
            warn!(error = %e, "cannot write the TLS-RPT counts");
        }
    }

    /// Takes the counts due for a report at `now` (past days; with `all`, today's too),
    /// and writes what is left.
    pub(crate) fn take_due(&self, now: u64, all: bool) -> Vec<Tally> {
        let due = self.with(|t| t.take_due(now, all));
        self.flush();
        due
    }
}
