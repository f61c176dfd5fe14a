//! Good `[outbound]` and `delivery.delay_notice` configurations: every key, the defaults, the
//! short route forms, and round trips through `to_toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::load::round_trip;
use super::{DOMAIN, check, parse_ok, with_listener};
use crate::{HostPort, IpPreference, Outbound, OutboundTls, RelayHost, Route};

fn hp(host: &str, port: Option<u16>) -> HostPort {
    HostPort { host: host.to_owned(), port }
}

/// Every key of `[outbound]`, `[outbound.relay_host]` and a route table, none at its default.
const FULL: &str = "hostname = \"mx.example.org\"\n\
    [delivery]\ndelay_notice = \"90m\"\n\
    [outbound]\n\
    helo_name = \"Out.Example.ORG.\"\n\
    nameservers = [\"127.0.0.1:5353\", \"::1\", \"192.0.2.53\", \"[::1]:5300\"]\n\
    smtp_port = 2525\n\
    tls = \"verify\"\n\
    tls_ca_file = \"/etc/ssl/my-ca.pem\"\n\
    ip_preference = \"ipv4_only\"\n\
    concurrency = 7\n\
    per_destination = 2\n\
    connect_timeout = \"45s\"\n\
    idle_timeout = 0\n\
    mta_sts_port = 8443\n\
    tls_report_interval = \"1h\"\n\
    [outbound.relay_host]\n\
    host = \"SMTP.Provider.Example:587\"\n\
    tls = \"opportunistic\"\n\
    implicit_tls = true\n\
    username = \"Me@example.org\"\n\
    password_file = \"relay password\"\n\
    [outbound.routes.\"Example.TEST.\"]\n\
    hosts = [\"127.0.0.1:2626\", \"backup.example.test\", \"[::1]:2627\", \"2001:DB8::7\"]\n\
    tls = \"none\"\n\
    [outbound.routes.\"other.test\"]\n\
    hosts = [\"[127.0.0.2]\"]\n";

