//! What can go wrong with an order, each error saying what to look at.

use std::path::PathBuf;

/// Why an order failed. Each says what to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// `ca_file` cannot be used.
    #[error("tls.acme.ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The HTTPS client could not be built.
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
    /// The directory or account request failed (unreachable CA, bad URL, refused account).
    #[error("ACME account at {directory}: {source}")]
    Account { directory: String, source: instant_acme::Error },
    /// A request of the order failed.
    #[error("ACME order ({step}): {source}")]
    Order { step: &'static str, source: instant_acme::Error },
    /// The CA found a challenge answer wrong or could not fetch it.
    #[error("ACME challenge for {name} failed: {detail}")]
    Challenge { name: String, detail: String },
    /// The CA offers no HTTP-01 challenge for a name.
    #[error("the CA offers no http-01 challenge for {name}")]
    NoHttp01 { name: String },
    /// The order ended invalid without a challenge saying why.
    #[error("the ACME order became invalid: {0}")]
    Invalid(String),
    /// Key or CSR generation failed.
    #[error("cannot make the certificate key or request: {0}")]
    Csr(rcgen::Error),
    /// The account or certificate files could not be written or read.
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
}
