//! Reading server replies (RFC 5321 §4.2) on the client side, with enhanced status codes
//! (RFC 3463, RFC 2034) when the server puts them in.
//!
//! # Line ends: a lone LF is tolerated here
//! RFC 5321 §2.3.8 says replies end with CRLF, and dakiya refuses a lone CR or LF from clients
//! (see [`crate::line`]). Replies are read differently, on purpose:
//! - the strictness on the server side exists because a lone LF in a *command or message*
//!   lets two parties disagree about where a message ends (SMTP smuggling). A reply is never
//!   forwarded: it only drives our own decisions and ends up, sanitised, in logs and DSN
//!   text. The only party that can put a lone LF into a reply stream is the server itself
//!   (or whoever can already forge its replies), and it gains nothing it did not already have;
//! - being strict would turn a harmless quirk of an old server into deferred and eventually
//!   bounced mail. Widely deployed clients read replies the same way.
//!
//! So a line ends at LF, and one CR before it is dropped. A CR anywhere else is not a line
//! end; like every other control character it becomes a space in the reply text, so nothing
//! from the remote side can forge extra lines in our logs or DSNs.
//!
//! Everything else is strict: a line is `DDD[ -]text`, with the code's digits in the ranges
//! of RFC 5321 §4.2 and the same code on every line of a reply (§4.2.1); anything else is a
//! [`ReplyError`], which ends the connection. Sizes are capped (see [`MAX_REPLY_LINE`] and
//! [`MAX_REPLY`]) so a hostile server cannot make us buffer without bound.

use crate::reply::{Enhanced, Reply};

/// The longest reply line accepted, terminator included.
///
/// RFC 5321 §4.5.3.1.5 limits reply lines to 512 octets, but real servers exceed it (long
/// EHLO keyword lists, long explanations); four times the limit is tolerated.
pub const MAX_REPLY_LINE: usize = 2048;

/// The most octets one reply (all its lines together) may have.
pub const MAX_REPLY: usize = 64 * 1024;

/// Why a reply could not be read. Each one ends the connection: after it, nothing tells
/// which reply answers which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    /// A reply longer than [`MAX_REPLY`] in total.
    #[error("reply longer than {MAX_REPLY} octets")]
    TooLong,
    /// A line that is not `DDD`, `DDD text` or `DDD-text` with a valid code.
    #[error("malformed reply line")]
    Syntax,
    /// The lines of one multi-line reply carry different codes (RFC 5321 §4.2.1).
    #[error("reply code changes within a multi-line reply")]
    CodeMismatch,
}

/// Incremental reply reader: consumes complete lines and returns a [`Reply`] once its last
/// line is in.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
    size: usize,
}

impl ReplyParser {
    /// A reader at the start of a reply.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// True if part of a reply (some of its lines) has been read.
    pub fn in_reply(&self) -> bool {
        self.code.is_some()
    }

    /// Reads lines from the front of `input`.
    ///
    /// Returns how many octets were consumed and the reply if its last line was among them.
    /// Input after the end of the reply is not consumed: it belongs to the next reply.
    pub fn parse(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let result = self.parse_lines(input);
        if result.is_err() {
            *self = ReplyParser::default();
        }
        result
    }

    fn parse_lines(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let window = &rest[..rest.len().min(MAX_REPLY_LINE)];
            let Some(lf) = window.iter().position(|&b| b == b'\n') else {
                if rest.len() >= MAX_REPLY_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok((pos, None));
            };
            let line = &rest[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            pos += lf + 1;
            self.size += lf + 1;
            if self.size > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            let (code, last, text) = parse_line(line)?;
            if self.code.is_some_and(|c| c != code) {
                return Err(ReplyError::CodeMismatch);
            }
            self.code = Some(code);
            self.lines.push(text);
            if last {
                return Ok((pos, Some(self.finish(code))));
            }
        }
    }

    /// Builds the reply from the lines read and resets for the next one.
    fn finish(&mut self, code: u16) -> Reply {
        let mut lines = std::mem::take(&mut self.lines);
        *self = ReplyParser::default();
        let enhanced = lines.first().and_then(|l| enhanced_prefix(l, code)).map(|(e, _)| e);
        if enhanced.is_some() {
            // RFC 2034 §4: every line of a multi-line reply carries the code; keep the text.
            for line in &mut lines {
                if let Some((_, rest)) = enhanced_prefix(line, code) {
                    *line = rest.to_string();
                }
            }
        }
        Reply { code, enhanced, lines }
    }
}

/// Parses `Reply-code [ SP textstring ]` (last line) or `Reply-code "-" [ textstring ]`
/// (RFC 5321 §4.2). Returns the code, whether this is the last line, and the cleaned text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let (digits, rest) = line.split_at_checked(3).ok_or(ReplyError::Syntax)?;
    // RFC 5321 §4.2: the first digit is 2..5, the second 0..5.
    let valid = (b'2'..=b'5').contains(&digits[0]) && (b'0'..=b'5').contains(&digits[1]) && digits[2].is_ascii_digit();
    if !valid {
        return Err(ReplyError::Syntax);
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match rest.split_first() {
        None => (true, &[][..]),
        Some((b' ', text)) => (true, text),
        Some((b'-', text)) => (false, text),
        Some(_) => return Err(ReplyError::Syntax),
    };
    Ok((code, last, clean_text(text)))
}

