//! The listener's message-authentication policy as pure functions: what a verdict means for
//! the message (accept, mark, defer, refuse) and when SPF refuses MAIL. No I/O; the caller
//! (`msgauth.rs`) runs the checks and carries the decision out.

use dakiya_config::Checks;
use dakiya_mailauth::{AuthResult, DmarcPolicy, Verdict};
use dakiya_proto::{Enhanced, Reply};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_refuses_mail_only_on_fail_or_a_dns_error() {
        let text = |r: Option<Reply>| r.map(|r| format!("{} {} {}", r.code, r.enhanced.unwrap(), r.lines.join(" ")));
        assert_eq!(
            text(spf_reply(AuthResult::Fail, "forged.test", "")),
            Some("550 5.7.23 SPF check failed for forged.test".into())
        );
        assert_eq!(
            text(spf_reply(AuthResult::Fail, "forged.test", "not allowed")),
            Some("550 5.7.23 SPF check failed for forged.test: not allowed".into())
        );
        assert_eq!(
            text(spf_reply(AuthResult::TempError, "slow.test", "")),
            Some("451 4.7.24 SPF check for slow.test failed temporarily (DNS); try again later".into())
        );
        for result in [AuthResult::Pass, AuthResult::None, AuthResult::SoftFail, AuthResult::Neutral] {
            assert!(spf_reply(result, "x.test", "").is_none(), "{result:?}");
        }
    }
}
