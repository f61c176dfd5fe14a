//! How long fsyncs take, counted in fixed buckets with atomics (for metrics): recording is
//! a few atomic additions, reading is a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (100 µs to 1 s; slower ones go past the last).
pub const BOUNDS_MICROS: [u64; 10] = [100, 250, 500, 1_000, 2_500, 10_000, 25_000, 100_000, 250_000, 1_000_000];

/// Fsync durations so far.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Per bucket (not cumulative); the last counts those slower than every bound.
    counts: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// A snapshot of [`Latencies`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyStats {
    /// Upper bounds of the buckets, in seconds.
    pub bounds: Vec<f64>,
    /// Fsyncs per bucket (not cumulative), one more than `bounds`: the last counts those
    /// slower than every bound.
    pub counts: Vec<u64>,
    /// The total time, in seconds.
    pub sum: f64,
}

impl Latencies {
    /// Counts one fsync that took `took`.
    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.iter().position(|&b| micros <= b).unwrap_or(BOUNDS_MICROS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub fn snapshot(&self) -> LatencyStats {
        LatencyStats {
            bounds: BOUNDS_MICROS.iter().map(|&b| b as f64 / 1e6).collect(),
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets() {
        let l = Latencies::default();
        l.record(Duration::from_micros(50));
        l.record(Duration::from_micros(100));
        l.record(Duration::from_millis(2));
        l.record(Duration::from_secs(3));
        let s = l.snapshot();
        assert_eq!(s.counts.len(), s.bounds.len() + 1);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[4], 1, "2 ms is at most 2.5 ms");
        assert_eq!(s.counts[BOUNDS_MICROS.len()], 1);
        assert!((s.sum - 3.00215).abs() < 1e-9, "{}", s.sum);
    }
}
