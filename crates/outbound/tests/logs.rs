//! What the logs say about a delivery, and what they never say: the AUTH exchange and the
//! message content. A test binary of its own: tracing caches per call site whether anyone
//! listens, so a thread-local subscriber is only reliable when no other test runs at once.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use dakiya_outbound::Outbound;
use dakiya_route::testdns::{TestDns, Zone};
use support::{FakeSmtp, MESSAGE, Script, job, relay_config, self_signed};

/// Collects everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn connections_and_jobs_are_logged_without_secrets_or_content() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dns = TestDns::start(Zone::new()).await;
    let (_, tls) = self_signed(&["relay.test"]);
    let auth = Some(("user".to_string(), "s3cret-pw".to_string()));
    let relay = FakeSmtp::start(Script { tls: Some(tls), auth, ..Script::default() }).await;
    let out = Outbound::new(relay_config(&dns, &relay, "s3cret-pw")).unwrap();
    let results = out.deliver("one.test", &job(&["a@one.test"]), Arc::from(MESSAGE)).await;
    assert!(results[0].outcome.is_delivered(), "{results:?}");
    out.close_idle().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("outbound connection") && logs.contains("TLSv1.3 TLS_"), "{logs}");
    assert!(logs.contains("outbound job") && logs.contains("delivered=1"), "{logs}");
    // The password, the AUTH PLAIN initial response, and lines of the content.
    for secret in ["s3cret-pw", "AHVzZXIAczNjcmV0LXB3", "leading dot", "Subject: test"] {
        assert!(!logs.contains(secret), "{secret:?} was logged:\n{logs}");
    }
}
