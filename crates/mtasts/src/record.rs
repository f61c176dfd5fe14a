//! The TXT records that announce a policy (RFC 8461 §3.1) and where reports go (RFC 8460 §3).

/// A valid `_mta-sts.DOMAIN` record: its policy id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// `id=`: 1 to 32 letters and digits; a change means a new policy (§3.1).
    pub id: String,
}

/// A valid `_smtp._tls.DOMAIN` record: where reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    /// The `mailto:` addresses (without the scheme; URL escapes undone for `%2C`/`%3B`).
    pub mailto: Vec<String>,
    /// `https:` URIs, listed for the record but not used (reports are sent by mail only).
    pub https: Vec<String>,
}

/// Why a set of TXT strings holds no usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT string starts with the version.
    #[error("no record")]
    None,
    /// More than one record starts with the version (§3.1: then none is used).
    #[error("more than one record")]
    Several,
    /// The one record is malformed.
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// `key=value` fields separated by `;` with optional spaces (RFC 8461 §3.1 ABNF, RFC 8460 §3).
fn fields(text: &str) -> impl Iterator<Item = Option<(&str, &str)>> {
    text.split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.split_once('=').map(|(k, v)| (k.trim(), v.trim())))
}

/// The single record among `txts` (each a TXT record's strings joined) that starts with
/// `version` (`v=STSv1`, `v=TLSRPTv1`); records of other kinds are ignored.
fn single<'a>(txts: &'a [String], version: &str) -> Result<&'a str, RecordError> {
    let mut found = txts.iter().filter(|t| {
        let t = t.trim_start();
        t.strip_prefix(version).is_some_and(|rest| rest.trim_start().is_empty() || rest.trim_start().starts_with(';'))
    });
    let first = found.next().ok_or(RecordError::None)?;
    if found.next().is_some() {
        return Err(RecordError::Several);
    }
    Ok(first)
}

/// Parses the `_mta-sts` TXT records of a domain (RFC 8461 §3.1): exactly one must start
/// with `v=STSv1`, and it must carry an `id` of 1–32 alphanumerics.
pub fn parse_sts(txts: &[String]) -> Result<StsRecord, RecordError> {
    let text = single(txts, "v=STSv1")?;
    let mut id = None;
    for field in fields(text) {
        let (k, v) = field.ok_or_else(|| RecordError::Malformed("a field without '='".into()))?;
        if k == "id" {
            if id.is_some() {
                return Err(RecordError::Malformed("id given twice".into()));
            }
            id = Some(v);
        }
    }
    let id = id.ok_or_else(|| RecordError::Malformed("no id".into()))?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(RecordError::Malformed(format!("bad id {id:?}")));
    }
    Ok(StsRecord { id: id.to_owned() })
}

/// Parses the `_smtp._tls` TXT records of a domain (RFC 8460 §3): exactly one must start
/// with `v=TLSRPTv1` and have `rua=` with comma-separated `mailto:` or `https:` URIs.
pub fn parse_tlsrpt(txts: &[String]) -> Result<TlsRptRecord, RecordError> {
    let text = single(txts, "v=TLSRPTv1")?;
    let rua = fields(text)
        .filter_map(|f| f.filter(|(k, _)| *k == "rua"))
        .map(|(_, v)| v)
        .next()
        .ok_or_else(|| RecordError::Malformed("no rua".into()))?;
    let mut record = TlsRptRecord { mailto: Vec::new(), https: Vec::new() };
    for uri in rua.split(',').map(str::trim) {
        if let Some(addr) = strip_scheme(uri, "mailto:") {
            let addr = addr.replace("%2C", ",").replace("%2c", ",").replace("%3B", ";").replace("%3b", ";");
            if addr.contains('@') && !addr.contains(char::is_whitespace) {
                record.mailto.push(addr);
                continue;
            }
        } else if strip_scheme(uri, "https:").is_some() {
            record.https.push(uri.to_owned());
            continue;
        }
        return Err(RecordError::Malformed(format!("bad rua URI {uri:?}")));
    }
    Ok(record)
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let head = uri.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &uri[scheme.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sts_records() {
        assert_eq!(parse_sts(&v(&["v=STSv1; id=20160831085700Z;"])).unwrap().id, "20160831085700Z");
        assert_eq!(parse_sts(&v(&["v=spf1 -all", "v=STSv1;id=abc"])).unwrap().id, "abc");
        assert_eq!(parse_sts(&v(&["v=spf1 -all"])), Err(RecordError::None));
        assert_eq!(parse_sts(&v(&["v=STSv1; id=a", "v=STSv1; id=b"])), Err(RecordError::Several));
        assert!(matches!(parse_sts(&v(&["v=STSv1"])), Err(RecordError::Malformed(_))));
        assert!(matches!(parse_sts(&v(&["v=STSv1; id=a-b"])), Err(RecordError::Malformed(_))));
        assert!(matches!(
            parse_sts(&v(&["v=STSv1; id=123456789012345678901234567890123"])),
            Err(RecordError::Malformed(_))
        ));
        assert_eq!(parse_sts(&v(&["v=STSv10; id=a"])), Err(RecordError::None), "another version");
        assert_eq!(parse_sts(&v(&["v=STSv1; id=a; ext=1"])).unwrap().id, "a", "extensions ignored");
    }

    #[test]
    fn tlsrpt_records() {
        let r = parse_tlsrpt(&v(&["v=TLSRPTv1; rua=mailto:tls@example.test,https://r.example.test/x"])).unwrap();
        assert_eq!(r.mailto, vec!["tls@example.test"]);
        assert_eq!(r.https, vec!["https://r.example.test/x"]);
        assert!(matches!(parse_tlsrpt(&v(&["v=TLSRPTv1;"])), Err(RecordError::Malformed(_))));
        assert!(matches!(parse_tlsrpt(&v(&["v=TLSRPTv1; rua=ftp://x"])), Err(RecordError::Malformed(_))));
        assert_eq!(parse_tlsrpt(&v(&[])), Err(RecordError::None));
    }
}
