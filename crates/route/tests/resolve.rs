//! Router::resolve against the test DNS server on 127.0.0.1: every routing rule of
//! RFC 5321 §5.1 and RFC 7505, static routes, the relay host, and the limits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dakiya_route::testdns::{TestDns, Zone};
use dakiya_route::{HostPort, IpPreference, NextHop, RouteConfig, RouteError, Router};

/// The port MX hosts get in these tests, to tell it from route ports.
const PORT: u16 = 2525;

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn zone() -> Zone {
    Zone::new()
        // Two hosts at preference 10, a backup at 20; mx1 is dual-stack.
        .mx("example.test", 20, "backup.example.test")
        .mx("example.test", 10, "mx1.example.test")
        .mx("example.test", 10, "mx2.example.test")
        .a("mx1.example.test", v4(11))
        .aaaa("mx1.example.test", Ipv6Addr::LOCALHOST)
        .a("mx2.example.test", v4(12))
        .a("backup.example.test", v4(13))
        .a("relay.example.test", v4(9))
        // No MX: the domain's own address (implicit MX).
        .a("implicit.test", v4(20))
        .aaaa("implicit.test", Ipv6Addr::LOCALHOST)
        .txt("noaddr.test", "v=spf1 -all")
        .null_mx("nomail.test")
        .mx("mixednull.test", 0, ".")
        .mx("mixednull.test", 10, "mx2.example.test")
        .servfail("broken.test")
        .refused("refused.test")
        .no_answer("slow.test")
        .mx("dangling.test", 10, "nowhere.dangling.test")
        .mx("hostfail.test", 10, "mx.hostfail.test")
        .servfail("mx.hostfail.test")
        .mx("partial.test", 10, "bad.partial.test")
        .mx("partial.test", 20, "good.partial.test")
        .servfail("bad.partial.test")
        .a("good.partial.test", v4(30))
        .mx("ipmx.test", 10, "127.0.0.40")
        .mx("cnamemx.test", 10, "alias.cnamemx.test")
        .cname("alias.cnamemx.test", "real.cnamemx.test")
        .a("real.cnamemx.test", v4(50))
        .cname("alias-domain.test", "example.test")
        .mx("xn--bcher-kva.test", 10, "mail.xn--bcher-kva.test")
        .a("mail.xn--bcher-kva.test", v4(70))
        .a("zeros.test", Ipv4Addr::UNSPECIFIED)
        .aaaa("zeros.test", Ipv6Addr::UNSPECIFIED)
        .a("somezeros.test", Ipv4Addr::UNSPECIFIED)
        .a("somezeros.test", v4(60))
        .mx("shared.test", 10, "one.shared.test")
        .mx("shared.test", 20, "two.shared.test")
        .a("one.shared.test", v4(80))
        .a("two.shared.test", v4(80))
        .a("two.shared.test", v4(81))
        .a("rr.test", v4(91))
        .a("rr.test", v4(92))
        .a("rr.test", v4(93))
}

fn config(dns: &TestDns) -> RouteConfig {
    RouteConfig {
        nameservers: vec![dns.addr],
        smtp_port: PORT,
        dns_timeout: Duration::from_millis(300),
        dns_attempts: 1,
        ..RouteConfig::default()
    }
}

async fn setup() -> (TestDns, Router) {
    let dns = TestDns::start(zone()).await;
    let router = Router::new(config(&dns)).unwrap();
    (dns, router)
}

fn hop(host: &str, ip: impl Into<IpAddr>, port: u16, preference: u16) -> NextHop {
    NextHop { host: host.to_string(), addr: SocketAddr::new(ip.into(), port), preference }
}

fn hosts(hops: &[NextHop]) -> Vec<&str> {
    hops.iter().map(|h| h.host.as_str()).collect()
}

