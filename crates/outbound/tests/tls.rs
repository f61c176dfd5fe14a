//! TLS towards next hops: opportunistic STARTTLS with a self-signed certificate, falling
//! back to clear text when the handshake fails, "require" against a server without
//! STARTTLS, "verify" with and without the certificate among the trust anchors, and the
//! relay host with AUTH PLAIN over STARTTLS.

mod support;

use std::sync::Arc;

use dakiya_outbound::{Outbound, OutboundConfig, TlsMode};
use dakiya_proto::Enhanced;
use dakiya_proto::client::{FailureKind, Phase, RecipientOutcome};
use dakiya_route::HostPort;
use dakiya_route::testdns::{TestDns, Zone};
use support::{FakeSmtp, MESSAGE, Script, config, job, relay_config, route, self_signed};

fn message() -> Arc<[u8]> {
    Arc::from(MESSAGE)
}

fn with_tls(cfg: OutboundConfig, domain: &str, mode: TlsMode) -> OutboundConfig {
    let mut cfg = cfg;
    cfg.route_tls.insert(domain.into(), mode);
    cfg
}

#[tokio::test]
async fn opportunistic_starttls_with_a_self_signed_certificate() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["some.other.name"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    let received = server.stats.messages();
    assert!(received[0].tls, "sent over TLS");
    assert_eq!(received[0].content, MESSAGE);
}

#[tokio::test]
async fn opportunistic_falls_back_to_clear_text_when_the_handshake_fails() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["localhost"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), broken_tls: true, ..Script::default() }).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(server.stats.connections(), 2, "a second connection, without STARTTLS");
    assert!(!server.stats.messages()[0].tls);
}

#[tokio::test]
async fn require_without_starttls_is_a_temporary_failure() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let cfg = with_tls(route(config(&dns), "dest.test", vec![server.host_port()]), "dest.test", TlsMode::Require);
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    assert_eq!((f.phase, f.kind, f.status), (Phase::StartTls, FailureKind::Policy, Enhanced(4, 7, 5)));
    assert_eq!(results[0].remote_mta.as_deref(), Some("127.0.0.1 [127.0.0.1]"));
    assert!(server.stats.messages().is_empty());
}

#[tokio::test]
async fn require_does_not_fall_back_when_the_handshake_fails() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["localhost"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), broken_tls: true, ..Script::default() }).await;
    let cfg = with_tls(route(config(&dns), "dest.test", vec![server.host_port()]), "dest.test", TlsMode::Require);
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    assert_eq!((f.phase, f.kind, f.status), (Phase::StartTls, FailureKind::Connection, Enhanced(4, 7, 5)));
    assert_eq!(server.stats.connections(), 1);
}

