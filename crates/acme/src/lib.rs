//! dakiya's ACME client (RFC 8555): it keeps the server's certificate issued by a CA such as
//! Let's Encrypt, answering HTTP-01 challenges (§8.3) through the server's `http` listener.
//!
//! The pure parts take time as an argument: [`schedule`] decides whether a certificate is due
//! for (re)issue and computes the back-off after a failure. [`order`] runs one order against
//! the CA; [`store`] keeps the account and writes the issued pair atomically; [`run`] is the
//! background loop the server spawns. See docs/acme.md.

#![forbid(unsafe_code)]

pub mod certinfo;
mod error;
mod http;
pub mod order;
pub mod run;
pub mod schedule;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

pub use error::AcmeError;
pub use run::run;

/// What the client needs to know, from `[tls.acme]` and the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The CA's directory URL (RFC 8555 §7.1.1).
    pub directory: String,
    /// Account contact URLs (`mailto:...`, §7.3).
    pub contact: Vec<String>,
    /// The DNS names the certificate is for; the first is its subject.
    pub names: Vec<String>,
    /// Extra CA certificates (PEM) trusted for the directory's HTTPS, besides the web PKI.
    pub ca_file: Option<PathBuf>,
    /// Reissue this long before the certificate expires.
    pub renew_before: Duration,
    /// How often the certificate is looked at when nothing is due.
    pub check_interval: Duration,
    /// Where the account is kept (DATA/acme).
    pub state_dir: PathBuf,
    /// The certificate chain file the server uses (replaced atomically on issue).
    pub cert_file: PathBuf,
    /// The private key file the server uses (mode 0600, replaced atomically on issue).
    pub key_file: PathBuf,
}

/// What the server provides to the client.
pub trait Host: Send + Sync {
    /// Starts answering `/.well-known/acme-challenge/TOKEN` with `key_authorization`.
    fn publish(&self, token: &str, key_authorization: &str);
    /// Stops answering `token`.
    fn withdraw(&self, token: &str);
    /// The new files are in place: load them (the old certificate stays on error).
    fn installed(&self);
}
