//! [`MessageIdScanner`]: picks the `Message-ID:` field's value out of a message's header as
//! it streams past in pieces of any size, keeping at most one bounded line in memory.

use crate::event::{MAX_NAME, clip};

/// The longest header line looked at; a longer one is not a Message-ID worth keeping.
const MAX_LINE: usize = 1000;

/// Watches the header section (up to the first empty line, RFC 5322 §2.1) for `Message-ID:`
/// (RFC 5322 §3.6.4), folded or not.
#[derive(Debug, Default)]
pub struct MessageIdScanner {
    line: Vec<u8>,
    long: bool,
    /// The value of the field being read, when the field is Message-ID.
    current: Option<String>,
    found: Option<String>,
    body: bool,
}

impl MessageIdScanner {
    /// Feeds the next piece of the message. The line buffer is reused from line to line: no
    /// allocation per header line (this runs for every message received).
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !self.body && !bytes.is_empty() {
            let (piece, rest, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = MAX_LINE - self.line.len();
            if piece.len() > room {
                self.long = true;
            }
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            if ends {
                self.end_line();
            }
            bytes = rest;
        }
    }

    /// Handles the line in the buffer and empties the buffer, keeping its capacity.
    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        self.field_line(&line);
        line.clear();
        self.line = line;
    }

    /// One header line, without its LF.
    fn field_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let long = std::mem::take(&mut self.long);
        let text = String::from_utf8_lossy(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(v) = self.current.as_mut() {
                v.push(' ');
                v.push_str(text.trim());
            }
            return;
        }
        self.finish_field();
        if line.is_empty() {
            self.body = true;
            return;
        }
        if long {
            return;
        }
        if let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("Message-ID")
            && self.found.is_none()
        {
            self.current = Some(value.trim().to_string());
        }
    }

    fn finish_field(&mut self) {
        if let Some(v) = self.current.take() {
            let v = v.trim();
            if !v.is_empty() {
                self.found = Some(clip(v, MAX_NAME));
            }
        }
    }

    /// The Message-ID found, if any (the first one, bounded and without control characters).
    pub fn finish(mut self) -> Option<String> {
        if !self.body {
            if !self.line.is_empty() {
                self.end_line();
            }
            self.finish_field();
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> Option<String> {
        let mut s = MessageIdScanner::default();
        for p in pieces {
            s.push(p);
        }
        s.finish()
    }

    #[test]
    fn finds_the_field_in_any_pieces() {
        let msg = b"Received: from x\r\n\tby y\r\nmessage-id:  <abc@example.org>\r\nSubject: hi\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(scan(&[msg]).as_deref(), Some("<abc@example.org>"));
        let pieces: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(scan(&pieces).as_deref(), Some("<abc@example.org>"));
        assert_eq!(scan(&[b"Message-ID:\r\n <folded@x>\r\n\r\n"]).as_deref(), Some("<folded@x>"));
        assert_eq!(scan(&[b"Message-ID: <last@x>"]).as_deref(), Some("<last@x>"));
    }

    #[test]
    fn the_line_buffer_is_kept_from_line_to_line() {
        let mut s = MessageIdScanner::default();
        s.push(b"Received: from a long enough first line to size the buffer\r\n");
        let (at, capacity) = (s.line.as_ptr(), s.line.capacity());
        assert!(capacity > 0);
        s.push(b"From: a@x\r\nMessage-ID: <kept@x>\r\nSub");
        s.push(b"ject: y\r\n");
        assert_eq!((s.line.as_ptr(), s.line.capacity()), (at, capacity), "no new buffer per line");
        s.push(b"\r\n");
        assert_eq!(s.finish().as_deref(), Some("<kept@x>"));
    }

    #[test]
    fn the_length_bound_holds_across_pieces() {
        let at_bound = |extra: usize| {
            let mut msg = b"Message-ID: <".to_vec();
            msg.resize(MAX_LINE - 2 + extra, b'a');
            msg.extend_from_slice(b">\r\n\r\n");
            (msg.clone(), msg.chunks(7).map(<[u8]>::to_vec).collect::<Vec<_>>())
        };
        // MAX_LINE bytes up to the LF (the CR counts): kept; one more: too long.
        for (extra, kept) in [(0, true), (1, false)] {
            let (whole, pieces) = at_bound(extra);
            let in_pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            assert_eq!(scan(&[&whole]).is_some(), kept, "extra {extra}");
            assert_eq!(scan(&in_pieces).is_some(), kept, "extra {extra}, in pieces");
        }
    }

    #[test]
    fn only_the_header_and_only_bounded_lines() {
        assert_eq!(scan(&[b"Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n"]), None);
        let mut long = b"Message-ID: <".to_vec();
        long.extend(std::iter::repeat_n(b'a', 5000));
        long.extend_from_slice(b">\r\n\r\n");
        assert_eq!(scan(&[&long]), None);
        let evil = scan(&[b"Message-ID: <a\x1b[2J@x>\r\n\r\n"]).unwrap();
        assert_eq!(evil, "<a?[2J@x>");
    }
}
