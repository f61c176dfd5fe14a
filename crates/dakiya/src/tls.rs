//! TLS for the SMTP listeners: the certificate (from PEM files, or a self-signed one generated
//! on first start), the rustls server configuration, and reloading a renewed certificate
//! without dropping a connection.
//!
//! The policy (TLS 1.2 and 1.3, Mozilla "intermediate" suites, no TLS 1.3 session tickets) and
//! the reasons for it are in docs/tls.md.

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{cipher_suite as suite, kx_group};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, ProtocolVersion, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// TLS 1.2 session-ID resumption entries kept in memory (the only resumption offered).
const SESSION_CACHE_SIZE: usize = 1024;

/// Where the certificate comes from and how often to look for a renewed one.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, end-entity certificate first.
    pub cert: Option<PathBuf>,
    /// PEM file with the unencrypted private key (PKCS#8, PKCS#1 or SEC1). With neither `cert`
    /// nor `key` set, DATA_DIR/tls/{cert.pem,key.pem} are used, generated if absent.
    pub key: Option<PathBuf>,
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// The name a generated certificate is issued for.
    pub hostname: String,
    /// How often the watcher looks at the files' metadata; zero: only on SIGHUP (a
    /// full configuration reload).
    pub check_interval: Duration,
}

/// Why a certificate or key could not be used. Variants about a file name it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file is missing or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A PEM section is damaged (no END line, bad base64).
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// The certificate file holds no CERTIFICATE section.
    #[error("{}: no certificate in file (expected PEM \"BEGIN CERTIFICATE\" blocks)", path.display())]
    NoCertificate { path: PathBuf },
    /// The end-entity certificate does not parse.
    #[error("{}: the first certificate is unusable: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// The key file holds no (unencrypted) private key section.
    #[error(
        "{}: no private key in file (expected an unencrypted PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoKey { path: PathBuf },
    /// The key is of an unsupported type or does not parse.
    #[error("{}: unusable private key (RSA, ECDSA P-256/P-384 and Ed25519 are supported): {source}", path.display())]
    BadKey { path: PathBuf, source: rustls::Error },
    /// The key is not the one the certificate was issued for.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// Only one of `cert` and `key` is configured.
    #[error("[tls] {set} is set but {missing} is not; set both, or neither to use a self-signed certificate")]
    Incomplete { set: &'static str, missing: &'static str },
    /// Only one file of the generated pair exists (DATA_DIR/tls).
    #[error(
        "{} exists but {} does not; remove it to have a new self-signed certificate generated, or supply both",
        present.display(),
        missing.display()
    )]
    Partial { present: PathBuf, missing: PathBuf },
    /// rcgen refused the hostname or failed.
    #[error("cannot generate a self-signed certificate for {hostname:?}: {source}")]
    Generate { hostname: String, source: rcgen::Error },
    /// Writing the generated pair failed.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// rustls refused the configuration (a bug: the policy is fixed).
    #[error("cannot build the server configuration: {0}")]
    Config(rustls::Error),
}

