//! Outside text made safe for a log line.
//!
//! Whatever a client (or a remote server, or a DNS record) sends may end up in a log line: a
//! HELO name, an address, an AUTH user name, a header's domain, a remote reply. Written as is,
//! a line feed in it forges a second log line, and an ESC byte drives the terminal of whoever
//! reads the log. Two layers stop that (docs/hardening.md, "Logs"): the log writer escapes
//! every control character in a finished line ([`escape_line`]), whatever field it came
//! from; and fields holding outside text are written through [`Esc`], which also quotes a
//! value containing spaces, quotes or backslashes so it cannot pose as further `key=value`
//! pairs.

use std::fmt::{self, Write};

/// The visible escape for a character that must not reach a log line raw, or `None` if it
/// may be written as is.
///
/// Escaped: the C0 controls and DEL (`\n`, `\r`, `\t`, else `\x1b` style), the C1 controls
/// U+0080–U+009F (some terminals read U+009B as CSI), the line and paragraph separators
/// U+2028/U+2029, and the bidirectional formatting characters (U+061C, U+200E, U+200F,
/// U+202A–U+202E, U+2066–U+2069), which make text display in another order than it is read
/// by tools.
pub fn escape_char(c: char) -> Option<Escaped> {
    match c {
        '\n' => Some(Escaped::Short('n')),
        '\r' => Some(Escaped::Short('r')),
        '\t' => Some(Escaped::Short('t')),
        '\0'..='\x1f' | '\x7f' => Some(Escaped::Hex(c as u8)),
        '\u{80}'..='\u{9f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{61c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => Some(Escaped::Unicode(c)),
        _ => None,
    }
}

/// How [`escape_char`] writes a character: `\n`, `\x1b`, `\u{9b}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaped {
    /// A backslash and this letter (`\n`, `\r`, `\t`).
    Short(char),
    /// `\x` and two lowercase hex digits (ASCII controls and DEL).
    Hex(u8),
    /// `\u{…}` with lowercase hex digits.
    Unicode(char),
}

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escaped::Short(c) => write!(f, "\\{c}"),
            Escaped::Hex(b) => write!(f, "\\x{b:02x}"),
            Escaped::Unicode(c) => write!(f, "\\u{{{:x}}}", *c as u32),
        }
    }
}

