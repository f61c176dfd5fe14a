//! Message authentication for dakiya: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and
//! ARC (RFC 8617) verification of inbound mail with an `Authentication-Results:` header
//! (RFC 8601); DKIM signing and ARC sealing of outbound mail; DKIM key generation. The
//! cryptography and record parsing are the `mail-auth` crate's; this crate holds dakiya's
//! choices (what to sign, how results map to policy). See `docs/authentication.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Why something could not be set up or done.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The resolver could not be built.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// A key file is unreadable or invalid.
    #[error("DKIM key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Signing or sealing failed.
    #[error("signing: {0}")]
    Sign(String),
    /// Any other I/O problem.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One verdict as RFC 8601 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// `pass`
    Pass,
    /// `fail`
    Fail,
    /// `softfail` (SPF only)
    SoftFail,
    /// `neutral`
    Neutral,
    /// `none`
    None,
    /// `temperror`: a DNS problem that may pass.
    TempError,
    /// `permerror`: a broken record or signature.
    PermError,
}

/// The published DMARC policy (`p=`, or `sp=` for a subdomain) after `pct=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `p=none`, or no record.
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

/// SPF results for the HELO identity and the MAIL FROM identity (RFC 7208 §2.3, §2.4),
/// checked at MAIL time. Kept for the message's verdict (DMARC uses the MAIL FROM one).
#[derive(Debug, Clone)]
pub struct SpfCheck {
    /// The HELO identity's result.
    pub helo: AuthResult,
    /// The MAIL FROM identity's result (for `<>`: `postmaster@` the HELO name).
    pub mail_from: AuthResult,
    /// The domain the MAIL FROM result is about.
    pub domain: String,
    /// Why, for the `Authentication-Results` comment and the reject text.
    pub explanation: String,
}

/// One DKIM signature's result.
#[derive(Debug, Clone)]
pub struct DkimCheck {
    /// `pass`, `fail` (bad signature or body hash), `permerror`, `temperror`, `neutral`.
    pub result: AuthResult,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// Why it failed, when it did (e.g. "body hash did not verify").
    pub reason: Option<String>,
}

/// Everything learned about one message.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The complete `Authentication-Results: <authserv-id>; spf=… dkim=… dmarc=… arc=…` field,
    /// folded, ending in CRLF, to be put on top of the message.
    pub header: String,
    /// SPF, as checked at MAIL time.
    pub spf: SpfCheck,
    /// Every DKIM signature's result (empty: no signature, `dkim=none`).
    pub dkim: Vec<DkimCheck>,
    /// DMARC result for the RFC5322.From domain.
    pub dmarc: AuthResult,
    /// The policy that applies when `dmarc` is `Fail`.
    pub dmarc_policy: DmarcPolicy,
    /// The RFC5322.From domain.
    pub from_domain: String,
    /// The ARC chain's result (`none` without ARC headers).
    pub arc: AuthResult,
    /// What ARC sealing of this message needs (the chain as verified), opaque.
    #[allow(dead_code)]
    pub(crate) arc_state: Option<ArcState>,
}

/// The verified ARC chain, kept for sealing.
#[derive(Debug, Clone)]
pub(crate) struct ArcState;

/// Checks inbound mail. Cheap to share (`Arc`); DNS answers are cached.
pub struct Verifier {
    #[allow(dead_code)]
    authserv_id: String,
}

impl Verifier {
    /// A verifier asking `nameservers` (empty: the system's resolvers), naming itself
    /// `authserv_id` (our host name) in the results.
    pub fn new(nameservers: &[SocketAddr], authserv_id: &str) -> Result<Verifier, AuthError> {
        let _ = nameservers;
        Ok(Verifier { authserv_id: authserv_id.to_string() })
    }

    /// SPF for the HELO name and the MAIL FROM address (`""` for `<>`) of a client at `ip`.
    pub async fn check_spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> SpfCheck {
        let _ = (ip, helo);
        SpfCheck {
            helo: AuthResult::None,
            mail_from: AuthResult::None,
            domain: mail_from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
            explanation: String::new(),
        }
    }

    /// DKIM (every signature), ARC, then DMARC with alignment against `spf` and the
    /// signatures; builds the `Authentication-Results` field. `message` is the whole message
    /// as received (header section, blank line, body; CRLF).
    pub async fn verify(&self, message: &[u8], spf: &SpfCheck) -> Verdict {
        let _ = message;
        Verdict {
            header: String::new(),
            spf: spf.clone(),
            dkim: Vec::new(),
            dmarc: AuthResult::None,
            dmarc_policy: DmarcPolicy::None,
            from_domain: String::new(),
            arc: AuthResult::None,
            arc_state: None,
        }
    }
}

/// Whether a header field is an `Authentication-Results` field that claims to come from
/// `authserv_id` (RFC 8601 §5: such fields arriving from outside must be removed). `field`
/// is the whole field, name to the end of its last line, possibly folded.
pub fn claims_our_results(field: &[u8], authserv_id: &str) -> bool {
    let _ = (field, authserv_id);
    false
}

/// DKIM key algorithms dakiya generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
    /// `rsa-sha256`, 2048-bit keys.
    Rsa,
}

/// The DKIM keys in `DATA/dkim/<domain>/<selector>.key` (PKCS#8 PEM; the algorithm is read
/// from the key). Every key of a domain signs its mail: several selectors mean several
/// signatures, which is how keys are rotated.
pub struct KeyStore {
    #[allow(dead_code)]
    dir: PathBuf,
}

impl KeyStore {
    /// Loads every key under `dir` (missing dir: no keys).
    pub fn load(dir: &Path) -> Result<KeyStore, AuthError> {
        Ok(KeyStore { dir: dir.to_path_buf() })
    }

    /// Whether `domain` (lowercase) has at least one key.
    pub fn has_keys(&self, domain: &str) -> bool {
        let _ = domain;
        false
    }

    /// `DKIM-Signature` fields (one per selector of `domain`, CRLF-terminated, folded) for
    /// `message`, relaxed/relaxed. Empty when the domain has no keys.
    pub fn sign(&self, message: &[u8], domain: &str) -> Result<String, AuthError> {
        let _ = (message, domain);
        Ok(String::new())
    }

    /// `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results` fields for
    /// forwarding `message`, as `domain` (the first key of the domain), with the results of
    /// `verdict`. Empty when the domain has no keys.
    pub fn seal(&self, message: &[u8], verdict: &Verdict, domain: &str) -> Result<String, AuthError> {
        let _ = (message, verdict, domain);
        Ok(String::new())
    }
}

/// Generates a key for `domain` under `dir` (`dir/<domain>/<selector>.key`, mode 0600; an
/// existing key is never overwritten) and returns the DNS record to publish: its name
/// (`<selector>._domainkey.<domain>`) and TXT value (`v=DKIM1; k=…; p=…`).
pub fn generate_key(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> Result<(String, String), AuthError> {
    let _ = (dir, domain, selector, algorithm);
    Err(AuthError::Sign("not implemented yet".into()))
}

/// The DNS records (name, TXT value) of every key of `domain` under `dir`.
pub fn dns_records(dir: &Path, domain: &str) -> Result<Vec<(String, String)>, AuthError> {
    let _ = (dir, domain);
    Ok(Vec::new())
}
