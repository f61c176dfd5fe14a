//! SPF at MAIL time: the HELO identity (RFC 7208 §2.3) and the MAIL FROM identity (§2.4),
//! evaluated by `mail-auth`'s `check_host()`.

use std::net::IpAddr;

use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{SpfOutput, SpfResult};

use crate::{AuthResult, SpfCheck, Verifier};

/// The client and the identities as checked, for the `Authentication-Results` field.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// The HELO/EHLO name as given.
    pub helo: String,
    /// The MAIL FROM address as given (`""` for `<>`).
    pub mail_from: String,
}

/// Both SPF checks for one MAIL command.
pub(crate) async fn check(verifier: &Verifier, ip: IpAddr, helo: &str, mail_from: &str) -> SpfCheck {
    let host = verifier.authserv_id.as_str();
    let (helo_result, helo_out) = if checkable(helo) {
        let out = verifier.auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, host)).await;
        (one_record_only(verifier, helo, out.result()).await, out)
    } else {
        (SpfResult::None, SpfOutput::new(helo.to_string()))
    };

    // RFC 7208 §2.4: for the null reverse-path the MAIL FROM identity is postmaster@ the HELO
    // name, which is the HELO check just made (§2.3), so its result is reused.
    let (domain, result, out) = match mail_from.rsplit_once('@') {
        Some((_, domain)) if !checkable(domain) => {
            (domain.to_ascii_lowercase(), SpfResult::None, SpfOutput::new(domain.to_string()))
        }
        Some((_, domain)) => {
            let params = SpfParameters::verify_mail_from(ip, helo, host, mail_from);
            let out = verifier.auth.verify_spf(params).await;
            let result = one_record_only(verifier, domain, out.result()).await;
            (domain.to_ascii_lowercase(), result, out)
        }
        _ => (helo.to_ascii_lowercase(), helo_result, helo_out),
    };
    let explanation = explain(&out, result, &domain, ip);
    SpfCheck {
        helo: auth_result(helo_result),
        mail_from: auth_result(result),
        domain,
        explanation,
        client: Client { ip, helo: helo.to_string(), mail_from: mail_from.to_string() },
    }
}

/// Whether `domain` is a multi-label domain name that SPF can be checked for: RFC 7208 §4.3
/// makes anything else `none` (an address literal HELO, `user@[192.0.2.1]`, one label, an
/// empty or overlong label), and §2.3 says the same of a HELO name that is not a domain.
fn checkable(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || !b.is_ascii())
    };
    domain.len() <= 253 && domain.contains('.') && domain.split('.').all(label_ok)
}

/// RFC 7208 §4.5: more than one `v=spf1` record at a domain is a `permerror`, and so is a
/// record that starts with `v=spf1` but does not parse. `mail-auth` evaluates the first record
/// that parses and reports a broken one as "no record", so the raw answer (from the
/// resolver's cache: `mail-auth` just asked the same question) settles both cases.
async fn one_record_only(verifier: &Verifier, domain: &str, result: SpfResult) -> SpfResult {
    if matches!(result, SpfResult::TempError | SpfResult::PermError) || domain.is_empty() {
        return result;
    }
    let Ok(name) = Name::from_str_relaxed(format!("{}.", domain.trim_end_matches('.'))) else { return result };
    let Ok(lookup) = verifier.auth.resolver().txt_lookup(name).await else { return result };
    let records = lookup
        .answers()
        .iter()
        .filter(|record| match &record.data {
            RData::TXT(txt) => is_spf_record(&txt.txt_data.concat()),
            _ => false,
        })
        .count();
    match (records, result) {
        (2.., _) => SpfResult::PermError,
        (1, SpfResult::None) => SpfResult::PermError,
        _ => result,
    }
}

/// Whether a TXT record is an SPF record: `v=spf1` followed by a space or nothing
/// (RFC 7208 §4.5; the version tag is case-insensitive).
fn is_spf_record(text: &[u8]) -> bool {
    const VERSION: &[u8] = b"v=spf1";
    text.len() >= VERSION.len()
        && text[..VERSION.len()].eq_ignore_ascii_case(VERSION)
        && matches!(text.get(VERSION.len()), None | Some(b' '))
}

/// The reason in words: the domain's own explanation (`exp=`, RFC 7208 §6.2) when it gave
/// one with a `fail`, else ours.
fn explain(out: &SpfOutput, result: SpfResult, domain: &str, ip: IpAddr) -> String {
    if let (SpfResult::Fail, Some(exp)) = (result, out.explanation()) {
        return exp.to_string();
    }
    match result {
        SpfResult::Pass => format!("domain of {domain} designates {ip} as permitted sender"),
        SpfResult::Fail => format!("domain of {domain} does not designate {ip} as permitted sender"),
        SpfResult::SoftFail => format!("domain of {domain} discourages use of {ip} as sender (softfail)"),
        SpfResult::Neutral => format!("domain of {domain} makes no assertion about {ip}"),
        SpfResult::None => format!("no SPF record for {domain}"),
        SpfResult::TempError => format!("temporary DNS error looking up the SPF record of {domain}"),
        SpfResult::PermError => format!("the SPF record of {domain} is invalid or not unique"),
    }
}

/// `mail-auth`'s SPF result by its RFC 8601 name.
pub(crate) fn auth_result(result: SpfResult) -> AuthResult {
    match result {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

/// The reverse of [`auth_result`], to hand a stored result back to `mail-auth`.
pub(crate) fn spf_result(result: AuthResult) -> SpfResult {
    match result {
        AuthResult::Pass => SpfResult::Pass,
        AuthResult::Fail => SpfResult::Fail,
        AuthResult::SoftFail => SpfResult::SoftFail,
        AuthResult::Neutral => SpfResult::Neutral,
        AuthResult::TempError => SpfResult::TempError,
        AuthResult::PermError => SpfResult::PermError,
        AuthResult::None => SpfResult::None,
    }
}

#[cfg(test)]
mod tests {
    use super::is_spf_record;

    #[test]
    fn spf_records_are_recognised_by_their_version_tag() {
        assert!(is_spf_record(b"v=spf1 -all"));
        assert!(is_spf_record(b"V=SPF1 ip4:192.0.2.1 -all"));
        assert!(is_spf_record(b"v=spf1"));
        assert!(!is_spf_record(b"v=spf10 -all"));
        assert!(!is_spf_record(b"v=spf"));
        assert!(!is_spf_record(b"google-site-verification=abc"));
    }

    #[test]
    fn only_domain_names_are_checked() {
        use super::checkable;
        assert!(checkable("example.test"));
        assert!(checkable("Mail.Example.TEST."));
        assert!(checkable("bücher.example"));
        for bad in ["", "localhost", "[192.0.2.1]", "192.0.2.1]", "a..test", ".test", "a b.test"] {
            assert!(!checkable(bad), "{bad:?}");
        }
    }
}
