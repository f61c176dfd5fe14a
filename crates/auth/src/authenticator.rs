//! [`Authenticator`]: the one way a server checks a password — the throttle's reservation,
//! its delay, then the check on the bounded [`CheckPool`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::dovecot::DovecotAuth;
use crate::pool::{CheckPool, PoolError};
use crate::throttle::{Throttle, ThrottleVerdict};
use crate::{AuthError, Service, UserStore};

/// The result of [`Authenticator::authenticate`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthOutcome {
    /// The password is right (SMTP `235 2.7.0`).
    Accepted,
    /// Wrong password, unknown user, or a name or password that could never be valid
    /// (SMTP `535 5.7.8`). Counted as a failure of the client.
    Rejected,
    /// The client is locked out until `until`; no password was checked (SMTP `454 4.7.0`).
    Locked {
        /// When the lockout ends.
        until: Instant,
    },
    /// No check worker became free within the queue timeout; no password was checked and
    /// nothing was counted (SMTP `454 4.7.0`, try again later).
    Busy(PoolError),
    /// The check could not be done: the stored hash is unusable, or the check failed
    /// (SMTP `454 4.7.0`). Not counted as a failure of the client.
    Unavailable(AuthError),
}

/// Password checks for a whole server: one [`Throttle`], one [`CheckPool`] and the
/// [`UserStore`], shared by every protocol that authenticates users (SMTP AUTH, and POP3
/// or any later one), so they share one failure count per client and one memory bound.
///
/// An attempt is reserved with the throttle before anything else ([`Throttle::begin`]);
/// the throttle's delay is served while holding nothing but that reservation; then the
/// check waits for a worker of the pool (at most its queue timeout). The reservation stays
/// counted if the password was wrong — or if the future is dropped before the end (the
/// client went away): an unfinished attempt counts as a failed one. It is released if the
/// password was right, or if no check happened (pool busy, store unusable).
#[derive(Debug)]
pub struct Authenticator {
    users: Arc<UserStore>,
    throttle: Mutex<Throttle>,
    pool: CheckPool,
    /// `Some`: Dovecot's auth server checks passwords instead of the user store.
    dovecot: Option<DovecotAuth>,
}

impl Authenticator {
    /// Checks `users`' passwords on `pool`, throttled by `throttle`.
    pub fn new(users: Arc<UserStore>, throttle: Throttle, pool: CheckPool) -> Authenticator {
        Authenticator { users, throttle: Mutex::new(throttle), pool, dovecot: None }
    }

    /// Checks passwords with Dovecot's auth server instead of `users` (which still answers
    /// [`users`](Self::users)), behind the same `throttle`.
    pub fn with_dovecot(
        users: Arc<UserStore>,
        throttle: Throttle,
        pool: CheckPool,
        dovecot: DovecotAuth,
    ) -> Authenticator {
        Authenticator { dovecot: Some(dovecot), ..Authenticator::new(users, throttle, pool) }
    }

    /// The user store checked against.
    pub fn users(&self) -> &Arc<UserStore> {
        &self.users
    }

    /// The pool the checks run on.
    pub fn pool(&self) -> &CheckPool {
        &self.pool
    }

    /// Checks `password` for `user`, who connects from `ip` to log in to `service`. Never
    /// logs; the caller decides what to log (never the password).
    pub async fn authenticate(&self, service: Service, ip: IpAddr, user: &str, password: String) -> AuthOutcome {
        let verdict = self.throttle().begin(ip, Instant::now());
        let attempt = match verdict {
            ThrottleVerdict::Locked { until } => return AuthOutcome::Locked { until },
            ThrottleVerdict::Allowed { delay, attempt } => {
                // Waiting holds no worker: a slowed-down client costs a timer, not 19 MiB.
                tokio::time::sleep(delay).await;
                attempt
            }
        };
        let checked = match &self.dovecot {
            // dakiya only offers AUTH on encrypted connections (or loopback when configured
            // so), so the channel is as secure as it needs to be: say so to Dovecot.
            Some(dovecot) => {
                dovecot.check(service, user, &password, ip, true).await.map_err(|e| AuthError::Dovecot(e.into()))
            }
            None => self.check_file(user, password).await,
        };
        let outcome = match checked {
            // The reservation stays: it is this failure.
            Ok(false) => return AuthOutcome::Rejected,
            Ok(true) => AuthOutcome::Accepted,
            Err(AuthError::Check(e @ PoolError::Busy(_))) => AuthOutcome::Busy(e),
            Err(e) => AuthOutcome::Unavailable(e),
        };
        self.throttle().release(attempt);
        outcome
    }

    /// The user store's verdict, computed on the pool.
    async fn check_file(&self, user: &str, password: String) -> Result<bool, AuthError> {
        let (users, name) = (self.users.clone(), user.to_owned());
        self.pool.run(move || users.verify(&name, &password)).await?
    }

    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        // Every throttle call leaves it consistent, so a panic elsewhere cannot tear it.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
