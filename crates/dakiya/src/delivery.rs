//! One delivery run of one queued message: local recipients into their Maildirs, remote
//! recipients over SMTP (one job per destination domain, in parallel), then the notices the
//! sender asked for (DSN), then the new recipient states made durable.
//!
//! A run has up to three steps so that the async runtime never blocks on disk: the local
//! step (load, loop check, Maildir deliveries) and the final step (DSNs, status records) run
//! on the blocking pool; the remote step in between is async. A message with only local
//! recipients runs both blocking steps in one go.

use crate::bounce;
use crate::local::{self, Mailboxes};
use dakiya_auth::UserStore;
use dakiya_config::Config;
use dakiya_dsn::{Action, Kind, should_notify};
use dakiya_outbound::{Outbound, OutboundConfig, RcptResult, RelaySettings};
use dakiya_proto::address::{Mailbox, ReversePath, parse_mailbox};
use dakiya_proto::client::{AuthCredentials, Failure, Job, JobRecipient, RecipientOutcome};
use dakiya_proto::logtext::Esc;
use dakiya_spool::{Enhanced, FailureDetail, QueueId, QueuedMessage, RcptState, Spool, next_retry_delay};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// RFC 5321 §6.3: a message with more `Received:` headers than this is in a loop.
pub const MAX_RECEIVED: usize = 100;

/// Everything a delivery run needs, shared by all runs.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub spool: Arc<Spool>,
    pub users: Arc<UserStore>,
    pub boxes: Mailboxes,
    /// Bounds the blocking steps (Maildir deliveries and status records) running at once.
    pub local_limit: Semaphore,
    pub outbound: Outbound,
}

/// What a run leaves for the scheduler.
pub struct RunOutcome {
    pub id: QueueId,
    /// When to try again (unix seconds), if some recipient is still to do.
    pub retry_at: Option<u64>,
    /// Notices queued by this run, to deliver next.
    pub notices: Vec<QueueId>,
}

impl RunOutcome {
    fn retry(id: &QueueId, at: Option<u64>) -> RunOutcome {
        RunOutcome { id: id.clone(), retry_at: at, notices: Vec::new() }
    }
}

/// A run between its steps.
struct Run {
    m: QueuedMessage,
    states: Vec<RcptState>,
    changed: Vec<bool>,
    /// Recipients delivered in this run (for success notices), with the action to report:
    /// delivered (locally), or relayed (to a next hop without DSN).
    delivered: Vec<(usize, Action)>,
    /// Remote recipients due now.
    remote: Vec<usize>,
    now: u64,
}

impl Run {
    fn set(&mut self, i: usize, state: RcptState) {
        self.states[i] = state;
        self.changed[i] = true;
    }
}

enum Step {
    Done(RunOutcome),
    Remote(Box<Run>),
}

/// Delivers every due recipient of message `id`; with `force`, deferred recipients are due
/// now whatever their next attempt time (`dakiya queue retry`).
pub async fn run(ctx: Arc<Ctx>, id: QueueId, force: bool) -> RunOutcome {
    let retry_soon = || RunOutcome::retry(&id, Some(crate::envelope::now() + 60));
    let first = {
        let Ok(_permit) = ctx.local_limit.acquire().await else { return retry_soon() };
        let (c, i) = (ctx.clone(), id.clone());
        tokio::task::spawn_blocking(move || local_step(&c, &i, force)).await
    };
    let mut run = match first {
        Ok(Step::Done(outcome)) => return outcome,
        Ok(Step::Remote(run)) => run,
        Err(e) => {
            step_failed(&id, &e);
            return retry_soon();
        }
    };
    remote_step(&ctx, &mut run).await;
    let Ok(_permit) = ctx.local_limit.acquire().await else { return retry_soon() };
    let c = ctx.clone();
    match tokio::task::spawn_blocking(move || finish(&c, *run)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            step_failed(&id, &e);
            retry_soon()
        }
    }
}

/// A blocking step that did not finish. Cancelled means the runtime is shutting down (it
/// cancels blocking tasks that have not started): nothing failed, and the message, whose
/// state is durable, is delivered after the next start. Only a panic is an error.
fn step_failed(id: &QueueId, e: &tokio::task::JoinError) {
    if e.is_cancelled() {
        tracing::debug!(queue_id = %id, "delivery run cancelled by shutdown; it runs again after the next start");
    } else {
        tracing::error!(queue_id = %id, error = %e, "delivery run failed; will retry");
    }
}

