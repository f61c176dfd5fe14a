//! Delivery agents of dakiya. For now: local delivery into Maildir, with Maildir++ quotas
//! kept in `maildirsize` ([`quota`], [`maildirsize`]).
//!
//! Every agent reports failures as a [`DeliverError`] whose [`FailureKind`]
//! tells the queue manager whether to retry (temporary) or to bounce
//! (permanent).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod anon;
mod crlf;
mod error;
mod maildir;
pub mod maildirsize;
pub mod quota;
mod writeback;

pub use error::{DeliverError, FailureKind};
pub use maildir::{CommitFailed, CopyBuffers, Maildir, Pending, Staged, Staging, StagingOptions};
pub use quota::QuotaLimit;
