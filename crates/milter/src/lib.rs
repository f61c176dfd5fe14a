//! A milter client, sans-IO: the packet codec of the Sendmail/Postfix milter protocol
//! (version 6), the option negotiation and which stages are sent and answered, the milter's
//! replies read as actions, and the message edits they ask for applied to a message's bytes.
//!
//! The driver (crates/dakiya/src/milter) owns the sockets and the clocks: it writes what a
//! [`Conversation`] gives for each stage, reads into a buffer that [`packet::decode`] takes
//! packets from, and feeds them back to the conversation, which says whether to wait on
//! (progress, edits) or what the milter decided.

#![forbid(unsafe_code)]

pub mod conversation;
pub mod edit;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod negotiate;
pub mod packet;
pub mod reply;

pub use conversation::{Conversation, Next, Outgoing, ProtocolError};
pub use edit::{Edits, HeaderEdit};
pub use negotiate::{Negotiated, Stage};
pub use packet::{Command, DecodeError, Family, Packet};
pub use reply::{Action, Modification, Response};

/// Body chunks sent to a milter are at most this long (libmilter's `MILTER_CHUNK_SIZE`).
pub const MILTER_CHUNK_SIZE: usize = 65535;

/// The largest packet accepted from a milter, except body replacement chunks.
pub const MAX_PACKET: usize = 1024 * 1024;
