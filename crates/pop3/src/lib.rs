//! POP3 (RFC 1939) for dakiya, without I/O: the command grammar, replies with response codes
//! (RFC 2449 §8, RFC 3206), the multi-line content encoding with dot-stuffing (RFC 1939 §3)
//! and the server session as a state machine — AUTHORIZATION, TRANSACTION, UPDATE — with
//! CAPA (RFC 2449), UIDL and TOP, STLS (RFC 2595) and SASL PLAIN (RFC 5034).
//!
//! Like `dakiya_proto::Server`, the [`Server`] asks its driver for everything that needs the
//! world (check a password, open and lock the maildrop, send a message, remove the deleted
//! ones) as [`Event`]s; the rules stay here, the effects in the driver. APOP is not offered:
//! passwords are stored as argon2 hashes, and APOP needs the clear password (docs/pop3.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod encode;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod reply;
pub mod server;

pub use encode::{ContentEncoder, CrlfSize};
pub use server::{AuthFailure, Entry, Event, OpenFailure, Policy, Server, ServerConfig};
