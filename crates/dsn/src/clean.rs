//! Making untrusted text and addresses safe to write into a notice.
//!
//! Diagnostics come from remote servers and ORCPT/ENVID from clients: any of
//! them may carry CR, LF or other control characters meant to end a field and
//! start another (or a whole MIME part). Everything written into a field goes
//! through here first.

use std::fmt::Write as _;

use crate::DsnError;

/// The longest diagnostic text kept, in bytes (the rest becomes `...`). Reply
/// texts worth reading are a few lines; a DSN is not the place for 64 KB of
/// someone else's reply.
pub(crate) const MAX_TEXT: usize = 1000;

/// The longest address accepted. RFC 5321 §4.5.3.1.3 limits a path to 256
/// octets; twice that leaves room for quoting and still fits one header line.
const MAX_ADDRESS: usize = 512;

/// Bidirectional-text controls (Unicode category Cf, not `char::is_control`):
/// they can make a report display something other than what it says.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Turns untrusted text into one line of printable text, at most about `max`
/// bytes: every run of whitespace (CR and LF included) becomes one space,
/// control characters become `?`, and so do non-ASCII characters unless
/// `utf8` (RFC 3464 fields are ASCII; RFC 6533 global ones may be UTF-8).
pub(crate) fn one_line(s: &str, utf8: bool, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut gap = false;
    for c in s.chars() {
        if c.is_whitespace() {
            gap = !out.is_empty();
            continue;
        }
        let c = if c.is_control() || is_bidi_control(c) || (!utf8 && !c.is_ascii()) { '?' } else { c };
        if out.len() + usize::from(gap) + c.len_utf8() > max {
            out.push_str("...");
            return out;
        }
        if gap {
            out.push(' ');
            gap = false;
        }
        out.push(c);
    }
    out
}

/// Checks an address that goes into a header field (`From`, `To`) or a DSN
/// field: not empty, not absurdly long, no control characters, no angle
/// brackets. Addresses come from our own envelope, already parsed, so this is
/// a last line of defence against header injection, not a parser.
pub(crate) fn check_address(what: &'static str, addr: &str) -> Result<(), DsnError> {
    let bad = |c: char| c.is_control() || is_bidi_control(c) || (c.is_whitespace() && c != ' ') || c == '<' || c == '>';
    if addr.is_empty() || addr.len() > MAX_ADDRESS || addr.chars().any(bad) {
        return Err(DsnError::BadAddress { what, address: addr.to_owned() });
    }
    Ok(())
}

/// Checks our own host name: an ASCII domain or address literal, because it
/// is written as `dns; host` and as the right side of the `Message-ID`.
pub(crate) fn check_hostname(host: &str) -> Result<(), DsnError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '[' | ']' | ':');
    if host.is_empty() || host.len() > 255 || !host.chars().all(ok) {
        return Err(DsnError::BadHostname(host.to_owned()));
    }
    Ok(())
}

/// Keeps the characters of `s` that may appear in a `Message-ID` left side
/// and a DSN extension field without quoting.
pub(crate) fn id_chars(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).take(64).collect()
}

/// Encodes an address for the `utf-8` address type (RFC 6533 §3): printable
/// ASCII except `\`, `+` and `=` as is; those three, space, and (unless
/// `eight_bit`) every non-ASCII character as `\x{HEX}`. With `eight_bit` this
/// is `utf-8-addr-unitext` (for message/global-delivery-status), without it
/// `utf-8-addr-xtext` (7-bit). Control characters must be gone already: the
/// RFC's grammar has no escape for most of them.
pub(crate) fn utf8_addr(addr: &str, eight_bit: bool) -> String {
    let mut out = String::with_capacity(addr.len());
    for c in addr.chars() {
        match c {
            '\\' | '+' | '=' => {}
            '!'..='~' => {
                out.push(c);
                continue;
            }
            c if eight_bit && !c.is_ascii() => {
                out.push(c);
                continue;
            }
            _ => {}
        }
        // Uppercase hex without leading zeros: the forms RFC 6533's HEXPOINT allows.
        let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
    }
    out
}

