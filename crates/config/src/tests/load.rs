//! Loading good configurations: the embedded default, the example file, defaults, round trips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FILE, parse_ok, with_listener};
use crate::{Auth, Checks, Config, Delivery, Domain, HostPort, Limits, Outbound, OutboundTls, Role, Timeouts, Tls};

const EXAMPLE: &str = include_str!("../../../../dakiya.example.toml");

pub(super) fn round_trip(config: &Config) {
    let text = config.to_toml();
    let again =
        Config::parse(&text, &config.source).unwrap_or_else(|e| panic!("to_toml output does not parse: {e}\n{text}"));
    assert_eq!(&again, config, "{text}");
    // And the output is a fixed point.
    assert_eq!(again.to_toml(), text);
}

#[test]
fn embedded_default_parses() {
    let c = Config::embedded_default();
    assert_eq!(c.source, "<embedded default>");
    assert_eq!(c.hostname, "localhost");
    assert_eq!(c.data_dir, PathBuf::from("./dakiya-data"));
    let listeners: Vec<(SocketAddr, Role)> = c.listeners.iter().map(|l| (l.address, l.role)).collect();
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        listeners,
        [
            (at("127.0.0.1:2525"), Role::Mx),
            (at("127.0.0.1:2587"), Role::Submission),
            (at("127.0.0.1:2465"), Role::Submissions),
            (at("127.0.0.1:2110"), Role::Pop3),
            (at("127.0.0.1:2995"), Role::Pop3s),
            (at("127.0.0.1:2980"), Role::Metrics),
            (at("127.0.0.1:2080"), Role::Http),
        ]
    );
    let localhost = Domain { any_mailbox: true, ..Domain::default() };
    assert_eq!(c.domains.clone().into_iter().collect::<Vec<_>>(), [("localhost".to_owned(), localhost)]);
    assert!(c.aliases.is_empty());
    assert_eq!(c.recipient_delimiter, Some('+'));
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.delivery, Delivery::default());
    // No certificate files: a self-signed one in data_dir/tls.
    assert_eq!(c.tls, Tls::default());
    assert_eq!(c.self_signed_tls_dir(), PathBuf::from("./dakiya-data/tls"));
    assert_eq!(c.auth, Auth::defaults(&c.data_dir));
    assert!(c.trusted_networks.is_empty());
    assert!(c.send_as.is_empty());
}

#[test]
fn defaults_match_the_spec() {
    let l = Limits::default();
    assert_eq!(l.max_message_size, 35 * 1024 * 1024);
    assert_eq!((l.max_recipients, l.max_errors), (100, 10));
    assert_eq!((l.max_connections, l.max_connections_per_ip), (1000, 50));
    let t = Timeouts::default();
    assert_eq!((t.command, t.data), (Duration::from_secs(300), Duration::from_secs(180)));
    let d = Delivery::default();
    let minutes: Vec<u64> = d.retry_schedule.iter().map(|t| t.as_secs() / 60).collect();
    assert_eq!(minutes, [1, 5, 15, 30, 60, 120, 240]);
    assert_eq!(d.max_age, Duration::from_secs(5 * 86_400));
    assert_eq!(d.local_concurrency, 4);
    assert_eq!(d.spool_slots, 256);
    let t = Tls::default();
    assert_eq!((t.cert, t.key), (None, None));
    assert_eq!(t.check_interval, Duration::from_secs(30));
    let a = Auth::defaults(Path::new("/srv/d"));
    assert_eq!(a.users_file, PathBuf::from("/srv/d/users"));
    assert!(!a.plaintext_on_loopback);
    assert!(a.users_are_mailboxes);
    assert_eq!(a.failure_delay, Duration::from_secs(1));
    assert_eq!(a.max_failures, 5);
    assert_eq!(a.failure_window, Duration::from_secs(600));
    assert_eq!(a.lockout, Duration::from_secs(900));
}

