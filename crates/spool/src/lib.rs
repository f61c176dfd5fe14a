//! The durable queue of dakiya.
//!
//! A message is accepted (SMTP `250`) only after [`MessageWriter::commit`]
//! has returned: by then its envelope and body are in a batch file that has
//! been fsynced and renamed into the queue directory, and the directory
//! fsynced. Concurrent commits share one batch file, one file fsync and one
//! directory fsync (group commit). Per-recipient delivery state lives in an
//! append-only status log beside each batch file; an in-memory index finds
//! each message in its batch. The on-disk format is described in
//! `docs/spool-format.md`.
//!
//! Everything here is synchronous; async callers use `spawn_blocking`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod append;
pub mod codec;
mod commit;
mod copyout;
mod envelope;
mod error;
mod format;
mod group;
mod id;
mod index;
mod inner;
mod latency;
mod openlog;
mod pool;
mod recent;
mod retry;
mod scan;
mod slots;
mod spool;
mod status;
mod writer;

pub use commit::CommitStats;
/// The vocabulary of the envelope, defined once in `dakiya_proto` (spelled on disk by
/// [`codec`]).
pub use dakiya_proto::Enhanced;
pub use dakiya_proto::params::{BodyType, Notify, Ret};
pub use envelope::{Envelope, FailureDetail, QueuedMessage, RcptState, Recipient};
pub use error::SpoolError;
pub use group::{GroupSync, SyncTarget};
pub use id::{InvalidQueueId, QueueId};
pub use latency::{Latencies, LatencyStats};
pub use recent::RecentStats;
pub use retry::next_retry_delay;
pub use scan::Body;
pub use slots::SlotStats;
pub use spool::{Spool, SpoolOptions};
pub use writer::MessageWriter;
