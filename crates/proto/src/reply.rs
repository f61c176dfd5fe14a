//! SMTP replies (RFC 5321 §4.2) carrying enhanced status codes (RFC 2034, RFC 3463).

use std::fmt;
use std::str::FromStr;

/// An enhanced status code `class.subject.detail` (RFC 3463 §2).
///
/// The one type for these codes everywhere: replies, the spool's failure details (written as
/// its [`Display`](fmt::Display) form `"5.1.1"`) and delivery status notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl Enhanced {
    /// The class: 2 success, 4 persistent transient failure, 5 permanent failure
    /// (RFC 3463 §3.1).
    pub fn class(self) -> u8 {
        self.0
    }

    /// Class 5, "permanent failure" (RFC 3463 §3.1).
    pub fn is_permanent(self) -> bool {
        self.0 == 5
    }
}

/// `class.subject.detail` as in a reply or a DSN `Status:` field, e.g. `5.1.1`.
impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Text that is not an enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code (class.subject.detail)")]
pub struct BadEnhanced;

/// Parses `class.subject.detail`: the syntax of RFC 3463 §2, a one-digit class and a subject
/// and detail of one to three digits each. The class is not restricted to 2, 4 and 5 here
/// (that is a rule about its meaning; a reply parser checks the class against the reply
/// code, a DSN builder against the classes RFC 3463 defines).
impl FromStr for Enhanced {
    type Err = BadEnhanced;

    fn from_str(s: &str) -> Result<Enhanced, BadEnhanced> {
        let number = |s: Option<&str>, max_len: usize| -> Result<u16, BadEnhanced> {
            let s = s.ok_or(BadEnhanced)?;
            let digits = !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit());
            if digits { s.parse().map_err(|_| BadEnhanced) } else { Err(BadEnhanced) }
        };
        let mut parts = s.split('.');
        let class = number(parts.next(), 1)?;
        let (subject, detail) = (number(parts.next(), 3)?, number(parts.next(), 3)?);
        if parts.next().is_some() {
            return Err(BadEnhanced);
        }
        Ok(Enhanced(class as u8, subject, detail))
    }
}

/// One SMTP reply: a three-digit code, an enhanced code and one or more text lines.
///
/// Every reply dakiya sends carries an enhanced code (we advertise ENHANCEDSTATUSCODES,
/// RFC 2034 §3), except the greeting and the EHLO response, which RFC 2034 excludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The basic reply code, 200..=599.
    pub code: u16,
    /// The enhanced status code, absent only for 220 greetings and the 250 EHLO response.
    pub enhanced: Option<Enhanced>,
    /// Text lines; never empty. Must not contain CR or LF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(enhanced), lines: vec![text.into()] }
    }

    /// A reply without an enhanced code (greeting, EHLO).
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, lines }
    }

    /// The same reply without its enhanced code (RFC 4954 §4: 334 challenges carry none).
    pub fn without_enhanced(mut self) -> Reply {
        self.enhanced = None;
        self
    }

    /// True for 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// True for 5xx replies.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (`code[-| ]enhanced text CRLF` per line, RFC 5321 §4.2.1) to
    /// `out`. Bytes are pushed straight into `out`, without `format!` or the formatting
    /// machinery: every command of every session gets a reply, so this is on each message's
    /// path.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let text = sanitize(line);
            out.reserve(3 + 1 + 12 + text.len() + 2);
            push_decimal(out, self.code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(Enhanced(class, subject, detail)) = self.enhanced {
                push_decimal(out, class.into());
                out.push(b'.');
                push_decimal(out, subject);
                out.push(b'.');
                push_decimal(out, detail);
                out.push(b' ');
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            push_decimal(out, self.code);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a string (for logs and tests).
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// Appends `n` in decimal, as `Display` would write it.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Reply text must never carry CR or LF: they would let text that came from elsewhere (a remote
/// server's message, a configured string) forge extra reply lines.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        std::borrow::Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_wire().trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_code_text_round_trips() {
        for (text, code) in
            [("5.1.1", Enhanced(5, 1, 1)), ("4.4.7", Enhanced(4, 4, 7)), ("2.123.999", Enhanced(2, 123, 999))]
        {
            assert_eq!(text.parse(), Ok(code), "{text}");
            assert_eq!(code.to_string(), text);
        }
        assert_eq!("5.1.10".parse::<Enhanced>().map(Enhanced::class), Ok(5));
        assert!(Enhanced(5, 7, 1).is_permanent() && !Enhanced(4, 7, 1).is_permanent());
    }

    #[test]
    fn malformed_enhanced_codes_are_refused() {
        for bad in
            ["", "5", "5.1", "5.1.1.1", "x.1.1", "55.1.1", "5.1000.1", "5.1.1000", "5..1", "+5.1.1", "5.1.1 ", " 5.1.1"]
        {
            assert_eq!(bad.parse::<Enhanced>(), Err(BadEnhanced), "{bad:?}");
        }
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, Enhanced(2, 1, 0), "Sender ok");
        assert_eq!(r.to_wire(), "250 2.1.0 Sender ok\r\n");
    }

    #[test]
    fn multi_line_every_line_has_the_code() {
        let r = Reply { code: 214, enhanced: Some(Enhanced(2, 0, 0)), lines: vec!["a".into(), "b".into()] };
        assert_eq!(r.to_wire(), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
    }

    #[test]
    fn wire_form_numbers_match_display() {
        let codes = [0, 7, 99, 220, 250, 554, 65535];
        let enhanced = [Enhanced(0, 0, 0), Enhanced(2, 1, 5), Enhanced(5, 7, 26), Enhanced(9, 999, 65535)];
        for code in codes {
            assert_eq!(Reply::plain(code, Vec::new()).to_wire(), format!("{code}\r\n"));
            assert_eq!(Reply::plain(code, vec!["x".into()]).to_wire(), format!("{code} x\r\n"));
            for e in enhanced {
                let r = Reply { code, enhanced: Some(e), lines: vec!["a b".into(), String::new()] };
                assert_eq!(r.to_wire(), format!("{code}-{e} a b\r\n{code} {e} \r\n"));
            }
        }
    }

    #[test]
    fn plain_reply_and_text_injection_is_neutralised() {
        let r = Reply::plain(250, vec!["host".into(), "PIPE\r\n250 X".into()]);
        assert_eq!(r.to_wire(), "250-host\r\n250 PIPE  250 X\r\n");
        assert!(!Reply::new(250, Enhanced(2, 0, 0), "x").is_error());
        assert!(Reply::new(452, Enhanced(4, 5, 3), "x").is_error());
        assert!(!Reply::new(452, Enhanced(4, 5, 3), "x").is_permanent());
    }
}