#[test]
fn example_file_parses() {
    let c = parse_ok(EXAMPLE);
    assert_eq!(c.hostname, "mail.example.org");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/dakiya"));
    let roles: Vec<Role> = c.listeners.iter().map(|l| l.role).collect();
    assert_eq!(
        roles,
        [
            Role::Mx,
            Role::Mx,
            Role::Submission,
            Role::Submission,
            Role::Submissions,
            Role::Submissions,
            Role::Pop3s,
            Role::Pop3s,
            Role::Metrics,
            Role::Http,
            Role::Http,
            Role::Https,
            Role::Https
        ]
    );
    assert_eq!((c.client.host.as_str(), c.client.imaps_port), ("mail.example.org", Some(993)));
    // The example spells out the message authentication defaults.
    for l in &c.listeners {
        assert_eq!(l.checks, Checks::defaults(l.role), "{}", l.address);
    }
    assert_eq!(c.domains.len(), 3);
    let org = &c.domains["example.org"];
    assert_eq!(org.catch_all.as_deref(), Some("alice@example.org"));
    assert!(org.mailboxes.contains("carol"));
    assert_eq!(c.aliases["team@example.org"], ["alice@example.org", "bob@example.org", "carol@elsewhere.example"]);
    assert_eq!(
        c.tls.files(),
        Some((Path::new("/etc/dakiya/tls/fullchain.pem"), Path::new("/etc/dakiya/tls/privkey.pem")))
    );
    let nets: Vec<String> = c.trusted_networks.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["192.0.2.0/24", "2001:db8::/32", "127.0.0.1/32"]);
    assert_eq!(c.send_as["alice@example.org"], ["info@example.org", "@example.net"]);
    // The example spells out the defaults.
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.delivery, Delivery::default());
    assert_eq!(c.tls.check_interval, Tls::default().check_interval);
    assert_eq!(c.auth, Auth::defaults(&c.data_dir));
    let o = &c.outbound;
    let relay = o.relay_host.as_ref().expect("the example sets a relay host");
    assert_eq!(relay.host, HostPort { host: "smtp.provider.example".into(), port: Some(587) });
    assert_eq!((relay.tls, relay.implicit_tls), (OutboundTls::Require, false));
    assert_eq!(relay.username.as_deref(), Some("mail@example.org"));
    assert_eq!(relay.password_file.as_deref(), Some(Path::new("/etc/dakiya/relay-password")));
    assert_eq!(o.routes.keys().collect::<Vec<_>>(), ["internal.example", "lab.example.org", "partner.example"]);
    assert_eq!(o.routes["lab.example.org"].hosts.len(), 2);
    assert_eq!(o.routes["lab.example.org"].tls, OutboundTls::Opportunistic);
    assert_eq!(o.routes["internal.example"].tls, OutboundTls::Verify);
    // Apart from the relay host and the routes, the example spells out the defaults.
    let defaults = Outbound { relay_host: None, routes: Default::default(), ..o.clone() };
    assert_eq!(defaults, Outbound::defaults(&c.hostname));
}

#[test]
fn example_file_loads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dakiya.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.source, path.display().to_string());
    assert_eq!(c, Config::parse(EXAMPLE, &c.source).unwrap());
}

#[test]
fn round_trip_embedded_default() {
    round_trip(&Config::embedded_default());
}

#[test]
fn round_trip_example() {
    round_trip(&parse_ok(EXAMPLE));
}

#[test]
fn round_trip_unusual_values() {
    let text = with_listener(
        "hostname = \"Mail.Example.ORG.\"\n\
         data_dir = \"data \\\"dir\\\"\\tx\"\n\
         recipient_delimiter = \"\"\n\
         [domains.\"Example.ORG\"]\nmailboxes = [\"Élodie\", \"x=y\"]\ncatch_all = \"X=Y@example.org\"\n\
         [domains.other]\n\
         [aliases]\n\"Team@Example.org\" = [\"élodie@EXAMPLE.org\", \"Carol.Smith@Remote.Example\"]\n\
         [limits]\nmax_message_size = 1536\nmax_recipients = 1\n\
         [timeouts]\ncommand = 90\ndata = \"1500ms\"\n\
         [delivery]\nretry_schedule = [\"1h 30m\", 45]\nmax_age = \"2d\"\nspool_slots = 0\n\
         [[listen]]\naddress = \"[::1]:0\"\nrole = \"mx\"\n",
    );
    let c = parse_ok(&text);
    assert_eq!(c.hostname, "mail.example.org");
    assert_eq!(c.data_dir, PathBuf::from("data \"dir\"\tx"));
    assert_eq!(c.recipient_delimiter, None);
    let org = &c.domains["example.org"];
    assert_eq!(org.mailboxes.iter().collect::<Vec<_>>(), ["x=y", "élodie"]);
    assert_eq!(org.catch_all.as_deref(), Some("x=y@example.org"));
    assert_eq!(c.domains["other"], Domain::default());
    // Local targets are lowercased; a remote local part keeps its case.
    assert_eq!(c.aliases["team@example.org"], ["élodie@example.org", "Carol.Smith@remote.example"]);
    assert_eq!(c.limits.max_message_size, 1536);
    assert_eq!(c.timeouts.command, Duration::from_secs(90));
    assert_eq!(c.timeouts.data, Duration::from_millis(1500));
    assert_eq!(c.delivery.retry_schedule, [Duration::from_secs(5400), Duration::from_secs(45)]);
    assert_eq!(c.delivery.spool_slots, 0);
    assert_eq!(c.listeners.len(), 2);
    round_trip(&c);
}

