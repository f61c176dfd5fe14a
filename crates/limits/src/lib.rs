//! Greylisting (RFC 6647) and rate limits as pure logic: no I/O, no clock. The server passes
//! the time in, holds each structure behind a `Mutex`, and decides what to reply.
//!
//! - [`Network`]: the client network a decision is keyed by (/24 for IPv4, /64 for IPv6).
//! - [`Greylist`]: triplets (network, sender, recipient), their decision, bounded eviction,
//!   and a text snapshot ([`Greylist::encode`], [`Greylist::decode`]) the server writes to disk.
//! - [`RateLimiter`]: a keyed GCRA counter ("N per period"), bounded in keys.
#![forbid(unsafe_code)]

mod greylist;
mod net;
mod rate;
mod snapshot;

pub use greylist::{Greylist, GreylistSettings, GreylistVerdict, Triplet};
pub use net::Network;
pub use rate::{Rate, RateLimiter, RateVerdict};
