//! The brute-force throttle, with time passed in (no sleeping): attempts are reserved before
//! they are checked, and a success releases only its own reservation.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dakiya_auth::{Attempt, MAX_DELAY, Throttle, ThrottleVerdict};

const SEC: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// 5 failures in 10 minutes lock for 15 minutes; each failure adds a second.
fn throttle() -> Throttle {
    Throttle::new(5, 600 * SEC, 900 * SEC, SEC)
}

/// Begins an attempt that must be allowed; returns its delay and reservation.
#[track_caller]
fn allowed(t: &mut Throttle, ip: IpAddr, now: Instant) -> (Duration, Attempt) {
    match t.begin(ip, now) {
        ThrottleVerdict::Allowed { delay, attempt } => (delay, attempt),
        v => panic!("expected Allowed, got {v:?}"),
    }
}

/// The delay of an allowed attempt that then fails (its reservation is kept).
#[track_caller]
fn fail(t: &mut Throttle, ip: IpAddr, now: Instant) -> Duration {
    allowed(t, ip, now).0
}

#[track_caller]
fn locked(t: &mut Throttle, ip: IpAddr, now: Instant) -> Instant {
    match t.begin(ip, now) {
        ThrottleVerdict::Locked { until } => until,
        v => panic!("expected Locked, got {v:?}"),
    }
}

#[test]
fn delays_grow_with_failures() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for n in 0..4 {
        assert_eq!(fail(&mut t, a, t0), n * SEC);
    }
    // Other clients are not affected.
    assert_eq!(fail(&mut t, ip("192.0.2.2"), t0), Duration::ZERO);
}

#[test]
fn delay_is_capped() {
    let mut t = Throttle::new(100, 600 * SEC, 900 * SEC, 2 * SEC);
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..10 {
        fail(&mut t, a, t0);
    }
    assert_eq!(fail(&mut t, a, t0), MAX_DELAY);
}

/// The heart of issue #9 item 1: attempts that are all still running (none has reported a
/// result) already count, so the sixth concurrent one is refused.
#[test]
fn concurrent_reservations_lock_at_max_failures() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    let pending: Vec<Attempt> = (0..5).map(|_| allowed(&mut t, a, t0).1).collect();
    assert_eq!(pending.len(), 5);
    for _ in 0..45 {
        assert_eq!(locked(&mut t, a, t0), t0 + 900 * SEC);
    }
}

#[test]
fn lockout_edges() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for i in 0..4 {
        fail(&mut t, a, t0 + i * SEC);
    }
    // The fifth attempt is still checked; it is the one that locks.
    assert_eq!(fail(&mut t, a, t0 + 4 * SEC), 4 * SEC);
    let until = t0 + 4 * SEC + 900 * SEC;
    assert_eq!(locked(&mut t, a, t0 + 4 * SEC), until);
    // Locked up to the last instant, even past the failure window: the lockout is longer.
    assert_eq!(locked(&mut t, a, t0 + 700 * SEC), until);
    assert_eq!(locked(&mut t, a, until - Duration::from_nanos(1)), until);
    // Refused attempts do not extend the lockout; at `until` the client starts afresh.
    assert_eq!(fail(&mut t, a, until), Duration::ZERO);
    assert_eq!(fail(&mut t, a, until), SEC);
}

#[test]
fn max_failures_of_one_locks_on_the_first_attempt() {
    let mut t = Throttle::new(0, 600 * SEC, 900 * SEC, SEC);
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    assert_eq!(fail(&mut t, a, t0), Duration::ZERO);
    locked(&mut t, a, t0);
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    // One failure every 3 minutes never has 5 inside a 10-minute window: at most 3 earlier
    // ones are within the window of each attempt.
    for i in 0..20 {
        let delay = fail(&mut t, a, t0 + i * 180 * SEC);
        assert_eq!(delay, SEC * i.min(3), "attempt {i}");
    }
    // None once the window has passed.
    assert_eq!(fail(&mut t, a, t0 + 19 * 180 * SEC + 600 * SEC), Duration::ZERO);
}

#[test]
fn success_releases_only_its_own_reservation() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..3 {
        fail(&mut t, a, t0);
    }
    let (delay, good) = allowed(&mut t, a, t0);
    assert_eq!(delay, 3 * SEC);
    t.release(good);
    // The three failures stay: the next attempt waits 3 s, and two more failures lock.
    assert_eq!(fail(&mut t, a, t0), 3 * SEC);
    assert_eq!(fail(&mut t, a, t0), 4 * SEC);
    locked(&mut t, a, t0);
    // Releasing twice changes nothing.
    t.release(good);
    locked(&mut t, a, t0);
}

/// An attacker who owns one account logs in between guesses: the guesses still lock the
/// address after `max_failures` of them.
#[test]
fn a_valid_account_does_not_reset_the_count() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    let mut guesses = 0;
    for i in 0..100 {
        let now = t0 + i * SEC;
        let ThrottleVerdict::Allowed { attempt, .. } = t.begin(a, now) else { break };
        if i % 2 == 0 {
            guesses += 1;
        } else {
            t.release(attempt);
        }
    }
    assert_eq!(guesses, 5);
}

