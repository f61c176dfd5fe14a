//! The retry schedule.

use std::time::Duration;

/// The delay before the next attempt after `attempts` failed attempts.
///
/// `schedule[0]` follows the first failure (and is also returned for
/// `attempts == 0`), `schedule[1]` the second, and the last entry repeats
/// for every later failure. An empty schedule yields zero; configuration
/// validation must not allow one.
pub fn next_retry_delay(attempts: u32, schedule: &[Duration]) -> Duration {
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    schedule.get(index).or(schedule.last()).copied().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_schedule_then_repeats_last() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(1), m(5), m(30)];
        let got: Vec<_> = (0..7).map(|a| next_retry_delay(a, &schedule)).collect();
        assert_eq!(got, vec![m(1), m(1), m(5), m(30), m(30), m(30), m(30)]);
        assert_eq!(next_retry_delay(u32::MAX, &schedule), m(30));
    }

    #[test]
    fn empty_schedule_is_zero() {
        assert_eq!(next_retry_delay(3, &[]), Duration::ZERO);
    }
}
