//! The durable queue of dakiya.
//!
//! A message is accepted (SMTP `250`) only after [`MessageWriter::commit`]
//! has returned: by then its envelope and body are in one file that has been
//! fsynced, linked into the queue directory, and the directory fsynced. The
//! directory fsync is group-committed across concurrent committers
//! ([`GroupSync`]). Per-recipient delivery state lives in a small append-only
//! status log beside each message. The on-disk format is described in
//! `docs/spool-format.md`.
//!
//! Everything here is synchronous; async callers use `spawn_blocking`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod envelope;
mod error;
mod format;
mod group;
mod id;
mod retry;
mod scan;
mod spool;
mod writer;

pub use envelope::{BodyType, DsnRet, Envelope, Notify, QueuedMessage, RcptState, Recipient};
pub use error::SpoolError;
pub use group::{GroupSync, SyncTarget};
pub use id::{InvalidQueueId, QueueId};
pub use retry::next_retry_delay;
pub use scan::Body;
pub use spool::Spool;
pub use writer::MessageWriter;
