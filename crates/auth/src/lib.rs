//! Authentication for dakiya: the user store, password hashing and brute-force throttling.
//!
//! - [`UserStore`]: users (email addresses) with argon2id password hashes, in a text file
//!   that `dakiya user` edits atomically and the running server re-reads when it changes.
//! - [`hash_password`] and [`ARGON2_PARAMS`]: how passwords are hashed.
//! - [`Throttle`]: per-client failure counting, growing delays and lockouts, as pure logic
//!   with time passed in. Attempts are reserved before they are checked.
//! - [`CheckPool`]: a fixed set of threads for password checks, with a queue deadline, so
//!   argon2's memory is bounded by the pool's size.
//! - [`Authenticator`]: the throttle, the pool and the user store together — the one way
//!   every protocol (SMTP AUTH, POP3, ...) checks a password.
//! - [`DovecotAuth`]: Dovecot's authentication server as the checker instead of the users
//!   file (`[auth] backend = "dovecot"`), over the protocol in [`dovecot::proto`].
//!
//! Security rules kept here: no plaintext password is ever written or put into an error;
//! hashes are compared in constant time; an unknown user costs the same argon2 run as a
//! known one. The file format and the choice of parameters are in docs/auth.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authenticator;
pub mod dovecot;
mod error;
mod file;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod hash;
mod name;
mod pool;
mod service;
mod store;
mod throttle;

pub use authenticator::{AuthOutcome, Authenticator};
pub use dovecot::{DovecotAuth, DovecotError, DovecotTarget};
pub use error::AuthError;
pub use hash::{ARGON2_PARAMS, hash_password};
pub use name::{MAX_PASSWORD_LEN, check_password, normalize_user};
pub use pool::{CheckPool, MAX_CHECK_WORKERS, PoolError};
pub use service::Service;
pub use store::UserStore;
pub use throttle::{Attempt, DEFAULT_MAX_ENTRIES, MAX_DELAY, Throttle, ThrottleVerdict};
