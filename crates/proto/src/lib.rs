//! The SMTP wire protocol for dakiya, without I/O: command grammar, addresses, ESMTP
//! parameters, replies with enhanced status codes, CRLF-strict framing and the server session
//! state machine. Nothing here touches sockets, files or an async runtime; the binary drives it.
//!
//! It is also where the mail vocabulary is defined, once, for every other crate: NOTIFY, RET
//! and BODY ([`params`]), enhanced status codes ([`Enhanced`]), and a next hop's host and
//! port, TLS mode and address families ([`next_hop`]). Crates that store or show them (the
//! spool, the control socket) give them their own spelling; none keeps a copy to convert.
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
pub mod next_hop;
pub mod params;
pub mod reply;
pub mod sasl;
pub mod server;

pub use reply::{BadEnhanced, Enhanced, Reply};
pub use server::{Event, Server, ServerConfig};
