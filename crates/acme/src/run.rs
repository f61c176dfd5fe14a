//! The background loop: look at the certificate in use, order one when it is due, install
//! it, and back off after failures. A failure changes nothing the server serves.

use crate::error::AcmeError;
use crate::order::{Issued, issue};
use crate::schedule::{Due, backoff, due, sleep_for};
use crate::{Host, Settings, certinfo, store};
use std::time::{Duration, SystemTime};

/// Runs forever (until the task is dropped): checks at once, then every `check_interval` or
/// when the certificate is due, whichever comes first; after a failure, waits
/// [`backoff`] instead.
pub async fn run(settings: Settings, host: impl Host) {
    let mut failures = 0u32;
    loop {
        let current = certinfo::read(&settings.cert_file);
        let wait = match due(SystemTime::now(), current.as_ref(), &settings.names, settings.renew_before) {
            Due::At(when) => sleep_for(SystemTime::now(), when, settings.check_interval),
            Due::Now(reason) => {
                tracing::info!(names = ?settings.names, directory = %settings.directory, reason = reason.as_str(), "ACME: ordering a certificate");
                match once(&settings, &host).await {
                    Ok(()) => {
                        failures = 0;
                        settings.check_interval
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let wait = backoff(failures);
                        tracing::error!(error = %e, failures, retry_in_secs = wait.as_secs(), "ACME: certificate order failed; keeping the current certificate");
                        wait
                    }
                }
            }
        };
        tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
    }
}

async fn once(settings: &Settings, host: &impl Host) -> Result<(), AcmeError> {
    let started = std::time::Instant::now();
    let issued = issue(settings, host).await?;
    install(settings, &issued)?;
    host.installed();
    let info = certinfo::parse_pem(issued.chain_pem.as_bytes());
    let expires = info.map(|i| i.not_after.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs());
    tracing::info!(names = ?settings.names, cert = %settings.cert_file.display(), expires_unix = ?expires, took_ms = started.elapsed().as_millis() as u64, "ACME: certificate issued and installed");
    Ok(())
}

/// Writes the key first, then the chain: the TLS watcher reloads once both are stable, and a
/// key that does not match the old chain in between is refused by it (the old pair stays).
fn install(settings: &Settings, issued: &Issued) -> Result<(), AcmeError> {
    let file = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| AcmeError::File { path, source }
    };
    store::write_atomic(&settings.key_file, issued.key_pem.as_bytes(), 0o600).map_err(file(&settings.key_file))?;
    store::write_atomic(&settings.cert_file, issued.chain_pem.as_bytes(), 0o644).map_err(file(&settings.cert_file))
}
