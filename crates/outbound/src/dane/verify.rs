//! A rustls certificate verifier that authenticates the server by its TLSA records
//! (RFC 7672 §3.1) instead of the WebPKI.

use std::sync::Arc;

use dakiya_route::TlsaData;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::tlsa::{DANE_EE, DANE_TA, matches};

/// Checks a server's certificate against usable TLSA records.
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    records: Vec<TlsaData>,
    provider: Arc<CryptoProvider>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl DaneVerifier {
    /// `records` must be usable ([`super::tlsa::usable`]).
    pub(crate) fn new(records: Vec<TlsaData>, provider: Arc<CryptoProvider>) -> DaneVerifier {
        let algorithms = provider.signature_verification_algorithms;
        DaneVerifier { records, provider, algorithms }
    }

    /// DANE-TA (RFC 7672 §3.1.2, RFC 7671 §5.2.2): a certificate of the chain the server
    /// sent matches, and the end-entity certificate chains to it and names the host
    /// (the chain's validity dates are checked as WebPKI does).
    fn trust_anchor_verifies(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let anchors = self.records.iter().filter(|r| r.usage == DANE_TA);
        for anchor in anchors {
            for cert in intermediates.iter().filter(|c| matches(anchor, c)) {
                let mut roots = RootCertStore::empty();
                if roots.add(cert.clone().into_owned()).is_err() {
                    continue;
                }
                let Ok(verifier) =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone()).build()
                else {
                    continue;
                };
                if verifier.verify_server_cert(end_entity, intermediates, name, &[], now).is_ok() {
                    return true;
                }
            }
        }
        false
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // DANE-EE: the certificate or key itself; its names and dates are not checked
        // (RFC 7672 §3.1.1).
        if self.records.iter().any(|r| r.usage == DANE_EE && matches(r, end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        if self.trust_anchor_verifies(end_entity, intermediates, server_name, now) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
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

/// A client configuration that authenticates the server by `records` (usable ones).
pub(crate) fn client_config(records: Vec<TlsaData>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = DaneVerifier::new(records, provider.clone());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
    }

    fn verifier(records: Vec<TlsaData>) -> DaneVerifier {
        DaneVerifier::new(records, Arc::new(rustls::crypto::ring::default_provider()))
    }

    fn name(n: &str) -> ServerName<'static> {
        ServerName::try_from(n.to_owned()).unwrap()
    }

    /// A CA and a server certificate it issued for `host`.
    fn chain(host: &str) -> (CertificateDer<'static>, CertificateDer<'static>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ee = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        (ee.der().clone(), ca.der().clone(), key.public_key_der())
    }

    #[test]
    fn dane_ee_ignores_names_and_chain() {
        let (ee, _, spki) = chain("other.test");
        let v = verifier(vec![TlsaData { usage: 3, selector: 1, matching: 1, data: sha256(&spki) }]);
        assert!(v.verify_server_cert(&ee, &[], &name("mx.example.test"), &[], UnixTime::now()).is_ok());
        let (other, _, _) = chain("mx.example.test");
        assert!(v.verify_server_cert(&other, &[], &name("mx.example.test"), &[], UnixTime::now()).is_err());
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_the_name() {
        let (ee, ca, _) = chain("mx.example.test");
        let v = verifier(vec![TlsaData { usage: 2, selector: 0, matching: 1, data: sha256(ca.as_ref()) }]);
        let now = UnixTime::now();
        assert!(v.verify_server_cert(&ee, std::slice::from_ref(&ca), &name("mx.example.test"), &[], now).is_ok());
        // The anchor not sent, another name, a usage-3 reading of the CA's hash.
        assert!(v.verify_server_cert(&ee, &[], &name("mx.example.test"), &[], now).is_err());
        assert!(v.verify_server_cert(&ee, std::slice::from_ref(&ca), &name("mx.other.test"), &[], now).is_err());
        let ee_only = verifier(vec![TlsaData { usage: 3, selector: 0, matching: 1, data: sha256(ca.as_ref()) }]);
        assert!(
            ee_only.verify_server_cert(&ee, std::slice::from_ref(&ca), &name("mx.example.test"), &[], now).is_err()
        );
    }
}
