//! `[screen]` and the screening keys of `[[listen]]`: defaults, a round trip, and one test per
//! bad value naming its key and line.

use super::{bad, parse_ok, with_listener};
use crate::{Config, Role, ScreenAction};
use std::time::Duration;

const GOOD: &str = r#"[screen]
action = "reject-at-rcpt"
threshold = 2
timeout = "500ms"
require_fcrdns = true
helo_checks = ["bare-ip", "our-address"]

[[screen.zone]]
name = "ZEN.example.test."
weight = 2
codes = ["127.0.0.2-127.0.0.11", "127.0.0.20"]

[[screen.zone]]
name = "allow.example.test"
weight = -5
"#;

#[test]
fn screen_section_is_read_with_defaults() {
    let c = parse_ok(&with_listener(GOOD));
    let s = c.screen.clone().unwrap();
    assert_eq!(s.action, ScreenAction::RejectAtRcpt);
    assert_eq!((s.threshold, s.timeout, s.cache_size), (2, Duration::from_millis(500), 10_000));
    assert!(s.fcrdns && s.require_fcrdns && s.reject_pipelining);
    assert!(s.helo.bare_ip && s.helo.our_address && !s.helo.our_name);
    assert_eq!(s.zones[0].name, "zen.example.test");
    assert_eq!(s.zones[0].codes.len(), 2);
    assert!(s.zones[0].codes[0].contains([127, 0, 0, 11].into()));
    assert!(!s.zones[0].codes[0].contains([127, 255, 255, 254].into()));
    assert_eq!(s.zones[1].weight, -5);
    assert_eq!(s.zones[1].codes[0].to_string(), "127.0.0.2-127.0.0.255");
    let again = Config::parse(&c.to_toml(), "again").unwrap();
    assert_eq!(again.screen, c.screen);
    assert_eq!(again.listeners, c.listeners);
}

#[test]
fn listeners_screen_by_role_and_greet_delay_is_off_by_default() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\
                [[listen]]\naddress = \"127.0.0.1:587\"\nrole = \"submission\"\n\
                [[listen]]\naddress = \"127.0.0.1:26\"\nrole = \"mx\"\nscreen = false\ngreet_delay = \"6s\"\n";
    let c = parse_ok(text);
    assert!(c.screen.is_none());
    let l = &c.listeners;
    assert_eq!((l[0].role, l[0].screen, l[0].greet_delay), (Role::Mx, true, Duration::ZERO));
    assert!(!l[1].screen);
    assert_eq!((l[2].screen, l[2].greet_delay), (false, Duration::from_secs(6)));
}

#[test]
fn bad_screen_values() {
    bad("[screen]\naction = \"drop\"\n", "screen.action", 2, "unknown value");
    bad("[screen]\nthreshold = 0\n", "screen.threshold", 2, "between 1 and 1000");
    bad("[screen]\ntimeout = \"0s\"\n", "screen.timeout", 2, "greater than zero");
    bad("[screen]\nhelo_checks = [\"nope\"]\n", "screen.helo_checks[0]", 2, "unknown check");
    bad("[screen]\ncache_size = -1\n", "screen.cache_size", 2, "at least 1");
    bad("[[screen.zone]]\nname = \"nodots\"\n", "screen.zone[0].name", 2, "not a DNS list zone");
    bad("[[screen.zone]]\nname = \"a.test\"\nweight = 0\n", "screen.zone[0].weight", 3, "must not be 0");
    bad("[[screen.zone]]\nname = \"a.test\"\ncodes = [\"10.0.0.2\"]\n", "screen.zone[0].codes[0]", 3, "127.0.0.0/8");
    bad(
        "[[screen.zone]]\nname = \"a.test\"\ncodes = [\"127.0.0.9-127.0.0.2\"]\n",
        "screen.zone[0].codes[0]",
        3,
        "range",
    );
    bad("[[screen.zone]]\nname = \"a.test\"\n[[screen.zone]]\nname = \"A.test\"\n", "screen.zone[1].name", 4, "twice");
    bad("[[screen.zone]]\nname = \"a.test\"\nlist = 1\n", "screen.zone[0].list", 3, "unknown field");
}

#[test]
fn bad_greet_delay() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\ngreet_delay = \"soon\"\n";
    super::check(text, Some("listen[0].greet_delay"), Some(4), "");
}