/// Decodes the `\x{HEX}` escapes (EmbeddedUnicodeChar, RFC 6533 §3) of a
/// `utf-8` ORCPT address. `None` if an escape is malformed or names no
/// character, or a backslash starts anything else.
pub(crate) fn decode_utf8_addr(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let esc = rest[pos..].strip_prefix("\\x{")?;
        let end = esc.find('}')?;
        let hex = &esc[..end];
        if hex.is_empty() || hex.len() > 6 {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = &esc[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The largest index `<= at` that is a character boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Appends the field `name: value` with CRLF, folded (RFC 5322 §2.2.3) before
/// spaces so that lines stay within 78 characters where the value allows, and
/// always within 998. A single word longer than that is broken, which adds a
/// space to it when unfolded; only a pathological value has such a word.
pub(crate) fn push_field(out: &mut String, name: &str, value: &str) {
    const SOFT: usize = 78;
    const HARD: usize = 998;
    out.push_str(name);
    out.push(':');
    let start = name.len() + 1;
    let mut line = start;
    for word in value.split(' ') {
        if line > start && line + 1 + word.len() > SOFT {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        line += 1;
        let mut rest = word;
        while line + rest.len() > HARD {
            let cut = floor_boundary(rest, HARD - line);
            out.push_str(&rest[..cut]);
            out.push_str("\r\n ");
            line = 1;
            rest = &rest[cut..];
        }
        out.push_str(rest);
        line += rest.len();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_breaks_and_controls() {
        assert_eq!(one_line("550 5.1.1 no\r\nSubject: x\r\n\r\nbody", false, 100), "550 5.1.1 no Subject: x body");
        assert_eq!(one_line("  a\t\x00b\x1b[31m\x7f  ", false, 100), "a ?b?[31m?");
        assert_eq!(one_line("a\u{2028}b\u{85}c", true, 100), "a b c");
        assert_eq!(one_line("naïve \u{202E}x", false, 100), "na?ve ?x");
        assert_eq!(one_line("naïve \u{202E}x", true, 100), "naïve ?x");
        assert_eq!(one_line("", false, 100), "");
    }

    #[test]
    fn one_line_truncates_at_a_character_boundary() {
        assert_eq!(one_line("abcdef", false, 4), "abcd...");
        assert_eq!(one_line("ab éé", true, 5), "ab é...");
        assert_eq!(one_line(&"x".repeat(5000), false, MAX_TEXT).len(), MAX_TEXT + 3);
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("sender", "a@example.org").is_ok());
        assert!(check_address("sender", "\"john doe\"@example.org").is_ok());
        assert!(check_address("sender", "jürgen@bücher.example").is_ok());
        for bad in ["", "a@b\r\nBcc: x@y", "a@b\n", "a\t@b", "<a@b>", "a@b>, <c@d", "a\u{202E}@b"] {
            assert!(check_address("sender", bad).is_err(), "{bad:?}");
        }
        assert!(check_address("sender", &format!("{}@b", "a".repeat(600))).is_err());
    }

    #[test]
    fn hostnames_are_checked() {
        for ok in ["mx.example.org", "localhost", "[192.0.2.1]", "[IPv6:2001:db8::1]"] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "mx example", "mx.example.org\r\n", "bücher.example", "a;b"] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utf8_addresses_are_escaped() {
        assert_eq!(utf8_addr("jürgen@bücher.example", true), "jürgen@bücher.example");
        assert_eq!(utf8_addr("jürgen@bücher.example", false), "j\\x{FC}rgen@b\\x{FC}cher.example");
        assert_eq!(utf8_addr("a+b=c\\d e@x", true), "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@x");
        assert_eq!(utf8_addr("用户@例子.example", false), "\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.example");
    }

    #[test]
    fn utf8_addresses_round_trip() {
        for s in ["jürgen@bücher.example", "a+b=c\\d e@x", "用户@例子.example", "😀@x"] {
            assert_eq!(decode_utf8_addr(&utf8_addr(s, false)).as_deref(), Some(s));
            assert_eq!(decode_utf8_addr(&utf8_addr(s, true)).as_deref(), Some(s));
        }
        for bad in ["a\\b", "a\\x{}", "a\\x{D800}", "a\\x{1234567}", "a\\x{41"] {
            assert_eq!(decode_utf8_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_fold_at_spaces() {
        let mut out = String::new();
        push_field(&mut out, "Status", "5.1.1");
        assert_eq!(out, "Status: 5.1.1\r\n");

        let value = (0..40).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let mut out = String::new();
        push_field(&mut out, "Diagnostic-Code", &value);
        let lines: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= 78), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        assert_eq!(out.replace("\r\n", ""), format!("Diagnostic-Code: {value}\r\n").replace("\r\n", ""));
    }

    #[test]
    fn overlong_words_are_broken() {
        let word = "é".repeat(1500);
        let mut out = String::new();
        push_field(&mut out, "X", &word);
        assert!(out.split("\r\n").all(|l| l.len() <= 998));
        assert_eq!(out.replace("\r\n ", "").replace("\r\n", ""), format!("X: {word}"));
    }
}
