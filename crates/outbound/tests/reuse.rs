//! Connection reuse and limits: one connection for consecutive messages, none kept with
//! `idle_timeout` 0, a fresh connection when the idle one died, QUIT at `close_idle`, the
//! per-destination limit under concurrent deliveries, and the global limit closing an idle
//! connection to make room.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dakiya_outbound::{Outbound, OutboundConfig};
use dakiya_route::testdns::{TestDns, Zone};
use support::{FakeSmtp, MESSAGE, Script, config, job, route};

fn message() -> Arc<[u8]> {
    Arc::from(MESSAGE)
}

async fn deliver_ok(out: &Outbound, domain: &str) {
    let results = out.deliver(domain, &job(&[&format!("a@{domain}")]), message()).await;
    assert!(results.iter().all(|r| r.outcome.is_delivered()), "{results:?}");
}

fn routed(dns: &TestDns, server: &FakeSmtp, idle: Duration) -> OutboundConfig {
    let mut cfg = route(config(dns), "dest.test", vec![server.host_port()]);
    cfg.idle_timeout = idle;
    cfg
}

#[tokio::test]
async fn consecutive_messages_share_one_connection() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(routed(&dns, &server, Duration::from_secs(60))).unwrap();
    deliver_ok(&out, "dest.test").await;
    deliver_ok(&out, "dest.test").await;
    assert_eq!(server.stats.connections(), 1);
    assert_eq!(server.stats.messages().len(), 2);
    assert_eq!(server.stats.quits(), 0, "still open, idle");
    out.close_idle().await;
    assert_eq!(server.stats.quits(), 1, "closed with QUIT");
    deliver_ok(&out, "dest.test").await;
    assert_eq!(server.stats.connections(), 2, "nothing idle after close_idle");
}

#[tokio::test]
async fn idle_timeout_zero_never_reuses() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(routed(&dns, &server, Duration::ZERO)).unwrap();
    deliver_ok(&out, "dest.test").await;
    deliver_ok(&out, "dest.test").await;
    assert_eq!(server.stats.connections(), 2);
    assert_eq!(server.stats.messages().len(), 2);
}

#[tokio::test]
async fn a_dead_idle_connection_is_replaced() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script { close_after_message: true, ..Script::default() }).await;
    let out = Outbound::new(routed(&dns, &server, Duration::from_secs(60))).unwrap();
    deliver_ok(&out, "dest.test").await;
    // The server hung up on the idle connection; whether that is seen before or at MAIL,
    // the message goes through a new one.
    deliver_ok(&out, "dest.test").await;
    assert_eq!(server.stats.connections(), 2);
    assert_eq!(server.stats.messages().len(), 2);
}

#[tokio::test]
async fn clones_share_idle_connections() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(routed(&dns, &server, Duration::from_secs(60))).unwrap();
    deliver_ok(&out, "dest.test").await;
    let results = out.clone().deliver("DEST.test.", &job(&["b@dest.test"]), message()).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    assert_eq!(server.stats.connections(), 1, "same destination, any spelling");
}

/// Three deliveries at once with a per-destination limit of 1: never two connections.
async fn limited(idle: Duration) -> Arc<support::Stats> {
    let dns = TestDns::start(Zone::new()).await;
    // A slow final reply makes the deliveries overlap.
    let script = Script { end_delay: Duration::from_millis(30), ..Script::default() };
    let server = FakeSmtp::start(script).await;
    let mut cfg = routed(&dns, &server, idle);
    cfg.max_per_destination = 1;
    let out = Outbound::new(cfg).unwrap();
    tokio::join!(deliver_ok(&out, "dest.test"), deliver_ok(&out, "dest.test"), deliver_ok(&out, "dest.test"));
    out.close_idle().await;
    assert_eq!(server.stats.max_active(), 1);
    assert_eq!(server.stats.messages().len(), 3);
    server.stats.clone()
}

#[tokio::test]
async fn per_destination_limit_without_reuse() {
    let stats = limited(Duration::ZERO).await;
    assert_eq!(stats.connections(), 3);
}

#[tokio::test]
async fn per_destination_limit_hands_the_idle_connection_on() {
    let stats = limited(Duration::from_secs(60)).await;
    assert_eq!(stats.connections(), 1, "waiting deliveries take the connection as it goes idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_destination_limit_on_many_threads() {
    let stats = limited(Duration::ZERO).await;
    assert_eq!(stats.connections(), 3);
}

#[tokio::test]
async fn global_limit_closes_an_idle_connection_to_make_room() {
    let dns = TestDns::start(Zone::new()).await;
    let one = FakeSmtp::start(Script::default()).await;
    let two = FakeSmtp::start(Script::default()).await;
    let mut cfg = route(config(&dns), "one.test", vec![one.host_port()]);
    cfg = route(cfg, "two.test", vec![two.host_port()]);
    cfg.max_connections = 1;
    let out = Outbound::new(cfg).unwrap();
    deliver_ok(&out, "one.test").await;
    assert_eq!(one.stats.quits(), 0);
    deliver_ok(&out, "two.test").await;
    assert_eq!(one.stats.quits(), 1, "the idle connection to one.test gave up its slot");
    assert_eq!(two.stats.messages().len(), 1);
}

#[tokio::test]
async fn expired_idle_connections_are_closed_with_quit() {
    let dns = TestDns::start(Zone::new()).await;
    let server = FakeSmtp::start(Script::default()).await;
    let out = Outbound::new(routed(&dns, &server, Duration::from_millis(20))).unwrap();
    deliver_ok(&out, "dest.test").await;
    // Only that it happens, not when: wait generously for the sweeper.
    for _ in 0..500 {
        if server.stats.quits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.stats.quits(), 1, "the sweeper closed the idle connection");
    deliver_ok(&out, "dest.test").await;
    assert_eq!(server.stats.connections(), 2);
}
