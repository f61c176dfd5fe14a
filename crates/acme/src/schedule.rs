//! When to order a certificate, and how long to wait after a failed order. Pure: the time is
//! passed in.

use crate::certinfo::CertInfo;
use std::time::{Duration, SystemTime};

/// The first wait after a failed order.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(60);
/// The longest wait after failed orders: a failing CA or challenge is retried at least this often.
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);

/// What to do about the certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Order one now, for this reason.
    Now(Reason),
    /// Nothing to do before this time.
    At(SystemTime),
}

/// Why a certificate is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No usable certificate (missing or unreadable).
    Missing,
    /// The certificate is self-signed (the placeholder the server made at first start).
    SelfSigned,
    /// The certificate does not cover every configured name.
    NamesChanged,
    /// It expires within `renew_before` (or has expired).
    Expiring,
}

impl Reason {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "no certificate",
            Reason::SelfSigned => "the certificate is self-signed",
            Reason::NamesChanged => "the certificate does not cover every name in tls.acme.names",
            Reason::Expiring => "the certificate expires within tls.acme.renew_before",
        }
    }
}

/// Whether the certificate `current` (None: none usable) must be replaced at `now`.
pub fn due(now: SystemTime, current: Option<&CertInfo>, names: &[String], renew_before: Duration) -> Due {
    let Some(cert) = current else { return Due::Now(Reason::Missing) };
    if cert.self_issued {
        return Due::Now(Reason::SelfSigned);
    }
    if !names.iter().all(|n| cert.names.iter().any(|c| c.eq_ignore_ascii_case(n))) {
        return Due::Now(Reason::NamesChanged);
    }
    let renew_at = cert.not_after.checked_sub(renew_before).unwrap_or(SystemTime::UNIX_EPOCH);
    if renew_at <= now { Due::Now(Reason::Expiring) } else { Due::At(renew_at) }
}

/// How long to wait after `failures` consecutive failed orders (1 for the first): doubling
/// from [`BACKOFF_FIRST`], never more than [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_FIRST.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// How long to sleep at `now` before looking again, given the decision `At(when)`: until
/// then, but no longer than `check_interval` (so a certificate replaced by hand, or a clock
/// jump, is noticed).
pub fn sleep_for(now: SystemTime, when: SystemTime, check_interval: Duration) -> Duration {
    when.duration_since(now).unwrap_or_default().min(check_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cert(names: &[&str], not_after: SystemTime) -> CertInfo {
        CertInfo { names: names.iter().map(|s| s.to_string()).collect(), not_after, self_issued: false }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_or_self_signed_is_due_now() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(due(now, None, &names(&["a.test"]), 30 * DAY), Due::Now(Reason::Missing));
        let mut c = cert(&["a.test"], now + 90 * DAY);
        c.self_issued = true;
        assert_eq!(due(now, Some(&c), &names(&["a.test"]), 30 * DAY), Due::Now(Reason::SelfSigned));
    }

    #[test]
    fn renews_renew_before_the_expiry() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let c = cert(&["a.test"], now + 90 * DAY);
        assert_eq!(due(now, Some(&c), &names(&["a.test"]), 30 * DAY), Due::At(now + 60 * DAY));
        let later = now + 60 * DAY;
        assert_eq!(due(later, Some(&c), &names(&["a.test"]), 30 * DAY), Due::Now(Reason::Expiring));
        // Expired, and a renew_before longer than the whole lifetime.
        assert_eq!(due(now + 100 * DAY, Some(&c), &names(&["a.test"]), DAY), Due::Now(Reason::Expiring));
        assert_eq!(due(now, Some(&c), &names(&["a.test"]), 100_000 * DAY), Due::Now(Reason::Expiring));
    }

    #[test]
    fn a_name_not_covered_is_due_now() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let c = cert(&["A.test", "b.test"], now + 90 * DAY);
        assert_eq!(due(now, Some(&c), &names(&["a.test"]), 30 * DAY), Due::At(now + 60 * DAY));
        assert_eq!(due(now, Some(&c), &names(&["a.test", "c.test"]), 30 * DAY), Due::Now(Reason::NamesChanged));
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let schedule: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(schedule, [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600]);
        assert_eq!(backoff(0), BACKOFF_FIRST);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn sleeps_until_due_but_at_most_the_check_interval() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(sleep_for(now, now + 60 * DAY, DAY / 2), DAY / 2);
        assert_eq!(sleep_for(now, now + Duration::from_secs(5), DAY / 2), Duration::from_secs(5));
        assert_eq!(sleep_for(now, now - DAY, DAY / 2), Duration::ZERO);
    }
}
