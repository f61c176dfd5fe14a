//! Dovecot's authentication server as the password checker (`[auth] backend = "dovecot"`):
//! the protocol as pure line functions ([`proto`]) and a tokio driver ([`DovecotAuth`]).

mod client;
pub mod proto;

pub use client::{DovecotAuth, DovecotError, DovecotTarget};