/// Reply text as UTF-8 (RFC 6531 §3.7.4 allows it; invalid octets become U+FFFD) with every
/// control character, a stray CR included, replaced by a space.
fn clean_text(text: &[u8]) -> String {
    String::from_utf8_lossy(text).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// An enhanced status code `class.subject.detail` at the start of `text`, followed by a space
/// or the end (RFC 3463 §2: class is 2, 4 or 5, subject and detail 1 to 3 digits). Its class
/// must agree with the reply code (RFC 2034 §4); otherwise the text is plain text.
fn enhanced_prefix(text: &str, code: u16) -> Option<(Enhanced, &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let enhanced: Enhanced = text[..end].parse().ok()?;
    if u16::from(enhanced.class()) != code / 100 {
        return None;
    }
    Some((enhanced, text[end..].strip_prefix(' ').unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        ReplyParser::new().parse(input)
    }

    fn reply(input: &[u8]) -> Reply {
        one(input).unwrap().1.unwrap()
    }

    #[test]
    fn single_line_with_and_without_enhanced_code() {
        let r = reply(b"250 2.1.5 Recipient ok\r\n");
        assert_eq!((r.code, r.enhanced, r.lines), (250, Some(Enhanced(2, 1, 5)), vec!["Recipient ok".to_string()]));
        let r = reply(b"220 mx.example.test ESMTP\r\n");
        assert_eq!((r.code, r.enhanced), (220, None));
        assert_eq!(r.lines, ["mx.example.test ESMTP"]);
    }

    #[test]
    fn multi_line_reply_is_one_reply() {
        let input = b"250-mx.test greets you\r\n250-PIPELINING\r\n250 SIZE 1000\r\nNEXT";
        let (used, r) = one(input).unwrap();
        assert_eq!(used, input.len() - 4, "the next reply's bytes stay unconsumed");
        assert_eq!(r.unwrap().lines, ["mx.test greets you", "PIPELINING", "SIZE 1000"]);
        let r = reply(b"550-5.1.1 No such user\r\n550 5.1.1 here\r\n");
        assert_eq!(r.enhanced, Some(Enhanced(5, 1, 1)));
        assert_eq!(r.lines, ["No such user", "here"]);
    }

    #[test]
    fn partial_input_is_kept_across_calls() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b"250-a\r\n250 b"), Ok((7, None)));
        assert!(p.in_reply());
        assert_eq!(p.parse(b"250 b\r"), Ok((0, None)));
        let (used, r) = p.parse(b"250 b\r\n").unwrap();
        assert_eq!((used, r.unwrap().lines), (7, vec!["a".to_string(), "b".to_string()]));
        assert!(!p.in_reply());
    }

    #[test]
    fn bare_code_and_empty_text() {
        assert_eq!(reply(b"250\r\n").lines, [""]);
        assert_eq!(reply(b"250 \r\n").lines, [""]);
        assert_eq!(reply(b"354-\r\n354\r\n").lines, ["", ""]);
    }

    #[test]
    fn lone_lf_ends_a_line_and_stray_cr_is_neutralised() {
        let r = reply(b"250-first\n250 second\r\n");
        assert_eq!(r.lines, ["first", "second"]);
        let r = reply(b"550 evil\r250 injected\r\n");
        assert_eq!(r.lines, ["evil 250 injected"]);
        assert_eq!(reply(b"250 tab\there\x00\r\n").lines, ["tab here "]);
        assert_eq!(reply(b"250 caf\xc3\xa9 \xff\r\n").lines, ["caf\u{e9} \u{fffd}"]);
    }

    #[test]
    fn enhanced_code_must_be_well_formed_and_agree_with_the_class() {
        assert_eq!(reply(b"250 2.0.0\r\n").enhanced, Some(Enhanced(2, 0, 0)));
        assert_eq!(reply(b"451 4.123.999 x\r\n").enhanced, Some(Enhanced(4, 123, 999)));
        for plain in [
            &b"250 5.0.0 class disagrees\r\n"[..],
            b"250 2.0 too short\r\n",
            b"250 2.0.0.0 too long\r\n",
            b"250 2.1000.0 subject too long\r\n",
            b"250 22.0.0 class too long\r\n",
            b"250 2..0 empty\r\n",
            b"250 2.0.0x glued\r\n",
            b"250 192.0.2.1 an address\r\n",
        ] {
            let r = reply(plain);
            assert_eq!(r.enhanced, None, "{plain:?}");
            assert_eq!(r.to_wire().as_bytes(), plain);
        }
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b"25\r\n"[..],
            b"2x0 no\r\n",
            b"150 no first digit 1\r\n",
            b"600 no\r\n",
            b"260 second digit\r\n",
            b"250x glued\r\n",
            b"\r\n",
            b"hello\r\n",
        ] {
            assert_eq!(one(bad), Err(ReplyError::Syntax), "{bad:?}");
        }
        assert_eq!(one(b"250-a\r\n251 b\r\n"), Err(ReplyError::CodeMismatch));
    }

    #[test]
    fn size_limits() {
        let mut line = b"250 ".to_vec();
        line.resize(MAX_REPLY_LINE - 2, b'a');
        line.extend_from_slice(b"\r\n");
        assert!(one(&line).unwrap().1.is_some(), "a line of exactly the limit is fine");
        let long = vec![b'a'; MAX_REPLY_LINE];
        assert_eq!(one(&long), Err(ReplyError::LineTooLong));
        assert_eq!(one(&long[..MAX_REPLY_LINE - 1]), Ok((0, None)));
        let many =
            b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(1000);
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(&many), Err(ReplyError::TooLong));
        assert!(!p.in_reply(), "the reader is reset after an error");
    }
}
