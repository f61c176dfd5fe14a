//! DANE (RFC 7672) toward MX hosts of a DNSSEC-signed zone served by Knot DNS on loopback
//! (`dakiya_route::testdns::signed`), the zone's key as the trust anchor: matching TLSA
//! records deliver over authenticated TLS; a mismatch, a bogus signature or a required
//! but missing record defers; unusable records still make TLS mandatory; no TLSA records
//! fall back to opportunistic TLS. Every outcome is counted for TLS reports (`tlsa`).

mod support;

use std::sync::Arc;

use dakiya_outbound::{Outbound, RcptResult, TlsMode, TlsReportTally};
use dakiya_proto::Enhanced;
use dakiya_proto::client::RecipientOutcome;
use dakiya_route::HostPort;
use dakiya_route::testdns::signed::{Damage, SignedZone};
use dakiya_route::testdns::{TestDns, Zone};
use rustls_pki_types::CertificateDer;
use support::{FakeSmtp, MESSAGE, Script, config, job, self_signed};

/// The SHA-256 of the certificate's SubjectPublicKeyInfo, in hex: a `3 1 1` record's data.
fn spki_sha256(cert: &CertificateDer<'_>) -> String {
    let parsed = webpki::EndEntityCert::try_from(cert).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, parsed.subject_public_key_info().as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The zone `example.test`: MX `mx.example.test` (127.0.0.1), `tlsa` at `_PORT._tcp.mx`.
fn signed(port: u16, tlsa: &str, damage: &Damage) -> SignedZone {
    let mut records = "@ IN MX 10 mx.example.test.\nmx IN A 127.0.0.1\n".to_owned();
    if !tlsa.is_empty() {
        records.push_str(&format!("_{port}._tcp.mx IN TLSA {tlsa}\n"));
    }
    SignedZone::start("example.test", &records, damage)
}

async fn outbound(zone: &SignedZone, port: u16) -> Outbound {
    let unused = TestDns::start(Zone::new()).await;
    let mut cfg = config(&unused);
    cfg.route.nameservers = vec![zone.addr];
    cfg.route.smtp_port = port;
    cfg.default_tls = TlsMode::Dane;
    cfg.dnssec_trust_anchor = Some(zone.trust_anchor.clone());
    Outbound::new(cfg).unwrap()
}

async fn send(out: &Outbound) -> RcptResult {
    out.deliver("example.test", &job(&["a@example.test"]), Arc::from(MESSAGE)).await.remove(0)
}

fn report(out: &Outbound) -> TlsReportTally {
    let mut all = out.take_tls_reports(u64::MAX / 2, true);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn failures(t: &TlsReportTally, result: &str) -> u64 {
    t.failures.iter().filter(|f| f.result.as_str() == result).map(|f| f.count).sum()
}

fn deferred_because(r: &RcptResult, words: &str) {
    let RecipientOutcome::Temporary(f) = &r.outcome else { panic!("not deferred: {r:?}") };
    assert_eq!(f.status, Enhanced(4, 7, 5), "{f:?}");
    assert!(f.reason.starts_with("DANE (TLSA of _"), "{}", f.reason);
    assert!(f.reason.contains(words), "{}", f.reason);
}

#[tokio::test]
async fn a_matching_dane_ee_record_delivers_over_authenticated_tls() {
    // The certificate names another host: DANE-EE checks neither names nor dates (§3.1.1).
    let (cert, tls) = self_signed(&["not-the-mx.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, &format!("3 1 1 {}", spki_sha256(&cert)), &Damage::default());
    let out = outbound(&zone, port).await;
    let result = send(&out).await;
    assert!(result.outcome.is_delivered(), "{result:?}");
    assert!(server.stats.messages()[0].tls);
    let t = report(&out);
    assert_eq!((t.policy.kind.as_str(), t.successes, t.failure_total()), ("tlsa", 1, 0));
    assert_eq!(t.policy.mx_host, vec!["mx.example.test".to_owned()]);
}

#[tokio::test]
async fn a_record_for_another_key_defers_and_is_counted() {
    let (_, tls) = self_signed(&["mx.example.test"]);
    let (other, _) = self_signed(&["mx.example.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, &format!("3 1 1 {}", spki_sha256(&other)), &Damage::default());
    let out = outbound(&zone, port).await;
    deferred_because(&send(&out).await, "certificate");
    assert!(server.stats.messages().is_empty());
    assert_eq!(failures(&report(&out), "validation-failure"), 1);
}

#[tokio::test]
async fn a_bogus_tlsa_signature_defers_without_connecting() {
    let (cert, tls) = self_signed(&["mx.example.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let damage = Damage { bad_rrsig: Some((format!("_{port}._tcp.mx.example.test."), "TLSA".into())) };
    let zone = signed(port, &format!("3 1 1 {}", spki_sha256(&cert)), &damage);
    let out = outbound(&zone, port).await;
    deferred_because(&send(&out).await, "failed DNSSEC validation");
    assert_eq!(server.stats.connections(), 0, "never downgraded");
    assert_eq!(failures(&report(&out), "dnssec-invalid"), 1);
}

#[tokio::test]
async fn no_tlsa_records_fall_back_to_opportunistic_tls() {
    let (_, tls) = self_signed(&["whatever.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, "", &Damage::default());
    let out = outbound(&zone, port).await;
    assert!(send(&out).await.outcome.is_delivered());
    assert!(server.stats.messages()[0].tls);
    assert!(out.take_tls_reports(u64::MAX / 2, true).is_empty(), "no policy, nothing counted");
}

/// PKIX-EE (1) is not for SMTP and matching type 9 is unknown: unusable, so TLS is
/// mandatory but unauthenticated (RFC 7672 §2.2): delivered over TLS to a server with
/// STARTTLS, deferred from one without, never in clear.
#[tokio::test]
async fn unusable_records_make_tls_mandatory_but_unauthenticated() {
    let records = "1 1 1 0101010101010101010101010101010101010101010101010101010101010101";
    let (_, tls) = self_signed(&["whatever.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, records, &Damage::default());
    let out = outbound(&zone, port).await;
    assert!(send(&out).await.outcome.is_delivered());
    assert!(server.stats.messages()[0].tls);
    assert_eq!(failures(&report(&out), "tlsa-invalid"), 1);

    let plain = FakeSmtp::start(Script::default()).await;
    let port = plain.addr.port();
    let zone2 = signed(port, "3 1 9 0101", &Damage::default());
    let out = outbound(&zone2, port).await;
    deferred_because(&send(&out).await, "STARTTLS");
    assert!(plain.stats.messages().is_empty());
}

/// A static route with `tls = "dane"` requires DANE of its hosts: without validated TLSA
/// records the mail waits (`dane-required`); with them it goes.
#[tokio::test]
async fn a_route_in_dane_mode_requires_tlsa_records() {
    let (cert, tls) = self_signed(&["whatever.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    for (tlsa, delivered) in [("", false), (format!("3 1 1 {}", spki_sha256(&cert)).as_str(), true)] {
        let zone = signed(port, tlsa, &Damage::default());
        let unused = TestDns::start(Zone::new()).await;
        let mut cfg = support::route(
            config(&unused),
            "routed.test",
            vec![HostPort::new("mx.example.test".to_owned(), Some(port))],
        );
        cfg.route.nameservers = vec![zone.addr];
        cfg.route_tls.insert("routed.test".into(), TlsMode::Dane);
        cfg.dnssec_trust_anchor = Some(zone.trust_anchor.clone());
        let out = Outbound::new(cfg).unwrap();
        let result = out.deliver("routed.test", &job(&["a@routed.test"]), Arc::from(MESSAGE)).await.remove(0);
        if delivered {
            assert!(result.outcome.is_delivered(), "{result:?}");
            assert_eq!(report(&out).successes, 1);
        } else {
            deferred_because(&result, "DANE is required");
            assert_eq!(failures(&report(&out), "dane-required"), 1);
        }
    }
    assert_eq!(server.stats.messages().len(), 1);
}

async fn send_job(out: &Outbound, job: &dakiya_proto::client::Job) -> RcptResult {
    out.deliver("example.test", job, Arc::from(MESSAGE)).await.remove(0)
}

fn bounced_requiretls(r: &RcptResult, words: &str) {
    let RecipientOutcome::Permanent(f) = &r.outcome else { panic!("not bounced: {r:?}") };
    assert_eq!(f.status, Enhanced(5, 7, 30), "{f:?}");
    assert!(f.reason.contains(words), "{}", f.reason);
}

/// RFC 8689 §5: a REQUIRETLS message goes over DANE-authenticated TLS to a next hop that
/// offers REQUIRETLS, with the parameter; to one that does not, it bounces with 5.7.30.
#[tokio::test]
async fn requiretls_needs_authenticated_tls_and_the_next_hop_offering_it() {
    let mut job = job(&["a@example.test"]);
    job.require_tls = true;
    for offers in [true, false] {
        let (cert, tls) = self_signed(&["mx.example.test"]);
        let server = FakeSmtp::start(Script { tls: Some(tls), requiretls: offers, ..Script::default() }).await;
        let port = server.addr.port();
        let zone = signed(port, &format!("3 1 1 {}", spki_sha256(&cert)), &Damage::default());
        let out = outbound(&zone, port).await;
        let result = send_job(&out, &job).await;
        if offers {
            assert!(result.outcome.is_delivered(), "{result:?}");
            let received = &server.stats.messages()[0];
            assert!(received.tls && received.mail_line.ends_with(" REQUIRETLS"), "{}", received.mail_line);
        } else {
            bounced_requiretls(&result, "does not offer REQUIRETLS");
            assert!(server.stats.messages().is_empty());
        }
    }
}

/// Without DANE (no TLSA records) or an enforced MTA-STS policy, TLS would not be
/// authenticated: the REQUIRETLS message bounces without a connection being made.
#[tokio::test]
async fn requiretls_without_an_authenticating_policy_bounces() {
    let (_, tls) = self_signed(&["mx.example.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), requiretls: true, ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, "", &Damage::default());
    let out = outbound(&zone, port).await;
    let mut job = job(&["a@example.test"]);
    job.require_tls = true;
    bounced_requiretls(&send_job(&out, &job).await, "would not be authenticated by DANE or MTA-STS");
    assert_eq!(server.stats.connections(), 0);
}

/// `TLS-Required: No` (RFC 8689 §5.1): a DANE mismatch that defers other mail does not
/// stop this message; it goes opportunistically.
#[tokio::test]
async fn tls_required_no_delivers_despite_a_dane_failure() {
    let (_, tls) = self_signed(&["mx.example.test"]);
    let (other, _) = self_signed(&["mx.example.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let port = server.addr.port();
    let zone = signed(port, &format!("3 1 1 {}", spki_sha256(&other)), &Damage::default());
    let out = outbound(&zone, port).await;
    deferred_because(&send(&out).await, "certificate");
    let mut job = job(&["a@example.test"]);
    job.tls_optional = true;
    assert!(send_job(&out, &job).await.outcome.is_delivered());
    assert!(server.stats.messages()[0].tls);
}
