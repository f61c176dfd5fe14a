//! The validating resolver against a signed zone served by Knot DNS on loopback.

use dakiya_route::testdns::signed::{Damage, SignedZone};
use dakiya_route::{RouteConfig, SecureResolver, Secured};

const RECORDS: &str = "@ IN MX 10 mx.example.test.\nmx IN A 127.0.0.1\n\
    _25._tcp.mx IN TLSA 3 1 1 0101010101010101010101010101010101010101010101010101010101010101\n\
    nodane IN A 127.0.0.1\n";

fn resolver(zone: &SignedZone) -> SecureResolver {
    let cfg = RouteConfig { nameservers: vec![zone.addr], ..RouteConfig::default() };
    SecureResolver::new(&cfg, Some(&zone.trust_anchor)).unwrap()
}

#[tokio::test]
async fn secure_answers_are_told_from_bogus_ones() {
    let zone = SignedZone::start("example.test", RECORDS, &Damage::default());
    let r = resolver(&zone);
    assert_eq!(r.addresses("mx.example.test", false).await, Secured::Secure(vec![[127, 0, 0, 1].into()]));
    assert_eq!(r.mx("example.test").await, Secured::Secure(vec!["mx.example.test".to_owned()]));
    let Secured::Secure(tlsa) = r.tlsa("mx.example.test", 25).await else { panic!("TLSA not secure") };
    assert_eq!((tlsa.len(), tlsa[0].usage, tlsa[0].data[0]), (1, 3, 1));
    // A validated denial: no TLSA records.
    assert_eq!(r.tlsa("nodane.example.test", 25).await, Secured::Secure(vec![]));

    let damage = Damage { bad_rrsig: Some(("_25._tcp.mx.example.test.".into(), "TLSA".into())) };
    let bad = SignedZone::start("example.test", RECORDS, &damage);
    let r = resolver(&bad);
    assert!(r.dnssec_available().await, "the zone's own keys validate");
    assert!(matches!(r.tlsa("mx.example.test", 25).await, Secured::Bogus(_)));
    assert!(matches!(r.mx("example.test").await, Secured::Secure(_)));
}

#[tokio::test]
async fn another_trust_anchor_is_not_trusted() {
    let zone = SignedZone::start("example.test", RECORDS, &Damage::default());
    let other = SignedZone::start("example.test", RECORDS, &Damage::default());
    let cfg = RouteConfig { nameservers: vec![zone.addr], ..RouteConfig::default() };
    let r = SecureResolver::new(&cfg, Some(&other.trust_anchor)).unwrap();
    assert!(!matches!(r.tlsa("mx.example.test", 25).await, Secured::Secure(_)));
}

/// An unsigned zone (the plain test server, which knows no DNSSEC) under the built-in
/// root anchors: not secure, so DANE never applies; never an error that would hold mail.
#[tokio::test]
async fn unsigned_zones_are_not_secure() {
    use dakiya_route::testdns::{TestDns, Zone};
    let dns =
        TestDns::start(Zone::new().mx("plain.test", 10, "mx.plain.test").a("mx.plain.test", [127, 0, 0, 1].into()))
            .await;
    let cfg = RouteConfig { nameservers: vec![dns.addr], ..RouteConfig::default() };
    let r = SecureResolver::new(&cfg, None).unwrap();
    // Without the chain from the root, the test server's plain answers cannot even be
    // proven insecure: they come out bogus. The server carries no DNSSEC at all (the
    // root's DNSKEY does not validate either), which `dane` mode takes as "DANE is
    // unavailable" rather than as a lookup error that defers the mail.
    assert!(!r.dnssec_available().await);
    assert!(matches!(r.mx("plain.test").await, Secured::Bogus(_)));
    assert!(matches!(r.tlsa("mx.plain.test", 25).await, Secured::Bogus(_)));
    assert!(matches!(r.mx("nowhere.test").await, Secured::Bogus(_)));
}
