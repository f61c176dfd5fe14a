//! `[auth] backend`: the [`Authenticator`] the server checks passwords with — dakiya's users
//! file, or Dovecot's auth server (docs/dovecot.md) — always behind the same throttle.

use std::sync::Arc;
use std::time::Duration;

use dakiya_auth::{Authenticator, CheckPool, DovecotAuth, DovecotTarget, Throttle, UserStore};
use dakiya_config::{AuthBackend, Config, Endpoint};

/// How long connecting to Dovecot plus one check may take before the client gets `454
/// 4.7.0`: well above Dovecot's `auth_failure_delay` (2 s by default), which delays every
/// `FAIL` it sends.
pub const DOVECOT_TIMEOUT: Duration = Duration::from_secs(15);

/// The authenticator for `cfg.auth.backend`.
pub fn authenticator(cfg: &Config, users: Arc<UserStore>, throttle: Throttle, pool: CheckPool) -> Authenticator {
    match &cfg.auth.backend {
        AuthBackend::Dovecot(endpoint) => {
            let target = match endpoint {
                Endpoint::Unix(path) => DovecotTarget::Unix(path.clone()),
                Endpoint::Inet(addr) => DovecotTarget::Inet(addr.clone()),
            };
            // Checks by Dovecot hold a socket, not argon2 memory; the same bound keeps the
            // number of connections to Dovecot small.
            let dovecot = DovecotAuth::new(target, DOVECOT_TIMEOUT, cfg.auth.max_concurrent_checks);
            Authenticator::with_dovecot(users, throttle, pool, dovecot)
        }
        _ => Authenticator::new(users, throttle, pool),
    }
}
