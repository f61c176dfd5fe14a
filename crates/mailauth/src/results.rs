//! What [`Verifier::verify`](crate::Verifier::verify) learned, as owned data, and the
//! `Authentication-Results` field (RFC 8601) built from it with `mail-auth`'s builder.
//!
//! The same data later builds the `ARC-Authentication-Results` of a seal (RFC 8617 §4.1.1),
//! so both fields always say the same thing.

use mail_auth::arc::ArcError;
use mail_auth::common::crypto::CryptoError;
use mail_auth::dkim::{DkimError, Signature};
use mail_auth::{
    ArcOutput, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError, Error, SpfOutput,
};

use crate::{AuthResult, DkimCheck, DmarcPolicy, SpfCheck, spf};

/// The longest line of a header field, without its CRLF (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;

/// Everything needed to write the results again, without the message.
#[derive(Debug, Clone)]
pub(crate) struct Results {
    /// Our host name, the authserv-id.
    pub authserv_id: String,
    /// SPF as checked at MAIL time.
    pub spf: SpfCheck,
    /// One entry per DKIM-Signature field, in message order.
    pub dkim: Vec<DkimEntry>,
    /// DMARC; `None` when the message had no header section to check.
    pub dmarc: Option<DmarcOutput>,
    /// The ARC chain's result, normalised (see [`arc_result`]).
    pub arc: DkimResult,
    /// How many ARC sets the message carried when verified.
    pub arc_sets: usize,
    /// The first RFC5322.From address (for `dkim-atps`).
    pub header_from: String,
}

/// One DKIM signature's outcome with the signature it is about.
#[derive(Debug, Clone)]
pub(crate) struct DkimEntry {
    pub result: DkimResult,
    /// `None` for a `DKIM-Signature` field that did not parse.
    pub signature: Option<Signature>,
    /// Passed as an authorised third-party signature (RFC 6541).
    pub atps: bool,
}

impl DkimEntry {
    /// Takes one of `mail-auth`'s outputs. A body hash mismatch, which `mail-auth` reports as
    /// `neutral`, becomes `fail`: the signature was acceptable but failed verification
    /// (RFC 8601 §2.7.1; RFC 6376 §6.1.3 calls it PERMFAIL "body hash did not verify").
    pub fn new(output: &DkimOutput<'_>, from: &[String]) -> DkimEntry {
        let result = match output.result() {
            DkimResult::Neutral(err @ Error::Dkim(DkimError::FailedBodyHashMatch)) => DkimResult::Fail(err.clone()),
            other => other.clone(),
        };
        let signature = output.signature().cloned();
        // mail-auth marks a pass through ATPS internally only; it happens exactly when the
        // signature verified and names a From domain in atps= (RFC 6541 §4.2).
        let atps = result == DkimResult::Pass
            && signature.as_ref().and_then(|s| s.atps.as_deref()).is_some_and(|atps| {
                from.iter().any(|f| f.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(atps)))
            });
        DkimEntry { result, signature, atps }
    }

    /// Back to a `mail-auth` output for the builder; `None` for a `none` result.
    fn output(&self) -> Option<DkimOutput<'_>> {
        let output = match &self.result {
            DkimResult::Pass => DkimOutput::pass(),
            DkimResult::Fail(err) => DkimOutput::fail(err.clone()),
            DkimResult::Neutral(err) => DkimOutput::neutral(err.clone()),
            DkimResult::PermError(err) => DkimOutput::perm_err(err.clone()),
            DkimResult::TempError(err) => DkimOutput::temp_err(err.clone()),
            DkimResult::None => return None,
        };
        let output = match &self.signature {
            Some(signature) => output.with_signature(signature),
            None => output,
        };
        Some(if self.atps { output.with_atps() } else { output })
    }

    /// The public view.
    pub fn check(&self) -> DkimCheck {
        let (result, reason) = split(&self.result);
        DkimCheck {
            result,
            domain: self.signature.as_ref().map(|s| s.d.to_ascii_lowercase()).unwrap_or_default(),
            selector: self.signature.as_ref().map(|s| s.s.clone()).unwrap_or_default(),
            reason,
        }
    }
}

