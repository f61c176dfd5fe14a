//! Spotting `Authentication-Results` fields that claim to be ours (RFC 8601 §5): a receiver
//! must not let such fields from outside through, or a sender could forge our verdict.
//!
//! Grammar (RFC 8601 §2.2): `"Authentication-Results:" [CFWS] authserv-id [CFWS
//! authres-version] ( no-result / 1*resinfo ) [CFWS] CRLF`, where `authserv-id` is a MIME
//! `value` (RFC 2045 §5.1: a token or a quoted-string). Only the authserv-id is read here.

/// The field name, compared without regard to case (RFC 5322 §1.2.2).
const NAME: &[u8] = b"Authentication-Results";

/// Whether a header field is an `Authentication-Results` field that claims to come from
/// `authserv_id` (RFC 8601 §5: such fields arriving from outside must be removed). `field`
/// is the whole field, name to the end of its last line, possibly folded.
pub fn claims_our_results(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else { return false };
    // RFC 5322 §4.5 (obsolete syntax) allows white space between the name and the colon.
    let name = field[..colon].trim_ascii_end();
    if !name.eq_ignore_ascii_case(NAME) || authserv_id.is_empty() {
        return false;
    }
    let value = &field[colon + 1..];
    let mut pos = 0;
    if !skip_cfws(value, &mut pos) {
        return false;
    }
    let ours = without_root_dot(authserv_id.as_bytes());
    read_value(value, &mut pos).is_some_and(|id| !ours.is_empty() && without_root_dot(&id).eq_ignore_ascii_case(ours))
}

/// A domain name without the one trailing dot of its absolute form: `mx.example.test.` names
/// the same host as `mx.example.test` (RFC 1034 §3.1), so a forged field using it claims to
/// be ours just as much, and a reader comparing names after the same step would trust it.
fn without_root_dot(name: &[u8]) -> &[u8] {
    name.strip_suffix(b".").unwrap_or(name)
}

/// Skips white space, line breaks of folding and (nested) comments (RFC 5322 §3.2.2).
/// `false` when a comment is never closed: then there is no authserv-id.
fn skip_cfws(value: &[u8], pos: &mut usize) -> bool {
    let mut depth = 0usize;
    while let Some(&b) = value.get(*pos) {
        match b {
            b'\\' if depth > 0 => *pos += 1, // quoted-pair inside a comment
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return true,
        }
        *pos += 1;
    }
    depth == 0
}

/// A MIME `value`: a quoted-string (its content, quoted-pairs resolved) or a token, which
/// ends at white space, a comment, or any tspecial (RFC 2045 §5.1) such as `;`. Octets
/// beyond ASCII count as token characters (RFC 8616 allows UTF-8 host names).
fn read_value(value: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    if value.get(*pos) == Some(&b'"') {
        let mut content = Vec::new();
        *pos += 1;
        while let Some(&b) = value.get(*pos) {
            *pos += 1;
            match b {
                b'"' => return Some(content),
                b'\\' => {
                    content.push(*value.get(*pos)?);
                    *pos += 1;
                }
                b'\r' | b'\n' => {} // folding inside the quotes
                _ => content.push(b),
            }
        }
        return None;
    }
    let start = *pos;
    while value.get(*pos).is_some_and(|&b| is_token_octet(b)) {
        *pos += 1;
    }
    (*pos > start).then(|| value[start..*pos].to_vec())
}

fn is_token_octet(b: u8) -> bool {
    const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";
    b > b' ' && b != 0x7f && !TSPECIALS.contains(&b)
}

#[cfg(test)]
mod tests {
    use super::claims_our_results;

    const ID: &str = "mx.example.test";

    fn ours(field: &str) -> bool {
        claims_our_results(field.as_bytes(), ID)
    }

    #[test]
    fn plain_fields() {
        assert!(ours("Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=a.test\r\n"));
        assert!(ours("Authentication-Results: mx.example.test; none\r\n"));
        assert!(!ours("Authentication-Results: other.example.test; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: mx.example.test.evil; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: example.test; spf=pass\r\n"));
    }

    #[test]
    fn absolute_names_with_a_trailing_dot_are_ours_too() {
        assert!(ours("Authentication-Results: mx.example.test.; spf=pass\r\n"));
        assert!(ours("Authentication-Results: MX.EXAMPLE.TEST. 1; dkim=pass\r\n"));
        assert!(ours("Authentication-Results: \"mx.example.test.\"; dkim=pass\r\n"));
        assert!(claims_our_results(b"Authentication-Results: mx.example.test; none\r\n", "mx.example.test."));
        assert!(!ours("Authentication-Results: mx.example.test..; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: mx.example.tes.; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: .; spf=pass\r\n"));
        assert!(!claims_our_results(b"Authentication-Results: .; none\r\n", "."));
    }

    #[test]
    fn name_and_id_ignore_case() {
        assert!(ours("authentication-results: MX.Example.TEST; dkim=pass\r\n"));
        assert!(ours("AUTHENTICATION-RESULTS:mx.example.test;dkim=pass\r\n"));
        assert!(ours("Authentication-Results : mx.example.test; dkim=pass\r\n"));
    }

    #[test]
    fn other_fields_never_claim() {
        assert!(!ours("ARC-Authentication-Results: i=1; mx.example.test; spf=pass\r\n"));
        assert!(!ours("X-Authentication-Results: mx.example.test; spf=pass\r\n"));
        assert!(!ours("Subject: Authentication-Results: mx.example.test;\r\n"));
        assert!(!ours("Authentication-Results-Extra: mx.example.test;\r\n"));
        assert!(!ours("no colon at all\r\n"));
    }

    #[test]
    fn folding_and_comments_before_the_id() {
        assert!(ours("Authentication-Results:\r\n mx.example.test;\r\n\tspf=pass\r\n"));
        assert!(ours("Authentication-Results:\r\n\t\r\n mx.example.test; none\r\n"));
        assert!(ours("Authentication-Results: (forged) mx.example.test; spf=pass\r\n"));
        assert!(ours("Authentication-Results: (a (nested) comment)\r\n mx.example.test; none\r\n"));
        assert!(ours("Authentication-Results: (escaped \\) paren) mx.example.test; none\r\n"));
        assert!(ours("Authentication-Results: mx.example.test(comment); none\r\n"));
        assert!(!ours("Authentication-Results: (never closed mx.example.test; none\r\n"));
        assert!(!ours("Authentication-Results: (mx.example.test) other.test; none\r\n"));
    }

    #[test]
    fn version_and_quoted_ids() {
        assert!(ours("Authentication-Results: mx.example.test 1; spf=pass\r\n"));
        assert!(ours("Authentication-Results: mx.example.test 1 ; spf=pass\r\n"));
        assert!(ours("Authentication-Results: mx.example.test (v) 1; none\r\n"));
        assert!(ours("Authentication-Results: \"mx.example.test\"; spf=pass\r\n"));
        assert!(ours("Authentication-Results: \"mx.example\\.test\"; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: \"mx.example.test; spf=pass\r\n"));
        assert!(!ours("Authentication-Results: 1 mx.example.test; spf=pass\r\n"));
    }

    #[test]
    fn empty_values_and_ids() {
        assert!(!ours("Authentication-Results:\r\n"));
        assert!(!ours("Authentication-Results: ; spf=pass\r\n"));
        assert!(!claims_our_results(b"Authentication-Results: ; none\r\n", ""));
        assert!(!claims_our_results(b"Authentication-Results: \xff\xfe; none\r\n", ID));
    }
}