/// A route `verify.test` → `mx.verify.test` (127.0.0.1 in the test DNS), TLS mode verify,
/// to a server whose self-signed certificate names `mx.verify.test`.
async fn verify_setup(trust: bool) -> (TestDns, FakeSmtp, Outbound) {
    let dns = TestDns::start(Zone::new().a("mx.verify.test", [127, 0, 0, 1].into())).await;
    let (cert, tls) = self_signed(&["mx.verify.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let host = HostPort::new("mx.verify.test", Some(server.addr.port()));
    let mut cfg = with_tls(route(config(&dns), "verify.test", vec![host]), "verify.test", TlsMode::Verify);
    if trust {
        cfg.extra_roots.push(cert);
    }
    (dns, server, Outbound::new(cfg).unwrap())
}

#[tokio::test]
async fn verify_refuses_an_untrusted_certificate() {
    let (_dns, server, out) = verify_setup(false).await;
    let results = out.deliver("verify.test", &job(&["a@verify.test"]), message()).await;
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    // RFC 3463 §3.8: X.7.5, cryptographic failure; our policy refused the host.
    assert_eq!((f.phase, f.kind, f.status), (Phase::StartTls, FailureKind::Policy, Enhanced(4, 7, 5)));
    assert!(f.reason.contains("TLS handshake failed"), "{}", f.reason);
    assert_eq!(results[0].remote_mta.as_deref(), Some("mx.verify.test [127.0.0.1]"));
    assert!(server.stats.messages().is_empty());
    assert_eq!(server.stats.connections(), 1, "no clear-text retry under verify");
}

#[tokio::test]
async fn verify_accepts_a_certificate_among_the_extra_roots() {
    let (_dns, server, out) = verify_setup(true).await;
    let results = out.deliver("verify.test", &job(&["a@verify.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert!(server.stats.messages()[0].tls);
}

#[tokio::test]
async fn verify_checks_the_host_name() {
    let dns = TestDns::start(Zone::new().a("mx.verify.test", [127, 0, 0, 1].into())).await;
    let (cert, tls) = self_signed(&["another.name.test"]);
    let server = FakeSmtp::start(Script { tls: Some(tls), ..Script::default() }).await;
    let host = HostPort::new("mx.verify.test", Some(server.addr.port()));
    let mut cfg = with_tls(route(config(&dns), "verify.test", vec![host]), "verify.test", TlsMode::Verify);
    cfg.extra_roots.push(cert);
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("verify.test", &job(&["a@verify.test"]), message()).await;
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    assert_eq!((f.kind, f.status), (FailureKind::Policy, Enhanced(4, 7, 5)));
}

#[tokio::test]
async fn relay_host_with_auth_over_starttls() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["relay.test"]);
    let auth = Some(("user".to_string(), "s3cret-pw".to_string()));
    let relay = FakeSmtp::start(Script { tls: Some(tls), auth, ..Script::default() }).await;
    let out = Outbound::new(relay_config(&dns, &relay, "s3cret-pw")).unwrap();
    // Two domains without routes of their own: both go to the relay, on one connection.
    for domain in ["one.test", "two.test"] {
        let results = out.deliver(domain, &job(&[&format!("a@{domain}")]), message()).await;
        assert!(results[0].outcome.is_delivered(), "{results:?}");
    }
    let received = relay.stats.messages();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m.tls && m.authenticated));
    assert_eq!(relay.stats.connections(), 1);
    assert!(dns.queries().is_empty(), "the relay host is an address: no DNS");
}

#[tokio::test]
async fn relay_refusing_the_credentials_defers() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["relay.test"]);
    let auth = Some(("user".to_string(), "right".to_string()));
    let relay = FakeSmtp::start(Script { tls: Some(tls), auth, ..Script::default() }).await;
    let out = Outbound::new(relay_config(&dns, &relay, "wrong")).unwrap();
    let results = out.deliver("one.test", &job(&["a@one.test"]), message()).await;
    // RFC 4954 §6: 535. The credentials are the operator's: the mail waits for the fix
    // instead of bouncing (Postfix's smtp_sasl_auth_soft_bounce), keeping the server's detail.
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    assert_eq!((f.phase, f.status), (Phase::Auth, Enhanced(4, 7, 8)));
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(535));
    assert_eq!(relay.stats.auth_failures.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn relay_host_with_implicit_tls() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["relay.test"]);
    let auth = Some(("user".to_string(), "pw".to_string()));
    let relay = FakeSmtp::start(Script { tls: Some(tls), implicit_tls: true, auth, ..Script::default() }).await;
    let mut cfg = relay_config(&dns, &relay, "pw");
    if let Some(settings) = cfg.relay.as_mut() {
        settings.implicit_tls = true;
    }
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("one.test", &job(&["a@one.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    let received = relay.stats.messages();
    assert!(received[0].tls && received[0].authenticated);
}

#[tokio::test]
async fn implicit_tls_to_a_clear_text_server_fails_over() {
    let dns = TestDns::start(Zone::new()).await;
    let plain = FakeSmtp::start(Script::default()).await;
    let mut cfg = relay_config(&dns, &plain, "pw");
    if let Some(settings) = cfg.relay.as_mut() {
        settings.implicit_tls = true;
    }
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("one.test", &job(&["a@one.test"]), message()).await;
    let RecipientOutcome::Temporary(f) = &results[0].outcome else { panic!("{results:?}") };
    assert_eq!((f.phase, f.status), (Phase::Greeting, Enhanced(4, 7, 5)));
    assert_eq!(results[0].remote_mta.as_deref(), Some("127.0.0.1 [127.0.0.1]"), "the host answered, in clear");
    assert!(plain.stats.messages().is_empty());
}

#[tokio::test]
async fn a_static_route_wins_over_the_relay_and_gets_no_credentials() {
    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["relay.test"]);
    let auth = Some(("user".to_string(), "pw".to_string()));
    let relay = FakeSmtp::start(Script { tls: Some(tls.clone()), auth: auth.clone(), ..Script::default() }).await;
    // The routed host offers STARTTLS and AUTH too: it must see neither TLS (mode none) nor AUTH.
    let routed = FakeSmtp::start(Script { tls: Some(tls), auth, ..Script::default() }).await;
    let cfg = route(relay_config(&dns, &relay, "pw"), "Routed.Test", vec![routed.host_port()]);
    let out = Outbound::new(with_tls(cfg, "routed.test", TlsMode::None)).unwrap();
    let results = out.deliver("routed.test", &job(&["a@routed.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    let received = routed.stats.messages();
    assert!(!received[0].tls && !received[0].authenticated);
    assert_eq!(relay.stats.connections(), 0);
}