/// Loads the message, checks for a mail loop and delivers the local recipients.
fn local_step(ctx: &Ctx, id: &QueueId, force: bool) -> Step {
    let now = crate::envelope::now();
    let m = match ctx.spool.load(id) {
        Ok(m) => m,
        Err(dakiya_spool::SpoolError::NotFound(_)) => return Step::Done(RunOutcome::retry(id, None)),
        Err(e) => {
            tracing::warn!(queue_id = %id, error = %e, "cannot load queued message; will retry");
            return Step::Done(RunOutcome::retry(id, Some(now + 60)));
        }
    };
    if m.held {
        return Step::Done(RunOutcome::retry(id, None));
    }
    let n = m.states.len();
    let mut run =
        Run { states: m.states.clone(), m, changed: vec![false; n], delivered: Vec::new(), remote: Vec::new(), now };
    let due: Vec<usize> = (0..n)
        .filter(|&i| match &run.states[i] {
            RcptState::Pending => true,
            RcptState::Deferred { next_attempt, .. } => force || *next_attempt <= now,
            _ => false,
        })
        .collect();
    if !due.is_empty() {
        let received = count_received(&ctx.spool, id);
        if received > MAX_RECEIVED {
            // RFC 5321 §6.3: a server SHOULD treat a message with more than about 100
            // Received: headers as looping and fail it; 5.4.6 is "routing loop detected".
            let error = format!("mail loop: the message has {received} Received: headers (limit {MAX_RECEIVED})");
            tracing::warn!(queue_id = %id, received, "mail loop detected; failing the message");
            for &i in &due {
                let detail = FailureDetail::new(Enhanced(5, 4, 6));
                run.set(i, RcptState::Failed { at: now, error: error.clone(), detail: Some(detail), notified: false });
            }
            return Step::Done(finish(ctx, run));
        }
    }
    for i in due {
        let rcpt = &run.m.envelope.recipients[i];
        match &rcpt.mailbox {
            Some((domain, mailbox)) => {
                let target = (rcpt.address.as_str(), domain.as_str(), mailbox.as_str());
                let state = local::deliver_one(&ctx.cfg, &ctx.spool, &ctx.boxes, &run.m, target, &run.states[i], now);
                if matches!(state, RcptState::Delivered { .. }) {
                    run.delivered.push((i, Action::Delivered));
                }
                run.set(i, state);
            }
            None => run.remote.push(i),
        }
    }
    if run.remote.is_empty() { Step::Done(finish(ctx, run)) } else { Step::Remote(Box::new(run)) }
}

/// Counts the `Received:` fields of the message's header section, reading no further than
/// its end (and at most 1 MiB of a hostile one).
fn count_received(spool: &Spool, id: &QueueId) -> usize {
    use std::io::BufRead;
    let Ok(body) = spool.body(id) else { return 0 };
    let mut head = std::io::BufReader::with_capacity(8192, body.take(1 << 20));
    let mut line = Vec::new();
    let mut count = 0;
    loop {
        line.clear();
        match head.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return count,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            return count;
        }
        if text.len() >= 9 && text[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
    }
}

