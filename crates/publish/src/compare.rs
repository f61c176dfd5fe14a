//! `dakiya dns check`: a published record set against the expected record, compared the
//! way receivers read them — names without case or trailing dot, SPF terms and tag-lists
//! (DMARC, DKIM, MTA-STS, TLS-RPT) without regard to spacing or tag order.

use crate::records::{Kind, Record};
use std::net::IpAddr;

/// The outcome for one expected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Published as expected.
    Ok,
    /// Nothing of this kind is published at the name.
    Missing,
    /// Something else is published: what was found (in presentation form).
    Different(Vec<String>),
}

/// Compares `expected` with `published`: every record of its type at its name, in the
/// presentation form of [`Record::data`] (TXT strings joined).
pub fn compare(expected: &Record, published: &[String]) -> Verdict {
    match expected.kind {
        Kind::Txt => txt(&expected.data, published),
        Kind::Mx => any(published, |p| last_name(p) == last_name(&expected.data)),
        Kind::Srv => any(published, |p| srv_key(p) == srv_key(&expected.data)),
        Kind::Cname => any(published, |p| name(p) == name(&expected.data)),
        Kind::A | Kind::Aaaa => any(published, |p| ip(p).is_some() && ip(p) == ip(&expected.data)),
    }
}

fn any(published: &[String], matches: impl Fn(&str) -> bool) -> Verdict {
    if published.is_empty() {
        Verdict::Missing
    } else if published.iter().any(|p| matches(p)) {
        Verdict::Ok
    } else {
        Verdict::Different(published.to_vec())
    }
}

/// TXT records are told apart by their version tag (`v=spf1`, `v=DMARC1`, ...): only those
/// with the expected one are compared. RFC 7208 §4.5: two SPF records are an error.
fn txt(expected: &str, published: &[String]) -> Verdict {
    let wanted = version(expected);
    let same: Vec<String> = published.iter().filter(|p| version(p) == wanted).cloned().collect();
    if same.is_empty() {
        return Verdict::Missing;
    }
    let spf = wanted.as_deref() == Some("spf1");
    if spf && same.len() > 1 {
        return Verdict::Different(same);
    }
    let norm = |t: &str| if spf { Some(spf_terms(t)) } else { tags(t) };
    if same.iter().any(|p| norm(p) == norm(expected)) { Verdict::Ok } else { Verdict::Different(same) }
}

/// The value of a leading `v=` (lowercase), for `v=spf1 …` and `v=X; …` alike.
fn version(text: &str) -> Option<String> {
    let first = text.trim_start().split([';', ' ']).next()?;
    let (tag, value) = first.split_once('=')?;
    (tag.trim().eq_ignore_ascii_case("v")).then(|| value.trim().to_ascii_lowercase())
}

/// SPF terms, case-folded (RFC 7208 §4.6.1 names are case-insensitive), the mechanisms
/// before `all` sorted (they only add permitted senders), `all` and modifiers kept last.
fn spf_terms(text: &str) -> Vec<String> {
    let terms: Vec<String> = text.split_whitespace().map(str::to_ascii_lowercase).collect();
    let is_all = |t: &String| t.trim_start_matches(['+', '-', '~', '?']) == "all";
    let (mut rest, last): (Vec<String>, Vec<String>) = terms.into_iter().partition(|t| !is_all(t) && !t.contains('='));
    rest.sort();
    let mut modifiers: Vec<String> = last.iter().filter(|t| t.contains('=')).cloned().collect();
    modifiers.sort();
    rest.extend(last.into_iter().filter(|t| !t.contains('=')));
    rest.extend(modifiers);
    rest
}

/// A tag-list (RFC 6376 §3.2, used by DMARC, MTA-STS and TLS-RPT): `v=` must come first;
/// the others in any order; whitespace around and inside values ignored (folding);
/// tag names and values case-folded except the DKIM key `p=` and the MTA-STS `id=`.
fn tags(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (tag, value) = part.split_once('=')?;
        let tag = tag.trim().to_ascii_lowercase();
        let mut value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if tag != "p" && tag != "id" {
            value = value.to_ascii_lowercase();
        }
        out.push(format!("{tag}={value}"));
    }
    if out.first().is_none_or(|t| !t.starts_with("v=")) {
        return None;
    }
    out.sort();
    Some(out)
}