/// The ARC result as RFC 8617 §4.4 knows it (`none`, `pass`, `fail`): a chain that is
/// malformed or does not verify (`neutral` and `permerror` in `mail-auth`) has failed. A DNS
/// failure stays `temperror`: it is not known to be broken.
pub(crate) fn arc_result(result: &DkimResult) -> DkimResult {
    match result {
        DkimResult::Neutral(err) | DkimResult::PermError(err) => DkimResult::Fail(err.clone()),
        other => other.clone(),
    }
}

/// A DKIM or ARC result by its RFC 8601 name, and why it did not pass.
pub(crate) fn split(result: &DkimResult) -> (AuthResult, Option<String>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::None => (AuthResult::None, None),
        DkimResult::Fail(err) => (AuthResult::Fail, Some(reason(err))),
        DkimResult::Neutral(err) => (AuthResult::Neutral, Some(reason(err))),
        DkimResult::PermError(err) => (AuthResult::PermError, Some(reason(err))),
        DkimResult::TempError(err) => (AuthResult::TempError, Some(reason(err))),
    }
}

/// Why an rsa-sha1 signature fails (RFC 8301 §3.1): `verify.rs` turns a passing one into a
/// failure carrying this text, which [`reason`] passes on unchanged.
pub(crate) const SHA1_REFUSED: &str = "rsa-sha1 signatures are not accepted (RFC 8301)";

/// A short reason for logs and reply texts, in RFC 6376 §6.1 wording where there is one.
fn reason(err: &Error) -> String {
    match err {
        Error::Dkim(DkimError::FailedBodyHashMatch) | Error::Arc(ArcError::FailedBodyHashMatch) => {
            "body hash did not verify".into()
        }
        Error::Crypto(CryptoError::FailedVerification) => "signature did not verify".into(),
        Error::Dns(DnsError::RecordNotFound(_)) => "no key for signature".into(),
        Error::Dns(DnsError::Resolver(_)) => "key lookup failed temporarily".into(),
        Error::Dns(DnsError::InvalidRecordType) | Error::ParseError => "key record unusable".into(),
        Error::Dkim(DkimError::RevokedPublicKey) => "key revoked".into(),
        Error::Dkim(DkimError::SignatureExpired) | Error::Arc(ArcError::SignatureExpired) => "signature expired".into(),
        Error::Dkim(DkimError::SignatureLength) => "l= tag not accepted".into(),
        Error::Dkim(DkimError::FailedAuidMatch) => "i= domain does not match d=".into(),
        Error::Crypto(CryptoError::IncompatibleAlgorithms) => "key does not match the signature algorithm".into(),
        Error::Io(text) if text == SHA1_REFUSED => text.clone(),
        other => other.to_string(),
    }
}

/// DMARC's result by its RFC 8601 name.
pub(crate) fn dmarc_result(output: &DmarcOutput) -> AuthResult {
    match output.result() {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::TempError,
        DmarcResult::PermError(_) => AuthResult::PermError,
        DmarcResult::None => AuthResult::None,
    }
}

/// The policy that applies to a failing message (`mail-auth` already chose between `p=`,
/// `sp=` and `np=` and applied `t=y`).
pub(crate) fn dmarc_policy(output: &DmarcOutput) -> DmarcPolicy {
    match output.policy() {
        mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
        mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
        mail_auth::dmarc::Policy::None | mail_auth::dmarc::Policy::Unspecified => DmarcPolicy::None,
    }
}

impl Results {
    /// SPF's MAIL FROM result as `mail-auth` takes it.
    fn spf_output(&self) -> SpfOutput {
        SpfOutput::new(self.spf.domain.clone()).with_result(spf::spf_result(self.spf.mail_from))
    }

