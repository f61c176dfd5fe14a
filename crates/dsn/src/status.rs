//! The second part of the report: the machine-readable delivery status
//! (RFC 3464 §2; RFC 6533 for message/global-delivery-status).

use crate::clean::{MAX_TEXT, decode_utf8_addr, id_chars, one_line, push_field, utf8_addr};
use crate::{Action, DsnInput, RcptReport, Time};

/// An ORCPT value split into its address type (lowercase) and the address,
/// with `utf-8` escapes decoded and control characters replaced by `?`.
pub(crate) fn original_recipient(raw: &str) -> (String, String) {
    let (kind, addr) = match raw.split_once(';') {
        Some((kind, addr)) if is_atom(kind.trim()) => (kind.trim().to_ascii_lowercase(), addr.trim()),
        _ => ("rfc822".to_owned(), raw.trim()),
    };
    let decoded = if kind == "utf-8" { decode_utf8_addr(addr) } else { None };
    let addr = decoded.as_deref().unwrap_or(addr);
    (kind, addr.chars().map(|c| if c.is_control() { '?' } else { c }).collect())
}

/// Whether the report must be message/global-delivery-status: some address
/// in it (or the sender the notice goes to) is not ASCII (RFC 6533).
pub(crate) fn needs_global(input: &DsnInput<'_>) -> bool {
    let orcpt_utf8 = |r: &RcptReport| {
        r.original_recipient.as_deref().is_some_and(|o| {
            let (kind, addr) = original_recipient(o);
            matches!(kind.as_str(), "rfc822" | "utf-8") && !addr.is_ascii()
        })
    };
    !input.original_sender.is_ascii() || input.recipients.iter().any(|r| !r.final_recipient.is_ascii() || orcpt_utf8(r))
}

/// `addr-type; address` for an address field. An ASCII mailbox is `rfc822`;
/// one with non-ASCII characters (or one given as `utf-8`) is `utf-8`, in the
/// 8-bit unitext form when `global`, else in the 7-bit xtext form (RFC 6533 §3).
/// Other address types are passed through, sanitized.
pub(crate) fn address_value(kind: &str, addr: &str, global: bool) -> String {
    let printable = addr.bytes().all(|b| (0x20..0x7f).contains(&b));
    match kind {
        "rfc822" if printable => format!("rfc822; {addr}"),
        "rfc822" | "utf-8" => format!("utf-8; {}", utf8_addr(addr, global)),
        other => format!("{other}; {}", one_line(addr, global, MAX_TEXT)),
    }
}

/// Splits a diagnostic into its type (RFC 3464 §2.3.6: `smtp`, `x-...`) and
/// its text, sanitized. Without a recognizable type, `smtp` is assumed.
pub(crate) fn diagnostic(raw: &str, utf8: bool) -> (String, String) {
    match raw.split_once(';') {
        Some((kind, text)) if is_atom(kind.trim()) => {
            (kind.trim().to_ascii_lowercase(), one_line(text, utf8, MAX_TEXT))
        }
        _ => ("smtp".to_owned(), one_line(raw, utf8, MAX_TEXT)),
    }
}

/// The remote MTA's host name, without a `dns;` prefix if the caller gave one.
pub(crate) fn remote_mta(raw: &str) -> String {
    let host = raw.trim();
    let host = match host.split_once(';') {
        Some((kind, rest)) if kind.trim().eq_ignore_ascii_case("dns") => rest,
        _ => host,
    };
    one_line(host, false, 255)
}