/// Delivers the due remote recipients: one job per destination domain, all at once.
async fn remote_step(ctx: &Ctx, run: &mut Run) {
    let id = run.m.envelope.id.clone();
    let body = {
        let (spool, id) = (ctx.spool.clone(), id.clone());
        let prepend = run.m.envelope.prepend.clone().unwrap_or_default();
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut body = spool.body(&id).map_err(std::io::Error::other)?;
            // Header fields decided at the end of DATA (Authentication-Results, DKIM, ARC)
            // go on top, as they do for local delivery.
            let mut data = prepend.into_bytes();
            data.reserve(body.len() as usize);
            body.read_to_end(&mut data)?;
            Ok(data)
        })
        .await
    };
    let body: Arc<[u8]> = match body {
        Ok(Ok(data)) => data.into(),
        Ok(Err(e)) => return defer_all(ctx, run, &format!("cannot read the queued message: {e}")),
        Err(e) => return defer_all(ctx, run, &format!("cannot read the queued message: {e}")),
    };
    let from = if run.m.envelope.sender.is_empty() {
        ReversePath::Null
    } else {
        match parse_mailbox(&run.m.envelope.sender) {
            Ok(m) => ReversePath::Mailbox(m),
            // Accepted by our own parser at MAIL time, so this cannot happen; be safe anyway.
            Err(_) => ReversePath::Null,
        }
    };
    let mut groups: BTreeMap<String, Vec<(usize, Mailbox)>> = BTreeMap::new();
    for &i in &run.remote.clone() {
        let address = &run.m.envelope.recipients[i].address;
        match parse_mailbox(address) {
            Ok(mailbox) => groups.entry(mailbox.domain.to_ascii_lowercase()).or_default().push((i, mailbox)),
            Err(e) => {
                let detail = FailureDetail::new(Enhanced(5, 1, 3));
                let error = format!("invalid recipient address {address}: {e}");
                run.set(i, RcptState::Failed { at: run.now, error, detail: Some(detail), notified: false });
            }
        }
    }
    let env = &run.m.envelope;
    let eight_bit = body.iter().any(|&b| b >= 0x80);
    let mut tasks = tokio::task::JoinSet::new();
    for (domain, rcpts) in groups {
        let job = Job {
            from: from.clone(),
            recipients: rcpts
                .iter()
                .map(|(i, mailbox)| {
                    let r = &env.recipients[*i];
                    JobRecipient {
                        mailbox: mailbox.clone(),
                        notify: r.notify,
                        orcpt: r.orcpt.as_deref().and_then(|o| o.split_once(';')).map(|(t, a)| (t.into(), a.into())),
                    }
                })
                .collect(),
            size: Some(body.len() as u64),
            eight_bit,
            smtputf8: env.smtputf8,
            ret: env.dsn_ret,
            envid: env.dsn_envid.clone(),
        };
        let (outbound, body) = (ctx.outbound.clone(), body.clone());
        let indices: Vec<usize> = rcpts.iter().map(|(i, _)| *i).collect();
        tasks.spawn(async move {
            let results = outbound.deliver(&domain, &job, body).await;
            (indices, results)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((indices, results)) = joined else { continue };
        for (i, result) in indices.into_iter().zip(results) {
            // A next hop with DSN was handed NOTIFY and reports success itself; one without
            // it leaves that to us: "relayed" (RFC 3461 §6.2.2).
            let next_hop_dsn = result.next_hop_dsn;
            let state = remote_state(ctx, run, i, result);
            if matches!(state, RcptState::Delivered { .. }) && !next_hop_dsn {
                run.delivered.push((i, Action::Relayed));
            }
            run.set(i, state);
        }
    }
    // A task that panicked leaves its recipients as they were: they are retried.
}

/// Defers every due remote recipient with `error` (a problem on our side).
fn defer_all(ctx: &Ctx, run: &mut Run, error: &str) {
    tracing::warn!(queue_id = %run.m.envelope.id, error, "remote delivery deferred");
    for i in run.remote.clone() {
        let detail = FailureDetail::new(Enhanced(4, 3, 0));
        let state = temporary(ctx, &run.m, &run.states[i], run.now, error.to_string(), detail);
        run.set(i, state);
    }
}

/// The new state of remote recipient `i` after an attempt.
fn remote_state(ctx: &Ctx, run: &Run, i: usize, result: RcptResult) -> RcptState {
    let id = &run.m.envelope.id;
    let rcpt = &run.m.envelope.recipients[i].address;
    let mta = result.remote_mta.as_deref().unwrap_or("-");
    let failure = |f: &Failure| FailureDetail {
        status: f.status,
        remote_mta: result.remote_mta.clone(),
        diagnostic: f.diagnostic_code(),
    };
    match &result.outcome {
        RecipientOutcome::Delivered(reply) => {
            let reply = reply.lines.join(" ");
            tracing::info!(queue_id = %id, rcpt = %Esc(rcpt), result = %"sent", relay = %Esc(mta), reply = %Esc(&reply), "delivered");
            RcptState::Delivered { at: run.now }
        }
        RecipientOutcome::Permanent(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"bounced", relay = %Esc(mta), error = %Esc(&f.to_string()), "delivered");
            RcptState::Failed { at: run.now, error: f.to_string(), detail: Some(failure(f)), notified: false }
        }
        RecipientOutcome::Temporary(f) => {
            tracing::warn!(queue_id = %id, rcpt = %Esc(rcpt), result = %"deferred", relay = %Esc(mta), error = %Esc(&f.to_string()), "delivered");
            temporary(ctx, &run.m, &run.states[i], run.now, f.to_string(), failure(f))
        }
        other => {
            let error = format!("unexpected delivery result {other:?}");
            let detail = FailureDetail::new(Enhanced(4, 0, 0));
            temporary(ctx, &run.m, &run.states[i], run.now, error, detail)
        }
    }
}