impl TlsError {
    /// The file the error is about, if there is one (for a key that does not match the
    /// certificate: the key; for half a generated pair: the half that is there).
    pub fn file(&self) -> Option<&Path> {
        match self {
            TlsError::Read { path, .. }
            | TlsError::Pem { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::BadCertificate { path, .. }
            | TlsError::NoKey { path }
            | TlsError::BadKey { path, .. }
            | TlsError::Write { path, .. } => Some(path),
            TlsError::KeyMismatch { key, .. } => Some(key),
            TlsError::Partial { present, .. } => Some(present),
            TlsError::Incomplete { .. } | TlsError::Generate { .. } | TlsError::Config(_) => None,
        }
    }
}

/// Owns the current rustls configuration and replaces it when the certificate files change.
pub struct TlsManager {
    cert_path: PathBuf,
    key_path: PathBuf,
    check_interval: Duration,
    current: RwLock<Loaded>,
    /// The files' metadata at the last load attempt, good or bad: the watcher reloads only
    /// when it differs, so a broken file is reported once rather than on every poll.
    attempted: Mutex<Stamps>,
}

/// A configuration and the chain it serves (to tell whether a reload changed anything).
struct Loaded {
    config: Arc<ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
}

impl TlsManager {
    /// Loads cert chain + key from PEM files; with neither configured, uses
    /// DATA_DIR/tls/{cert.pem,key.pem}, generating a self-signed certificate there (SANs: the
    /// hostname, "localhost", 127.0.0.1, ::1; key file 0600) if both are absent. A self-signed
    /// certificate in use is logged as a warning.
    pub fn new(settings: TlsSettings) -> Result<Arc<TlsManager>, TlsError> {
        let (cert_path, key_path) = match files(&settings)? {
            Files::Configured { cert, key } => (cert, key),
            Files::Generated { dir, cert, key } => {
                ensure_self_signed(&settings.hostname, &dir, &cert, &key)?;
                (cert, key)
            }
        };
        let stamps = stamps(&cert_path, &key_path);
        let loaded = load(&cert_path, &key_path)?;
        if is_self_issued(&loaded.chain[0]) {
            tracing::warn!(cert = %cert_path.display(), "TLS certificate is self-signed: senders that require a CA-signed certificate (MTA-STS) will not deliver over it");
        }
        tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "TLS certificate loaded");
        Ok(Arc::new(TlsManager {
            cert_path,
            key_path,
            check_interval: settings.check_interval,
            current: RwLock::new(loaded),
            attempted: Mutex::new(stamps),
        }))
    }

    /// Loads and checks what [`TlsManager::new`] would serve, without generating or keeping
    /// anything (`dakiya check-config`). With neither file configured, the generated pair in
    /// DATA_DIR/tls is checked when present; when both are absent, the server would generate it.
    pub fn check(settings: &TlsSettings) -> Result<(), TlsError> {
        let (cert, key) = match files(settings)? {
            Files::Configured { cert, key } => (cert, key),
            Files::Generated { cert, key, .. } => {
                if !generated_pair_exists(&cert, &key)? {
                    return Ok(());
                }
                (cert, key)
            }
        };
        load(&cert, &key).map(drop)
    }

    /// The acceptor for new handshakes (cheap: clones an Arc of the current configuration).
    /// Handshakes in progress and established connections keep the configuration they started
    /// with, so a reload never drops a connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        tokio_rustls::TlsAcceptor::from(current.config.clone())
    }

    /// Re-reads the files now (blocking file I/O). On any error the old configuration stays
    /// and the error is returned for the caller to log. `Ok(false)`: the chain is unchanged.
    pub fn reload(&self) -> Result<bool, TlsError> {
        *self.attempted.lock().unwrap_or_else(PoisonError::into_inner) = stamps(&self.cert_path, &self.key_path);
        let fresh = load(&self.cert_path, &self.key_path)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.chain == fresh.chain {
            // Same leaf certificate means the same public key, hence the same private key:
            // keep the old configuration (and its session cache).
            return Ok(false);
        }
        *current = fresh;
        Ok(true)
    }

    /// Spawns a task that reloads when the files' mtime, size or inode change (polling every
    /// `check_interval`, reloading once they have been stable for one interval so a file in
    /// the middle of being written is not read). It ends when the manager is dropped. SIGHUP
    /// is not watched here: it is a full configuration reload (`reload.rs`), which reloads the
    /// certificate too. Must be called inside the tokio runtime.
    pub fn spawn_watcher(self: &Arc<Self>) {
        if self.check_interval.is_zero() {
            return;
        }
        tokio::spawn(watch(Arc::downgrade(self), self.check_interval));
    }

    /// One watcher step (blocking): reload when the files changed since the last attempt and
    /// look the same as at the previous poll (`settling`).
    fn poll(&self, settling: &mut Option<Stamps>) -> Option<Result<bool, TlsError>> {
        let now = stamps(&self.cert_path, &self.key_path);
        let attempted = *self.attempted.lock().unwrap_or_else(PoisonError::into_inner);
        let stable = *settling == Some(now);
        *settling = Some(now);
        (now != attempted && stable).then(|| self.reload())
    }
}

