//! `[client]`, `[mta_sts]` and `[dns]`: defaults, round trip, one test per bad value.

use super::{bad, parse_ok, with_listener};
use crate::{DmarcPolicy, MtaStsMode, Role};

#[test]
fn defaults_follow_the_hostname() {
    let c = parse_ok(&with_listener("hostname = \"mail.example.org\"\n"));
    assert_eq!(c.client.host, "mail.example.org");
    assert_eq!(c.client.imap_host, "mail.example.org");
    assert_eq!((c.client.imap_port, c.client.imaps_port), (None, None));
    assert!(c.client.addresses.is_empty());
    assert_eq!(c.mta_sts.mode, MtaStsMode::Testing);
    assert_eq!(c.mta_sts.max_age.as_secs(), 604_800);
    assert_eq!(c.mta_sts.mx, ["mail.example.org"]);
    assert_eq!(c.dns.dmarc_policy, DmarcPolicy::None);
    assert_eq!(c.dns.report_address, None);
}

#[test]
fn sections_are_read_and_round_trip() {
    let text = with_listener(
        "hostname = \"h.example.org\"\n[client]\nhost = \"Mail.Example.org.\"\nimap_host = \"imap.example.org\"\n\
         imap_port = 143\nimaps_port = 993\naddresses = [\"192.0.2.1\", \"2001:db8::1\"]\n\
         [mta_sts]\nmode = \"enforce\"\nmax_age = \"1d\"\nmx = [\"*.example.org\", \"mx2.example.net\"]\n\
         [dns]\ndmarc_policy = \"reject\"\nreport_address = \"reports@example.net\"\n\
         [[listen]]\naddress = \"127.0.0.1:8080\"\nrole = \"http\"\n[[listen]]\naddress = \"127.0.0.1:8443\"\nrole = \"https\"\n",
    );
    let c = parse_ok(&text);
    assert_eq!(c.client.host, "mail.example.org");
    assert_eq!(c.client.imap_host, "imap.example.org");
    assert_eq!((c.client.imap_port, c.client.imaps_port), (Some(143), Some(993)));
    assert_eq!(c.client.addresses.len(), 2);
    assert_eq!(c.mta_sts.mode, MtaStsMode::Enforce);
    assert_eq!(c.mta_sts.max_age.as_secs(), 86_400);
    assert_eq!(c.mta_sts.mx, ["*.example.org", "mx2.example.net"]);
    assert_eq!(c.dns.dmarc_policy, DmarcPolicy::Reject);
    assert_eq!(c.dns.report_address.as_deref(), Some("reports@example.net"));
    assert_eq!(c.listeners[1].role, Role::Https);
    let again = parse_ok(&c.to_toml());
    assert_eq!(again.client, c.client);
    assert_eq!(again.mta_sts, c.mta_sts);
    assert_eq!(again.dns, c.dns);
}

#[test]
fn bad_client_host() {
    bad("[client]\nhost = \"not a name\"\n", "client.host", 2, "not a valid host name");
}

#[test]
fn bad_client_port() {
    bad("[client]\nimaps_port = 70000\n", "client.imaps_port", 2, "port from 1 to 65535");
}

#[test]
fn bad_client_address() {
    bad("[client]\naddresses = [\"192.0.2.300\"]\n", "client.addresses[0]", 2, "IPv4 or IPv6");
}

#[test]
fn bad_mta_sts_mode() {
    bad("[mta_sts]\nmode = \"strict\"\n", "mta_sts.mode", 2, "\"enforce\"");
}

#[test]
fn mta_sts_max_age_over_a_year() {
    bad("[mta_sts]\nmax_age = \"400d\"\n", "mta_sts.max_age", 2, "31557600");
}

#[test]
fn bad_mta_sts_mx() {
    bad("[mta_sts]\nmx = [\"a b\"]\n", "mta_sts.mx[0]", 2, "host name");
}

#[test]
fn bad_dmarc_policy() {
    bad("[dns]\ndmarc_policy = \"block\"\n", "dns.dmarc_policy", 2, "\"quarantine\"");
}

#[test]
fn bad_report_address() {
    bad("[dns]\nreport_address = \"nobody\"\n", "dns.report_address", 2, "address");
}

#[test]
fn unknown_key_in_client() {
    let e = super::parse(&with_listener("[client]\nimap = 143\n")).unwrap_err();
    assert!(e.message.contains("imap"), "{e}");
}

#[test]
fn unicode_domains_are_stored_as_a_labels() {
    let c = parse_ok(&with_listener("[domains.\"Bücher.example\"]\nmailboxes = [\"jo\"]\n"));
    assert!(c.domains.contains_key("xn--bcher-kva.example"), "{:?}", c.domains.keys());
    assert!(c.is_local_domain("xn--bcher-kva.example"));
    bad("[domains.\"b ü.example\"]\n", "domains.\"b ü.example\"", 1, "not a valid domain name");
}