#[test]
fn every_key_is_read() {
    let c = parse_ok(&with_listener(FULL));
    assert_eq!(c.delivery.delay_notice, Some(Duration::from_secs(90 * 60)));
    let o = &c.outbound;
    assert_eq!(o.helo_name, "out.example.org");
    let ns: Vec<SocketAddr> =
        ["127.0.0.1:5353", "[::1]:53", "192.0.2.53:53", "[::1]:5300"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(o.nameservers, ns);
    assert_eq!(o.smtp_port, 2525);
    assert_eq!(o.tls, OutboundTls::Verify);
    assert_eq!(o.tls_ca_file, Some(PathBuf::from("/etc/ssl/my-ca.pem")));
    assert_eq!(o.ip_preference, IpPreference::Ipv4Only);
    assert_eq!((o.concurrency, o.per_destination), (7, 2));
    assert_eq!(o.connect_timeout, Duration::from_secs(45));
    assert_eq!(o.idle_timeout, Duration::ZERO);
    assert_eq!((o.mta_sts_port, o.tls_report_interval), (8443, Duration::from_secs(3600)));
    let relay = RelayHost {
        host: hp("smtp.provider.example", Some(587)),
        tls: OutboundTls::Opportunistic,
        implicit_tls: true,
        username: Some("Me@example.org".to_owned()),
        password_file: Some(PathBuf::from("relay password")),
    };
    assert_eq!(o.relay_host.as_ref(), Some(&relay));
    assert_eq!(o.routes.keys().collect::<Vec<_>>(), ["example.test", "other.test"]);
    let hosts = vec![
        hp("127.0.0.1", Some(2626)),
        hp("backup.example.test", None),
        hp("::1", Some(2627)),
        hp("2001:db8::7", None),
    ];
    assert_eq!(o.routes["example.test"], Route { hosts, tls: OutboundTls::None });
    // A route without tls takes [outbound] tls.
    assert_eq!(o.routes["other.test"], Route { hosts: vec![hp("127.0.0.2", None)], tls: OutboundTls::Verify });
    round_trip(&c);
}

#[test]
fn defaults() {
    let c = parse_ok(&with_listener("hostname = \"mx.example.org\"\n"));
    assert_eq!(c.outbound, Outbound::defaults("mx.example.org"));
    assert_eq!(c.delivery.delay_notice, Some(Duration::from_secs(4 * 3600)));
    let o = Outbound::defaults("h.example");
    assert_eq!(o.helo_name, "h.example");
    assert!(o.nameservers.is_empty());
    assert_eq!(o.smtp_port, 25);
    assert_eq!(o.tls, OutboundTls::Dane);
    assert_eq!(o.tls_ca_file, None);
    assert_eq!(o.dnssec_trust_anchor, None);
    assert_eq!(o.ip_preference, IpPreference::Ipv6First);
    assert_eq!((o.concurrency, o.per_destination), (100, 10));
    assert_eq!((o.connect_timeout, o.idle_timeout), (Duration::from_secs(30), Duration::from_secs(5)));
    assert_eq!(o.relay_host, None);
    assert!(o.routes.is_empty());
    assert_eq!((o.mta_sts_port, o.tls_report_interval), (443, Duration::from_secs(86_400)));
    // An empty [outbound] table is the defaults too.
    let c = parse_ok(&with_listener("[outbound]\n[outbound.routes]\n"));
    assert_eq!(c.outbound, Outbound::defaults("localhost"));
}

#[test]
fn tls_default_follows_outbound_tls_wherever_written() {
    // The routes and the relay host come before [outbound]'s own keys in the file.
    let c = parse_ok(&with_listener(
        "[outbound.routes]\n\"a.test\" = \"127.0.0.1:2626\"\n\
         [outbound.relay_host]\nhost = \"127.0.0.1:2627\"\n\
         [outbound]\ntls = \"require\"\n",
    ));
    assert_eq!(c.outbound.routes["a.test"].tls, OutboundTls::Require);
    assert_eq!(c.outbound.relay_host.unwrap().tls, OutboundTls::Require);
}

/// `dane` (the default) and `mta-sts` are about MX hosts: routes and the relay host
/// inherit "opportunistic" from them, unless they name the mode themselves.
#[test]
fn mta_sts_is_inherited_as_opportunistic() {
    let c = parse_ok(&with_listener(
        "[outbound.routes]\n\"a.test\" = \"127.0.0.1:2626\"\n\
         \"b.test\" = { hosts = [\"127.0.0.1:2626\"], tls = \"mta-sts\" }\n\
         \"c.test\" = { hosts = [\"127.0.0.1:2626\"], tls = \"dane\" }\n\
         [outbound.relay_host]\nhost = \"127.0.0.1:2627\"\n",
    ));
    assert_eq!(c.outbound.tls, OutboundTls::Dane);
    assert_eq!(c.outbound.routes["c.test"].tls, OutboundTls::Dane);
    assert_eq!(c.outbound.routes["a.test"].tls, OutboundTls::Opportunistic);
    assert_eq!(c.outbound.routes["b.test"].tls, OutboundTls::MtaSts);
    assert_eq!(c.outbound.relay_host.as_ref().unwrap().tls, OutboundTls::Opportunistic);
    round_trip(&c);
    check(&with_listener("[outbound]\ntls = \"danish\"\n"), Some("outbound.tls"), Some(2), "\"dane\"");
    let c = parse_ok(&with_listener(
        "[outbound]\ntls = \"mta-sts\"\ndnssec_trust_anchor = \"/etc/dakiya/root.key\"\n\
         [outbound.routes]\n\"a.test\" = \"127.0.0.1:2626\"\n",
    ));
    assert_eq!(c.outbound.routes["a.test"].tls, OutboundTls::Opportunistic);
    assert_eq!(c.outbound.dnssec_trust_anchor.as_deref(), Some(std::path::Path::new("/etc/dakiya/root.key")));
    round_trip(&c);
}

#[test]
fn short_route_forms() {
    let c = parse_ok(&with_listener(
        "[outbound]\ntls = \"none\"\n\
         [outbound.routes]\n\
         \"Example.TEST\" = \"127.0.0.1:2626\"\n\
         \"b.test.\" = [\"127.0.0.1:2626\", \"Backup.B.test\"]\n\
         \"c.test\" = { hosts = [\"[::1]\"], tls = \"verify\" }\n",
    ));
    let r = &c.outbound.routes;
    assert_eq!(r["example.test"], Route { hosts: vec![hp("127.0.0.1", Some(2626))], tls: OutboundTls::None });
    let b = vec![hp("127.0.0.1", Some(2626)), hp("backup.b.test", None)];
    assert_eq!(r["b.test"], Route { hosts: b, tls: OutboundTls::None });
    assert_eq!(r["c.test"], Route { hosts: vec![hp("::1", None)], tls: OutboundTls::Verify });
    round_trip(&c);
}

#[test]
fn relay_host_defaults() {
    let plain = parse_ok(&with_listener("[outbound.relay_host]\nhost = \"127.0.0.1\"\n"));
    let relay = plain.outbound.relay_host.unwrap();
    assert_eq!(
        relay,
        RelayHost {
            host: hp("127.0.0.1", None),
            tls: OutboundTls::Opportunistic,
            implicit_tls: false,
            username: None,
            password_file: None,
        }
    );
    // With AUTH, TLS is required unless the file says otherwise.
    let with_auth = parse_ok(&with_listener(
        "[outbound]\ntls = \"none\"\n\
         [outbound.relay_host]\nhost = \"::1\"\nusername = \"me\"\npassword_file = \"pw\"\n",
    ));
    let relay = with_auth.outbound.relay_host.unwrap();
    assert_eq!(relay.tls, OutboundTls::Require);
    assert_eq!(relay.host, hp("::1", None));
    assert_eq!(relay.username.as_deref(), Some("me"));
    assert_eq!(relay.password_file, Some(PathBuf::from("pw")));
}

#[test]
fn helo_name_forms() {
    let helo = |v: &str| parse_ok(&with_listener(&format!("[outbound]\nhelo_name = \"{v}\"\n"))).outbound.helo_name;
    assert_eq!(helo("[192.0.2.1]"), "[192.0.2.1]");
    assert_eq!(helo("[IPv6:2001:DB8::1]"), "[IPv6:2001:db8::1]");
    assert_eq!(helo("localhost"), "localhost");
    // Without helo_name: the hostname, normalized.
    let c = parse_ok(&with_listener("hostname = \"MX.Example.ORG.\"\n"));
    assert_eq!(c.outbound.helo_name, "mx.example.org");
}

#[test]
fn timeouts_in_both_forms() {
    let c = parse_ok(&with_listener("[outbound]\nconnect_timeout = 5\nidle_timeout = \"1m\"\n"));
    assert_eq!(c.outbound.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.outbound.idle_timeout, Duration::from_secs(60));
    let c = parse_ok(&with_listener("[outbound]\nidle_timeout = \"0s\"\n"));
    assert_eq!(c.outbound.idle_timeout, Duration::ZERO);
}

#[test]
fn delay_notice_forms() {
    let notice = |v: &str| parse_ok(&with_listener(&format!("[delivery]\ndelay_notice = {v}\n"))).delivery.delay_notice;
    assert_eq!(notice("\"4h\""), Some(Duration::from_secs(4 * 3600)));
    assert_eq!(notice("\"1h 30m\""), Some(Duration::from_secs(5400)));
    assert_eq!(notice("600"), Some(Duration::from_secs(600)));
    assert_eq!(notice("\"off\""), None);
    assert_eq!(notice("\"OFF\""), None);
    assert_eq!(notice("\"0\""), None);
    assert_eq!(notice("\"0s\""), None);
    assert_eq!(notice("0"), None);
}

#[test]
fn round_trip_delay_notice_off() {
    let c = parse_ok(&with_listener("[delivery]\ndelay_notice = \"off\"\n"));
    assert!(c.to_toml().contains("delay_notice = \"off\"\n"), "{}", c.to_toml());
    round_trip(&c);
}

#[test]
fn round_trip_relay_without_auth() {
    let c = parse_ok(&with_listener(
        "[outbound]\nhelo_name = \"[192.0.2.1]\"\n\
         [outbound.relay_host]\nhost = \"[2001:db8::1]:2525\"\ntls = \"verify\"\n",
    ));
    let text = c.to_toml();
    assert!(!text.contains("username"), "{text}");
    assert!(text.contains("host = \"[2001:db8::1]:2525\"\n"), "{text}");
    round_trip(&c);
}

#[test]
fn routes_may_sit_beside_local_domains() {
    // A route for a subdomain of a local domain is not a local domain.
    let c = parse_ok(&with_listener(&format!("{DOMAIN}[outbound.routes]\n\"sub.example.org\" = \"127.0.0.1\"\n")));
    assert_eq!(c.outbound.routes["sub.example.org"].hosts, [hp("127.0.0.1", None)]);
}

#[test]
fn bad_mta_sts_and_report_keys() {
    check(&with_listener("[outbound]\nmta_sts_port = 0\n"), Some("outbound.mta_sts_port"), Some(2), "port");
    check(&with_listener("[outbound]\nmta_sts_port = 70000\n"), Some("outbound.mta_sts_port"), Some(2), "port");
    check(
        &with_listener("[outbound]\ntls_report_interval = \"soon\"\n"),
        Some("outbound.tls_report_interval"),
        Some(2),
        "",
    );
    let c = parse_ok(&with_listener("[outbound]\ntls_report_interval = 0\n"));
    assert_eq!(c.outbound.tls_report_interval, Duration::ZERO, "0 turns reports off");
}
