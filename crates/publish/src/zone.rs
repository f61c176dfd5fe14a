//! Records as zone-file lines (RFC 1035 §5, read by BIND and NSD) and as JSON.

use crate::Domain;
use crate::records::{Kind, Record};

/// The TTL written for every record.
pub const TTL: u32 = 3600;

/// A zone-file fragment for `domain`: a comment naming it (with its U-label when it is an
/// international name), then one line per record with absolute owner names.
pub fn zone(domain: &Domain, records: &[Record]) -> String {
    let mut out = format!("; records to publish for {}", domain.ascii);
    if domain.is_idn() {
        out.push_str(&format!(" ({})", domain.unicode));
    }
    out.push('\n');
    let mut last = "";
    for r in records {
        if r.purpose != last {
            out.push_str(&format!("; {}\n", r.purpose));
            last = r.purpose;
        }
        out.push_str(&format!("{}.\t{TTL}\tIN\t{}\t{}\n", r.name, r.kind.as_str(), data(r)));
    }
    out
}

/// The data as written in a zone: TXT quoted and split into strings of at most 255 octets
/// (RFC 1035 §3.3.14; receivers join them, RFC 7208 §3.3, RFC 6376 §3.6.2.2), inside
/// parentheses when there are several.
fn data(r: &Record) -> String {
    if r.kind != Kind::Txt {
        return r.data.clone();
    }
    let parts = split_txt(&r.data);
    let quoted: Vec<String> = parts.iter().map(|p| format!("\"{}\"", escape(p))).collect();
    if quoted.len() == 1 { quoted[0].clone() } else { format!("( {} )", quoted.join(" ")) }
}

/// `text` in pieces of at most 255 octets, never inside a UTF-8 character.
pub fn split_txt(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts.push(rest);
    parts
}

/// `"` and `\` escaped for a quoted zone string; other octets are ours (ASCII text).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One JSON object per domain: `{"domain", "unicode", "records": [{name, type, value, purpose}]}`.
pub fn json(domains: &[(Domain, Vec<Record>)]) -> String {
    let list: Vec<serde_json::Value> = domains
        .iter()
        .map(|(d, r)| serde_json::json!({ "domain": d.ascii, "unicode": d.unicode, "records": r }))
        .collect();
    serde_json::to_string_pretty(&list).expect("records serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_is_split() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let r =
            Record { name: "s._domainkey.example.org".into(), kind: Kind::Txt, data: value.clone(), purpose: "dkim" };
        let z = zone(&Domain::new("bücher.example").unwrap(), &[r]);
        assert!(z.starts_with("; records to publish for xn--bcher-kva.example (bücher.example)\n"), "{z}");
        let line = z.lines().last().unwrap();
        assert!(line.starts_with("s._domainkey.example.org.\t3600\tIN\tTXT\t( \""), "{line}");
        let inner: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(inner.len(), 2);
        assert!(inner.iter().all(|p| p.len() <= 255));
        assert_eq!(inner.concat(), value);
    }

    #[test]
    fn split_respects_characters() {
        let s = "é".repeat(200);
        assert!(split_txt(&s).iter().all(|p| p.len() <= 255 && !p.is_empty()));
        assert_eq!(split_txt(&s).concat(), s);
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