/// A temporary failure: deferred on the retry schedule, or failed once the message is older
/// than `max_age`.
fn temporary(
    ctx: &Ctx,
    m: &QueuedMessage,
    previous: &RcptState,
    now: u64,
    error: String,
    detail: FailureDetail,
) -> RcptState {
    let (attempts, delay_notified) = match previous {
        RcptState::Deferred { attempts, delay_notified, .. } => (attempts + 1, *delay_notified),
        _ => (1, false),
    };
    if now.saturating_sub(m.envelope.received_at) > ctx.cfg.delivery.max_age.as_secs() {
        return expired(now, attempts, &error, Some(detail));
    }
    let delay = next_retry_delay(attempts, &ctx.cfg.delivery.retry_schedule);
    let next_attempt = now + delay.as_secs().max(1);
    RcptState::Deferred { attempts, next_attempt, error, detail: Some(detail), delay_notified }
}

/// The final state of a recipient given up at the queue lifetime. The status is 4.4.7,
/// "delivery time expired" (RFC 3463 §3.5: "useful only as a persistent transient error"),
/// keeping the last attempt's remote MTA and diagnostic.
pub fn expired(now: u64, attempts: u32, error: &str, last: Option<FailureDetail>) -> RcptState {
    let detail = match last {
        Some(last) => FailureDetail { status: Enhanced(4, 4, 7), ..last },
        None => FailureDetail::new(Enhanced(4, 4, 7)),
    };
    RcptState::Failed {
        at: now,
        error: format!("gave up after {attempts} attempts, the message is too old; last error: {error}"),
        detail: Some(detail),
        notified: false,
    }
}

/// Whether recipient `i` of `m` wants a notice of `kind`.
fn wants(m: &QueuedMessage, i: usize, kind: Kind) -> bool {
    should_notify(m.envelope.recipients[i].notify, kind)
}

/// Sends the notices this run calls for, then makes the new states durable: the message
/// leaves the spool once every recipient is delivered or failed and notified.
///
/// A notice is committed to the spool before the recipient states that say it was sent, so
/// a crash in between can send a notice twice but never lose one.
fn finish(ctx: &Ctx, mut run: Run) -> RunOutcome {
    let id = run.m.envelope.id.clone();
    let null_sender = run.m.envelope.sender.is_empty();
    let delay_after = ctx.cfg.delivery.delay_notice.map(|d| d.as_secs());
    let age = run.now.saturating_sub(run.m.envelope.received_at);
    let mut failed = Vec::new();
    let mut delayed = Vec::new();
    for i in 0..run.states.len() {
        match &run.states[i] {
            RcptState::Failed { notified: false, .. } => {
                // RFC 5321 §4.5.5: never a notice about a message from <>.
                if !null_sender && wants(&run.m, i, Kind::Failure) {
                    failed.push((i, Action::Failed));
                }
                set_flag(&mut run, i, true);
            }
            RcptState::Deferred { delay_notified: false, .. } if delay_after.is_some_and(|d| age >= d) => {
                if !null_sender && wants(&run.m, i, Kind::Delay) {
                    delayed.push((i, Action::Delayed));
                }
                set_flag(&mut run, i, true);
            }
            _ => {}
        }
    }
    // Success notices only on request (NOTIFY=SUCCESS), never for a message from <>.
    let succeeded: Vec<(usize, Action)> =
        run.delivered.iter().copied().filter(|&(i, _)| !null_sender && wants(&run.m, i, Kind::Success)).collect();
    let mut notices = Vec::new();
    for (kind, list) in [(Kind::Failure, failed), (Kind::Delay, delayed), (Kind::Success, succeeded)] {
        if list.is_empty() {
            continue;
        }
        match bounce::send(ctx, &run.m, kind, &list, &run.states, run.now) {
            Ok(Some(dsn)) => {
                tracing::info!(queue_id = %id, notice = %dsn, kind = ?kind, recipients = list.len(), "queued delivery status notification");
                notices.push(dsn);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(queue_id = %id, kind = ?kind, error = %e, "cannot queue a delivery status notification; will try again");
                if kind != Kind::Success {
                    for &(i, _) in &list {
                        set_flag(&mut run, i, false);
                    }
                }
            }
        }
    }
    let done =
        run.states.iter().all(|s| matches!(s, RcptState::Delivered { .. } | RcptState::Failed { notified: true, .. }));
    if done {
        if let Err(e) = ctx.spool.remove(&id) {
            tracing::warn!(queue_id = %id, error = %e, "cannot remove delivered message from the spool");
        }
        return RunOutcome { id, retry_at: None, notices };
    }
    for (i, state) in run.states.iter().enumerate() {
        if run.changed[i]
            && let Err(e) = ctx.spool.record(&id, i, state)
        {
            tracing::error!(queue_id = %id, error = %e, "cannot record delivery state; the recipient may get a second copy");
        }
    }
    RunOutcome { id, retry_at: next_attempt(&run.states, run.now), notices }
}