/// A domain name for comparison: lowercase, one trailing dot.
fn name(text: &str) -> String {
    format!("{}.", text.trim().trim_end_matches('.').to_ascii_lowercase())
}

/// The last field (MX exchange, SRV target) as a name.
fn last_name(text: &str) -> String {
    name(text.split_whitespace().last().unwrap_or(""))
}

/// An SRV record's port and target (priority and weight are the publisher's choice).
fn srv_key(text: &str) -> Option<(String, String)> {
    let f: Vec<&str> = text.split_whitespace().collect();
    (f.len() == 4).then(|| (f[2].to_owned(), name(f[3])))
}

fn ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, data: &str) -> Record {
        Record { name: "example.org".into(), kind, data: data.into(), purpose: "" }
    }

    fn check(kind: Kind, data: &str, published: &[&str]) -> Verdict {
        let p: Vec<String> = published.iter().map(|s| s.to_string()).collect();
        compare(&rec(kind, data), &p)
    }

    #[test]
    fn spf_spacing_case_and_order() {
        let e = "v=spf1 ip4:192.0.2.7 ip6:2001:db8::7 -all";
        assert_eq!(
            check(Kind::Txt, e, &["V=SPF1  IP6:2001:db8::7 ip4:192.0.2.7 -ALL", "google-site-verification=x"]),
            Verdict::Ok
        );
        assert_eq!(
            check(Kind::Txt, e, &["v=spf1 ip4:192.0.2.7 ~all"]),
            Verdict::Different(vec!["v=spf1 ip4:192.0.2.7 ~all".into()])
        );
        assert_eq!(check(Kind::Txt, e, &["something else"]), Verdict::Missing);
        assert!(
            matches!(check(Kind::Txt, "v=spf1 mx -all", &["v=spf1 mx -all", "v=spf1 a -all"]), Verdict::Different(v) if v.len() == 2)
        );
    }

    #[test]
    fn tag_lists() {
        let e = "v=DMARC1; p=none; rua=mailto:postmaster@example.org";
        assert_eq!(check(Kind::Txt, e, &["v=DMARC1;rua=mailto:Postmaster@Example.org ;  p=none;"]), Verdict::Ok);
        assert!(matches!(
            check(Kind::Txt, e, &["v=DMARC1; p=reject; rua=mailto:postmaster@example.org"]),
            Verdict::Different(_)
        ));
        // v= must come first (RFC 7489 §6.4).
        assert!(matches!(
            check(Kind::Txt, e, &["p=none; v=DMARC1; rua=mailto:postmaster@example.org"]),
            Verdict::Missing
        ));
        assert!(matches!(check(Kind::Txt, "v=STSv1; id=abcDEF", &["v=STSv1; id=abcdef"]), Verdict::Different(_)));
        assert_eq!(check(Kind::Txt, "v=DKIM1; k=rsa; p=ABC", &["v=DKIM1; k=rsa; p=A B C"]), Verdict::Ok);
        assert!(matches!(check(Kind::Txt, "v=DKIM1; k=rsa; p=ABC", &["v=DKIM1; k=rsa; p=abc"]), Verdict::Different(_)));
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(check(Kind::Mx, "10 mail.example.org.", &["20 MAIL.example.org"]), Verdict::Ok);
        assert!(matches!(check(Kind::Mx, "10 mail.example.org.", &["10 other.example.org."]), Verdict::Different(_)));
        assert_eq!(check(Kind::Mx, "10 mail.example.org.", &[]), Verdict::Missing);
        assert_eq!(check(Kind::Srv, "0 1 465 mail.example.org.", &["5 0 465 mail.example.org."]), Verdict::Ok);
        assert!(matches!(
            check(Kind::Srv, "0 1 465 mail.example.org.", &["0 1 587 mail.example.org."]),
            Verdict::Different(_)
        ));
        assert_eq!(check(Kind::Srv, "0 0 0 .", &["0 0 0 ."]), Verdict::Ok);
        assert_eq!(check(Kind::Cname, "mail.example.org.", &["Mail.Example.Org."]), Verdict::Ok);
        assert_eq!(check(Kind::Aaaa, "2001:db8::7", &["2001:0db8:0::7"]), Verdict::Ok);
        assert!(matches!(check(Kind::A, "192.0.2.7", &["192.0.2.8"]), Verdict::Different(_)));
    }
}