#[tokio::test]
async fn mx_hosts_by_preference_with_ipv6_first() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("example.test").await.unwrap();
    assert_eq!(hops.len(), 4, "{hops:?}");
    let mx1 = [hop("mx1.example.test", Ipv6Addr::LOCALHOST, PORT, 10), hop("mx1.example.test", v4(11), PORT, 10)];
    let mx2 = [hop("mx2.example.test", v4(12), PORT, 10)];
    let first_two: Vec<NextHop> = if hops[0].host == "mx1.example.test" {
        mx1.iter().chain(&mx2).cloned().collect()
    } else {
        mx2.iter().chain(&mx1).cloned().collect()
    };
    assert_eq!(hops[..3], first_two[..]);
    assert_eq!(hops[3], hop("backup.example.test", v4(13), PORT, 20));
}

#[tokio::test]
async fn equal_preferences_are_shuffled() {
    let (_dns, router) = setup().await;
    let mut firsts = BTreeMap::new();
    for _ in 0..200 {
        let hops = router.resolve("example.test").await.unwrap();
        assert_eq!(hops.last().unwrap().host, "backup.example.test");
        *firsts.entry(hops[0].host.clone()).or_insert(0) += 1;
    }
    // Each order has probability 1/2: both missing from 200 draws is 2 * 2^-200.
    assert_eq!(firsts.keys().map(String::as_str).collect::<Vec<_>>(), ["mx1.example.test", "mx2.example.test"]);
    // And roughly even: below 60 of 200 is over 5 standard deviations from 100.
    assert!(firsts.values().all(|&n| n >= 60), "{firsts:?}");
}

#[tokio::test]
async fn address_families_follow_the_preference() {
    let dns = TestDns::start(zone()).await;
    let cases = [
        (IpPreference::Ipv6First, vec![IpAddr::from(Ipv6Addr::LOCALHOST), v4(20).into()]),
        (IpPreference::Ipv4First, vec![v4(20).into(), Ipv6Addr::LOCALHOST.into()]),
        (IpPreference::Ipv4Only, vec![v4(20).into()]),
        (IpPreference::Ipv6Only, vec![Ipv6Addr::LOCALHOST.into()]),
    ];
    for (ip_preference, expected) in cases {
        let router = Router::new(RouteConfig { ip_preference, ..config(&dns) }).unwrap();
        let hops = router.resolve("implicit.test").await.unwrap();
        let ips: Vec<IpAddr> = hops.iter().map(|h| h.addr.ip()).collect();
        assert_eq!(ips, expected, "{ip_preference:?}");
    }
}

#[tokio::test]
async fn no_mx_means_the_domain_itself() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("implicit.test").await.unwrap();
    assert_eq!(hops, [hop("implicit.test", Ipv6Addr::LOCALHOST, PORT, 0), hop("implicit.test", v4(20), PORT, 0)]);
}

#[tokio::test]
async fn no_mx_and_no_address_is_permanent() {
    let (_dns, router) = setup().await;
    let err = router.resolve("noaddr.test").await.unwrap_err();
    assert_eq!(err, RouteError::NoAddresses);
    assert!(err.is_permanent());
}

#[tokio::test]
async fn null_mx_is_permanent() {
    let (_dns, router) = setup().await;
    let err = router.resolve("nomail.test").await.unwrap_err();
    assert_eq!(err, RouteError::NullMx);
    assert!(err.is_permanent());
    assert_eq!(err.enhanced_status().to_string(), "5.1.10");
}

#[tokio::test]
async fn null_mx_among_real_hosts_is_skipped() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("mixednull.test").await.unwrap();
    assert_eq!(hops, [hop("mx2.example.test", v4(12), PORT, 10)]);
}

#[tokio::test]
async fn nxdomain_is_permanent() {
    let (_dns, router) = setup().await;
    let err = router.resolve("missing.test").await.unwrap_err();
    assert_eq!(err, RouteError::NoSuchDomain);
    assert!(err.is_permanent());
}

