//! The DKIM key store: reading `<dir>/<domain>/<selector>.key`, signing (RFC 6376) and ARC
//! sealing (RFC 8617) with `mail-auth`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{Header, HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::{ArcOutput, AuthenticatedMessage};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{EncodePublicKey, ObjectIdentifier, PrivateKeyInfo};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

use crate::{Algorithm, AuthError, Verdict, names};

/// The header fields a signature covers, when present; see docs/authentication.md for why
/// these. `From` is signed once more than it occurs (over-signing, RFC 6376 §8.15), so a
/// `From` added on the way breaks the signature instead of being shown to the reader.
pub const SIGNED_HEADERS: [&str; 15] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The PKCS#8 algorithm identifiers of the two key types (RFC 8410 §3, RFC 8017 App. C).
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The DKIM keys in `DATA/dkim/<domain>/<selector>.key` (PKCS#8 PEM; the algorithm is read
/// from the key). Every key of a domain signs its mail: several selectors mean several
/// signatures, which is how keys are rotated.
pub struct KeyStore {
    dir: PathBuf,
    /// Keys by lower-case domain, sorted by selector.
    domains: BTreeMap<String, Vec<StoredKey>>,
}

/// One key, ready to sign.
pub(crate) struct StoredKey {
    pub selector: String,
    pub algorithm: Algorithm,
    key: Arc<DkimKey>,
    /// The public key as the DNS record's `p=` carries it: the raw 32 octets for Ed25519
    /// (RFC 8463 §4), the SubjectPublicKeyInfo DER for RSA (RFC 6376 §3.6.1).
    pub public: Vec<u8>,
}

/// A key shared by every signature made with it (`mail-auth`'s signers own their key).
struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let selectors = |keys: &Vec<StoredKey>| keys.iter().map(|k| k.selector.clone()).collect::<Vec<_>>();
        let domains: BTreeMap<_, _> = self.domains.iter().map(|(d, keys)| (d, selectors(keys))).collect();
        f.debug_struct("KeyStore").field("dir", &self.dir).field("domains", &domains).finish()
    }
}