/// Sets the "notified" flag of a failed or deferred recipient.
fn set_flag(run: &mut Run, i: usize, value: bool) {
    match &mut run.states[i] {
        RcptState::Failed { notified, .. } => *notified = value,
        RcptState::Deferred { delay_notified, .. } => *delay_notified = value,
        _ => return,
    }
    run.changed[i] = true;
}

/// The earliest time some recipient is due (unix seconds), if any is still to do. A failed
/// recipient whose notice could not be queued is due again in a minute.
pub fn next_attempt(states: &[RcptState], now: u64) -> Option<u64> {
    states
        .iter()
        .filter_map(|s| match s {
            RcptState::Pending => Some(0),
            RcptState::Deferred { next_attempt, .. } => Some(*next_attempt),
            RcptState::Failed { notified: false, .. } => Some(now + 60),
            _ => None,
        })
        .min()
}

/// The outbound service's settings from the configuration; reads the relay password file
/// and the extra trust anchors.
pub fn outbound_config(cfg: &Config) -> Result<OutboundConfig, String> {
    let o = &cfg.outbound;
    let route = dakiya_route::RouteConfig {
        nameservers: o.nameservers.clone(),
        static_routes: o.routes.iter().map(|(d, r)| (d.clone(), r.hosts.clone())).collect(),
        relay_host: o.relay_host.as_ref().map(|r| r.host.clone()),
        smtp_port: o.smtp_port,
        ip_preference: o.ip_preference,
        ..dakiya_route::RouteConfig::default()
    };
    let relay = match &o.relay_host {
        None => None,
        Some(r) => {
            let credentials = match (&r.username, &r.password_file) {
                (Some(username), Some(file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        format!("outbound.relay_host.password_file: cannot read {}: {e}", file.display())
                    })?;
                    let password = text.lines().next().unwrap_or("").to_string();
                    Some(AuthCredentials { username: username.clone(), password })
                }
                _ => None,
            };
            Some(RelaySettings { tls: r.tls, implicit_tls: r.implicit_tls, credentials })
        }
    };
    let mut extra_roots = Vec::new();
    if let Some(file) = &o.tls_ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("outbound.tls_ca_file: cannot read {}: {e}", file.display()))?;
        for cert in certs {
            extra_roots.push(cert.map_err(|e| format!("outbound.tls_ca_file: {}: {e}", file.display()))?);
        }
    }
    Ok(OutboundConfig {
        helo_name: o.helo_name.clone(),
        route,
        default_tls: o.tls,
        route_tls: o.routes.iter().map(|(d, r)| (d.clone(), r.tls)).collect(),
        relay,
        extra_roots,
        connect_timeout: o.connect_timeout,
        max_connections: o.concurrency,
        max_per_destination: o.per_destination,
        idle_timeout: o.idle_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_cancelled_by_shutdown_is_not_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let cancelled = rt.block_on(async {
            let task = tokio::spawn(std::future::pending::<()>());
            task.abort();
            task.await.unwrap_err()
        });
        let panicked = rt.block_on(async { tokio::spawn(async { panic!("step panicked") }).await.unwrap_err() });
        let id: QueueId = "06B15C91CD0D88FB".parse().unwrap();
        let log = crate::logging::capture(|| {
            step_failed(&id, &cancelled);
            step_failed(&id, &panicked);
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].starts_with("DEBUG delivery run cancelled by shutdown"), "{log}");
        assert!(lines[1].starts_with("ERROR delivery run failed; will retry"), "{log}");
    }
}