#[tokio::test]
async fn servfail_refused_and_timeout_are_temporary() {
    let (_dns, router) = setup().await;
    for domain in ["broken.test", "refused.test", "slow.test"] {
        let err = router.resolve(domain).await.unwrap_err();
        assert!(matches!(err, RouteError::Temporary(_)), "{domain}: {err:?}");
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn mx_host_without_address_is_permanent() {
    let (_dns, router) = setup().await;
    assert_eq!(router.resolve("dangling.test").await.unwrap_err(), RouteError::NoAddresses);
}

#[tokio::test]
async fn mx_host_lookup_failure_is_temporary() {
    let (_dns, router) = setup().await;
    let err = router.resolve("hostfail.test").await.unwrap_err();
    assert!(matches!(&err, RouteError::Temporary(msg) if msg.contains("hostfail.test")), "{err:?}");
}

#[tokio::test]
async fn failing_mx_host_is_skipped_when_another_works() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("partial.test").await.unwrap();
    assert_eq!(hops, [hop("good.partial.test", v4(30), PORT, 20)]);
}

#[tokio::test]
async fn mx_naming_an_ip_address_is_used_as_is() {
    let (dns, router) = setup().await;
    let hops = router.resolve("ipmx.test").await.unwrap();
    assert_eq!(hops, [hop("127.0.0.40", v4(40), PORT, 10)]);
    assert!(!dns.queries().iter().any(|q| q.starts_with("127.0.0.40.")), "{:?}", dns.queries());
}

#[tokio::test]
async fn mx_naming_a_cname_is_followed() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("cnamemx.test").await.unwrap();
    assert_eq!(hops, [hop("alias.cnamemx.test", v4(50), PORT, 10)]);
}

#[tokio::test]
async fn domain_that_is_a_cname_routes_as_its_target() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("alias-domain.test").await.unwrap();
    let names: BTreeSet<&str> = hosts(&hops).into_iter().collect();
    assert_eq!(names, BTreeSet::from(["mx1.example.test", "mx2.example.test", "backup.example.test"]));
}

#[tokio::test]
async fn utf8_domains_are_looked_up_as_a_labels() {
    let (dns, router) = setup().await;
    for domain in ["bücher.test", "BÜCHER.test.", "xn--bcher-kva.test"] {
        let hops = router.resolve(domain).await.unwrap();
        assert_eq!(hops, [hop("mail.xn--bcher-kva.test", v4(70), PORT, 10)], "{domain}");
    }
    assert!(dns.queries().contains(&"xn--bcher-kva.test. MX".to_string()));
}

#[tokio::test]
async fn unusable_addresses_are_dropped() {
    let (_dns, router) = setup().await;
    assert_eq!(router.resolve("zeros.test").await.unwrap_err(), RouteError::NoAddresses);
    assert_eq!(router.resolve("somezeros.test").await.unwrap(), [hop("somezeros.test", v4(60), PORT, 0)]);
}

#[tokio::test]
async fn an_address_is_tried_once() {
    let (_dns, router) = setup().await;
    let hops = router.resolve("shared.test").await.unwrap();
    assert_eq!(hops, [hop("one.shared.test", v4(80), PORT, 10), hop("two.shared.test", v4(81), PORT, 20)]);
}

#[tokio::test]
async fn addresses_of_one_host_are_shuffled() {
    let (_dns, router) = setup().await;
    let mut firsts = BTreeSet::new();
    for _ in 0..100 {
        let hops = router.resolve("rr.test").await.unwrap();
        let set: BTreeSet<SocketAddr> = hops.iter().map(|h| h.addr).collect();
        assert_eq!(set.len(), 3);
        firsts.insert(hops[0].addr);
    }
    // Each of three addresses leads with probability 1/3: one never leading in 100 draws
    // has probability about 3 * (2/3)^100, 7e-18.
    assert_eq!(firsts.len(), 3, "{firsts:?}");
}

