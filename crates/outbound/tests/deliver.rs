//! Delivery through real sockets on 127.0.0.1: static routes, MX lookup through the test
//! DNS server, per-recipient results, failures at each step, and next-hop failover.

mod support;

use std::sync::Arc;

use dakiya_outbound::{Outbound, RcptResult};
use dakiya_proto::Enhanced;
use dakiya_proto::client::{DataEncoder, FailureKind, Phase, RecipientOutcome};
use dakiya_route::HostPort;
use dakiya_route::testdns::{TestDns, Zone};
use support::{FakeSmtp, MESSAGE, Script, closed_port, config, job, route};

fn message() -> Arc<[u8]> {
    Arc::from(MESSAGE)
}

fn temporary(r: &RcptResult) -> &dakiya_proto::client::Failure {
    match &r.outcome {
        RecipientOutcome::Temporary(f) => f,
        other => panic!("expected a temporary failure: {other:?}"),
    }
}

fn permanent(r: &RcptResult) -> &dakiya_proto::client::Failure {
    match &r.outcome {
        RecipientOutcome::Permanent(f) => f,
        other => panic!("expected a permanent failure: {other:?}"),
    }
}

#[tokio::test]
async fn static_route_delivers_the_exact_content() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test", "b@dest.test"]), message()).await;
    assert_eq!(results.len(), 2);
    for r in &results {
        assert!(r.outcome.is_delivered(), "{r:?}");
        assert_eq!(r.remote_mta.as_deref(), Some("127.0.0.1 [127.0.0.1]"));
    }
    let received = server.stats.messages();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert_eq!(
        (m.from.as_str(), m.rcpts.clone()),
        ("from@sender.test", vec!["a@dest.test".into(), "b@dest.test".into()])
    );
    // Lines starting with "." got one more on the wire, and lost it again at the far end.
    let wire =
        b"From: a@sender.test\r\nSubject: test\r\n\r\nHello.\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n";
    assert_eq!(m.wire, wire);
    assert_eq!(m.wire, DataEncoder::encode_all(MESSAGE));
    assert_eq!(m.content, MESSAGE);
    assert!(!m.tls, "the server offers no STARTTLS");
}

#[tokio::test]
async fn mixed_recipient_results() {
    let dns = TestDns::start(Zone::new()).await;
    let script = Script {
        pipelining: true,
        rcpt_replies: vec![
            ("nobody@dest.test".into(), "550 5.1.1 no such user".into()),
            ("full@dest.test".into(), "452 4.2.2 mailbox full".into()),
        ],
        ..Script::default()
    };
    let server = FakeSmtp::start(script).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![server.host_port()])).unwrap();
    let rcpts = ["a@dest.test", "nobody@dest.test", "full@dest.test"];
    let results = out.deliver("dest.test", &job(&rcpts), message()).await;
    assert!(results[0].outcome.is_delivered());
    let f = permanent(&results[1]);
    assert_eq!((f.status, f.phase), (Enhanced(5, 1, 1), Phase::Rcpt));
    assert_eq!(f.diagnostic_code().as_deref(), Some("smtp; 550 5.1.1 no such user"));
    assert_eq!(temporary(&results[2]).status, Enhanced(4, 2, 2));
    assert!(results.iter().all(|r| r.remote_mta.as_deref() == Some("127.0.0.1 [127.0.0.1]")));
    assert_eq!(server.stats.messages()[0].rcpts, ["a@dest.test"]);
}

#[tokio::test]
async fn temporary_refusal_of_mail_defers_everyone() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script { mail_reply: Some("451 4.3.0 try later".into()), ..Script::default() }).await;
    let second = FakeSmtp::start(Script::default()).await;
    let hosts = vec![server.host_port(), second.host_port()];
    let out = Outbound::new(route(config(&dns), "dest.test", hosts)).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test", "b@dest.test"]), message()).await;
    for r in &results {
        let f = temporary(r);
        assert_eq!((f.status, f.phase, f.kind), (Enhanced(4, 3, 0), Phase::Mail, FailureKind::Refused));
        assert_eq!(r.remote_mta.as_deref(), Some("127.0.0.1 [127.0.0.1]"));
    }
    assert_eq!(second.stats.connections(), 0, "a refusal of the message is final: no next hop");
}

#[tokio::test]
async fn permanent_refusal_after_the_content() {
    let dns = TestDns::start(Zone::new()).await;
    let script = Script { end_reply: Some("554 5.6.0 content rejected".into()), ..Script::default() };
    let server = FakeSmtp::start(script).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    let f = permanent(&results[0]);
    assert_eq!((f.status, f.phase), (Enhanced(5, 6, 0), Phase::DataTermination));
}