/// Appends `line` to `out` with every character [`escape_char`] names escaped, except one
/// line feed at the very end (the line's own terminator). Bytes that are not UTF-8 are
/// written as `\xNN`. Backslashes are left alone: the formatter's own output (quoted field
/// values) uses them, and without raw control characters no line can be forged.
pub fn escape_line(line: &[u8], out: &mut Vec<u8>) {
    if is_plain_line(line) {
        out.extend_from_slice(line);
        return;
    }
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    out.reserve(line.len());
    for chunk in body.utf8_chunks() {
        let valid = chunk.valid();
        let mut plain = 0;
        for (i, c) in valid.char_indices() {
            if let Some(e) = escape_char(c) {
                out.extend_from_slice(&valid.as_bytes()[plain..i]);
                out.extend_from_slice(e.to_string().as_bytes());
                plain = i + c.len_utf8();
            }
        }
        out.extend_from_slice(&valid.as_bytes()[plain..]);
        for b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
    out.extend_from_slice(end);
}

/// Whether [`escape_line`] would copy `line` unchanged: every byte but a final line feed is
/// printable ASCII (U+0020–U+007E, which [`escape_char`] never names). The usual log line
/// is, and a writer can then write it as it is, without copying it.
pub fn is_plain_line(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    body.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Outside text as a log field value: written as is when it is a plain token (no spaces,
/// quotes, backslashes or characters [`escape_char`] names, and not empty); otherwise in
/// double quotes with `"` and `\` escaped by a backslash and the rest as [`escape_char`]
/// says. So `alice@example.test` stays `alice@example.test`, and `a b=c` becomes `"a b=c"`.
#[derive(Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl Esc<'_> {
    fn is_plain(&self) -> bool {
        !self.0.is_empty()
            && self.0.chars().all(|c| !c.is_whitespace() && c != '"' && c != '\\' && escape_char(c).is_none())
    }
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plain() {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                // Other whitespace (such as U+00A0 or U+3000) passes: it is printable, and
                // inside quotes it cannot start a new field.
                c => match escape_char(c) {
                    Some(e) => write!(f, "{e}")?,
                    None => f.write_char(c)?,
                },
            }
        }
        f.write_char('"')
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &[u8]) -> String {
        let mut out = Vec::new();
        escape_line(input, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_values_stay_as_they_are() {
        assert_eq!(Esc("alice@example.test").to_string(), "alice@example.test");
        assert_eq!(Esc("<a=b@x.test>").to_string(), "<a=b@x.test>");
        assert_eq!(Esc("grüße.example").to_string(), "grüße.example");
    }

    #[test]
    fn values_that_could_pose_as_fields_are_quoted() {
        assert_eq!(Esc("a b=c").to_string(), r#""a b=c""#);
        assert_eq!(Esc("").to_string(), r#""""#);
        assert_eq!(Esc(r#"say "hi""#).to_string(), r#""say \"hi\"""#);
        assert_eq!(Esc(r"back\slash").to_string(), r#""back\\slash""#);
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        let forged = "evil\n2026-01-01T00:00:00Z  INFO accepted queue_id=FAKE\x1b[31m\r\x7f\0";
        assert_eq!(
            Esc(forged).to_string(),
            r#""evil\n2026-01-01T00:00:00Z  INFO accepted queue_id=FAKE\x1b[31m\r\x7f\x00""#
        );
        assert_eq!(Esc("tab\there").to_string(), r#""tab\there""#);
    }

    #[test]
    fn unicode_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(Esc("a\u{9b}31m").to_string(), r#""a\u{9b}31m""#);
        assert_eq!(Esc("user\u{202e}gnp.exe").to_string(), r#""user\u{202e}gnp.exe""#);
        assert_eq!(Esc("a\u{2028}b").to_string(), r#""a\u{2028}b""#);
        // The edges of the ranges.
        assert_eq!(escape_char('\u{7f}'), Some(Escaped::Hex(0x7f)));
        assert_eq!(escape_char('\u{80}'), Some(Escaped::Unicode('\u{80}')));
        assert_eq!(escape_char('\u{9f}'), Some(Escaped::Unicode('\u{9f}')));
        assert_eq!(escape_char('\u{a0}'), None);
        assert_eq!(escape_char(' '), None);
        assert_eq!(escape_char('~'), None);
        assert_eq!(escape_char('\u{2069}'), Some(Escaped::Unicode('\u{2069}')));
        assert_eq!(escape_char('\u{206a}'), None);
    }

    #[test]
    fn a_line_keeps_its_final_line_feed_only() {
        assert_eq!(line(b"one\ntwo\n"), "one\\ntwo\n");
        assert_eq!(line(b"no end"), "no end");
        assert_eq!(line(b"two ends\n\n"), "two ends\\n\n");
        assert_eq!(line(b"\n"), "\n");
        assert_eq!(line(b""), "");
    }

    #[test]
    fn a_line_escapes_esc_cr_del_and_bad_utf8() {
        assert_eq!(line(b"a\x1b[31mred\r\x7f\n"), "a\\x1b[31mred\\r\\x7f\n");
        assert_eq!(line(b"bad \xff\xfe utf8\n"), "bad \\xff\\xfe utf8\n");
        assert_eq!(line("C1 \u{9b}2J and \u{202e}\n".as_bytes()), "C1 \\u{9b}2J and \\u{202e}\n");
        // The formatter's own quoting is left as it is.
        assert_eq!(line(br#"user="a \"b\"""#), r#"user="a \"b\"""#);
    }

    #[test]
    fn a_plain_line_is_one_that_escaping_leaves_unchanged() {
        assert!(is_plain_line(b"2026-12-07T00:00:00Z  INFO delivered queue_id=X rcpt=a@b.test\n"));
        assert!(is_plain_line(b""));
        for b in 0..=255u8 {
            let input = [b'a', b, b'z', b'\n'];
            let mut out = Vec::new();
            escape_line(&input, &mut out);
            if is_plain_line(&input) {
                assert_eq!(out, input, "byte {b:#x}");
            }
            // What the fast path skips must never need escaping: every byte outside
            // printable ASCII goes the slow way.
            assert_eq!(is_plain_line(&input), (0x20..0x7f).contains(&b), "byte {b:#x}");
        }
        assert!(!is_plain_line("grüße\n".as_bytes()), "non-ASCII takes the slow path");
        assert!(!is_plain_line(b"two ends\n\n"));
    }
}
