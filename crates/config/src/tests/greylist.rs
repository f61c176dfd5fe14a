//! `[greylist]`, `[rate_limits.NAME]` and the listener keys that use them.

use super::{bad, check, parse_ok, with_listener};
use crate::{Config, RateLimits, RateSpec, Role};
use std::time::Duration;

fn round_trip(c: &Config) {
    let text = c.to_toml();
    let again =
        Config::parse(&text, &c.source).unwrap_or_else(|e| panic!("to_toml output does not parse: {e}\n{text}"));
    assert_eq!(&again, c, "{text}");
}

#[test]
fn greylisting_is_off_by_default_and_one_key_turns_it_on_for_mx_only() {
    let c = parse_ok(&with_listener(""));
    assert!(!c.greylist.enabled);
    assert!(!c.listeners[0].greylist);
    let text = "[greylist]\nenabled = true\n\n[[listen]]\naddress = \"127.0.0.1:2587\"\nrole = \"submission\"\n";
    let c = parse_ok(&with_listener(text));
    let mx = c.listeners.iter().find(|l| l.role == Role::Mx).unwrap();
    let sub = c.listeners.iter().find(|l| l.role == Role::Submission).unwrap();
    assert!(mx.greylist);
    assert!(!sub.greylist);
    assert_eq!(c.greylist.min_delay, Duration::from_secs(60));
    assert_eq!(c.greylist.window, Duration::from_secs(86_400));
    assert_eq!((c.greylist.pass_days, c.greylist.auto_allow_after), (35, 5));
    round_trip(&c);
}

#[test]
fn exempt_entries_are_sorted_by_kind_and_match_case_insensitively() {
    let text = "[greylist]\nenabled = true\nexempt = [\"Example.ORG\", \"Postmaster@example.net\", \"192.0.2.0/24\", \"2001:db8::1\"]\n";
    let c = parse_ok(&with_listener(text));
    let g = &c.greylist;
    let ip = |s: &str| s.parse().unwrap();
    assert!(g.is_exempt(ip("192.0.2.77"), "a@remote.test", "bob@example.test"));
    assert!(g.is_exempt(ip("::ffff:192.0.2.77"), "a@remote.test", "bob@example.test"));
    assert!(g.is_exempt(ip("198.51.100.1"), "x@example.org", "bob@example.test"));
    assert!(g.is_exempt(ip("198.51.100.1"), "", "postmaster@EXAMPLE.net"));
    assert!(!g.is_exempt(ip("198.51.100.1"), "", "bob@example.net"));
    assert!(!g.is_exempt(ip("198.51.100.1"), "x@sub.example.org", "bob@example.test"));
    round_trip(&c);
}

#[test]
fn bad_greylist_values_are_refused() {
    bad("[greylist]\nmin_delay = \"0s\"\n", "greylist.min_delay", 2, "greater than zero");
    bad("[greylist]\nmin_delay = \"10m\"\nwindow = \"5m\"\n", "greylist.window", 3, "at least greylist.min_delay");
    bad("[greylist]\npass_days = 0\n", "greylist.pass_days", 2, "at least 1");
    bad("[greylist]\nexempt = [\"not a domain\"]\n", "greylist.exempt[0]", 2, "domain, an address or a network");
    bad("[greylist]\nexempt = [\"192.0.2.1/33\"]\n", "greylist.exempt[0]", 2, "192.0.2.1/33");
    bad("[greylist]\nnonsense = 1\n", "greylist.nonsense", 2, "unknown field");
}

#[test]
fn greylist_on_a_submission_listener_or_while_off_is_refused() {
    let sub = "[greylist]\nenabled = true\n[[listen]]\naddress = \"127.0.0.1:2587\"\nrole = \"submission\"\ngreylist = true\n";
    check(sub, Some("listen[0].greylist"), Some(6), "mx listeners only");
    let off = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\ngreylist = true\n";
    check(off, Some("listen[0].greylist"), Some(4), "enabled = true");
}

#[test]
fn listeners_without_a_profile_get_their_roles_defaults() {
    let c = parse_ok(&with_listener("[[listen]]\naddress = \"127.0.0.1:2587\"\nrole = \"submission\"\n"));
    let mx = c.listeners.iter().find(|l| l.role == Role::Mx).unwrap();
    let sub = c.listeners.iter().find(|l| l.role == Role::Submission).unwrap();
    assert_eq!(mx.rate_limits, RateLimits::defaults(Role::Mx));
    assert!(mx.rate_limits.connections_per_network.is_some());
    assert!(mx.rate_limits.messages_per_user.is_none());
    assert_eq!(sub.rate_limits.messages_per_user, Some(RateSpec { count: 200, period: Duration::from_secs(3600) }));
    round_trip(&c);
}

#[test]
fn a_named_profile_is_used_as_written_and_missing_keys_are_off() {
    let text = "[rate_limits.strict]\nmessages_per_user = \"10/h\"\nrecipients_per_user = \"100/1d\"\n\
                connections_per_network = \"off\"\nmax_entries = 50\n\
                [[listen]]\naddress = \"127.0.0.1:2587\"\nrole = \"submission\"\nrate_limits = \"strict\"\n";
    let c = parse_ok(text);
    let r = &c.listeners[0].rate_limits;
    assert_eq!(r.messages_per_user, Some(RateSpec { count: 10, period: Duration::from_secs(3600) }));
    assert_eq!(r.recipients_per_user, Some(RateSpec { count: 100, period: Duration::from_secs(86_400) }));
    assert_eq!((r.connections_per_network, r.messages_per_network, r.max_entries), (None, None, 50));
    round_trip(&c);
}

#[test]
fn bad_rate_limits_are_refused() {
    let listener = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\nrate_limits = \"nope\"\n";
    check(listener, Some("listen[0].rate_limits"), Some(4), "[rate_limits.nope]");
    for value in ["\"0/1h\"", "\"10\"", "\"10/0s\"", "\"10/fortnight\"", "\"x/1h\"", "\"5/1500ms\""] {
        let text = format!("[rate_limits.a]\nmessages_per_user = {value}\n");
        let e = super::parse(&with_listener(&text)).expect_err(value);
        assert_eq!(e.key.as_deref(), Some("rate_limits.a.messages_per_user"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }
    bad("[rate_limits.a]\nmessages_per_hour = \"1/h\"\n", "rate_limits.a.messages_per_hour", 2, "unknown field");
}
