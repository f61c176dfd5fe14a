//! MTA-STS (RFC 8461) and SMTP TLS reporting (RFC 8460) without I/O.
//!
//! - [`record`]: the `_mta-sts` and `_smtp._tls` TXT records.
//! - [`policy`]: the policy file (§3.2) and MX matching (§4.1).
//! - [`cache`]: the cached policy, its file form, and when to fetch (§5.1).
//! - [`report`]: TLS-RPT counts per policy domain and day, and the report JSON (RFC 8460 §4).
//! - [`message`]: the report as a mail message (RFC 8460 §5.3).
//!
//! Time is always passed in (seconds since the Unix epoch). The fetching, DNS and files
//! live in `dakiya-outbound`. See `docs/mta-sts.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod date;
pub mod message;
pub mod policy;
pub mod record;
pub mod report;

pub use cache::{Cached, Decision};
pub use policy::{Mode, Policy, PolicyError};
pub use record::{RecordError, StsRecord, TlsRptRecord};
pub use report::{ResultType, Tallies};