impl KeyStore {
    /// Loads every key under `dir` (missing dir: no keys).
    ///
    /// A directory whose name is not a domain name is skipped with a warning; a `.key` file
    /// that is not a usable key is an error, so a broken key is noticed when it is added.
    pub fn load(dir: &Path) -> Result<KeyStore, AuthError> {
        let mut domains: BTreeMap<String, Vec<StoredKey>> = BTreeMap::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(KeyStore { dir: dir.to_path_buf(), domains }),
            Err(e) => return Err(key_error(dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| key_error(dir, e))?.path();
            if !path.is_dir() {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let domain = match names::domain(name) {
                Ok(domain) => domain,
                Err(why) => {
                    tracing::warn!(dir = %path.display(), "skipping DKIM key directory: {why}");
                    continue;
                }
            };
            let keys = read_domain(&path)?;
            domains.entry(domain).or_default().extend(keys);
        }
        domains.retain(|_, keys| !keys.is_empty());
        domains.values_mut().for_each(|keys| keys.sort_by(|a, b| a.selector.cmp(&b.selector)));
        Ok(KeyStore { dir: dir.to_path_buf(), domains })
    }

    /// Whether there are no keys at all (nothing to sign with, whatever the domain).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether `domain` (lowercase) has at least one key.
    pub fn has_keys(&self, domain: &str) -> bool {
        self.domains.contains_key(&domain.to_ascii_lowercase())
    }

    /// `DKIM-Signature` fields (one per selector of `domain`, CRLF-terminated, folded) for
    /// `message`, relaxed/relaxed. Empty when the domain has no keys.
    pub fn sign(&self, message: &[u8], domain: &str) -> Result<String, AuthError> {
        let domain = domain.to_ascii_lowercase();
        let Some(keys) = self.domains.get(&domain) else { return Ok(String::new()) };
        let parsed = AuthenticatedMessage::parse(message);
        let headers = headers_to_sign(parsed.as_ref().map_or(&[][..], |p| &p.headers), false);
        let mut fields = String::new();
        for key in keys {
            let signature = DkimSigner::from_key(SharedKey(key.key.clone()))
                .domain(domain.as_str())
                .selector(key.selector.as_str())
                .headers(headers.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message)
                .map_err(|e| AuthError::Sign(format!("{domain} selector {}: {e}", key.selector)))?;
            fields.push_str(&signature.to_header());
        }
        Ok(fields)
    }

    /// `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results` fields for
    /// forwarding `message`, as `domain` (the first key of the domain), with the results of
    /// `verdict`. Empty when the domain has no keys.
    ///
    /// Also empty when the chain already failed before us (the last seal says `cv=fail`):
    /// RFC 8617 §5.1.2 ends such a chain. The message is parsed again here, since the
    /// verdict cannot keep `mail-auth`'s borrowed view of it; it must still carry the ARC
    /// sets it had when verified (prepending other fields is fine).
    pub fn seal(&self, message: &[u8], verdict: &Verdict, domain: &str) -> Result<String, AuthError> {
        let domain = domain.to_ascii_lowercase();
        let Some(key) = self.domains.get(&domain).and_then(|keys| keys.first()) else { return Ok(String::new()) };
        let state = verdict.arc_state.as_ref().ok_or_else(|| AuthError::Sign("the verdict has no results".into()))?;
        let parsed = AuthenticatedMessage::parse(message)
            .ok_or_else(|| AuthError::Sign("the message has no header section".into()))?;
        if parsed.as_headers.len() != state.arc_sets {
            return Err(AuthError::Sign("the message's ARC sets changed after it was verified".into()));
        }
        let mut chain = ArcOutput::default().with_result(state.arc.clone());
        for ((seal, signature), results) in parsed.as_headers.iter().zip(&parsed.ams_headers).zip(&parsed.aar_headers) {
            chain = chain.with_set(Set {
                signature: Header::new(signature.name, signature.value, &signature.header),
                seal: Header::new(seal.name, seal.value, &seal.header),
                results: Header::new(results.name, results.value, &results.header),
            });
        }
        if !chain.can_be_sealed() {
            tracing::debug!(domain, "not sealing: the ARC chain already failed (cv=fail)");
            return Ok(String::new());
        }
        let results = state.arc_results();
        let set = ArcSealer::from_key(SharedKey(key.key.clone()))
            .domain(domain.as_str())
            .selector(key.selector.as_str())
            .headers(headers_to_sign(&parsed.headers, true))
            .seal(&parsed, &results, &chain)
            .map_err(|e| AuthError::Sign(format!("ARC seal as {domain} selector {}: {e}", key.selector)))?;
        Ok(set.to_header())
    }
}

/// The `h=` list: the fields of [`SIGNED_HEADERS`] present in the message (`present`: its
/// fields as `mail-auth` parsed them; it signs every occurrence of each), then `From` once
/// more. For an ARC-Message-Signature, the `DKIM-Signature` fields too, so the seal vouches
/// for what the next hop will verify (ARC fields are never signed there, RFC 8617 §4.1.2).
fn headers_to_sign(present: &[(&[u8], &[u8])], arc: bool) -> Vec<&'static str> {
    let has = |name: &str| present.iter().any(|(p, _)| p.eq_ignore_ascii_case(name.as_bytes()));
    let mut headers: Vec<&'static str> = SIGNED_HEADERS.into_iter().filter(|name| has(name)).collect();
    if arc && has("DKIM-Signature") {
        headers.push("DKIM-Signature");
    }
    // With `From` present this lists it once more than it occurs; without it, once, which
    // signs its absence (RFC 6376 §5.4 requires From in h=).
    headers.push("From");
    headers
}

