//! The wire format of dakiya's control socket, shared by the server (which answers) and
//! `dakiya queue` (which asks).
//!
//! One JSON request line per connection, answered by one JSON response line, then the server
//! closes (docs/queue-cli.md). [`parse_request`] and [`Response::parse`] take bytes and never
//! do I/O; [`Request::encode`] and [`Response::encode`] give the lines back, and each parses to
//! what was encoded (the `control` fuzz target checks both ways). [`message_view`] builds what
//! `list` and `show` report from what the spool holds, [`queue_stats`] what `stats` reports. The socket itself — binding,
//! who may connect, deadlines, carrying requests out — is the server's (`crates/dakiya`,
//! `control.rs`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "fuzz")]
pub mod fuzz;
mod request;
mod response;
mod stats;
mod status;
#[cfg(any(test, feature = "testdata"))]
pub mod testdata;
mod view;

pub use request::{ControlOp, Request, RequestError, parse_request};
pub use response::{
    MessageDetail, MessageView, RcptDetail, RcptView, ReloadSummary, Response, ResponseError, StateName,
};
pub use stats::{AGE_EDGES_MINUTES, Counts, DomainStats, QueueStats, age_bucket, queue_stats};
pub use status::{ListenerStatus, LogEvent, QueueSummary, ServerStatus};
pub use view::{header_section, message_view, rcpt_view};

/// The socket's name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// The longest request line accepted, without its line feed. Real requests are under 100 bytes;
/// the server reads no more than this (plus one byte to tell a longer line).
pub const MAX_REQUEST: usize = 4096;
/// How much of a body `show` reads looking for the end of the header section; a longer
/// header section is reported with `headers_truncated`.
pub const MAX_HEADERS: u64 = 64 * 1024;