#[tokio::test]
async fn connection_closed_mid_data_is_temporary_and_final() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script { close_mid_data: true, ..Script::default() }).await;
    let second = FakeSmtp::start(Script::default()).await;
    let hosts = vec![server.host_port(), second.host_port()];
    let out = Outbound::new(route(config(&dns), "dest.test", hosts)).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    let f = temporary(&results[0]);
    assert_eq!(f.kind, FailureKind::Connection);
    assert!(matches!(f.phase, Phase::DataBlock | Phase::DataTermination), "{f:?}");
    assert_eq!(f.status.0, 4);
    assert_eq!(second.stats.connections(), 0, "after the content, trying elsewhere could duplicate the message");
}

#[tokio::test]
async fn first_hop_refuses_the_connection_second_delivers() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let hosts = vec![HostPort::from(closed_port().await), server.host_port()];
    let out = Outbound::new(route(config(&dns), "dest.test", hosts)).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(server.stats.messages().len(), 1);
}

#[tokio::test]
async fn busy_greeting_moves_on_to_the_next_hop() {
    let dns = TestDns::start(Zone::new()).await;
    let busy = FakeSmtp::start(Script { greeting: Some("421 4.3.2 busy".into()), ..Script::default() }).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![busy.host_port(), server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(busy.stats.connections(), 1);
}

#[tokio::test]
async fn all_hops_failing_gives_the_last_failure() {
    let dns = TestDns::start(Zone::new()).await;
    let busy = FakeSmtp::start(Script { greeting: Some("421 4.3.2 busy".into()), ..Script::default() }).await;
    let hosts = vec![busy.host_port(), HostPort::from(closed_port().await)];
    let out = Outbound::new(route(config(&dns), "dest.test", hosts)).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test", "b@dest.test"]), message()).await;
    for r in &results {
        let f = temporary(r);
        // RFC 3463 §3.5: X.4.1, no answer from host.
        assert_eq!((f.status, f.kind, f.reply.clone()), (Enhanced(4, 4, 1), FailureKind::Connection, None));
        assert_eq!(r.remote_mta, None, "nobody answered the last attempt");
    }
}

#[tokio::test]
async fn mx_lookup_through_the_test_dns() {
    let server = FakeSmtp::start(Script::default()).await;
    let zone = Zone::new().mx("mx-dest.test", 10, "mail.mx-dest.test").a("mail.mx-dest.test", [127, 0, 0, 1].into());
    let dns = TestDns::start(zone).await;
    let mut cfg = config(&dns);
    cfg.route.smtp_port = server.addr.port();
    let out = Outbound::new(cfg).unwrap();
    let results = out.deliver("mx-dest.test", &job(&["a@mx-dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(results[0].remote_mta.as_deref(), Some("mail.mx-dest.test [127.0.0.1]"));
    assert!(dns.queries().iter().any(|q| q == "mx-dest.test. MX"), "{:?}", dns.queries());
}

#[tokio::test]
async fn null_mx_bounces_without_connecting() {
    let dns = TestDns::start(Zone::new().null_mx("nomail.test")).await;
    let out = Outbound::new(config(&dns)).unwrap();
    let results = out.deliver("nomail.test", &job(&["a@nomail.test", "b@nomail.test"]), message()).await;
    assert_eq!(results.len(), 2);
    for r in &results {
        // RFC 7505 §4.2.
        assert_eq!(permanent(r).status, Enhanced(5, 1, 10));
        assert_eq!(r.remote_mta, None);
    }
}

#[tokio::test]
async fn dns_trouble_defers() {
    let dns = TestDns::start(Zone::new().servfail("broken.test")).await;
    let out = Outbound::new(config(&dns)).unwrap();
    let results = out.deliver("broken.test", &job(&["a@broken.test"]), message()).await;
    assert_eq!(temporary(&results[0]).status, Enhanced(4, 4, 3));
}

#[tokio::test]
async fn a_job_without_recipients_has_no_results() {
    let dns = TestDns::start(Zone::new()).await;
    let out = Outbound::new(config(&dns)).unwrap();
    assert!(out.deliver("nowhere.test", &job(&[]), message()).await.is_empty());
    assert!(dns.queries().is_empty(), "nothing to do, nothing looked up");
}

#[tokio::test]
async fn a_garbled_greeting_moves_on_to_the_next_hop() {
    let dns = TestDns::start(Zone::new()).await;
    let garbage =
        FakeSmtp::start(Script { greeting: Some("HTTP/1.1 400 Bad Request".into()), ..Script::default() }).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(route(config(&dns), "dest.test", vec![garbage.host_port(), server.host_port()])).unwrap();
    let results = out.deliver("dest.test", &job(&["a@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(garbage.stats.connections(), 1);
}
