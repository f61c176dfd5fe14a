//! Sending TLS reports (RFC 8460): every tick, the TLS-RPT counts that are due (from the
//! outbound service, `dakiya_outbound`) become one report per policy domain and day, mailed
//! to the `rua` addresses of the domain's `_smtp._tls` record, DKIM-signed like submitted
//! mail and queued like a notice. See docs/mta-sts.md.

use std::sync::Arc;
use std::time::Duration;

use dakiya_config::{Config, Target};
use dakiya_mtasts::message::{self, Envelope as MsgEnvelope};
use dakiya_mtasts::report::{self, Submitter};
use dakiya_outbound::{Outbound, TlsReportTally};
use dakiya_spool::{BodyType, Envelope, Notify, Recipient};
use tokio::task::JoinHandle;

use crate::shared::Shared;

/// A day; an interval this long or longer means daily reports of past days.
const DAY: Duration = Duration::from_secs(86_400);
/// How often daily reports are looked for (they are sent in the first hour of the day).
const DAILY_CHECK: Duration = Duration::from_secs(3600);

/// Starts the sender; it ends at shutdown, after writing the counts.
pub(crate) fn spawn(shared: Arc<Shared>, outbound: Outbound) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = shared.shutdown.clone();
        loop {
            let interval = shared.live.get().config.outbound.tls_report_interval;
            let daily = interval >= DAY;
            let tick = if daily || interval.is_zero() { DAILY_CHECK } else { interval };
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => break,
            }
            if !interval.is_zero() {
                send_due(&shared, &outbound, now(), !daily).await;
            }
        }
        outbound.flush_tls_reports();
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Sends the reports due at `now` (with `all`, today's counts too).
async fn send_due(shared: &Shared, outbound: &Outbound, now: u64, all: bool) {
    for tally in outbound.take_tls_reports(now, all) {
        let to = outbound.tls_report_addresses(&tally.domain).await;
        if to.is_empty() {
            tracing::debug!(domain = %tally.domain, "no TLS-RPT address; counts dropped");
            continue;
        }
        match queue_report(shared, &tally, &to, now) {
            Ok(id) => {
                tracing::info!(domain = %tally.domain, queue_id = %id, recipients = to.len(), "TLS report queued")
            }
            Err(e) => tracing::warn!(domain = %tally.domain, error = %e, "cannot queue a TLS report"),
        }
    }
}

/// The domain reports are signed for: the host name or the nearest parent with DKIM keys;
/// else the host name (unsigned).
fn signing_domain(hostname: &str, has_keys: impl Fn(&str) -> bool) -> String {
    let host = hostname.to_ascii_lowercase();
    let mut name = host.as_str();
    loop {
        if has_keys(name) {
            return name.to_owned();
        }
        match name.split_once('.') {
            Some((_, parent)) if parent.contains('.') => name = parent,
            _ => return host,
        }
    }
}

/// Builds, signs and spools one report; returns its queue id.
fn queue_report(shared: &Shared, tally: &TlsReportTally, to: &[String], now: u64) -> Result<String, String> {
    let live = shared.live.get();
    let cfg = &live.config;
    let keys = live.mailauth.keys();
    let domain = signing_domain(&cfg.hostname, |d| keys.has_keys(d));
    let from = format!("postmaster@{domain}");
    let submitter = Submitter { organization: cfg.hostname.clone(), contact: from.clone(), host: cfg.hostname.clone() };
    let unique = shared.spool.new_id();
    // RFC 8460 §4.4: a unique identifier; the day, the domain and our queue id make it so.
    let report_id =
        format!("{}.{}.{}@{}", dakiya_mtasts::date::ymd(tally.day), tally.domain, unique.as_str(), cfg.hostname);
    let json = report::report_json(tally, &submitter, &report_id).to_string();
    let env = MsgEnvelope {
        from: &from,
        to,
        date: message::rfc5322_date(now),
        message_id: format!("tlsrpt.{}@{}", unique.as_str(), cfg.hostname),
        boundary: format!("tlsrpt-{}", unique.as_str()),
    };
    let body = message::report_message(tally, &submitter, &report_id, json.as_bytes(), &env);
    // RFC 8460 §5.3: the report is DKIM-signed by the submitter's domain.
    let signature = keys.sign(&body, &domain).map_err(|e| e.to_string())?;
    let mut content = signature.into_bytes();
    content.extend_from_slice(&body);

    let recipients = to.iter().flat_map(|address| targets(shared, cfg, address)).collect::<Vec<_>>();
    if recipients.is_empty() {
        return Err("no deliverable report address".into());
    }
    let envelope = Envelope {
        id: unique,
        received_at: now,
        // The null reverse-path, as for notices: a report about delivery must not bounce.
        sender: String::new(),
        client_ip: String::new(),
        helo: cfg.hostname.clone(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        recipients,
        prepend: None,
    };
    let mut writer = shared.spool.writer(envelope).map_err(|e| e.to_string())?;
    writer.write(&content).map_err(|e| e.to_string())?;
    let id = writer.commit().map_err(|e| e.to_string())?;
    shared.queue.enqueue(id.clone());
    Ok(id.as_str().to_owned())
}

/// The recipients for one `rua` address: local mailboxes for a local domain, else remote.
fn targets(shared: &Shared, cfg: &Config, address: &str) -> Vec<Recipient> {
    let Some((local, domain)) = address.rsplit_once('@') else { return Vec::new() };
    let targets = if cfg.is_local_domain(domain) {
        cfg.resolve_with(local, domain, &|a| shared.users.exists(a)).unwrap_or_default()
    } else {
        vec![Target::Remote { address: address.to_owned() }]
    };
    targets
        .into_iter()
        .map(|t| {
            let (address, mailbox) = match t {
                Target::Mailbox { domain, mailbox } => (format!("{mailbox}@{domain}"), Some((domain, mailbox))),
                Target::Remote { address } => (address, None),
            };
            Recipient { address, original: String::new(), orcpt: None, notify: Some(Notify::NEVER), mailbox }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::signing_domain;

    #[test]
    fn reports_are_signed_by_the_host_or_its_nearest_parent_with_keys() {
        let keys = |list: &'static [&'static str]| move |d: &str| list.contains(&d);
        assert_eq!(signing_domain("MX.Example.ORG", keys(&["example.org"])), "example.org");
        assert_eq!(signing_domain("mx.example.org", keys(&["mx.example.org", "example.org"])), "mx.example.org");
        assert_eq!(signing_domain("a.b.example.org", keys(&["b.example.org"])), "b.example.org");
        assert_eq!(signing_domain("mx.example.org", keys(&["org"])), "mx.example.org", "never a bare TLD");
        assert_eq!(signing_domain("localhost", keys(&[])), "localhost");
    }
}
