//! The decisions the session asks the driver for: who may send, to whom, and who is who.

use crate::shared::Shared;
use dakiya_auth::{AuthOutcome, Service};
use dakiya_config::{Config, RcptError, Target};
use dakiya_metrics::Rejection;
use dakiya_proto::address::{ForwardPath, ReversePath};
use dakiya_proto::logtext::Esc;
use dakiya_proto::sasl::Credentials;
use dakiya_proto::{Enhanced, Reply};
use std::net::IpAddr;

/// What the connection knows about its client that policy depends on.
pub struct Client {
    pub ip: IpAddr,
    /// In `trusted_networks`: may relay without AUTH.
    pub trusted: bool,
}

/// RCPT: ours (and where it goes), relayed for a permitted client, or refused.
pub fn check_recipient(
    shared: &Shared,
    client: &Client,
    user: Option<&str>,
    path: &ForwardPath,
) -> Result<Vec<Target>, Reply> {
    // The configuration in force now: a domain added or removed by a reload counts at once.
    let live = shared.live.get();
    let cfg = &live.config;
    let may_relay = user.is_some() || client.trusted;
    let (local, domain) = match path {
        // RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted; it means the
        // postmaster of our host name, or of the first local domain.
        ForwardPath::Postmaster => {
            let domain = if cfg.is_local_domain(&cfg.hostname) {
                cfg.hostname.clone()
            } else {
                cfg.domains.keys().next().cloned().unwrap_or_default()
            };
            ("postmaster".to_string(), domain)
        }
        // Address literals are never ours and never relayed (a classic open-relay trick).
        ForwardPath::Mailbox(m) if m.is_literal() => {
            shared.metrics.rejected(Rejection::RelayDenied);
            return Err(relay_denied());
        }
        ForwardPath::Mailbox(m) => (m.local.clone(), m.domain.clone()),
    };
    let users = &shared.users;
    let is_user = |addr: &str| users.exists(addr);
    match cfg.resolve_with(&local, &domain, &is_user) {
        Ok(targets) if all_full(cfg, &targets) => {
            // RFC 5321 §4.2.2 452 / RFC 3463 X.2.2: known to be over quota before any data.
            Err(Reply::new(452, Enhanced(4, 2, 2), "Mailbox full"))
        }
        Ok(targets) => Ok(targets),
        Err(RcptError::NotLocal) if may_relay => match path {
            ForwardPath::Mailbox(m) => Ok(vec![Target::Remote { address: m.to_string() }]),
            ForwardPath::Postmaster => Err(relay_denied()),
        },
        Err(RcptError::NotLocal) => Err(relay_denied()),
        Err(RcptError::AliasLoop) => Err(Reply::new(550, Enhanced(5, 4, 6), "Alias loop detected for this recipient")),
        // Refuse unknown users at RCPT time so we never bounce to forged senders.
        Err(_) => Err(Reply::new(550, Enhanced(5, 1, 1), "No such user here")),
    }
    .inspect_err(|reply| shared.metrics.rejected(recipient_refusal(reply)))
}

/// The metrics reason of a refused recipient (replies of [`check_recipient`]).
fn recipient_refusal(reply: &Reply) -> Rejection {
    match reply.enhanced {
        Some(Enhanced(5, 7, 1)) => Rejection::RelayDenied,
        Some(Enhanced(5, 1, 1)) => Rejection::UnknownUser,
        _ => Rejection::RecipientPolicy,
    }
}

/// Every target is a local mailbox already over its quota (an alias with room in one of its
/// mailboxes is accepted; the full ones are deferred at delivery).
fn all_full(cfg: &Config, targets: &[Target]) -> bool {
    !targets.is_empty()
        && targets.iter().all(|t| match t {
            Target::Mailbox { domain, mailbox } => dakiya_queue::mailbox_full(cfg, domain, mailbox),
            _ => false,
        })
}

fn relay_denied() -> Reply {
    Reply::new(550, Enhanced(5, 7, 1), "Relaying denied")
}

/// MAIL: an authenticated user may only use addresses they own (their own, their aliases,
/// what `send_as` grants). Unauthenticated senders are judged later (SPF/DMARC).
pub fn check_sender(cfg: &Config, user: Option<&str>, from: &ReversePath) -> Result<(), Reply> {
    let Some(user) = user else { return Ok(()) };
    let from = match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.to_string(),
    };
    if cfg.may_send_as(user, &from) {
        Ok(())
    } else {
        tracing::warn!(user = %Esc(user), from = %Esc(&from), "sender address not owned by the authenticated user");
        Err(Reply::new(553, Enhanced(5, 7, 1), "Sender address not owned by the authenticated user"))
    }
}

/// AUTH: the shared [`Authenticator`](dakiya_auth::Authenticator) reserves the attempt
/// with the throttle, serves its delay, and checks the password on the bounded pool. Only
/// the mechanism, user name and result are logged — never the password or the AUTH line.
pub async fn check_password(shared: &Shared, client: &Client, creds: Credentials) -> Result<String, Reply> {
    let mechanism = creds.mechanism.name();
    let user = creds.username.to_lowercase();
    let outcome = shared.authenticator.authenticate(Service::Smtp, client.ip, &user, creds.password).await;
    shared.metrics.auth(mechanism, matches!(outcome, AuthOutcome::Accepted));
    let (result, reply) = match outcome {
        AuthOutcome::Accepted => {
            tracing::info!(peer = %client.ip, mechanism, user = %Esc(&user), result = %"ok", "auth");
            return Ok(user);
        }
        AuthOutcome::Rejected => ("failed", Reply::new(535, Enhanced(5, 7, 8), "Authentication credentials invalid")),
        // RFC 4954 §6: 454 4.7.0 is the temporary authentication failure.
        AuthOutcome::Locked { .. } => ("locked-out", Reply::new(454, Enhanced(4, 7, 0), LOCKED)),
        AuthOutcome::Busy(_) => ("busy", Reply::new(454, Enhanced(4, 7, 0), BUSY)),
        AuthOutcome::Unavailable(e) => {
            if crate::logging::CHECK_FAILED.admit() {
                tracing::error!(error = %e, "password check failed");
            }
            ("error", Reply::new(454, Enhanced(4, 7, 0), "Temporary authentication failure"))
        }
        // AuthOutcome is non_exhaustive: anything new is a temporary failure until handled.
        _ => ("error", Reply::new(454, Enhanced(4, 7, 0), "Temporary authentication failure")),
    };
    tracing::warn!(peer = %client.ip, mechanism, user = %Esc(&user), result = %result, "auth");
    Err(reply)
}

/// The reply text when the client's address is locked out (no password was checked).
const LOCKED: &str = "Too many failed authentication attempts; try again later";
/// The reply text when no password check became free in time (nothing was counted).
const BUSY: &str = "Temporary authentication failure, server busy; try again later";
