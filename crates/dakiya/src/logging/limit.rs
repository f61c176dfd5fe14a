//! A rate limit for repeated log lines of one kind: pure logic, time passed in.
//!
//! A client can trigger some error lines once per message or per connection (a full disk
//! refuses every message; a connection flood is refused connection by connection). Logged
//! one by one they bury everything else: 22,003 lines in 40 s. Per kind, the first `max`
//! lines of a period are shown; the rest are counted, and the count is reported once the
//! period has ended ("… and 21,980 more in the last 10 s").

use std::time::{Duration, Instant};

/// Counts the lines of one kind in the current period. The period starts with the first
/// line after the previous one ended, so a quiet kind costs nothing.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    period: Duration,
    /// When the current period started; `None` when there is none.
    start: Option<Instant>,
    /// Lines shown in the current period.
    shown: u32,
    /// Lines held back in the current period.
    hidden: u64,
}

/// The verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    /// Whether to write this line.
    pub show: bool,
    /// Lines held back in the period that just ended, to report before this one (0: none).
    pub hidden_before: u64,
}

impl Limiter {
    /// At most `max` lines per `period`.
    pub const fn new(max: u32, period: Duration) -> Limiter {
        Limiter { max, period, start: None, shown: 0, hidden: 0 }
    }

    /// Decides on a line that happens at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let hidden_before = self.roll(now);
        if self.shown < self.max {
            self.shown += 1;
            Admit { show: true, hidden_before }
        } else {
            self.hidden += 1;
            Admit { show: false, hidden_before }
        }
    }

    /// Called now and then without a line: once the current period has ended, how many lines
    /// it held back (which are then forgotten); otherwise 0. So a count is reported even when
    /// no further line of the kind comes.
    pub fn flush(&mut self, now: Instant) -> u64 {
        match self.start {
            Some(start) if self.ended(start, now) => {
                let hidden = self.hidden;
                *self = Limiter::new(self.max, self.period);
                hidden
            }
            _ => 0,
        }
    }

    /// Starts a new period if the current one has ended (or there is none); returns what the
    /// ended one held back.
    fn roll(&mut self, now: Instant) -> u64 {
        match self.start {
            Some(start) if !self.ended(start, now) => 0,
            _ => {
                let hidden = self.hidden;
                self.start = Some(now);
                self.shown = 0;
                self.hidden = 0;
                hidden
            }
        }
    }

    fn ended(&self, start: Instant, now: Instant) -> bool {
        now.saturating_duration_since(start) >= self.period
    }
}

/// `n` with thousands separated by commas: `21,980`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    fn shown(a: Admit) -> bool {
        a.show
    }

    #[test]
    fn the_first_max_lines_of_a_period_are_shown() {
        let t0 = Instant::now();
        let mut l = Limiter::new(3, TEN);
        for i in 0..3 {
            assert_eq!(l.admit(t0 + Duration::from_millis(i)), Admit { show: true, hidden_before: 0 });
        }
        assert_eq!(l.admit(t0 + Duration::from_millis(3)), Admit { show: false, hidden_before: 0 });
        assert!(!shown(l.admit(t0 + TEN - Duration::from_nanos(1))));
    }

    #[test]
    fn the_next_line_after_the_period_reports_what_was_held_back() {
        let t0 = Instant::now();
        let mut l = Limiter::new(2, TEN);
        for _ in 0..21_982 {
            l.admit(t0);
        }
        // Exactly one period later a new period starts.
        assert_eq!(l.admit(t0 + TEN), Admit { show: true, hidden_before: 21_980 });
        assert_eq!(l.admit(t0 + TEN), Admit { show: true, hidden_before: 0 });
        assert_eq!(l.admit(t0 + TEN), Admit { show: false, hidden_before: 0 });
    }

    #[test]
    fn flush_reports_an_ended_period_once() {
        let t0 = Instant::now();
        let mut l = Limiter::new(1, TEN);
        l.admit(t0);
        l.admit(t0);
        l.admit(t0);
        assert_eq!(l.flush(t0 + TEN - Duration::from_nanos(1)), 0, "period not over");
        assert_eq!(l.flush(t0 + TEN), 2);
        assert_eq!(l.flush(t0 + TEN), 0, "reported once");
        // After a flush the next line starts a fresh period and reports nothing.
        assert_eq!(l.admit(t0 + TEN * 3), Admit { show: true, hidden_before: 0 });
    }

    #[test]
    fn a_period_with_nothing_held_back_reports_zero() {
        let t0 = Instant::now();
        let mut l = Limiter::new(5, TEN);
        l.admit(t0);
        assert_eq!(l.flush(t0 + TEN * 2), 0);
        assert_eq!(l.flush(t0), 0, "no period, time going backwards");
    }

    #[test]
    fn time_going_backwards_does_not_start_a_period() {
        let t0 = Instant::now() + TEN;
        let mut l = Limiter::new(1, TEN);
        l.admit(t0);
        assert!(!l.admit(t0 - Duration::from_secs(5)).show);
    }

    #[test]
    fn zero_shows_nothing_and_counts_everything() {
        let t0 = Instant::now();
        let mut l = Limiter::new(0, TEN);
        assert!(!l.admit(t0).show);
        assert_eq!(l.admit(t0 + TEN), Admit { show: false, hidden_before: 1 });
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(21_980), "21,980");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
