//! The third part of the report: the original message, or its header section
//! (RFC 6522 §3, RFC 3462), read from the spool with a bounded amount of memory.

use std::io::{self, ErrorKind, Read};

/// How much of the original the notice returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned {
    /// The whole message.
    Full,
    /// Its header section.
    Headers,
    /// Nothing: the third part is left out (RFC 6522 §3 makes it optional).
    Nothing,
}

/// Why less than the whole message was returned, for the text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Headers only, as requested (or as we chose when nothing was requested).
    None,
    /// The whole message was asked for but is larger than the return limit.
    TooLarge,
    /// The whole message was asked for but has lines longer than 998 octets or
    /// NUL octets, which no 7bit/8bit part may carry (RFC 2045 §2.7, §2.8).
    NotIntact,
    /// The header section alone exceeds the return limit; it was cut short.
    HeadersCut,
}

/// The original as it goes into the notice.
#[derive(Debug)]
pub(crate) struct Original {
    /// What `content` holds.
    pub returned: Returned,
    /// Why that is less than the whole message, if it is.
    pub shortfall: Shortfall,
    /// The bytes of the part, with CRLF line ends.
    pub content: Vec<u8>,
    /// The header section holds UTF-8 (RFC 6532): the part is then
    /// message/global or message/global-headers (RFC 6533).
    pub utf8_headers: bool,
}

impl Original {
    /// The part's media type.
    pub fn content_type(&self) -> &'static str {
        match (self.returned, self.utf8_headers) {
            (Returned::Full, false) => "message/rfc822",
            (Returned::Full, true) => "message/global",
            (_, false) => "text/rfc822-headers",
            (_, true) => "message/global-headers",
        }
    }

    /// The part's Content-Transfer-Encoding: identity encodings only, because
    /// RFC 2046 §5.2.1 forbids any other for message/rfc822, and headers
    /// should stay readable.
    pub fn transfer_encoding(&self) -> &'static str {
        if self.content.is_ascii() { "7bit" } else { "8bit" }
    }
}

/// Reads the original and decides what to return: everything if `full` and it
/// fits in `limit` bytes (and is sendable as 7bit/8bit), otherwise the header
/// section. Never holds much more than `limit` bytes of it.
pub(crate) fn load(reader: &mut dyn Read, full: bool, limit: usize) -> io::Result<Original> {
    let (raw, complete) = read_bounded(reader, limit, !full)?;
    let mut shortfall = Shortfall::None;
    if full {
        if complete {
            let content = crlf(&raw);
            if !content.is_empty() && intact(&content) {
                let utf8_headers = utf8_header_section(&content);
                return Ok(Original { returned: Returned::Full, shortfall, content, utf8_headers });
            }
            shortfall = Shortfall::NotIntact;
        } else {
            shortfall = Shortfall::TooLarge;
        }
    }
    let (headers, cut) = header_section(&raw, complete, limit);
    if cut {
        shortfall = Shortfall::HeadersCut;
    }
    let content = crlf(headers);
    if content.is_empty() || !intact(&content) {
        let content = Vec::new();
        return Ok(Original { returned: Returned::Nothing, shortfall, content, utf8_headers: false });
    }
    let utf8_headers = !content.is_ascii() && std::str::from_utf8(&content).is_ok();
    Ok(Original { returned: Returned::Headers, shortfall, content, utf8_headers })
}