/// An RFC 3464 atom-ish token: address and diagnostic types.
fn is_atom(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn date(t: &Time) -> String {
    t.to_rfc2822()
}

/// The body of the message/(global-)delivery-status part: the per-message
/// fields, then one group per recipient, each after a blank line. Lines end
/// in CRLF and are folded; every value has been sanitized.
pub(crate) fn render(input: &DsnInput<'_>, global: bool) -> String {
    let mut out = String::new();
    // RFC 3464 §2.2, in the order of its grammar.
    if let Some(envid) = input.envid.map(|e| one_line(e, false, 100)).filter(|e| !e.is_empty()) {
        push_field(&mut out, "Original-Envelope-Id", &envid);
    }
    push_field(&mut out, "Reporting-MTA", &format!("dns; {}", input.reporting_mta));
    push_field(&mut out, "Arrival-Date", &date(&input.arrival_date));
    let queue_id = id_chars(input.queue_id);
    if !queue_id.is_empty() {
        // An extension field (§2.4) so that a postmaster can find our logs.
        push_field(&mut out, "X-Dakiya-Queue-ID", &queue_id);
    }
    for rcpt in input.recipients {
        out.push_str("\r\n");
        render_recipient(&mut out, rcpt, global);
    }
    out
}

/// One per-recipient group (RFC 3464 §2.3).
fn render_recipient(out: &mut String, rcpt: &RcptReport, global: bool) {
    if let Some(orcpt) = &rcpt.original_recipient {
        let (kind, addr) = original_recipient(orcpt);
        push_field(out, "Original-Recipient", &address_value(&kind, &addr, global));
    }
    push_field(out, "Final-Recipient", &address_value("rfc822", &rcpt.final_recipient, global));
    push_field(out, "Action", rcpt.action.keyword());
    push_field(out, "Status", &rcpt.status.to_string());
    if let Some(mta) = rcpt.remote_mta.as_deref().map(remote_mta).filter(|m| !m.is_empty()) {
        push_field(out, "Remote-MTA", &format!("dns; {mta}"));
    }
    if let Some((kind, text)) = rcpt.diagnostic.as_deref().map(|d| diagnostic(d, global))
        && !text.is_empty()
    {
        push_field(out, "Diagnostic-Code", &format!("{kind}; {text}"));
    }
    if let Some(t) = &rcpt.last_attempt {
        push_field(out, "Last-Attempt-Date", &date(t));
    }
    // §2.3.9: only meaningful while we are still trying.
    if let (Action::Delayed, Some(t)) = (rcpt.action, &rcpt.will_retry_until) {
        push_field(out, "Will-Retry-Until", &date(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orcpt_is_split_and_decoded() {
        let o = |s| original_recipient(s);
        assert_eq!(o("rfc822;a@example.org"), ("rfc822".into(), "a@example.org".into()));
        assert_eq!(o("RFC822; a@example.org "), ("rfc822".into(), "a@example.org".into()));
        assert_eq!(o("utf-8;j\\x{FC}rgen@x"), ("utf-8".into(), "jürgen@x".into()));
        assert_eq!(o("utf-8;bad\\escape@x"), ("utf-8".into(), "bad\\escape@x".into()));
        assert_eq!(o("no-type@example.org"), ("rfc822".into(), "no-type@example.org".into()));
        assert_eq!(o("rfc822;a\r\nb@x"), ("rfc822".into(), "a??b@x".into()));
        assert_eq!(o("x400;/C=US/"), ("x400".into(), "/C=US/".into()));
    }

    #[test]
    fn address_types() {
        assert_eq!(address_value("rfc822", "a+b@x", false), "rfc822; a+b@x");
        assert_eq!(address_value("rfc822", "jürgen@x", true), "utf-8; jürgen@x");
        assert_eq!(address_value("rfc822", "jürgen@x", false), "utf-8; j\\x{FC}rgen@x");
        assert_eq!(address_value("utf-8", "a+b@x", true), "utf-8; a\\x{2B}b@x");
        assert_eq!(address_value("rfc822", "a??b@x", false), "rfc822; a??b@x");
        assert_eq!(address_value("x400", "/C=US/\u{7}", false), "x400; /C=US/?");
    }

    #[test]
    fn diagnostics_are_typed_and_cleaned() {
        assert_eq!(diagnostic("smtp; 550 5.1.1 gone", false), ("smtp".into(), "550 5.1.1 gone".into()));
        assert_eq!(diagnostic("X-Unix; disk full", false), ("x-unix".into(), "disk full".into()));
        assert_eq!(diagnostic("550 5.1.1 gone; really", false), ("smtp".into(), "550 5.1.1 gone; really".into()));
        assert_eq!(
            diagnostic("smtp; 550-5.1.1 a\r\n550 5.1.1 b\r\n", false),
            ("smtp".into(), "550-5.1.1 a 550 5.1.1 b".into())
        );
        assert_eq!(diagnostic("smtp; 550 Ünicode", false).1, "550 ?nicode");
        assert_eq!(diagnostic("smtp; 550 Ünicode", true).1, "550 Ünicode");
    }

    #[test]
    fn remote_mta_prefix_is_optional() {
        assert_eq!(remote_mta("mx.example.org"), "mx.example.org");
        assert_eq!(remote_mta("DNS; mx.example.org"), "mx.example.org");
        assert_eq!(remote_mta("mx.example.org\r\nX: y"), "mx.example.org X: y");
    }
}
