//! The brute-force throttle, with time passed in (no sleeping).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dakiya_auth::{MAX_DELAY, Throttle, ThrottleVerdict};

const SEC: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn allowed(delay: Duration) -> ThrottleVerdict {
    ThrottleVerdict::Allowed { delay }
}

/// 5 failures in 10 minutes lock for 15 minutes; each failure adds a second.
fn throttle() -> Throttle {
    Throttle::new(5, 600 * SEC, 900 * SEC, SEC)
}

#[test]
fn delays_grow_with_failures() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    assert_eq!(t.check(a, t0), allowed(Duration::ZERO));
    for n in 1..=4 {
        t.failure(a, t0);
        assert_eq!(t.check(a, t0), allowed(n * SEC));
    }
    // Other clients are not affected.
    assert_eq!(t.check(ip("192.0.2.2"), t0), allowed(Duration::ZERO));
}

#[test]
fn delay_is_capped() {
    let mut t = Throttle::new(100, 600 * SEC, 900 * SEC, 2 * SEC);
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..10 {
        t.failure(a, t0);
    }
    assert_eq!(t.check(a, t0), allowed(MAX_DELAY));
}

#[test]
fn lockout_after_max_failures_in_window_then_expires() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for i in 0..5 {
        t.failure(a, t0 + i * SEC);
    }
    let until = t0 + 4 * SEC + 900 * SEC;
    assert_eq!(t.check(a, t0 + 5 * SEC), ThrottleVerdict::Locked { until });
    assert_eq!(t.check(a, until - SEC), ThrottleVerdict::Locked { until });
    // Failures reported while locked do not extend the lockout.
    t.failure(a, until - SEC);
    assert_eq!(t.check(a, until - SEC), ThrottleVerdict::Locked { until });
    // After the lockout the client starts afresh.
    assert_eq!(t.check(a, until), allowed(Duration::ZERO));
    t.failure(a, until);
    assert_eq!(t.check(a, until), allowed(SEC));
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    // One failure every 3 minutes never has 5 inside a 10-minute window.
    for i in 0..20 {
        let now = t0 + i * 180 * SEC;
        assert!(matches!(t.check(a, now), ThrottleVerdict::Allowed { .. }), "locked at attempt {i}");
        t.failure(a, now);
    }
    // Four failures are within the window just after the last one...
    assert_eq!(t.check(a, t0 + 19 * 180 * SEC), allowed(4 * SEC));
    // ...and none once it has passed.
    assert_eq!(t.check(a, t0 + 19 * 180 * SEC + 600 * SEC), allowed(Duration::ZERO));
}

#[test]
fn success_clears() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..4 {
        t.failure(a, t0);
    }
    t.success(a);
    assert_eq!(t.check(a, t0), allowed(Duration::ZERO));
    assert!(t.is_empty());
    // Four more failures do not lock: the earlier ones are gone.
    for _ in 0..4 {
        t.failure(a, t0);
    }
    assert_eq!(t.check(a, t0), allowed(4 * SEC));
}

#[test]
fn ipv6_is_counted_per_64() {
    let mut t = throttle();
    let t0 = Instant::now();
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
        t.failure(ip(host), t0);
    }
    assert_eq!(t.check(ip("2001:db8:1:2:abcd::"), t0), allowed(3 * SEC));
    assert_eq!(t.check(ip("2001:db8:1:3::1"), t0), allowed(Duration::ZERO));
    assert_eq!(t.len(), 1);
    // Five hosts of one /64 lock the whole /64.
    t.failure(ip("2001:db8:1:2::7"), t0);
    t.failure(ip("2001:db8:1:2::8"), t0);
    assert!(matches!(t.check(ip("2001:db8:1:2::1234"), t0), ThrottleVerdict::Locked { .. }));
    t.success(ip("2001:db8:1:2::99"));
    assert_eq!(t.check(ip("2001:db8:1:2::1"), t0), allowed(Duration::ZERO));
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    let mut t = throttle();
    let t0 = Instant::now();
    t.failure(ip("::ffff:192.0.2.1"), t0);
    assert_eq!(t.check(ip("192.0.2.1"), t0), allowed(SEC));
    // Distinct IPv4 addresses are distinct clients even though they share a mapped /64.
    assert_eq!(t.check(ip("::ffff:192.0.2.2"), t0), allowed(Duration::ZERO));
}

#[test]
fn expired_entries_are_pruned() {
    let mut t = throttle();
    let t0 = Instant::now();
    for i in 0..1000u32 {
        t.failure(IpAddr::from(i.to_be_bytes()), t0);
    }
    assert_eq!(t.len(), 1000);
    // One window later, the next call drops them all.
    t.check(ip("198.51.100.1"), t0 + 600 * SEC);
    assert_eq!(t.len(), 0);
}

#[test]
fn locked_entries_survive_pruning_until_the_lockout_ends() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..5 {
        t.failure(a, t0);
    }
    t.check(ip("198.51.100.1"), t0 + 700 * SEC);
    assert_eq!(t.len(), 1);
    assert!(matches!(t.check(a, t0 + 700 * SEC), ThrottleVerdict::Locked { .. }));
    t.check(ip("198.51.100.1"), t0 + 1400 * SEC);
    assert_eq!(t.len(), 0);
}

#[test]
fn table_is_bounded_and_keeps_recent_clients() {
    let mut t = throttle().with_max_entries(1000);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        // All within the window, so nothing expires: only the cap limits the table.
        t.failure(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0 + Duration::from_millis(i.into()));
        assert!(t.len() <= 1000);
    }
    let newest = IpAddr::from((0x0a00_0000u32 + 9_999).to_be_bytes());
    let now = t0 + 10 * SEC;
    assert_eq!(t.check(newest, now), allowed(SEC));
    let oldest = IpAddr::from(0x0a00_0000u32.to_be_bytes());
    assert_eq!(t.check(oldest, now), allowed(Duration::ZERO));
}

#[test]
fn default_table_cap_holds_under_a_flood() {
    let mut t = throttle();
    let t0 = Instant::now();
    for i in 0..150_000u64 {
        let v6 = (0x2001_0db8_0000_0000u128 << 64) | (u128::from(i) << 64);
        t.failure(IpAddr::from(v6.to_be_bytes()), t0);
    }
    assert!(t.len() <= dakiya_auth::DEFAULT_MAX_ENTRIES);
    assert!(t.len() > dakiya_auth::DEFAULT_MAX_ENTRIES / 2);
}
