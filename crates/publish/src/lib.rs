//! What dakiya publishes about itself, as pure functions of the configuration: the client
//! auto-configuration documents served on `http`/`https` listeners (Thunderbird autoconfig,
//! Microsoft Autodiscover, Apple configuration profiles), the MTA-STS policy (RFC 8461), the
//! DNS records to publish for each local domain, and the comparison of records found in the
//! DNS with those expected (`dakiya dns check`). No I/O here: the binary serves, prints and
//! queries (docs/clients.md, docs/dns.md).
#![forbid(unsafe_code)]

pub mod autoconfig;
pub mod autodiscover;
pub mod compare;
pub mod mobileconfig;
pub mod mtasts;
pub mod records;
mod services;
mod xml;
pub mod zone;

pub use services::{Domain, Server, Services, Tls, parse_address};

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
