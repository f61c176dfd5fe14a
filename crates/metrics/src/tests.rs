use super::*;
use std::time::Duration;

fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
}

fn value(text: &str, series: &str) -> f64 {
    let l = line(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    l.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn closed_sets_are_exported_at_zero_and_count_once() {
    let m = Metrics::new();
    let before = m.encode(&Scrape::default());
    assert_eq!(value(&before, r#"dakiya_smtp_rejections_total{stage="rcpt",reason="relay_denied"}"#), 0.0);
    assert_eq!(value(&before, r#"dakiya_deliveries_total{kind="remote",result="bounced"}"#), 0.0);
    m.rejected(Rejection::RelayDenied);
    m.delivery(DeliveryKind::Local, Delivery::Delivered, Duration::from_secs(3));
    m.delivery(DeliveryKind::Remote, Delivery::Deferred, Duration::from_secs(3));
    m.message_accepted(1000);
    m.auth("PLAIN", false);
    m.tls(Direction::Inbound, "TLSv1.3");
    m.tls(Direction::Inbound, "SSLv3 or something odd");
    m.verified(Verification::Dkim, "PASS");
    m.verified(Verification::Spf, "<script>");
    let after = m.encode(&Scrape::default());
    assert_eq!(value(&after, r#"dakiya_smtp_rejections_total{stage="rcpt",reason="relay_denied"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_deliveries_total{kind="local",result="delivered"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_deliveries_total{kind="remote",result="deferred"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_delivery_latency_seconds_count{kind="local"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_delivery_latency_seconds_count{kind="remote"}"#), 0.0);
    assert_eq!(value(&after, "dakiya_received_bytes_total"), 1000.0);
    assert_eq!(value(&after, r#"dakiya_auth_attempts_total{mechanism="PLAIN",result="failure"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_tls_handshakes_total{direction="inbound",version="TLSv1.3"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_tls_handshakes_total{direction="inbound",version="other"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_verifications_total{method="dkim",result="pass"}"#), 1.0);
    assert_eq!(value(&after, r#"dakiya_verifications_total{method="spf",result="other"}"#), 1.0);
    assert!(after.ends_with("# EOF\n"), "{after}");
}

#[test]
fn listener_connections_open_and_close() {
    let m = Metrics::new();
    let l = m.listener("127.0.0.1:25", "mx");
    let a = l.opened();
    let _b = l.opened();
    l.refused(1);
    l.refused(7);
    drop(a);
    let text = m.encode(&Scrape::default());
    assert_eq!(value(&text, r#"dakiya_connections_total{listener="127.0.0.1:25",role="mx"}"#), 2.0);
    assert_eq!(value(&text, r#"dakiya_connections_open{listener="127.0.0.1:25",role="mx"}"#), 1.0);
    let refused = r#"dakiya_connections_refused_total{listener="127.0.0.1:25",role="mx",limit="per-address"}"#;
    assert_eq!(value(&text, refused), 1.0);
}

#[test]
fn scrape_time_values() {
    let m = Metrics::new();
    let queue = QueueSnapshot { ready: 1, scheduled: 2, held: 3, running: 4, oldest_age: 99 };
    let scrape = Scrape {
        queue: Some(queue),
        batch_sizes: vec![0, 5, 2, 0, 1],
        commit_rounds: 4,
        dir_sync: (10, 4),
        start_time: 1_700_000_000,
        spool_writable: true,
        fsync: vec![("directory", HistogramSnapshot { bounds: vec![0.001, 0.01], counts: vec![3, 1, 1], sum: 2.5 })],
        pool: (7, 5),
        recent: RecentSnapshot { kept: 11, hits: 8, misses: 2, evictions: 1, dropped: 2 },
        commit_paced: 3,
        slots: SlotSnapshot { slots: 6, free: 4, in_place: 40, made: 6, copied_out: 3 },
    };
    let text = m.encode(&scrape);
    assert_eq!(value(&text, r#"dakiya_queue_messages{state="held"}"#), 3.0);
    assert_eq!(value(&text, "dakiya_queue_oldest_message_age_seconds"), 99.0);
    assert_eq!(value(&text, "dakiya_spool_commit_rounds_paced_total"), 3.0);
    assert_eq!(value(&text, "dakiya_spool_slots"), 6.0);
    assert_eq!(value(&text, "dakiya_spool_slots_free"), 4.0);
    assert_eq!(value(&text, "dakiya_spool_slot_copyouts_total"), 3.0);
    assert_eq!(value(&text, r#"dakiya_spool_slot_writes_total{kind="in_place"}"#), 40.0);
    assert_eq!(value(&text, r#"dakiya_spool_slot_writes_total{kind="made"}"#), 6.0);
    assert_eq!(value(&text, r#"dakiya_spool_commit_batch_messages_bucket{le="1.0"}"#), 5.0);
    assert_eq!(value(&text, r#"dakiya_spool_commit_batch_messages_bucket{le="2.0"}"#), 7.0);
    assert_eq!(value(&text, r#"dakiya_spool_commit_batch_messages_bucket{le="4.0"}"#), 8.0);
    assert_eq!(value(&text, r#"dakiya_spool_commit_batch_messages_bucket{le="+Inf"}"#), 8.0);
    assert_eq!(value(&text, "dakiya_spool_commit_batch_messages_sum"), 13.0);
    assert_eq!(value(&text, "dakiya_spool_writable"), 1.0);
    assert_eq!(value(&text, "dakiya_start_time_seconds"), 1_700_000_000.0);
    let fsync = "dakiya_spool_fsync_duration_seconds";
    assert_eq!(value(&text, &format!("{fsync}_bucket{{le=\"0.001\",kind=\"directory\"}}")), 3.0, "{text}");
    assert_eq!(value(&text, &format!("{fsync}_bucket{{le=\"0.01\",kind=\"directory\"}}")), 4.0);
    assert_eq!(value(&text, &format!("{fsync}_bucket{{le=\"+Inf\",kind=\"directory\"}}")), 5.0);
    assert_eq!(value(&text, &format!("{fsync}_count{{kind=\"directory\"}}")), 5.0);
    assert_eq!(value(&text, r#"dakiya_spool_pool_files_total{event="recycled"}"#), 7.0);
    assert_eq!(value(&text, r#"dakiya_spool_pool_files_total{event="reused"}"#), 5.0);
    assert_eq!(value(&text, r#"dakiya_spool_memory_loads_total{result="hit"}"#), 8.0);
    assert_eq!(value(&text, r#"dakiya_spool_memory_loads_total{result="miss"}"#), 2.0);
    assert_eq!(value(&text, r#"dakiya_spool_memory_messages_total{event="kept"}"#), 11.0);
    assert_eq!(value(&text, r#"dakiya_spool_memory_messages_total{event="evicted"}"#), 1.0);
    assert_eq!(value(&text, r#"dakiya_spool_memory_messages_total{event="dropped"}"#), 2.0);
    assert_eq!(text.matches("# EOF").count(), 1);
}
