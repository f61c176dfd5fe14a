//! The two rustls client configurations and what the driver needs around them: the server
//! name for SNI and certificate checks, a description of the session for the logs, and
//! telling a certificate problem from other handshake failures.
//!
//! Opportunistic and "require" TLS do not check certificates (RFC 7435 §1.3: an
//! unauthenticated encrypted channel beats clear text, and most MX certificates would not
//! pass); "verify" checks them against the Mozilla roots plus the configured extra roots.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::OutboundError;

/// The client configurations, built once and shared by all connections.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    /// Encrypts without checking the certificate (opportunistic, require).
    pub(crate) unverified: Arc<ClientConfig>,
    /// Checks the certificate chain and the host name (verify).
    pub(crate) verified: Arc<ClientConfig>,
    /// The same check as `verified`, run after an unverified handshake for TLS reports only
    /// (an MTA-STS policy in `testing` mode, RFC 8461 §5).
    pub(crate) verifier: Arc<WebPkiServerVerifier>,
}

impl TlsConfigs {
    /// Builds both with ring, TLS 1.3 and 1.2; `extra_roots` are trusted besides webpki-roots.
    pub(crate) fn new(extra_roots: &[CertificateDer<'static>]) -> Result<TlsConfigs, OutboundError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let tls_error = |e: rustls::Error| OutboundError::Tls(e.to_string());

        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (i, cert) in extra_roots.iter().enumerate() {
            roots.add(cert.clone()).map_err(|e| OutboundError::Tls(format!("extra root #{}: {e}", i + 1)))?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()
            .map_err(|e| OutboundError::Tls(e.to_string()))?;
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(tls_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let any = AcceptAnyCertificate { algorithms: provider.signature_verification_algorithms };
        let unverified = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(any))
            .with_no_client_auth();
        Ok(TlsConfigs { unverified: Arc::new(unverified), verified: Arc::new(verified), verifier })
    }
}

/// Accepts any certificate, but still checks that the server holds the key of the one it
/// sent (the handshake signature), so the session is at least bound to that key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The name to send in SNI and check the certificate against: the next hop's host name, or
/// its address when the host is an IP address (rustls then sends no SNI, as RFC 6066 §3
/// forbids literal addresses there). `None` for a host that is neither.
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).ok()
}

/// "TLSv1.2" or "TLSv1.3" ("TLS" for anything else, which rustls does not negotiate).
pub(crate) fn version(conn: &rustls::ClientConnection) -> &'static str {
    match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        _ => "TLS",
    }
}

/// "TLSv1.3 TLS_AES_256_GCM_SHA384", with IANA cipher suite names, for the logs.
pub(crate) fn describe(conn: &rustls::ClientConnection) -> String {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_owned(),
    };
    let suite = match conn.negotiated_cipher_suite().map(|s| s.suite()) {
        // rustls spells the TLS 1.3 suites "TLS13_…"; IANA (RFC 8446 §B.4) says "TLS_…".
        Some(suite) => match suite.as_str() {
            Some(n) => n.strip_prefix("TLS13_").map_or_else(|| n.to_owned(), |s| format!("TLS_{s}")),
            None => format!("{suite:?}"),
        },
        None => "unknown cipher".to_owned(),
    };
    format!("{version} {suite}")
}

/// True when a failed handshake failed on the certificate (chain, name, validity), not on
/// the protocol or the network.
pub(crate) fn is_certificate_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
}

/// The TLS-RPT result type of a handshake that failed on the certificate (RFC 8460
/// §4.3.1.2), `None` for other failures.
pub(crate) fn certificate_result(e: &std::io::Error) -> Option<dakiya_mtasts::ResultType> {
    classify(e.get_ref()?.downcast_ref::<rustls::Error>()?)
}

/// What the certificate of an established, unverified session would have failed with under
/// verification (`None`: it verifies), for TLS reports.
pub(crate) fn report_check(
    verifier: &WebPkiServerVerifier,
    conn: &rustls::ClientConnection,
    name: &ServerName<'_>,
) -> Option<dakiya_mtasts::ResultType> {
    let Some((end_entity, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first()) else {
        return Some(dakiya_mtasts::ResultType::ValidationFailure);
    };
    let result = verifier.verify_server_cert(end_entity, intermediates, name, &[], UnixTime::now());
    result.err().map(|e| classify(&e).unwrap_or(dakiya_mtasts::ResultType::ValidationFailure))
}

/// The TLS-RPT result type of a certificate error (RFC 8460 §4.3.1.2).
fn classify(e: &rustls::Error) -> Option<dakiya_mtasts::ResultType> {
    use dakiya_mtasts::ResultType as R;
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = e else {
        return None;
    };
    Some(match cert {
        C::NotValidForName | C::NotValidForNameContext { .. } => R::CertificateHostMismatch,
        C::Expired | C::ExpiredContext { .. } => R::CertificateExpired,
        C::UnknownIssuer => R::CertificateNotTrusted,
        _ => R::ValidationFailure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(server_name("mx.example.test"), Some(ServerName::DnsName(_))));
        assert!(matches!(server_name("127.0.0.1"), Some(ServerName::IpAddress(_))));
        assert!(matches!(server_name("::1"), Some(ServerName::IpAddress(_))));
        assert!(server_name("bad name").is_none());
    }

    #[test]
    fn builds_with_and_without_extra_roots() {
        assert!(TlsConfigs::new(&[]).is_ok());
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let err = TlsConfigs::new(&[garbage]).unwrap_err();
        assert!(err.to_string().contains("extra root #1"), "{err}");
    }

    #[test]
    fn certificate_errors_are_told_apart() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(is_certificate_error(&std::io::Error::new(std::io::ErrorKind::InvalidData, cert)));
        let other = rustls::Error::HandshakeNotComplete;
        assert!(!is_certificate_error(&std::io::Error::new(std::io::ErrorKind::InvalidData, other)));
        assert!(!is_certificate_error(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
    }
}
