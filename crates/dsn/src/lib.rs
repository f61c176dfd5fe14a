//! Delivery status notifications of dakiya (RFC 3461, 3464, 6522, 6533).
//!
//! [`build_dsn`] turns what happened to some recipients of one message into
//! the notice sent back to its sender: a bounce, a delay warning or a success
//! report. [`should_notify`] tells, from a recipient's `NOTIFY=` parameter,
//! whether it wants one. Both are pure: no clock, no network, no spool. The
//! queue manager maps the spool's envelope and recipient states into
//! [`DsnInput`] and [`RcptReport`], and queues the result with the null
//! reverse-path. See `docs/dsn.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod build;
mod clean;
mod notify;
mod original;
mod status;
mod text;
mod types;

pub use build::build_dsn;
pub use notify::should_notify;
pub use types::{Action, DEFAULT_RETURN_LIMIT, DsnInput, Enhanced, Kind, Notify, RcptReport, Ret, Time};

/// Why no notice could be built. Each is a bug or a bad record in the caller,
/// not a condition to retry, except [`DsnError::Io`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DsnError {
    /// The original sender is the null reverse-path `<>`: notices about
    /// notices are forbidden (RFC 5321 §4.5.5).
    #[error("no notice for a message from the null sender <>")]
    NullSender,
    /// There is no recipient to report on.
    #[error("no recipients to report on")]
    NoRecipients,
    /// An address that would go into a header or report field is empty, too
    /// long, or holds control characters or angle brackets.
    #[error("invalid {what} address {address:?}")]
    BadAddress {
        /// Which address: `from`, `original sender`, `final recipient`.
        what: &'static str,
        /// The address as given.
        address: String,
    },
    /// The reporting MTA is not an ASCII host name or address literal.
    #[error("invalid reporting host name {0:?}")]
    BadHostname(String),
    /// The status code is not `class.subject.detail` with class 2, 4 or 5
    /// and subject and detail up to 999 (RFC 3463).
    #[error("invalid status code {0}")]
    BadStatus(Enhanced),
    /// Reading the original message failed.
    #[error("reading the original message: {0}")]
    Io(#[from] std::io::Error),
}
