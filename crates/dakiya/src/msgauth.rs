//! Message authentication in the server: SPF at MAIL, DKIM/DMARC/ARC at the end of DATA on
//! `mx` listeners, DKIM signing of submitted mail, ARC sealing of forwarded mail. The checks
//! themselves are `dakiya_mailauth`'s; here are which of them a session runs ([`Mode`]), what
//! their verdicts mean ([`policy`]: reject, quarantine, defer) and the plumbing (the shared
//! verifier, the reloaded DKIM keys). The connection driver asks; the message being received
//! (`receive.rs`) puts the resulting header fields on top. See docs/authentication.md.

mod policy;

use dakiya_config::{Checks, Config};
use dakiya_mailauth::{KeyStore, SpfCheck, Verdict, Verifier};
use dakiya_metrics::{Metrics, Rejection, Verification};
use dakiya_proto::Reply;
use dakiya_proto::logtext::Esc;
use dakiya_spool::Envelope;
use policy::Decision;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Shared by all connections.
pub struct MailAuth {
    /// Present when some listener verifies.
    pub verifier: Option<Verifier>,
    keys: RwLock<Arc<KeyStore>>,
    keys_dir: PathBuf,
}

/// How often the DKIM key directory is re-read (keys added with `dakiya dkim generate` are
/// used without a restart).
const KEY_RELOAD: Duration = Duration::from_secs(30);

/// What happens to a message at the end of DATA besides storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing (an mx listener with `verify = false`).
    None,
    /// Inbound from another server: verify SPF/DKIM/DMARC/ARC, apply the policy, seal
    /// forwarded copies.
    Verify,
    /// Submitted (authenticated or trusted client): DKIM-sign mail from local domains.
    Sign,
}

/// A received message as the end-of-DATA checks see it.
pub struct Received<'a> {
    /// Header section, blank line, body, as spooled (with our `Received:` on top).
    pub content: &'a [u8],
    /// The envelope as given to the spool writer.
    pub envelope: &'a Envelope,
    /// The SPF results of MAIL time (verifying sessions).
    pub spf: Option<&'a SpfCheck>,
    /// Where verdicts and refusals are counted.
    pub metrics: &'a Metrics,
}

