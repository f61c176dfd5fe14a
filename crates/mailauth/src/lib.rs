//! Message authentication for dakiya: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and
//! ARC (RFC 8617) verification of inbound mail with an `Authentication-Results:` header
//! (RFC 8601); DKIM signing and ARC sealing of outbound mail; DKIM key generation. The
//! cryptography and record parsing are the `mail-auth` crate's; this crate holds dakiya's
//! choices (what to sign, how results map to policy). See `docs/authentication.md`.
//!
//! Layout: [`Verifier`] (`verify.rs`, with SPF in `spf.rs`) checks inbound mail and keeps
//! what it learned as owned data (`results.rs`), from which both the `Authentication-Results`
//! field and, later, the `ARC-Authentication-Results` of a seal are built. [`KeyStore`]
//! (`keys.rs`) signs and seals; `keygen.rs` makes and publishes keys; `claims.rs` spots
//! forged `Authentication-Results` fields and [`HeaderFilter`] (`filter.rs`) removes them
//! from a message as it streams in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod claims;
mod filter;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod keygen;
mod keys;
mod names;
mod results;
mod spf;
mod verify;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use claims::claims_our_results;
pub use filter::{HeaderFilter, MAX_FIELD};
pub use keygen::{dns_records, generate_key};
pub use keys::{KeyStore, SIGNED_HEADERS};

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

impl AuthResult {
    /// The result's name in an `Authentication-Results` field (RFC 8601 §2.7).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for AuthResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The published DMARC policy (`p=`, or `sp=` for a subdomain) after `pct=`.
///
/// `mail-auth` 0.13 implements DMARCbis, which replaced `pct=` with `t=y` (test mode): under
/// `t=y` the policy is lowered one step (reject → quarantine → none).
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
///
/// Made by [`Verifier::check_spf`] only: it also keeps the client's address and the identities
/// checked, which the `Authentication-Results` field names.
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
    /// The client and the identities as checked.
    pub(crate) client: spf::Client,
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
    pub(crate) arc_state: Option<ArcState>,
}

/// The verified results, kept as owned data for sealing: `mail-auth`'s `ArcOutput` and
/// `DkimOutput` borrow the parsed message, so they cannot outlive [`Verifier::verify`].
/// [`KeyStore::seal`] re-parses the message to rebuild the `ArcOutput` from these.
pub(crate) type ArcState = results::Results;

/// Checks inbound mail. Cheap to share (`Arc`); DNS answers are cached.
pub struct Verifier {
    authserv_id: String,
    auth: mail_auth::MessageAuthenticator,
}

impl Verifier {
    /// A verifier asking `nameservers` (empty: the system's resolvers), naming itself
    /// `authserv_id` (our host name) in the results.
    pub fn new(nameservers: &[SocketAddr], authserv_id: &str) -> Result<Verifier, AuthError> {
        verify::new(nameservers, authserv_id)
    }

    /// SPF for the HELO name and the MAIL FROM address (`""` for `<>`) of a client at `ip`.
    pub async fn check_spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> SpfCheck {
        spf::check(self, ip, helo, mail_from).await
    }

    /// DKIM (every signature), ARC, then DMARC with alignment against `spf` and the
    /// signatures; builds the `Authentication-Results` field. `message` is the whole message
    /// as received (header section, blank line, body; CRLF).
    pub async fn verify(&self, message: &[u8], spf: &SpfCheck) -> Verdict {
        verify::verify(self, message, spf).await
    }

    /// The name this verifier gives itself in `Authentication-Results`.
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }
}

/// DKIM key algorithms dakiya generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
    /// `rsa-sha256`, 2048-bit keys.
    Rsa,
}

impl Algorithm {
    /// The `k=` tag value of the key's DNS record (RFC 6376 §3.6.1, RFC 8463 §4).
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }
}
