//! Next-hop routing for dakiya's outbound delivery (RFC 5321 §5.1, RFC 7505).
//!
//! [`Router::resolve`] turns a recipient domain into the ordered list of [`NextHop`]s to try:
//! a static route, else the relay host, else an address literal's address, else the MX hosts
//! by preference (shuffled among equals) with their AAAA and A addresses, else the domain's
//! own addresses (implicit MX). A null MX, a non-existent domain and a domain without usable
//! addresses are permanent [`RouteError`]s; DNS trouble is temporary. See `docs/routing.md`.
//!
//! With the `testdns` feature, [`testdns`] serves an in-memory zone on loopback, so tests
//! here and in other crates never touch the system resolver.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod dnssec;
mod domain;
mod error;
mod lookup;
mod order;
mod router;
#[cfg(feature = "testdns")]
pub mod testdns;

pub use config::{DEFAULT_MAX_HOPS, HostPort, IpPreference, RouteConfig, SMTP_PORT};
pub use dnssec::{SecureResolver, Secured, TlsaData};
pub use error::RouteError;
pub use router::{NextHop, Router};
