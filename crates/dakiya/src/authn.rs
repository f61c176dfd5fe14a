//! Message authentication in the server: SPF at MAIL, DKIM/DMARC/ARC at the end of DATA on
//! `mx` listeners, DKIM signing of submitted mail, ARC sealing of forwarded mail. The checks
//! themselves are `dakiya_mailauth`'s; here are the policy (reject, quarantine, defer) and the
//! plumbing. See docs/authentication.md.

use dakiya_config::Checks;
use dakiya_mailauth::{AuthResult, DmarcPolicy, KeyStore, Verdict, Verifier, claims_our_results};
use dakiya_proto::{Enhanced, Reply};
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

impl MailAuth {
    pub fn new(verifier: Option<Verifier>, keys_dir: PathBuf) -> Result<MailAuth, String> {
        let keys = KeyStore::load(&keys_dir).map_err(|e| e.to_string())?;
        Ok(MailAuth { verifier, keys: RwLock::new(Arc::new(keys)), keys_dir })
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key directory every [`KEY_RELOAD`].
    pub fn spawn_reloader(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_RELOAD);
            tick.tick().await;
            loop {
                tick.tick().await;
                let dir = this.keys_dir.clone();
                match tokio::task::spawn_blocking(move || KeyStore::load(&dir)).await {
                    Ok(Ok(keys)) => *this.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot reload DKIM keys; keeping the old ones"),
                    Err(_) => {}
                }
            }
        });
    }
}

/// What the end-of-DATA checks decided.
pub enum Decision {
    /// Accept, with these header fields on top (Authentication-Results, maybe quarantine
    /// marks).
    Accept(String),
    /// Refuse with this reply.
    Refuse(Reply),
}

/// Applies the listener's policy to a verdict.
///
/// - DMARC `fail` under `p=reject` with `dmarc_reject`: `550 5.7.1` naming the domain
///   (RFC 7489 §6.7: the receiver may reject during the SMTP transaction).
/// - DMARC `fail` with an input that was a DNS temporary error (SPF or a DKIM key lookup),
///   or DMARC `temperror` itself: `451 4.7.5`-class deferral — never a silent pass, never a
///   rejection on a DNS hiccup (RFC 7489 §6.6.2).
/// - DMARC `fail` under `p=quarantine` (or `p=reject` without `dmarc_reject`) with
///   `dmarc_quarantine`: accepted with `X-Spam-Flag: YES` and `X-Dakiya-Quarantine: dmarc`.
pub fn decide(verdict: &Verdict, checks: &Checks) -> Decision {
    let temp_input = verdict.spf.mail_from == AuthResult::TempError
        || verdict.dkim.iter().any(|d| d.result == AuthResult::TempError);
    let domain = &verdict.from_domain;
    if verdict.dmarc == AuthResult::TempError || (verdict.dmarc == AuthResult::Fail && temp_input) {
        return Decision::Refuse(Reply::new(
            451,
            Enhanced(4, 7, 1),
            format!("DMARC check for {domain} failed temporarily (DNS); try again later"),
        ));
    }
    let mut header = verdict.header.clone();
    if verdict.dmarc == AuthResult::Fail {
        match verdict.dmarc_policy {
            DmarcPolicy::Reject if checks.dmarc_reject => {
                let why = dmarc_reason(verdict);
                return Decision::Refuse(Reply::new(
                    550,
                    Enhanced(5, 7, 1),
                    format!("Rejected by the DMARC policy of {domain} ({why})"),
                ));
            }
            DmarcPolicy::Reject | DmarcPolicy::Quarantine if checks.dmarc_quarantine => {
                header.push_str("X-Spam-Flag: YES\r\nX-Dakiya-Quarantine: dmarc\r\n");
            }
            _ => {}
        }
    }
    Decision::Accept(header)
}

/// Why DMARC failed, in a few words for the reply text.
fn dmarc_reason(verdict: &Verdict) -> String {
    let dkim = if verdict.dkim.is_empty() {
        "no DKIM signature".to_string()
    } else if verdict.dkim.iter().any(|d| d.result == AuthResult::Pass) {
        "no aligned DKIM signature".to_string()
    } else {
        "DKIM signature did not verify".to_string()
    };
    let spf = match verdict.spf.mail_from {
        AuthResult::Pass => "SPF not aligned",
        AuthResult::None => "no SPF record",
        _ => "SPF did not pass",
    };
    format!("{dkim}, {spf}")
}

