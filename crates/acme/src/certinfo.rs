//! What the renewal decision needs from a certificate: its names, expiry and whether it is
//! self-signed.

use std::path::Path;
use std::time::{Duration, SystemTime};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The facts about the end-entity certificate of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its DNS subjectAltNames.
    pub names: Vec<String>,
    /// The end of its validity (RFC 5280 §4.1.2.5).
    pub not_after: SystemTime,
    /// Issuer equals subject: the placeholder certificate, not one from a CA.
    pub self_issued: bool,
}

/// Reads the first certificate of a PEM file; `None` when the file is missing or unusable
/// (either way a new certificate is ordered).
pub fn read(path: &Path) -> Option<CertInfo> {
    parse_pem(&std::fs::read(path).ok()?)
}

/// The first certificate of a PEM chain.
pub fn parse_pem(pem: &[u8]) -> Option<CertInfo> {
    let first = Pem::iter_from_buffer(pem).next()?.ok()?;
    let cert = first.parse_x509().ok()?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Some(CertInfo {
        names,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        self_issued: cert.issuer() == cert.subject(),
    })
}
