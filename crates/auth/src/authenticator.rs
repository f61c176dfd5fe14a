//! [`Authenticator`]: the one way a server checks a password — the throttle's reservation,
//! its delay, then the check on the bounded [`CheckPool`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::pool::{CheckPool, PoolError};
use crate::throttle::{Throttle, ThrottleVerdict};
use crate::{AuthError, UserStore};

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
}

impl Authenticator {
    /// Checks `users`' passwords on `pool`, throttled by `throttle`.
    pub fn new(users: Arc<UserStore>, throttle: Throttle, pool: CheckPool) -> Authenticator {
        Authenticator { users, throttle: Mutex::new(throttle), pool }
    }

    /// The user store checked against.
    pub fn users(&self) -> &Arc<UserStore> {
        &self.users
    }

    /// The pool the checks run on.
    pub fn pool(&self) -> &CheckPool {
        &self.pool
    }

    /// Checks `password` for `user`, who connects from `ip`. Never logs; the caller decides
    /// what to log (never the password).
    pub async fn authenticate(&self, ip: IpAddr, user: &str, password: String) -> AuthOutcome {
        let verdict = self.throttle().begin(ip, Instant::now());
        let attempt = match verdict {
            ThrottleVerdict::Locked { until } => return AuthOutcome::Locked { until },
            ThrottleVerdict::Allowed { delay, attempt } => {
                // Waiting holds no worker: a slowed-down client costs a timer, not 19 MiB.
                tokio::time::sleep(delay).await;
                attempt
            }
        };
        let (users, name) = (self.users.clone(), user.to_owned());
        let outcome = match self.pool.run(move || users.verify(&name, &password)).await {
            // The reservation stays: it is this failure.
            Ok(Ok(false)) => return AuthOutcome::Rejected,
            Ok(Ok(true)) => AuthOutcome::Accepted,
            Ok(Err(e)) => AuthOutcome::Unavailable(e),
            Err(e @ PoolError::Busy(_)) => AuthOutcome::Busy(e),
            Err(e) => AuthOutcome::Unavailable(AuthError::Check(e)),
        };
        self.throttle().release(attempt);
        outcome
    }

    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        // Every throttle call leaves it consistent, so a panic elsewhere cannot tear it.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