#[tokio::test]
async fn hops_are_capped() {
    let mut zone = zone();
    for i in 0..15u8 {
        let host = format!("mx{i}.many.test");
        zone = zone.mx("many.test", u16::from(i), &host).a(&host, v4(100 + i));
    }
    let dns = TestDns::start(zone).await;
    let router = Router::new(config(&dns)).unwrap();
    let hops = router.resolve("many.test").await.unwrap();
    assert_eq!(hops.len(), dakiya_route::DEFAULT_MAX_HOPS);
    assert_eq!(hops.iter().map(|h| h.preference).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    // Only the hosts needed were looked up.
    assert!(!dns.queries().iter().any(|q| q.starts_with("mx10.many.test.")), "{:?}", dns.queries());

    let router = Router::new(RouteConfig { max_hops: 3, ..config(&dns) }).unwrap();
    assert_eq!(router.resolve("many.test").await.unwrap().len(), 3);
    let hops = router.resolve("example.test").await.unwrap();
    assert_eq!(hops.len(), 3);
    assert!(hops.iter().all(|h| h.preference == 10));
}

#[tokio::test]
async fn address_literals_route_to_their_address_without_dns() {
    let (dns, router) = setup().await;
    assert_eq!(router.resolve("[127.0.0.5]").await.unwrap(), [hop("127.0.0.5", v4(5), PORT, 0)]);
    assert_eq!(router.resolve("[IPv6:::1]").await.unwrap(), [hop("::1", Ipv6Addr::LOCALHOST, PORT, 0)]);
    assert_eq!(router.resolve("[0.0.0.0]").await.unwrap_err(), RouteError::NoAddresses);
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());
}

#[tokio::test]
async fn invalid_domains_are_permanent() {
    let (dns, router) = setup().await;
    for bad in ["", "exa mple.test", "a..test", "[127.0.0.1", "[::1]", "under_score.test"] {
        let err = router.resolve(bad).await.unwrap_err();
        assert!(matches!(err, RouteError::InvalidDomain(_)), "{bad:?}: {err:?}");
        assert!(err.is_permanent());
    }
    assert!(dns.queries().is_empty());
}

#[tokio::test]
async fn static_routes_win_and_skip_mx_lookup() {
    let dns = TestDns::start(zone()).await;
    let routes = BTreeMap::from([
        (
            "EXAMPLE.test.".to_string(),
            vec!["127.0.0.7:2526".parse().unwrap(), HostPort::new("relay.example.test", None)],
        ),
        ("bücher.test".to_string(), vec![HostPort::from(SocketAddr::from((v4(8), 2527)))]),
        ("[127.0.0.5]".to_string(), vec!["[::1]:2528".parse().unwrap()]),
    ]);
    let relay_host = Some("127.0.0.99:587".parse().unwrap());
    let router = Router::new(RouteConfig { static_routes: routes, relay_host, ..config(&dns) }).unwrap();

    let hops = router.resolve("example.test").await.unwrap();
    assert_eq!(hops, [hop("127.0.0.7", v4(7), 2526, 0), hop("relay.example.test", v4(9), PORT, 1)]);
    assert_eq!(router.resolve("xn--bcher-kva.test").await.unwrap(), [hop("127.0.0.8", v4(8), 2527, 0)]);
    assert_eq!(router.resolve("[127.0.0.5]").await.unwrap(), [hop("::1", Ipv6Addr::LOCALHOST, 2528, 0)]);
    let queries = dns.queries();
    assert!(queries.iter().all(|q| q.starts_with("relay.example.test. ")), "{queries:?}");
}

#[tokio::test]
async fn relay_host_takes_everything_else() {
    let dns = TestDns::start(zone()).await;
    let relay_host = Some("relay.example.test:587".parse().unwrap());
    let router = Router::new(RouteConfig { relay_host, ..config(&dns) }).unwrap();
    for domain in ["example.test", "missing.test", "nomail.test", "[127.0.0.5]"] {
        assert_eq!(router.resolve(domain).await.unwrap(), [hop("relay.example.test", v4(9), 587, 0)], "{domain}");
    }
    assert!(!dns.queries().iter().any(|q| q.contains(" MX")), "{:?}", dns.queries());
}

