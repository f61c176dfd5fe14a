//! `[tls.acme]`: defaults, a round trip, and one test per mistake (key and line named).

use super::load::round_trip;
use super::{check, parse_ok};
use crate::Acme;
use std::time::Duration;

/// A configuration with `acme` as the `[tls.acme]` body (from line 3) and an `http` listener.
fn text(acme: &str) -> String {
    format!(
        "hostname = \"mx.example.org\"\n[tls.acme]\n{acme}\n[client]\nhost = \"mail.example.org\"\n\
         [[listen]]\naddress = \"127.0.0.1:80\"\nrole = \"http\"\n"
    )
}

#[test]
fn defaults() {
    let c = parse_ok(&text(""));
    let a = c.tls.acme.clone().unwrap();
    assert_eq!(a.directory, Acme::LETS_ENCRYPT);
    assert_eq!(a.names, ["mx.example.org", "mail.example.org"]);
    assert_eq!(a.renew_before, Duration::from_secs(30 * 86_400));
    assert_eq!(a.check_interval, Duration::from_secs(12 * 3600));
    assert_eq!((a.contact, a.ca_file), (None, None));
    round_trip(&c);
}

#[test]
fn everything_set() {
    let c = parse_ok(&text(
        "directory = \"https://127.0.0.1:14000/dir\"\ncontact = \"mailto:pm@example.org\"\n\
         names = [\"Mail.Example.org\", \"mail.example.org\"]\nca_file = \"/etc/pebble.pem\"\n\
         renew_before = \"10d\"\ncheck_interval = \"1h\"\nchallenge = \"http-01\"",
    ));
    let a = c.tls.acme.clone().unwrap();
    assert_eq!(a.names, ["mail.example.org"]);
    assert_eq!(a.contact.as_deref(), Some("mailto:pm@example.org"));
    assert_eq!(a.renew_before, Duration::from_secs(10 * 86_400));
    round_trip(&c);
}

fn bad(acme: &str, key: &str, line: usize, fragment: &str) {
    check(&text(acme), Some(key), Some(line), fragment);
}

#[test]
fn directory_not_https() {
    bad("directory = \"http://ca.example/dir\"", "tls.acme.directory", 3, "https://");
}

#[test]
fn contact_not_mailto() {
    bad("contact = \"pm@example.org\"", "tls.acme.contact", 3, "mailto:");
}

#[test]
fn wildcard_name() {
    bad("names = [\"a.example.org\",\n  \"*.example.org\"]", "tls.acme.names", 4, "wildcards");
}

#[test]
fn empty_names() {
    bad("names = []", "tls.acme.names", 3, "at least one");
}

#[test]
fn other_challenge() {
    bad("challenge = \"dns-01\"", "tls.acme.challenge", 3, "http-01");
}

#[test]
fn renew_before_zero() {
    bad("renew_before = 0", "tls.acme.renew_before", 3, "greater than zero");
}

#[test]
fn unknown_key() {
    bad("renew = \"1d\"", "tls.acme.renew", 3, "unknown field");
}

#[test]
fn with_cert_files() {
    let t = "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[tls.acme]\n\n[[listen]]\naddress = \"127.0.0.1:80\"\nrole = \"http\"\n";
    check(t, Some("tls.acme"), Some(4), "cannot be combined");
}

#[test]
fn without_http_listener() {
    let t = "[tls.acme]\ncontact = \"mailto:a@b.example\"\n[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n";
    check(t, Some("tls.acme"), Some(1), "role = \"http\"");
}
