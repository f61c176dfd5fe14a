//! The pure rules of DANE for SMTP: which TLSA records are usable (RFC 7672 §3.1, RFC 7671
//! §5), what a TLSA answer means for one host (RFC 7672 §2.2), and whether a certificate
//! matches a record (RFC 6698 §2.1).

use dakiya_route::{Secured, TlsaData};
use rustls_pki_types::CertificateDer;

/// Certificate usage DANE-TA: a trust anchor in the server's chain (RFC 7672 §3.1.2).
pub(crate) const DANE_TA: u8 = 2;
/// Certificate usage DANE-EE: the server's own certificate or key (RFC 7672 §3.1.1).
pub(crate) const DANE_EE: u8 = 3;

/// What DANE says about one MX host (or a routed host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPolicy {
    /// No DNSSEC-validated TLSA records: DANE does not apply to this host.
    None,
    /// Validated TLSA records, none usable: TLS is still mandatory, but unauthenticated
    /// (RFC 7672 §2.2: the records show the server supports STARTTLS).
    Unusable(Vec<TlsaData>),
    /// Validated usable records: TLS is mandatory and authenticated by them.
    Usable(Vec<TlsaData>),
    /// The TLSA lookup failed validation or could not be answered: this host is not used
    /// now, never in clear (RFC 7672 §2.1.1, §2.2).
    Bogus(String),
}

impl HostPolicy {
    /// From a TLSA lookup (RFC 7672 §2.2): an insecure or empty answer is no policy; a
    /// secure one is authenticated by its usable records, or mandatory-unauthenticated
    /// when it has none.
    pub(crate) fn from_answer(answer: Secured<Vec<TlsaData>>) -> HostPolicy {
        match answer {
            Secured::Insecure => HostPolicy::None,
            Secured::Bogus(why) => HostPolicy::Bogus(why),
            Secured::Secure(records) if records.is_empty() => HostPolicy::None,
            Secured::Secure(records) => {
                let usable: Vec<TlsaData> = records.iter().filter(|r| usable(r)).cloned().collect();
                if usable.is_empty() { HostPolicy::Unusable(records) } else { HostPolicy::Usable(usable) }
            }
        }
    }
}

/// A record dakiya can use: DANE-TA(2) or DANE-EE(3) — PKIX-TA(0) and PKIX-EE(1) are not
/// for SMTP (RFC 7672 §3.1.3) —, selector full(0) or SPKI(1), matching exact(0),
/// SHA2-256(1) or SHA2-512(2) with data of the digest's length (RFC 6698 §2.1.3).
/// Anything else is unusable (RFC 7671 §4: unknown parameters are ignored).
pub(crate) fn usable(r: &TlsaData) -> bool {
    let usage = matches!(r.usage, DANE_TA | DANE_EE);
    let selector = matches!(r.selector, 0 | 1);
    let data = match r.matching {
        0 => !r.data.is_empty(),
        1 => r.data.len() == 32,
        2 => r.data.len() == 64,
        _ => false,
    };
    usage && selector && data
}

/// Whether `cert` matches the record's selector, matching type and data. A certificate
/// that does not parse matches nothing.
pub(crate) fn matches(r: &TlsaData, cert: &CertificateDer<'_>) -> bool {
    let selected: Vec<u8> = match r.selector {
        0 => cert.as_ref().to_vec(),
        1 => match webpki::EndEntityCert::try_from(cert) {
            Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
            Err(_) => return false,
        },
        _ => return false,
    };
    match r.matching {
        0 => selected == r.data,
        1 => ring::digest::digest(&ring::digest::SHA256, &selected).as_ref() == r.data.as_slice(),
        2 => ring::digest::digest(&ring::digest::SHA512, &selected).as_ref() == r.data.as_slice(),
        _ => false,
    }
}

/// A record in presentation form (`3 1 1 AB12…`), for TLS reports and logs.
pub(crate) fn presentation(r: &TlsaData) -> String {
    let hex: String = r.data.iter().map(|b| format!("{b:02X}")).collect();
    format!("{} {} {} {hex}", r.usage, r.selector, r.matching)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TlsaData {
        TlsaData { usage, selector, matching, data }
    }

    fn cert() -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["mx.example.test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), key.public_key_der())
    }

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
    }

    #[test]
    fn usability() {
        assert!(usable(&rec(3, 1, 1, vec![0; 32])));
        assert!(usable(&rec(2, 0, 2, vec![0; 64])));
        assert!(usable(&rec(3, 0, 0, vec![1, 2, 3])));
        // PKIX usages are not for SMTP (RFC 7672 §3.1.3).
        assert!(!usable(&rec(0, 1, 1, vec![0; 32])));
        assert!(!usable(&rec(1, 1, 1, vec![0; 32])));
        // Unknown usage, selector, matching type; a digest of the wrong length.
        assert!(!usable(&rec(4, 1, 1, vec![0; 32])));
        assert!(!usable(&rec(3, 2, 1, vec![0; 32])));
        assert!(!usable(&rec(3, 1, 3, vec![0; 32])));
        assert!(!usable(&rec(3, 1, 1, vec![0; 31])));
        assert!(!usable(&rec(3, 1, 2, vec![0; 32])));
        assert!(!usable(&rec(3, 1, 0, vec![])));
    }

    #[test]
    fn answers_become_host_policies() {
        assert_eq!(HostPolicy::from_answer(Secured::Insecure), HostPolicy::None);
        assert_eq!(HostPolicy::from_answer(Secured::Secure(vec![])), HostPolicy::None);
        assert_eq!(HostPolicy::from_answer(Secured::Bogus("x".into())), HostPolicy::Bogus("x".into()));
        let bad = rec(1, 1, 1, vec![0; 32]);
        let good = rec(3, 1, 1, vec![0; 32]);
        assert_eq!(
            HostPolicy::from_answer(Secured::Secure(vec![bad.clone()])),
            HostPolicy::Unusable(vec![bad.clone()])
        );
        // Unusable records next to a usable one are dropped.
        assert_eq!(HostPolicy::from_answer(Secured::Secure(vec![bad, good.clone()])), HostPolicy::Usable(vec![good]));
    }

    #[test]
    fn certificates_match_by_selector_and_matching_type() {
        let (cert, spki) = cert();
        assert!(matches(&rec(3, 1, 1, sha256(&spki)), &cert));
        assert!(matches(&rec(3, 0, 1, sha256(cert.as_ref())), &cert));
        assert!(matches(&rec(3, 1, 0, spki.clone()), &cert));
        assert!(matches(&rec(3, 0, 0, cert.as_ref().to_vec()), &cert));
        let sha512 = ring::digest::digest(&ring::digest::SHA512, &spki).as_ref().to_vec();
        assert!(matches(&rec(3, 1, 2, sha512), &cert));
        // Another key, a selector mixed up, garbage.
        let (other, _) = super::tests::cert();
        assert!(!matches(&rec(3, 1, 1, sha256(&spki)), &other));
        assert!(!matches(&rec(3, 0, 1, sha256(&spki)), &cert));
        assert!(!matches(&rec(3, 1, 1, sha256(&spki)), &CertificateDer::from(vec![1, 2, 3])));
    }

    #[test]
    fn presentation_form() {
        assert_eq!(presentation(&rec(3, 1, 1, vec![0xab, 0x01])), "3 1 1 AB01");
    }
}
