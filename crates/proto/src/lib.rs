//! The SMTP wire protocol for dakiya, without I/O: command grammar, addresses, ESMTP
//! parameters, replies with enhanced status codes, CRLF-strict framing and the server session
//! state machine. Nothing here touches sockets, files or an async runtime; the binary drives it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod client;
pub mod command;
pub mod data;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod line;
pub mod logtext;
pub mod params;
pub mod reply;
pub mod sasl;
pub mod server;

pub use reply::{Enhanced, Reply};
pub use server::{Event, Server, ServerConfig};