impl MailAuth {
    /// Loads the DKIM keys in `keys_dir` (a missing directory holds no keys).
    pub fn new(verifier: Option<Verifier>, keys_dir: PathBuf) -> Result<MailAuth, String> {
        let keys = KeyStore::load(&keys_dir).map_err(|e| e.to_string())?;
        Ok(MailAuth { verifier, keys: RwLock::new(Arc::new(keys)), keys_dir })
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key directory every [`KEY_RELOAD`], until this is dropped (a
    /// configuration reload replaces it).
    pub fn spawn_reloader(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_RELOAD);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                let dir = this.keys_dir.clone();
                match tokio::task::spawn_blocking(move || KeyStore::load(&dir)).await {
                    Ok(Ok(keys)) => *this.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot reload DKIM keys; keeping the old ones"),
                    Err(_) => {}
                }
            }
        });
    }

    /// What a session does to its messages: `submitted` (an authenticated or trusted client)
    /// signs; otherwise a listener with `verify` verifies, if there is a verifier.
    pub fn mode(&self, submitted: bool, verify: bool) -> Mode {
        if submitted {
            Mode::Sign
        } else if verify && self.verifier.is_some() {
            Mode::Verify
        } else {
            Mode::None
        }
    }

    /// The keys for the end-of-DATA step, or `None` when it has nothing to do without
    /// reading the message back (signing, but no keys at all).
    pub fn keys_for(&self, mode: Mode) -> Option<Arc<KeyStore>> {
        let keys = self.keys();
        if mode == Mode::Sign && keys.is_empty() { None } else { Some(keys) }
    }

    /// SPF at MAIL time (RFC 7208 §2.4), for verifying sessions: the result to keep for the
    /// end of DATA, and the refusal of MAIL when `spf_reject` says so.
    pub async fn check_spf(
        &self,
        mode: Mode,
        spf_reject: bool,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> (Option<SpfCheck>, Option<Reply>) {
        if mode != Mode::Verify {
            return (None, None);
        }
        let Some(verifier) = self.verifier.as_ref() else { return (None, None) };
        let spf = verifier.check_spf(ip, helo, sender).await;
        let refusal = if spf_reject { policy::spf_reply(spf.mail_from, &spf.domain, &spf.explanation) } else { None };
        (Some(spf), refusal)
    }

    /// Verifies (inbound) or signs (submitted) the message with `keys` (from
    /// [`MailAuth::keys_for`]). `Ok` holds the header fields to put on top of it (empty:
    /// none); `Err` is the reply refusing it.
    pub async fn verify_or_sign(
        &self,
        keys: &KeyStore,
        cfg: &Config,
        mode: Mode,
        checks: &Checks,
        msg: Received<'_>,
    ) -> Result<String, Reply> {
        let mut prepend = String::new();
        match mode {
            Mode::Verify => {
                let Some(verifier) = self.verifier.as_ref() else { return Ok(prepend) };
                let env = msg.envelope;
                let spf = match msg.spf {
                    Some(spf) => spf.clone(),
                    // MAIL was not checked (cannot happen in a verifying session); check now.
                    None => verifier.check_spf(IpAddr::from([0, 0, 0, 0]), &env.helo, &env.sender).await,
                };
                let verdict = verifier.verify(msg.content, &spf).await;
                let dkim: Vec<String> =
                    verdict.dkim.iter().map(|d| format!("{}:{:?}", d.domain, d.result).to_lowercase()).collect();
                tracing::info!(
                    queue_id = %env.id,
                    spf = ?verdict.spf.mail_from,
                    dkim = %Esc(&dkim.join(",")),
                    dmarc = ?verdict.dmarc,
                    policy = ?verdict.dmarc_policy,
                    from_domain = %Esc(&verdict.from_domain),
                    arc = ?verdict.arc,
                    "message authentication"
                );
                count_verdict(msg.metrics, &verdict);
                match policy::decide(&verdict, checks) {
                    Decision::Refuse(reply) => {
                        let why = if reply.code >= 500 { Rejection::Dmarc } else { Rejection::DmarcTemporary };
                        msg.metrics.rejected(why);
                        tracing::info!(queue_id = %env.id, from = %Esc(&format!("<{}>", env.sender)), reply = %Esc(&reply.lines.join(" ")), "message refused by authentication policy");
                        return Err(reply);
                    }
                    Decision::Accept(header) => {
                        if let Some(domain) = sealing_domain(cfg, keys, env) {
                            match keys.seal(msg.content, &verdict, &domain) {
                                Ok(arc) => prepend.push_str(&arc),
                                Err(e) => {
                                    tracing::warn!(queue_id = %env.id, domain, error = %e, "ARC sealing failed; forwarding unsealed")
                                }
                            }
                        }
                        prepend.push_str(&header);
                    }
                }
            }
            Mode::Sign => {
                if let Some(domain) = from_domain(msg.content).filter(|d| cfg.is_local_domain(d) && keys.has_keys(d)) {
                    match keys.sign(msg.content, &domain) {
                        Ok(sig) => prepend.push_str(&sig),
                        Err(e) => {
                            tracing::warn!(queue_id = %msg.envelope.id, domain, error = %e, "DKIM signing failed; sending unsigned")
                        }
                    }
                }
            }
            Mode::None => {}
        }
        Ok(prepend)
    }
}

/// Counts each method's result (every DKIM signature; `none` for a message without one).
fn count_verdict(metrics: &Metrics, verdict: &Verdict) {
    metrics.verified(Verification::Spf, verdict.spf.mail_from.as_str());
    for d in &verdict.dkim {
        metrics.verified(Verification::Dkim, d.result.as_str());
    }
    if verdict.dkim.is_empty() {
        metrics.verified(Verification::Dkim, "none");
    }
    metrics.verified(Verification::Dmarc, verdict.dmarc.as_str());
    metrics.verified(Verification::Arc, verdict.arc.as_str());
}

/// The domain that ARC-seals a message our aliases forward to other domains (RFC 8617), so
/// the next hop can trust our results: one set per hop (RFC 8617 §4.2.1: one instance per
/// ADMD), so the first forwarding alias domain with a key seals.
fn sealing_domain(cfg: &Config, keys: &KeyStore, env: &Envelope) -> Option<String> {
    env.recipients
        .iter()
        .filter(|r| r.mailbox.is_none())
        .filter_map(|r| r.original.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .find(|d| cfg.is_local_domain(d) && keys.has_keys(d))
}

/// The domain of the message's `From:` address (lowercase), if there is exactly one usable.
fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
}