/// The keys in one domain's directory, sorted by selector.
pub(crate) fn read_domain(dir: &Path) -> Result<Vec<StoredKey>, AuthError> {
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| key_error(dir, e))? {
        let path = entry.map_err(|e| key_error(dir, e))?.path();
        let Some(selector) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".key")) else {
            continue;
        };
        let selector = names::selector(selector).map_err(|reason| AuthError::Key { path: path.clone(), reason })?;
        keys.push(read_key(&path, selector)?);
    }
    keys.sort_by(|a, b| a.selector.cmp(&b.selector));
    Ok(keys)
}

/// One key file: PEM `PRIVATE KEY` (PKCS#8, Ed25519 or RSA), or `RSA PRIVATE KEY` (PKCS#1,
/// as older tools write).
pub(crate) fn read_key(path: &Path, selector: String) -> Result<StoredKey, AuthError> {
    let bad = |reason: String| AuthError::Key { path: path.to_path_buf(), reason };
    let text = fs::read(path).map_err(|e| bad(e.to_string()))?;
    warn_if_readable_by_others(path);
    let pem = pem::parse(&text).map_err(|e| bad(format!("not a PEM file: {e}")))?;
    let (algorithm, key) = match pem.tag() {
        "PRIVATE KEY" => pkcs8_key(pem.contents()).map_err(bad)?,
        "RSA PRIVATE KEY" => {
            let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(pem.contents()));
            (Algorithm::Rsa, DkimKey::Rsa(RsaKey::from_key_der(der).map_err(|e| bad(e.to_string()))?))
        }
        other => return Err(bad(format!("PEM block {other:?} is not a private key (expected \"PRIVATE KEY\")"))),
    };
    let public = match &key {
        DkimKey::Ed25519(key) => key.public_key(),
        DkimKey::Rsa(key) => rsa::RsaPublicKey::from_pkcs1_der(&key.public_key())
            .and_then(|public| public.to_public_key_der().map_err(Into::into))
            .map_err(|e| bad(format!("RSA public key: {e}")))?
            .into_vec(),
    };
    Ok(StoredKey { selector, algorithm, key: Arc::new(key), public })
}

/// A PKCS#8 key, its algorithm read from the key's AlgorithmIdentifier (RFC 5958 §2).
fn pkcs8_key(der: &[u8]) -> Result<(Algorithm, DkimKey), String> {
    let info = PrivateKeyInfo::try_from(der).map_err(|e| format!("not a PKCS#8 key: {e}"))?;
    match info.algorithm.oid {
        // Accepts PKCS#8 v1 (OpenSSL's `genpkey`) as well as v2 (with the public key).
        ED25519_OID => Ed25519Key::from_pkcs8_maybe_unchecked_der(der)
            .map(|key| (Algorithm::Ed25519, DkimKey::Ed25519(key)))
            .map_err(|e| format!("Ed25519 key: {e}")),
        RSA_OID => RsaKey::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
            .map(|key| (Algorithm::Rsa, DkimKey::Rsa(key)))
            .map_err(|e| format!("RSA key (2048 to 8192 bits): {e}")),
        oid => Err(format!("unsupported key algorithm {oid} (Ed25519 or RSA expected)")),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "DKIM private key is accessible to group or others (chmod 600)");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

fn key_error(path: &Path, e: std::io::Error) -> AuthError {
    AuthError::Key { path: path.to_path_buf(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::headers_to_sign;
    use mail_auth::AuthenticatedMessage;

    fn listed(message: &[u8], arc: bool) -> Vec<&'static str> {
        headers_to_sign(&AuthenticatedMessage::parse(message).unwrap().headers, arc)
    }

    #[test]
    fn only_present_fields_are_listed_and_from_is_oversigned() {
        let msg = b"from: a@example.test\r\nTo: b@example.test\r\nX-Other: 1\r\nsubject: hi\r\n\r\nbody\r\n";
        assert_eq!(listed(msg, false), ["From", "To", "Subject", "From"]);
        let msg = b"To: b@example.test\r\nDKIM-Signature: v=1\r\n\r\nbody\r\n";
        assert_eq!(listed(msg, false), ["To", "From"]);
        assert_eq!(listed(msg, true), ["To", "DKIM-Signature", "From"]);
    }
}
