//! `[[milter]]` and the listener key `milters`.

use super::{check, parse_ok};
use crate::{Config, DefaultAction, MilterAddress};
use std::time::Duration;

const RSPAMD: &str = "[[milter]]\nname = \"rspamd\"\naddress = \"inet:127.0.0.1:11332\"\n";

fn listener(milters: &str) -> String {
    format!("\n[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\nmilters = {milters}\n")
}

#[test]
fn milters_have_defaults_and_listeners_name_them() {
    let c = parse_ok(&format!("{RSPAMD}{}", listener("[\"rspamd\", \"rspamd\"]")));
    let m = &c.milters[0];
    assert_eq!(m.address, MilterAddress::Inet("127.0.0.1:11332".parse().unwrap()));
    assert_eq!(
        (m.connect_timeout, m.command_timeout, m.eom_timeout),
        (Duration::from_secs(5), Duration::from_secs(30), Duration::from_secs(120))
    );
    assert_eq!(m.default_action, DefaultAction::Tempfail);
    assert!(!m.skip_authenticated);
    assert_eq!(c.listeners[0].milters, ["rspamd"], "a name given twice is asked once");
    let text = c.to_toml();
    assert_eq!(Config::parse(&text, &c.source).unwrap(), c, "{text}");
}

#[test]
fn a_listener_without_the_key_is_not_filtered() {
    let c = parse_ok(&format!("{RSPAMD}{}", "\n[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n"));
    assert!(c.listeners[0].milters.is_empty());
}

#[test]
fn bad_milters_are_refused() {
    let with = |m: &str| format!("{m}{}", listener("[]"));
    check(&with("[[milter]]\nname = \"\"\naddress = \"unix:/m\"\n"), Some("milter[0].name"), Some(2), "empty");
    check(&with(&format!("{RSPAMD}{RSPAMD}")), Some("milter[1].name"), Some(5), "another");
    check(&with("[[milter]]\nname = \"a\"\naddress = \"localhost:1\"\n"), Some("milter[0].address"), Some(3), "inet:");
    check(
        &with(&format!("{RSPAMD}default_action = \"reject\"\n")),
        Some("milter[0].default_action"),
        Some(4),
        "tempfail",
    );
    check(&with(&format!("{RSPAMD}eom_timeout = \"0s\"\n")), Some("milter[0].eom_timeout"), Some(4), "greater");
    check(&with("[[milter]]\nname = \"a\"\n"), Some("milter[0]"), Some(1), "address");
    check(&format!("{RSPAMD}{}", listener("[\"spamd\"]")), Some("listen[0].milters"), Some(8), "no [[milter]]");
}
