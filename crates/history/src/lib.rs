//! The message history of dakiya: what happened to each message, from its arrival to its
//! final state, kept for `[history] days` under `DATA/history/` and read by `dakiya trace`.
//! See `docs/history.md`.
//!
//! - [`event`]: the records and their bounded fields ([`clip`]);
//! - [`History`]: the handle the server's event sites call; one writer thread batches the
//!   records into the day's file, and drops (and counts) them rather than wait;
//! - [`files`]: file names, dates and which files have expired (pure, time passed in);
//! - [`MessageIdScanner`]: the `Message-ID:` of a message as it is received;
//! - [`read`]: reading the files back, skipping damaged lines;
//! - [`query`]: which messages a query names, grouped with the notices they caused (pure).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod event;
pub mod files;
mod msgid;
pub mod query;
pub mod read;
mod writer;

pub use event::{Attempt, AttemptState, Event, Final, NoticeKind, Received, Record, Verdict, clip, verdicts};
pub use msgid::MessageIdScanner;
pub use query::{Query, Trace, find};
pub use writer::History;