async fn watch(manager: Weak<TlsManager>, every: Duration) {
    let mut ticker = (!every.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut settling = None;
    loop {
        tick(&mut ticker).await;
        let Some(manager) = manager.upgrade() else { return };
        let m = manager.clone();
        let step = tokio::task::spawn_blocking(move || {
            let outcome = m.poll(&mut settling);
            (outcome, settling)
        });
        let outcome = match step.await {
            Ok((outcome, s)) => {
                settling = s;
                outcome
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate check failed");
                settling = None;
                continue;
            }
        };
        let cert = manager.cert_path.display();
        match outcome {
            None => {}
            Some(Ok(true)) => tracing::info!(cert = %cert, "TLS certificate reloaded; new connections use it"),
            Some(Ok(false)) => tracing::info!(cert = %cert, "TLS certificate unchanged"),
            Some(Err(e)) => tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the current one"),
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// For the Received: header and logs: e.g. ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), with IANA
/// cipher suite names. `None` before the handshake has finished.
pub fn describe(conn: &rustls::ServerConnection) -> Option<(String, String)> {
    let version = match conn.protocol_version()? {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        other => format!("{other:?}"),
    };
    let suite = conn.negotiated_cipher_suite()?.suite();
    // rustls spells the TLS 1.3 suites "TLS13_…"; IANA (RFC 8446 §B.4) says "TLS_…".
    let name = match suite.as_str() {
        Some(n) => n.strip_prefix("TLS13_").map_or_else(|| n.to_owned(), |s| format!("TLS_{s}")),
        None => format!("{suite:?}"),
    };
    Some((version, name))
}

/// ring's suites and groups in Mozilla "intermediate" order (docs/tls.md). The server follows
/// the client's preference, as that profile says (`server_preferred_order: false`).
fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..rustls::crypto::ring::default_provider()
    }
}

fn server_config(key: CertifiedKey, provider: Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    // No TLS 1.3 NewSessionTicket at all: Microsoft's outbound MTAs drop the connection when
    // they receive one (chasquid#64, maddy#730). The builder's ticketer never produces
    // tickets, so TLS 1.2 gets no RFC 5077 tickets either; it resumes by session ID.
    config.send_tls13_tickets = 0;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    // 0-RTT data is replayable; SMTP has no use for it.
    config.max_early_data_size = 0;
    config.ignore_client_order = false;
    Ok(config)
}

/// Reads and checks both files and builds a configuration from them.
fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    let provider = Arc::new(provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey { path: key_path.to_owned(), source })?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch { cert: cert_path.to_owned(), key: key_path.to_owned() });
        }
        Err(e) => {
            // rustls words these for a peer's certificate; say it for a file instead.
            let reason = match e {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
                    "not a DER-encoded X.509 certificate".to_owned()
                }
                rustls::Error::InvalidCertificate(other) => format!("{other:?}"),
                other => other.to_string(),
            };
            return Err(TlsError::BadCertificate { path: cert_path.to_owned(), reason });
        }
    }
    let config = server_config(certified, provider)?;
    Ok(Loaded { config: Arc::new(config), chain })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    let reason = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(e) => format!("bad base64 ({e})"),
        other => other.to_string(),
    };
    TlsError::Pem { path: path.to_owned(), reason }
}

/// All certificates in the file, in order; other PEM sections (a key) are skipped.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

/// The first private key in the file, PKCS#8, PKCS#1 or SEC1.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        e => pem_error(path, e),
    })
}

/// What the watcher compares: modification time, size, inode and device of each file
/// (following symlinks, so re-pointing a link such as certbot's live/ counts as a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

type Stamps = [Option<FileStamp>; 2];

fn stamps(cert: &Path, key: &Path) -> Stamps {
    let stamp = |path: &Path| {
        fs::metadata(path).ok().map(|m| FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
            device: m.dev(),
        })
    };
    [stamp(cert), stamp(key)]
}