/// The reply for MAIL when `spf_reject` is on and SPF says `fail` (RFC 7372 §3.2: 5.7.23 "SPF
/// validation failed"), or a temporary DNS error made the check impossible (4.7.24 "SPF
/// validation error").
pub fn spf_reply(result: AuthResult, domain: &str, explanation: &str) -> Option<Reply> {
    match result {
        AuthResult::Fail => {
            let why = if explanation.is_empty() { String::new() } else { format!(": {explanation}") };
            Some(Reply::new(550, Enhanced(5, 7, 23), format!("SPF check failed for {domain}{why}")))
        }
        AuthResult::TempError => Some(Reply::new(
            451,
            Enhanced(4, 7, 24),
            format!("SPF check for {domain} failed temporarily (DNS); try again later"),
        )),
        _ => None,
    }
}

/// Removes `Authentication-Results:` fields that claim to be ours from a message's header
/// section as it streams by (RFC 8601 §5: a receiver must not trust, and should remove,
/// such fields arriving from outside). The body passes untouched.
pub struct HeaderFilter {
    authserv_id: String,
    /// Still in the header section.
    in_header: bool,
    /// The current line, until its LF.
    line: Vec<u8>,
    /// The current field (first line plus continuation lines), until the next field starts.
    field: Vec<u8>,
    /// Fields removed so far.
    pub removed: usize,
}

/// A field longer than this is passed on as it is (it is not ours: ours are short).
const MAX_FIELD: usize = 64 * 1024;

impl HeaderFilter {
    pub fn new(authserv_id: &str) -> HeaderFilter {
        HeaderFilter {
            authserv_id: authserv_id.to_string(),
            in_header: true,
            line: Vec::new(),
            field: Vec::new(),
            removed: 0,
        }
    }

    /// Filters `data`, appending what passes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.in_header {
            out.extend_from_slice(data);
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            if !self.in_header {
                out.extend_from_slice(rest);
                return;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.end_of_line(line, out);
                }
                None => {
                    self.line.extend_from_slice(rest);
                    if self.line.len() + self.field.len() > MAX_FIELD {
                        self.flush_field(out);
                        out.append(&mut self.line);
                    }
                    return;
                }
            }
        }
    }

    fn end_of_line(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation && !self.field.is_empty() {
            self.field.extend_from_slice(&line);
            if self.field.len() > MAX_FIELD {
                out.append(&mut self.field);
            }
            return;
        }
        self.flush_field(out);
        if line == b"\r\n" || line == b"\n" {
            // The blank line ends the header section.
            self.in_header = false;
            out.extend_from_slice(&line);
        } else {
            self.field = line;
        }
    }

    fn flush_field(&mut self, out: &mut Vec<u8>) {
        if self.field.is_empty() {
            return;
        }
        if claims_our_results(&self.field, &self.authserv_id) {
            self.removed += 1;
            self.field.clear();
        } else {
            out.append(&mut self.field);
        }
    }

    /// Flushes what is held back at the end of the message.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.in_header {
            let line = std::mem::take(&mut self.line);
            if !line.is_empty() {
                self.end_of_line(line, out);
            }
            self.flush_field(out);
        }
        out.append(&mut self.line);
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderFilter;

    fn filter(input: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        let mut f = HeaderFilter::new("mx.example.test");
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            f.push(part, &mut out);
        }
        f.finish(&mut out);
        (out, f.removed)
    }

    #[test]
    fn passes_a_message_without_our_fields_unchanged_in_any_chunking() {
        let msg =
            b"From: a@b.test\r\nSubject: hi\r\n there\r\n\r\nAuthentication-Results: mx.example.test; x\r\nbody\r\n";
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(filter(msg, chunk), (msg.to_vec(), 0), "chunk {chunk}");
        }
    }

    #[test]
    fn removes_only_our_results_folded_or_not_in_any_chunking() {
        let msg = b"Received: x\r\nAUTHENTICATION-RESULTS: MX.example.test;\r\n\tdkim=pass\r\n header.d=bank.test\r\n\
Authentication-Results: other.test; spf=pass\r\nAuthentication-Results: mx.example.test.evil; x\r\n\
Authentication-Results:mx.example.test 1; spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.test; in body\r\n";
        let want = b"Received: x\r\nAuthentication-Results: other.test; spf=pass\r\n\
Authentication-Results: mx.example.test.evil; x\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.test; in body\r\n";
        for chunk in [1, 2, 5, 13, 4096] {
            assert_eq!(filter(msg, chunk), (want.to_vec(), 2), "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_without_body_or_final_newline_is_kept() {
        assert_eq!(filter(b"Subject: s\r\nX: y", 3), (b"Subject: s\r\nX: y".to_vec(), 0));
        assert_eq!(filter(b"Authentication-Results: mx.example.test; a", 3), (Vec::new(), 1));
    }
}