/// Reads until end of input or until more than `limit` bytes have been read
/// (or, with `headers_only`, until the header section is complete). Returns
/// the bytes and whether the whole input fit within `limit`.
fn read_bounded(reader: &mut dyn Read, limit: usize, headers_only: bool) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut scanned = 0; // where to resume looking for the end of the header section
    loop {
        if buf.len() > limit {
            return Ok((buf, false));
        }
        if headers_only {
            // `complete` is false here: there may be more, but we know enough.
            if find(&buf[scanned..], b"\r\n\r\n").is_some() {
                return Ok((buf, false));
            }
            scanned = buf.len().saturating_sub(3);
        }
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok((buf, true)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The header section of `raw` with its final CRLF but without the blank
/// line that ends it, and whether it had to be cut at `limit`.
fn header_section(raw: &[u8], complete: bool, limit: usize) -> (&[u8], bool) {
    if raw.starts_with(b"\r\n") || raw.starts_with(b"\n") {
        return (&[], false); // no header section at all
    }
    if let Some(end) = find(raw, b"\r\n\r\n").or_else(|| find(raw, b"\n\n")) {
        let end = if raw[end] == b'\r' { end + 2 } else { end + 1 };
        if end <= limit {
            return (&raw[..end], false);
        }
    } else if complete {
        return (raw, false); // a message without a body
    }
    // The header section goes on past the limit: keep its complete lines.
    let head = &raw[..raw.len().min(limit)];
    match head.iter().rposition(|&b| b == b'\n') {
        Some(pos) => (&head[..=pos], true),
        None => (&[], true),
    }
}

/// Whether the header section (up to the first empty line) holds valid UTF-8
/// beyond ASCII.
fn utf8_header_section(message: &[u8]) -> bool {
    let end = find(message, b"\r\n\r\n").map_or(message.len(), |p| p + 2);
    let headers = &message[..end];
    !headers.is_ascii() && std::str::from_utf8(headers).is_ok()
}

/// Whether `content` (CRLF line ends) may be sent as 7bit or 8bit: no NUL
/// octet and no line longer than 998 octets (RFC 5322 §2.1.1).
fn intact(content: &[u8]) -> bool {
    !content.contains(&0) && content.split(|&b| b == b'\n').all(|line| line.len() <= 999)
}

/// `raw` with every lone LF or lone CR turned into CRLF. The spool holds CRLF
/// already (the server refuses anything else); this guarantees the notice
/// does too, whatever the reader gave us.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\nSubject: hi\r\n\r\nbody line\r\n";

    fn load_bytes(bytes: &[u8], full: bool, limit: usize) -> Original {
        load(&mut &bytes[..], full, limit).unwrap()
    }

    #[test]
    fn full_when_asked_and_small() {
        let o = load_bytes(MSG, true, 1000);
        assert_eq!((o.returned, o.shortfall), (Returned::Full, Shortfall::None));
        assert_eq!(o.content, MSG);
        assert_eq!((o.content_type(), o.transfer_encoding()), ("message/rfc822", "7bit"));
    }

    #[test]
    fn headers_when_asked() {
        let o = load_bytes(MSG, false, 1000);
        assert_eq!((o.returned, o.shortfall), (Returned::Headers, Shortfall::None));
        assert_eq!(o.content, b"Received: from x\r\nSubject: hi\r\n");
        assert_eq!(o.content_type(), "text/rfc822-headers");
    }

    #[test]
    fn headers_when_too_large() {
        let o = load_bytes(MSG, true, MSG.len() - 1);
        assert_eq!((o.returned, o.shortfall), (Returned::Headers, Shortfall::TooLarge));
        assert_eq!(o.content, b"Received: from x\r\nSubject: hi\r\n");
        // Exactly at the limit is still returned whole.
        assert_eq!(load_bytes(MSG, true, MSG.len()).returned, Returned::Full);
    }

    #[test]
    fn headers_when_not_sendable_whole() {
        let mut msg = b"Subject: long\r\n\r\n".to_vec();
        msg.extend_from_slice(&[b'x'; 1200]);
        msg.extend_from_slice(b"\r\n");
        let o = load_bytes(&msg, true, 1 << 20);
        assert_eq!((o.returned, o.shortfall), (Returned::Headers, Shortfall::NotIntact));
        let o = load_bytes(b"Subject: nul\r\n\r\na\0b\r\n", true, 1 << 20);
        assert_eq!((o.returned, o.shortfall), (Returned::Headers, Shortfall::NotIntact));
    }

    #[test]
    fn huge_header_section_is_cut_at_a_line() {
        let mut msg = Vec::new();
        for i in 0..100 {
            msg.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(50)).as_bytes());
        }
        msg.extend_from_slice(b"\r\nbody\r\n");
        let o = load_bytes(&msg, false, 1000);
        assert_eq!((o.returned, o.shortfall), (Returned::Headers, Shortfall::HeadersCut));
        assert!(o.content.len() <= 1000 && o.content.ends_with(b"\r\n"));
        assert!(msg.starts_with(&o.content));
    }

    #[test]
    fn no_header_section_returns_nothing() {
        let o = load_bytes(b"\r\njust a body\r\n", false, 1000);
        assert_eq!(o.returned, Returned::Nothing);
        let o = load_bytes(b"", true, 1000);
        assert_eq!(o.returned, Returned::Nothing);
    }

    #[test]
    fn message_without_body_is_all_headers() {
        let o = load_bytes(b"Subject: x\r\n", false, 1000);
        assert_eq!(o.content, b"Subject: x\r\n");
    }

    #[test]
    fn bare_line_ends_become_crlf() {
        let o = load_bytes(b"Subject: a\nX: b\r\rbody\n", true, 1000);
        assert_eq!(o.content, b"Subject: a\r\nX: b\r\n\r\nbody\r\n");
        let o = load_bytes(b"Subject: a\n\nbody\n", false, 1000);
        assert_eq!(o.content, b"Subject: a\r\n");
    }

    #[test]
    fn utf8_headers_use_global_types() {
        let msg = "From: jürgen@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n".as_bytes();
        let o = load_bytes(msg, true, 1000);
        assert_eq!((o.content_type(), o.transfer_encoding()), ("message/global", "8bit"));
        let o = load_bytes(msg, false, 1000);
        assert_eq!((o.content_type(), o.transfer_encoding()), ("message/global-headers", "8bit"));
        // An 8-bit body under ASCII headers stays message/rfc822, sent as 8bit.
        let o = load_bytes("Subject: x\r\n\r\nGrüße\r\n".as_bytes(), true, 1000);
        assert_eq!((o.content_type(), o.transfer_encoding()), ("message/rfc822", "8bit"));
        // Legacy 8-bit headers that are not UTF-8 are not message/global.
        let o = load_bytes(b"Subject: Gr\xfc\xdfe\r\n\r\n", false, 1000);
        assert_eq!(o.content_type(), "text/rfc822-headers");
    }

    #[test]
    fn headers_only_stops_reading_early() {
        // A reader that fails after the header section: headers-only never gets there.
        struct Once(Option<&'static [u8]>);
        impl Read for Once {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.take() {
                    Some(b) => {
                        buf[..b.len()].copy_from_slice(b);
                        Ok(b.len())
                    }
                    None => Err(io::Error::other("read past the header section")),
                }
            }
        }
        let o = load(&mut Once(Some(MSG)), false, 1 << 20).unwrap();
        assert_eq!(o.content, b"Received: from x\r\nSubject: hi\r\n");
        assert!(load(&mut Once(Some(MSG)), true, 1 << 20).is_err());
    }
}