#[tokio::test]
async fn unresolvable_route_host_is_temporary() {
    let dns = TestDns::start(zone()).await;
    for relay in ["nowhere.example.test", "broken.test"] {
        let relay_host = Some(HostPort::new(relay, None));
        let router = Router::new(RouteConfig { relay_host, ..config(&dns) }).unwrap();
        let err = router.resolve("example.test").await.unwrap_err();
        assert!(matches!(&err, RouteError::Temporary(msg) if msg.contains(relay)), "{relay}: {err:?}");
    }
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let dns = TestDns::start(Zone::new()).await;
    let route = |domain: &str, hosts: Vec<HostPort>| BTreeMap::from([(domain.to_string(), hosts)]);
    let good = || vec![HostPort::new("127.0.0.1", None)];
    let cases = [
        ("smtp_port 0", RouteConfig { smtp_port: 0, ..config(&dns) }),
        ("max_hops 0", RouteConfig { max_hops: 0, ..config(&dns) }),
        ("no attempts", RouteConfig { dns_attempts: 0, ..config(&dns) }),
        ("no timeout", RouteConfig { dns_timeout: Duration::ZERO, ..config(&dns) }),
        ("bad key", RouteConfig { static_routes: route("bad key", good()), ..config(&dns) }),
        ("no hosts", RouteConfig { static_routes: route("example.test", vec![]), ..config(&dns) }),
        (
            "bad host",
            RouteConfig { static_routes: route("example.test", vec![HostPort::new("a_b", None)]), ..config(&dns) },
        ),
        ("port 0", RouteConfig { relay_host: Some(HostPort::new("relay.test", Some(0))), ..config(&dns) }),
        ("unspecified", RouteConfig { relay_host: Some(HostPort::new("0.0.0.0", None)), ..config(&dns) }),
        ("literal relay", RouteConfig { relay_host: Some(HostPort::new("[127.0.0.1]", None)), ..config(&dns) }),
        (
            "same key twice",
            RouteConfig {
                static_routes: BTreeMap::from([("example.test".into(), good()), ("Example.Test".into(), good())]),
                ..config(&dns)
            },
        ),
    ];
    for (what, cfg) in cases {
        let err = Router::new(cfg).unwrap_err();
        assert!(matches!(err, RouteError::Config(_)), "{what}: {err:?}");
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn resolve_is_send_for_spawned_delivery_tasks() {
    let (_dns, router) = setup().await;
    let task = tokio::spawn(async move { router.resolve("example.test").await });
    assert_eq!(task.await.unwrap().unwrap().len(), 4);
}

/// TXT records under a label (RFC 8461 §3.1 `_mta-sts`): joined strings, none for
/// NXDOMAIN, temporary for SERVFAIL.
#[tokio::test]
async fn txt_records_under_a_label() {
    let zone =
        Zone::new().txt_parts("_mta-sts.example.test", &["v=STSv1; ", "id=abc"]).servfail("_mta-sts.broken.test");
    let dns = TestDns::start(zone).await;
    let router = Router::new(RouteConfig { nameservers: vec![dns.addr], ..RouteConfig::default() }).unwrap();
    assert_eq!(router.txt("_mta-sts", "Example.TEST.").await.unwrap(), vec!["v=STSv1; id=abc".to_owned()]);
    assert_eq!(router.txt("_mta-sts", "other.test").await.unwrap(), Vec::<String>::new());
    assert!(matches!(router.txt("_mta-sts", "broken.test").await, Err(RouteError::Temporary(_))));
    assert_eq!(router.txt("_mta-sts", "[127.0.0.1]").await.unwrap(), Vec::<String>::new());
}
