use super::*;

const T0: u64 = 1_800_000_000;

fn settings() -> GreylistSettings {
    GreylistSettings { min_delay: 60, window: 86_400, pass_ttl: 35 * 86_400, auto_allow_after: 0, max_entries: 1000 }
}

fn t(ip: &str, from: &str, to: &str) -> Triplet {
    Triplet::new(ip.parse().unwrap(), from, to)
}

#[test]
fn first_seen_is_deferred_for_min_delay() {
    let mut g = Greylist::new(settings());
    let x = t("192.0.2.1", "a@remote.test", "bob@example.test");
    assert_eq!(g.check(&x, T0), GreylistVerdict::Deferred { retry_in: 60 });
    assert_eq!(g.check(&x, T0 + 1), GreylistVerdict::Deferred { retry_in: 59 });
    // One second early is still too early; the first second that can pass does.
    assert_eq!(g.check(&x, T0 + 59), GreylistVerdict::Deferred { retry_in: 1 });
    assert_eq!(g.check(&x, T0 + 60), GreylistVerdict::Retried);
    assert_eq!(g.check(&x, T0 + 61), GreylistVerdict::Known);
}

#[test]
fn early_retries_do_not_restart_the_wait() {
    let mut g = Greylist::new(settings());
    let x = t("192.0.2.1", "a@remote.test", "bob@example.test");
    for s in 0..60 {
        assert!(!g.check(&x, T0 + s).passes());
    }
    assert!(g.check(&x, T0 + 60).passes());
}

#[test]
fn the_window_is_inclusive_and_then_starts_over() {
    let mut g = Greylist::new(settings());
    let x = t("192.0.2.1", "a@remote.test", "bob@example.test");
    g.check(&x, T0);
    assert_eq!(g.check(&x, T0 + 86_400), GreylistVerdict::Retried);
    let y = t("192.0.2.1", "a@remote.test", "carol@example.test");
    g.check(&y, T0);
    assert_eq!(g.check(&y, T0 + 86_401), GreylistVerdict::Deferred { retry_in: 60 });
    assert_eq!(g.check(&y, T0 + 86_461), GreylistVerdict::Retried);
}

#[test]
fn keys_are_network_and_lowercased_addresses() {
    let mut g = Greylist::new(settings());
    g.check(&t("192.0.2.1", "A@Remote.TEST", "Bob@Example.test"), T0);
    // Another address of the same /24, other case: the same triplet.
    assert!(g.check(&t("192.0.2.200", "a@remote.test", "bob@example.test"), T0 + 60).passes());
    // Another /24, sender or recipient: new triplets.
    assert!(!g.check(&t("192.0.3.1", "a@remote.test", "bob@example.test"), T0 + 60).passes());
    assert!(!g.check(&t("192.0.2.1", "b@remote.test", "bob@example.test"), T0 + 60).passes());
    assert!(!g.check(&t("192.0.2.1", "a@remote.test", "carol@example.test"), T0 + 60).passes());
    // The null sender is a sender of its own.
    assert!(!g.check(&t("192.0.2.1", "", "bob@example.test"), T0 + 60).passes());
}

#[test]
fn passed_triplets_are_remembered_and_refreshed_for_pass_ttl() {
    let mut g = Greylist::new(settings());
    let x = t("2001:db8::1", "a@remote.test", "bob@example.test");
    g.check(&x, T0);
    g.check(&x, T0 + 60);
    let ttl = 35 * 86_400;
    // Used just before it would expire: refreshed.
    assert_eq!(g.check(&x, T0 + 60 + ttl - 1), GreylistVerdict::Known);
    let last = T0 + 60 + ttl - 1;
    assert_eq!(g.check(&x, last + ttl - 1), GreylistVerdict::Known);
    // Not used for pass_ttl: forgotten, greylisted again.
    let last = last + ttl - 1;
    assert_eq!(g.check(&x, last + ttl), GreylistVerdict::Deferred { retry_in: 60 });
}

#[test]
fn a_network_is_auto_allowed_after_n_passes() {
    let mut g = Greylist::new(GreylistSettings { auto_allow_after: 2, ..settings() });
    for rcpt in ["bob@example.test", "carol@example.test"] {
        let x = t("192.0.2.1", "a@remote.test", rcpt);
        g.check(&x, T0);
        assert_eq!(g.check(&x, T0 + 60), GreylistVerdict::Retried);
    }
    let other = t("192.0.2.9", "new@elsewhere.test", "dave@example.test");
    assert_eq!(g.check(&other, T0 + 61), GreylistVerdict::AutoAllowed);
    // Only that network.
    assert!(!g.check(&t("192.0.3.1", "a@remote.test", "bob@example.test"), T0 + 61).passes());
}

#[test]
fn one_pass_short_of_auto_allow_is_not_enough() {
    let mut g = Greylist::new(GreylistSettings { auto_allow_after: 3, ..settings() });
    for rcpt in ["bob@example.test", "carol@example.test"] {
        let x = t("192.0.2.1", "a@remote.test", rcpt);
        g.check(&x, T0);
        g.check(&x, T0 + 60);
    }
    assert!(!g.check(&t("192.0.2.1", "a@remote.test", "dave@example.test"), T0 + 61).passes());
}

#[test]
fn an_attacker_cycling_senders_stays_within_max_entries_and_keeps_passed_triplets() {
    let mut g = Greylist::new(GreylistSettings { max_entries: 100, auto_allow_after: 5, ..settings() });
    let friend = t("198.51.100.1", "friend@remote.test", "bob@example.test");
    g.check(&friend, T0);
    g.check(&friend, T0 + 60);
    for i in 0..100_000u64 {
        let x = t("203.0.113.7", &format!("spam{i}@forged.test"), "bob@example.test");
        assert!(!g.check(&x, T0 + 61 + i / 100).passes());
        assert!(g.len() <= 100, "{} entries after {i}", g.len());
    }
    // Pending triplets were evicted first: the passed one and its network's count remain.
    assert!(g.is_known(&friend));
    assert_eq!(g.check(&friend, T0 + 2000), GreylistVerdict::Known);
}

#[test]
fn eviction_prefers_expired_entries() {
    let mut g = Greylist::new(GreylistSettings { max_entries: 4, ..settings() });
    for i in 0..4 {
        g.check(&t("192.0.2.1", &format!("s{i}@x.test"), "bob@example.test"), T0);
    }
    assert_eq!(g.len(), 4);
    // All four pending triplets' windows are over: they all go, the new one stays.
    g.check(&t("192.0.2.1", "new@x.test", "bob@example.test"), T0 + 86_401);
    assert_eq!(g.len(), 1);
}

#[test]
fn zero_settings_are_made_safe() {
    let mut g = Greylist::new(GreylistSettings { min_delay: 0, window: 0, max_entries: 0, ..settings() });
    let x = t("192.0.2.1", "a@remote.test", "bob@example.test");
    assert_eq!(g.check(&x, T0), GreylistVerdict::Deferred { retry_in: 1 });
    assert_eq!(g.len(), 1);
    assert_eq!(g.check(&x, T0 + 1), GreylistVerdict::Retried);
    assert_eq!(g.len(), 1);
}

#[test]
fn dirty_is_reported_once() {
    let mut g = Greylist::new(settings());
    assert!(!g.take_dirty());
    g.check(&t("192.0.2.1", "a@remote.test", "bob@example.test"), T0);
    assert!(g.take_dirty());
    assert!(!g.take_dirty());
}
