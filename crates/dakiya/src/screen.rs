//! Connection screening on the listeners that opt in (docs/screening.md): DNS block and allow
//! lists (RFC 5782), forward-confirmed reverse DNS, HELO checks, early talkers and unoffered
//! pipelining.
//!
//! The decisions are pure and unit-tested with the time passed in — the query names
//! ([`query`]), the score ([`score`]), the answer cache ([`cache`]), the FCrDNS decision
//! ([`fcrdns`]), the HELO classification ([`helo`]) and the early-talker tests ([`early`]).
//! [`lookup`] does the DNS queries (hickory) for one client, all at once, started when the
//! connection is accepted; [`gate`] is what the session driver asks.

pub mod cache;
pub mod early;
pub mod fcrdns;
pub mod gate;
pub mod helo;
pub mod lookup;
pub mod query;
pub mod score;

pub use gate::{Gate, Screening};
pub use lookup::Screener;