    fn dkim_outputs(&self) -> Vec<DkimOutput<'_>> {
        self.dkim.iter().filter_map(DkimEntry::output).collect()
    }

    fn arc_output(&self) -> ArcOutput<'_> {
        ArcOutput::default().with_result(self.arc.clone())
    }

    /// The spf and dkim parts, led by the authserv-id.
    fn spf_dkim(&self) -> AuthenticationResults<'_> {
        let client = &self.spf.client;
        AuthenticationResults::new(&self.authserv_id)
            .with_spf_mailfrom_result(&self.spf_output(), client.ip, &client.mail_from, &client.helo)
            .with_dkim_results(&self.dkim_outputs(), &self.header_from)
    }

    /// The complete `Authentication-Results` field: spf, dkim, dmarc, arc, folded, with CRLF.
    ///
    /// `mail-auth`'s builder cannot say `dkim=none` (it has no such output) nor a DMARC result
    /// without a From domain, so those two parts are written here in its style.
    pub fn header(&self) -> String {
        let mut value = self.spf_dkim().to_string();
        if self.dkim_outputs().is_empty() {
            value.push_str(";\r\n\tdkim=none");
        }
        // An empty authserv-id makes the builder write just its parts, to be appended.
        match &self.dmarc {
            Some(dmarc) if !dmarc.domain().is_empty() => {
                value.push_str(&AuthenticationResults::new("").with_dmarc_result(dmarc).to_string());
            }
            Some(_) => value.push_str(";\r\n\tdmarc=none (no single RFC5322.From domain)"),
            None => value.push_str(";\r\n\tdmarc=permerror (no header section)"),
        }
        let arc = self.arc_output();
        value.push_str(&AuthenticationResults::new("").with_arc_result(&arc, self.spf.client.ip).to_string());
        fold(&format!("Authentication-Results: {value}"))
    }

    /// The results for an `ARC-Authentication-Results` field: the same parts, all through
    /// the builder (a `none` DKIM result, or DMARC without a From domain, is left out).
    pub fn arc_results(&self) -> AuthenticationResults<'_> {
        let mut results = self.spf_dkim();
        if let Some(dmarc) = self.dmarc.as_ref().filter(|d| !d.domain().is_empty()) {
            results = results.with_dmarc_result(dmarc);
        }
        results.with_arc_result(&self.arc_output(), self.spf.client.ip)
    }
}

/// Ends `field` with CRLF, folding any line longer than 998 octets at its last space
/// before that length (RFC 5322 §2.2.3). The builder already puts each result on a line of
/// its own; only a huge address or host name could make a line this long.
pub(crate) fn fold(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 8);
    for (n, line) in field.split("\r\n").enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let mut rest = line;
        while rest.len() > MAX_LINE {
            // Fold at a space that leaves something on both sides.
            let cut = rest.as_bytes()[1..MAX_LINE].iter().rposition(|&b| b == b' ').map(|p| p + 1);
            let Some(cut) = cut.filter(|&c| !rest[..c].trim().is_empty()) else { break };
            out.push_str(&rest[..cut]);
            out.push_str("\r\n\t");
            rest = rest[cut..].trim_start_matches(' ');
        }
        out.push_str(rest);
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn short_fields_only_get_their_crlf() {
        assert_eq!(fold("A: b;\r\n\tc=d"), "A: b;\r\n\tc=d\r\n");
    }

    #[test]
    fn long_lines_are_folded_at_spaces() {
        let long = format!("A: {} {} {}", "x".repeat(600), "y".repeat(600), "z".repeat(10));
        let folded = fold(&long);
        assert!(folded.ends_with("\r\n"));
        for line in folded.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= 998, "{}", line.len());
        }
        assert_eq!(folded.replace("\r\n\t", " "), format!("{long}\r\n"));
    }
}
