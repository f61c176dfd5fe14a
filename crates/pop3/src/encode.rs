//! Message content on the wire (RFC 1939 §3, §11): CRLF line ends, dot-stuffing, the
//! terminating `.` line, and the TOP limit on body lines. Works on chunks of any size, so a
//! big message is sent as it is read, never held whole in memory.
//!
//! Messages may be stored with LF line ends (local delivery writes them so, docs/maildir.md)
//! or with CRLF; either way a line end goes out as CRLF, and a lone CR is passed through.

/// Encodes one message for RETR or TOP.
#[derive(Debug, Clone)]
pub struct ContentEncoder {
    /// At the start of a line (dot-stuffing applies to the next octet).
    line_start: bool,
    /// The previous octet was a CR that has been written.
    after_cr: bool,
    /// Inside the header; a blank line ends it.
    in_header: bool,
    /// The current line is empty so far (to see the blank line that ends the header).
    line_empty: bool,
    /// Body lines still to send (TOP), or `None` for all (RETR).
    body_lines: Option<u64>,
    /// The TOP limit was reached: further input is ignored.
    done: bool,
}

impl ContentEncoder {
    /// An encoder for RETR (`None`) or for TOP with `body_lines` lines of the body.
    pub fn new(body_lines: Option<u64>) -> ContentEncoder {
        ContentEncoder { line_start: true, after_cr: false, in_header: true, line_empty: true, body_lines, done: false }
    }

    /// True once TOP has sent all the lines it should: the driver may stop reading.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Encodes `chunk`, appending to `out`. Runs of octets without a line end are copied
    /// whole; only line ends and line starts are looked at one by one.
    pub fn encode(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32 + 4);
        while let Some(&first) = chunk.first() {
            if self.done {
                return;
            }
            // RFC 1939 §3: a line starting with "." gets one more.
            if self.line_start && first == b'.' {
                out.push(b'.');
            }
            let run = chunk.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(chunk.len());
            if run > 0 {
                out.extend_from_slice(&chunk[..run]);
                chunk = &chunk[run..];
                self.after_cr = false;
                self.line_start = false;
                self.line_empty = false;
                continue;
            }
            chunk = &chunk[1..];
            if first == b'\n' {
                if !self.after_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.end_line();
            } else {
                out.push(b'\r');
                self.after_cr = true;
                self.line_start = false;
            }
        }
    }

    fn end_line(&mut self) {
        let was_empty = self.line_empty;
        self.after_cr = false;
        self.line_start = true;
        self.line_empty = true;
        if self.in_header {
            if was_empty {
                self.in_header = false;
                self.done = self.body_lines == Some(0);
            }
            return;
        }
        if let Some(n) = self.body_lines.as_mut() {
            *n = n.saturating_sub(1);
            self.done = *n == 0;
        }
    }

    /// Ends the content: a final CRLF if the last line had none, then the `.` line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line_start {
            if !self.after_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Counts a message's size as RFC 1939 §5 (STAT, LIST) wants it: octets with CRLF line ends,
/// before dot-stuffing. Fed in chunks, like [`ContentEncoder`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CrlfSize {
    size: u64,
    after_cr: bool,
}

impl CrlfSize {
    /// Counts `chunk`.
    pub fn add(&mut self, chunk: &[u8]) {
        let Some(&first) = chunk.first() else { return };
        // Every LF not after a CR gains one octet.
        let lf = chunk.iter().filter(|&&b| b == b'\n').count();
        let crlf = chunk[1..].iter().zip(chunk).filter(|&(&b, &prev)| b == b'\n' && prev == b'\r').count()
            + usize::from(self.after_cr && first == b'\n');
        self.size += (chunk.len() + lf - crlf) as u64;
        self.after_cr = chunk.last() == Some(&b'\r');
    }

    /// The size so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(input: &[u8], top: Option<u64>, step: usize) -> Vec<u8> {
        let mut e = ContentEncoder::new(top);
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            e.encode(chunk, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn line_ends_and_dot_stuffing_in_any_chunking() {
        let input = b"Subject: x\n\n.hidden\r\n..two\nend";
        let want = b"Subject: x\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\n".to_vec();
        for step in 1..input.len() + 1 {
            assert_eq!(encode(input, None, step), want, "step {step}");
        }
    }

    /// The rules of RFC 1939 §3 octet by octet, to compare the encoder with.
    fn reference(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line_start = true;
        let mut prev = 0u8;
        for &b in input {
            if line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            line_start = b == b'\n';
            prev = b;
        }
        if !line_start {
            if prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn matches_the_octet_by_octet_rules() {
        // Every string of up to 6 octets over a small alphabet, in two chunkings.
        let alphabet = b".\r\nx";
        for len in 0..=6u32 {
            for mut k in 0..4usize.pow(len) {
                let mut input = Vec::new();
                for _ in 0..len {
                    input.push(alphabet[k % 4]);
                    k /= 4;
                }
                let want = reference(&input);
                for step in [1, 3, 7] {
                    assert_eq!(encode(&input, None, step), want, "{input:?} step {step}");
                }
                let mut size = CrlfSize::default();
                input.chunks(2).for_each(|c| size.add(c));
                let crlf: usize = input
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| if b == b'\n' && (i == 0 || input[i - 1] != b'\r') { 2 } else { 1 })
                    .sum();
                assert_eq!(size.size(), crlf as u64, "{input:?}");
            }
        }
    }

    #[test]
    fn top_counts_body_lines() {
        let input = b"A: 1\nB: 2\n\nl1\nl2\nl3\n";
        assert_eq!(encode(input, Some(0), 3), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(encode(input, Some(2), 1), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n.\r\n");
        assert_eq!(encode(input, Some(9), 4), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n");
        // A message without a body: TOP sends the whole header.
        assert_eq!(encode(b"A: 1\n", Some(0), 2), b"A: 1\r\n.\r\n");
    }

    #[test]
    fn sizes_count_crlf() {
        let mut s = CrlfSize::default();
        s.add(b"a\nb\r");
        s.add(b"\nc");
        assert_eq!(s.size(), 3 + 3 + 1);
        let mut e = Vec::new();
        ContentEncoder::new(None).encode(b"a\nb\r\nc", &mut e);
        assert_eq!(e.len() as u64, s.size());
    }
}