#[test]
fn releasing_the_reservation_that_locked_lifts_the_lock() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..4 {
        fail(&mut t, a, t0);
    }
    // Concurrently: a fifth attempt (the right password) locks while it is checked...
    let (_, good) = allowed(&mut t, a, t0);
    locked(&mut t, a, t0 + SEC);
    // ...and its success lifts the lock: four failures are not five.
    t.release(good);
    assert_eq!(fail(&mut t, a, t0 + 2 * SEC), 4 * SEC);
    locked(&mut t, a, t0 + 2 * SEC);
}

#[test]
fn release_after_the_lockout_ended_is_ignored() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    let first = allowed(&mut t, a, t0).1;
    for _ in 0..4 {
        fail(&mut t, a, t0);
    }
    let after = t0 + 900 * SEC;
    let fresh = allowed(&mut t, a, after).1;
    t.release(first);
    // The new failure counts: the old reservation did not release it.
    assert_eq!(fail(&mut t, a, after), SEC);
    t.release(fresh);
    assert_eq!(fail(&mut t, a, after), SEC);
}

#[test]
fn releasing_everything_forgets_the_client() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    let (_, x) = allowed(&mut t, a, t0);
    let (_, y) = allowed(&mut t, a, t0);
    t.release(y);
    t.release(x);
    assert!(t.is_empty());
}

#[test]
fn ipv6_is_counted_per_64() {
    let mut t = throttle();
    let t0 = Instant::now();
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
        fail(&mut t, ip(host), t0);
    }
    assert_eq!(fail(&mut t, ip("2001:db8:1:2:abcd::"), t0), 3 * SEC);
    assert_eq!(fail(&mut t, ip("2001:db8:1:3::1"), t0), Duration::ZERO);
    assert_eq!(t.len(), 2);
    // Five hosts of one /64 lock the whole /64, not the neighbouring one.
    fail(&mut t, ip("2001:db8:1:2::7"), t0);
    locked(&mut t, ip("2001:db8:1:2::1234"), t0);
    assert_eq!(fail(&mut t, ip("2001:db8:1:3::1"), t0), SEC);
    // A success from another host of the /64 releases its own reservation only.
    let mut u = throttle();
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        fail(&mut u, ip(host), t0);
    }
    let (_, good) = allowed(&mut u, ip("2001:db8:1:2::99"), t0);
    u.release(good);
    assert_eq!(fail(&mut u, ip("2001:db8:1:2::1"), t0), 2 * SEC);
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    let mut t = throttle();
    let t0 = Instant::now();
    fail(&mut t, ip("::ffff:192.0.2.1"), t0);
    assert_eq!(fail(&mut t, ip("192.0.2.1"), t0), SEC);
    // Distinct IPv4 addresses are distinct clients even though they share a mapped /64.
    assert_eq!(fail(&mut t, ip("::ffff:192.0.2.2"), t0), Duration::ZERO);
}

#[test]
fn expired_entries_are_pruned() {
    let mut t = throttle();
    let t0 = Instant::now();
    for i in 0..1000u32 {
        fail(&mut t, IpAddr::from(i.to_be_bytes()), t0);
    }
    assert_eq!(t.len(), 1000);
    // One window later, the next call drops them all (and tracks only the new client).
    fail(&mut t, ip("198.51.100.1"), t0 + 600 * SEC);
    assert_eq!(t.len(), 1);
}

#[test]
fn locked_entries_survive_pruning_until_the_lockout_ends() {
    let mut t = throttle();
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..5 {
        fail(&mut t, a, t0);
    }
    let (_, probe) = allowed(&mut t, ip("198.51.100.1"), t0 + 700 * SEC);
    t.release(probe);
    assert_eq!(t.len(), 1);
    locked(&mut t, a, t0 + 700 * SEC);
    let (_, probe) = allowed(&mut t, ip("198.51.100.1"), t0 + 1400 * SEC);
    t.release(probe);
    assert_eq!(t.len(), 0);
}

#[test]
fn table_is_bounded_and_keeps_recent_clients() {
    let mut t = throttle().with_max_entries(1000);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        // All within the window, so nothing expires: only the cap limits the table.
        fail(&mut t, IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0 + Duration::from_millis(i.into()));
        assert!(t.len() <= 1000);
    }
    let newest = IpAddr::from((0x0a00_0000u32 + 9_999).to_be_bytes());
    let now = t0 + 10 * SEC;
    assert_eq!(fail(&mut t, newest, now), SEC);
    let oldest = IpAddr::from(0x0a00_0000u32.to_be_bytes());
    assert_eq!(fail(&mut t, oldest, now), Duration::ZERO);
}

#[test]
fn default_table_cap_holds_under_a_flood() {
    let mut t = throttle();
    let t0 = Instant::now();
    for i in 0..150_000u64 {
        let v6 = (0x2001_0db8_0000_0000u128 << 64) | (u128::from(i) << 64);
        fail(&mut t, IpAddr::from(v6.to_be_bytes()), t0);
    }
    assert!(t.len() <= dakiya_auth::DEFAULT_MAX_ENTRIES);
    assert!(t.len() > dakiya_auth::DEFAULT_MAX_ENTRIES / 2);
}