#[test]
fn round_trip_no_domains() {
    round_trip(&parse_ok(&with_listener("")));
}

#[test]
fn sizes_and_durations_in_both_forms() {
    let c = parse_ok(&with_listener("[limits]\nmax_message_size = \"10M\"\n[timeouts]\ncommand = 60\ndata = \"2m\"\n"));
    assert_eq!(c.limits.max_message_size, 10 << 20);
    assert_eq!(c.timeouts.command, Duration::from_secs(60));
    assert_eq!(c.timeouts.data, Duration::from_secs(120));
}

#[test]
fn diamond_aliases_are_not_loops() {
    let c = parse_ok(&with_listener(
        "[domains.\"example.org\"]\nmailboxes = [\"alice\"]\n[aliases]\n\
         \"a@example.org\" = [\"b@example.org\", \"c@example.org\"]\n\
         \"b@example.org\" = [\"d@example.org\"]\n\
         \"c@example.org\" = [\"d@example.org\"]\n\
         \"d@example.org\" = [\"alice@example.org\"]\n",
    ));
    assert_eq!(c.resolve("a", "example.org").unwrap().len(), 1);
}

#[test]
fn ten_levels_of_aliases_are_allowed() {
    // a1 -> a2 -> ... -> a10 -> alice: ten aliases deep, from the network too.
    let mut text = "[domains.\"example.org\"]\nmailboxes = [\"alice\"]\n[aliases]\n".to_owned();
    for i in 1..10 {
        text.push_str(&format!("\"a{i}@example.org\" = [\"a{}@example.org\"]\n", i + 1));
    }
    text.push_str("\"a10@example.org\" = [\"alice@example.org\"]\n");
    let c = parse_ok(&with_listener(&text));
    assert_eq!(c.resolve("a1", "example.org").unwrap().len(), 1);
}

#[test]
fn mx_checks_default_and_can_be_set() {
    let c = parse_ok(
        "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\
         [[listen]]\naddress = \"127.0.0.2:25\"\nrole = \"mx\"\n\
         verify = false\ndmarc_reject = false\ndmarc_quarantine = false\nspf_reject = true\n\
         [[listen]]\naddress = \"127.0.0.3:25\"\nrole = \"mx\"\nspf_reject = true\n\
         [[listen]]\naddress = \"127.0.0.1:587\"\nrole = \"submission\"\n\
         [[listen]]\naddress = \"127.0.0.1:465\"\nrole = \"submissions\"\n",
    );
    let defaults = Checks::defaults(Role::Mx);
    assert_eq!(defaults, Checks { verify: true, dmarc_reject: true, dmarc_quarantine: true, spf_reject: false });
    let checks: Vec<Checks> = c.listeners.iter().map(|l| l.checks).collect();
    assert_eq!(
        checks,
        [
            defaults,
            Checks { verify: false, dmarc_reject: false, dmarc_quarantine: false, spf_reject: true },
            Checks { spf_reject: true, ..defaults },
            Checks::defaults(Role::Submission),
            Checks::defaults(Role::Submissions),
        ]
    );
    // Submission listeners never verify.
    assert!(!checks[3].verify && !checks[4].verify);
    // to_toml writes the keys for mx listeners only (the others may not name them).
    let text = c.to_toml();
    assert_eq!(text.matches("verify = ").count(), 3, "{text}");
    assert_eq!(text.matches("spf_reject = true").count(), 2, "{text}");
    round_trip(&c);
}

#[test]
fn source_is_recorded() {
    assert_eq!(parse_ok(&with_listener("")).source, FILE);
}
