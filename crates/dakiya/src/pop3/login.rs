//! POP3 logins: the same users, passwords, throttling and lockout as SMTP AUTH (the shared
//! [`Authenticator`](dakiya_auth::Authenticator), as `policy::check_password` uses it), and
//! the Maildir a user reads.

use crate::shared::Shared;
use dakiya_auth::{AuthOutcome, Service};
use dakiya_config::{Config, Target};
use dakiya_pop3::AuthFailure;
use dakiya_pop3::server::Credentials;
use dakiya_proto::logtext::Esc;
use std::net::IpAddr;
use std::path::PathBuf;

/// Checks `creds` from `ip`; `Ok` is the user name as stored (lowercase). Only the method,
/// user name and result are logged, never the password.
pub async fn check(shared: &Shared, ip: IpAddr, creds: Credentials) -> Result<String, AuthFailure> {
    let user = creds.username.to_lowercase();
    let method = creds.method;
    let outcome = shared.authenticator.authenticate(Service::Pop3, ip, &user, creds.password).await;
    let (result, failure) = match outcome {
        AuthOutcome::Accepted => {
            tracing::info!(peer = %ip, protocol = "pop3", mechanism = method, user = %Esc(&user), result = %"ok", "auth");
            return Ok(user);
        }
        AuthOutcome::Rejected => ("failed", AuthFailure::Invalid),
        AuthOutcome::Locked { .. } => ("locked-out", AuthFailure::Locked),
        AuthOutcome::Busy(_) => ("busy", AuthFailure::Busy),
        AuthOutcome::Unavailable(e) => {
            if crate::logging::CHECK_FAILED.admit() {
                tracing::error!(error = %e, "password check failed");
            }
            ("error", AuthFailure::Unavailable)
        }
        // AuthOutcome is non_exhaustive: anything new is a temporary failure until handled.
        _ => ("error", AuthFailure::Unavailable),
    };
    tracing::warn!(peer = %ip, protocol = "pop3", mechanism = method, user = %Esc(&user), result = %result, "auth");
    Err(failure)
}

/// The Maildir of `user` (an address in a local domain): where local delivery puts mail for
/// that address, when it is exactly one local mailbox. An alias that fans out, or an address
/// that is not ours, has no maildrop.
pub fn maildir_of(cfg: &Config, shared: &Shared, user: &str) -> Option<PathBuf> {
    let (local, domain) = user.rsplit_once('@')?;
    let is_user = |addr: &str| shared.users.exists(addr);
    let targets = cfg.resolve_with(local, domain, &is_user).ok()?;
    match targets.as_slice() {
        [Target::Mailbox { domain, mailbox }] => Some(cfg.maildir_path(domain, mailbox)),
        _ => None,
    }
}
