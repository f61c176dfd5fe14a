//! DKIM key generation (with `mail-auth`'s `DkimKeyPair`) and the DNS records to publish.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::dkim::generate::DkimKeyPair;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};

use crate::keys::{self, StoredKey};
use crate::{Algorithm, AuthError, names};

/// RSA key size: RFC 8301 §3.2 requires at least 1024 bits and recommends 2048; larger
/// keys no longer fit one 255-octet TXT string either way, and cost more per signature.
const RSA_BITS: usize = 2048;

/// Generates a key for `domain` under `dir` (`dir/<domain>/<selector>.key`, mode 0600; an
/// existing key is never overwritten) and returns the DNS record to publish: its name
/// (`<selector>._domainkey.<domain>`) and TXT value (`v=DKIM1; k=…; p=…`).
///
/// The domain and selector are lower-cased; the selector must be a single DNS label.
pub fn generate_key(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> Result<(String, String), AuthError> {
    let domain = names::domain(domain).map_err(|reason| AuthError::Key { path: dir.to_path_buf(), reason })?;
    let selector = names::selector(selector).map_err(|reason| AuthError::Key { path: dir.to_path_buf(), reason })?;
    let domain_dir = dir.join(&domain);
    let path = domain_dir.join(format!("{selector}.key"));
    // Checked before the (slow, for RSA) generation; the link below checks again atomically.
    if fs::symlink_metadata(&path).is_ok() {
        return Err(exists(&path));
    }
    let (private_der, public) = generate(algorithm).map_err(|reason| AuthError::Key { path: path.clone(), reason })?;
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let pem = pem::encode_config(&pem::Pem::new("PRIVATE KEY", private_der), config);
    private_dir(&domain_dir)?;
    write_new(&domain_dir, &path, pem.as_bytes())?;
    Ok(record(&domain, &selector, algorithm, &public))
}

/// The DNS records (name, TXT value) of every key of `domain` under `dir`, sorted by
/// selector. No directory for the domain: no records.
pub fn dns_records(dir: &Path, domain: &str) -> Result<Vec<(String, String)>, AuthError> {
    let domain = names::domain(domain).map_err(|reason| AuthError::Key { path: dir.to_path_buf(), reason })?;
    let domain_dir = dir.join(&domain);
    if !domain_dir.is_dir() {
        return Ok(Vec::new());
    }
    let keys: Vec<StoredKey> = keys::read_domain(&domain_dir)?;
    Ok(keys.iter().map(|key| record(&domain, &key.selector, key.algorithm, &key.public)).collect())
}

/// The record for one key (RFC 6376 §3.6.1; `k=ed25519`: RFC 8463 §4).
fn record(domain: &str, selector: &str, algorithm: Algorithm, public: &[u8]) -> (String, String) {
    let name = format!("{selector}._domainkey.{domain}");
    let value = format!("v=DKIM1; k={}; p={}", algorithm.key_type(), BASE64.encode(public));
    (name, value)
}

/// A new key pair: the private key as PKCS#8 DER, the public key as `p=` wants it.
///
/// `mail-auth` gives RSA keys in PKCS#1; they are re-encoded as PKCS#8 (one format for both
/// algorithms on disk) and as SubjectPublicKeyInfo, which is what DKIM verifiers expect in
/// `p=` (RFC 6376 §3.6.1 and its Appendix C, which makes keys with `openssl rsa -pubout`).
fn generate(algorithm: Algorithm) -> Result<(Vec<u8>, Vec<u8>), String> {
    match algorithm {
        Algorithm::Ed25519 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(|e| e.to_string())?;
            let (private, public) = pair.into_inner();
            Ok((private, public))
        }
        Algorithm::Rsa => {
            let pair = DkimKeyPair::generate_rsa(RSA_BITS).map_err(|e| e.to_string())?;
            let private = rsa::RsaPrivateKey::from_pkcs1_der(pair.private_key())
                .and_then(|key| key.to_pkcs8_der().map_err(Into::into))
                .map_err(|e| format!("re-encoding the RSA key: {e}"))?;
            let public = rsa::RsaPublicKey::from_pkcs1_der(pair.public_key())
                .and_then(|key| key.to_public_key_der().map_err(Into::into))
                .map_err(|e| format!("re-encoding the RSA public key: {e}"))?;
            Ok((private.as_bytes().to_vec(), public.into_vec()))
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700: private keys live below.
fn private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| AuthError::Key { path: dir.to_path_buf(), reason: e.to_string() })
}

/// Writes `contents` to `path`, which must not exist, atomically: into a hidden temporary
/// file (mode 0600, fsynced), then hard-linked to `path` (which fails if `path` appeared
/// meanwhile, unlike a rename), then the directory fsynced. A reader never sees half a key.
fn write_new(dir: &Path, path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_tmp(&tmp, contents).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => File::open(dir).and_then(|d| d.sync_all()).map_err(|e| key_io(dir, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(exists(path)),
        Err(e) => Err(key_io(path, e)),
    }
}

fn write_tmp(tmp: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn exists(path: &Path) -> AuthError {
    AuthError::Key {
        path: path.to_path_buf(),
        reason: "already exists; a key is never overwritten (remove it first)".into(),
    }
}

fn key_io(path: &Path, e: std::io::Error) -> AuthError {
    AuthError::Key { path: PathBuf::from(path), reason: e.to_string() }
}