/// Where the certificate and key come from.
enum Files {
    /// `[tls] cert` and `key`.
    Configured { cert: PathBuf, key: PathBuf },
    /// Neither: the self-signed pair in DATA_DIR/tls (`dir`), generated if absent.
    Generated { dir: PathBuf, cert: PathBuf, key: PathBuf },
}

/// The files `settings` name; only one of `cert` and `key` is an error.
fn files(settings: &TlsSettings) -> Result<Files, TlsError> {
    match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => Ok(Files::Configured { cert: cert.clone(), key: key.clone() }),
        (None, None) => {
            let dir = settings.data_dir.join("tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            Ok(Files::Generated { dir, cert, key })
        }
        (Some(_), None) => Err(TlsError::Incomplete { set: "cert", missing: "key" }),
        (None, Some(_)) => Err(TlsError::Incomplete { set: "key", missing: "cert" }),
    }
}

/// Whether the generated pair is there: both files (true), neither (false), or only one of
/// them (an error: it is not replaced behind the operator's back).
fn generated_pair_exists(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(TlsError::Partial { present: cert.to_owned(), missing: key.to_owned() }),
        (false, true) => Err(TlsError::Partial { present: key.to_owned(), missing: cert.to_owned() }),
    }
}

/// Generates the self-signed pair unless both files exist. The key is renamed into place
/// before the certificate, so an existing cert.pem means a complete pair.
fn ensure_self_signed(hostname: &str, dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    if generated_pair_exists(cert, key)? {
        return Ok(());
    }
    let (cert_pem, key_pem) =
        self_signed_pem(hostname).map_err(|source| TlsError::Generate { hostname: hostname.to_owned(), source })?;
    let dir_err = |source| TlsError::Write { path: dir.to_owned(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(dir_err)?;
    write_file(key, key_pem.as_bytes(), 0o600)?;
    write_file(cert, cert_pem.as_bytes(), 0o644)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(dir_err)?;
    tracing::info!(cert = %cert.display(), hostname, "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes a new file durably (temporary file, fsync, rename) with the given mode.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let err = |source| TlsError::Write { path: path.to_owned(), source };
    // A leftover from a crash; create_new below then refuses anything planted in its place.
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// A self-signed ECDSA P-256 certificate (PEM) and its PKCS#8 key (PEM), valid from yesterday
/// for ten years.
fn self_signed_pem(hostname: &str) -> Result<(String, String), rcgen::Error> {
    use chrono::{Datelike, Days, Months, NaiveDate, Utc};
    let mut names = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra.to_owned());
        }
    }
    // Strings that parse as IP addresses become iPAddress SANs, the rest dNSName.
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    let day = |d: NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = Utc::now().date_naive();
    params.not_before = day(today - Days::new(1));
    params.not_after = day(today.checked_add_months(Months::new(120)).unwrap_or(today));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether a DER certificate's issuer equals its subject (RFC 5280 §4.1). Only words a log
/// message, so anything that does not parse counts as "no".
fn is_self_issued(cert: &[u8]) -> bool {
    /// Splits one DER element off `input`: (tag, contents, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, after_tag) = input.split_first()?;
        let (&first, after_len) = after_tag.split_first()?;
        let (len, body) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after_len.len() < n {
                return None;
            }
            let len = after_len[..n].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, &after_len[n..])
        };
        Some((tag, body.get(..len)?, &body[len..]))
    }
    let parse = || {
        let (_, certificate, _) = element(cert)?;
        let (_, mut tbs, _) = element(certificate)?;
        let mut fields = Vec::new();
        while let Some((tag, contents, rest)) = element(tbs) {
            fields.push((tag, contents));
            tbs = rest;
        }
        // [0] version (optional), serialNumber, signature, issuer, validity, subject.
        let skip = usize::from(fields.first()?.0 == 0xa0);
        Some(fields.get(skip + 2)? == fields.get(skip + 4)?)
    };
    parse().unwrap_or(false)
}

#[cfg(test)]
mod tests;
