//! The DATA encoder: message bytes in, dot-stuffed wire bytes out, ending with `CRLF . CRLF`
//! (RFC 5321 §4.1.1.4 and §4.5.2).
//!
//! Line ends are normalised on the way out: a lone LF or a lone CR becomes CRLF. RFC 5321
//! §2.3.8 forbids sending them, and more importantly a lone LF followed by `.` and a line end
//! is exactly what a lenient next hop may take as the end of the data (SMTP smuggling,
//! CVE-2023-51764/51765/51766). Dakiya's spool only holds CRLF lines, so for its own messages
//! this changes nothing; it makes the encoder safe for any input. Normalising may make the
//! output a few octets longer than the SIZE declared, which RFC 1870 §6 tolerates (the
//! declared size is an estimate).

/// Incremental dot-stuffer. Feed the message with [`DataEncoder::encode`] in chunks of any
/// size (chunk boundaries may fall anywhere, even between CR and LF), then call
/// [`DataEncoder::finish`].
#[derive(Debug, Clone)]
pub struct DataEncoder {
    /// The next octet starts a line.
    line_start: bool,
    /// The previous chunk ended with a CR whose LF may still come.
    pending_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of the message.
    pub fn new() -> DataEncoder {
        DataEncoder { line_start: true, pending_cr: false }
    }

    /// Appends the wire form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if std::mem::take(&mut self.pending_cr) {
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                if b == b'\n' {
                    i += 1;
                    continue;
                }
                // A lone CR: it ended a line above; this octet starts the next one.
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    i += 1;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                    i += 1;
                }
                _ => {
                    // RFC 5321 §4.5.2: a line that starts with "." gets one more.
                    if self.line_start && b == b'.' {
                        out.push(b'.');
                    }
                    self.line_start = false;
                    let run = chunk[i..].iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(chunk.len() - i);
                    out.extend_from_slice(&chunk[i..i + run]);
                    i += run;
                }
            }
        }
    }

    /// Ends the data: completes the last line if the message did not end with a line end,
    /// then appends the `.` CRLF terminator.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    /// The whole wire form of `message`, terminator included.
    pub fn encode_all(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
        let mut enc = DataEncoder::new();
        enc.encode(message, &mut out);
        enc.finish(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataDecoder;

    fn chunked(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = DataEncoder::new();
        for chunk in message.chunks(size.max(1)) {
            enc.encode(chunk, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    /// What dakiya's own server reads back from the wire form.
    fn decoded(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (used, end) = DataDecoder::new().decode(wire, &mut out).expect("well-framed");
        assert!(end && used == wire.len(), "the terminator is the last thing, and only once");
        out
    }

    #[test]
    fn dot_stuffing_and_terminator() {
        let msg = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nmid.dle\r\n.\r\nend\r\n";
        let want = b"Subject: x\r\n\r\n..leading dot\r\n...two\r\nmid.dle\r\n..\r\nend\r\n.\r\n";
        assert_eq!(DataEncoder::encode_all(msg), want);
        assert_eq!(decoded(want), msg);
    }

    #[test]
    fn missing_final_line_end_is_added() {
        assert_eq!(DataEncoder::encode_all(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(DataEncoder::encode_all(b"."), b"..\r\n.\r\n");
        assert_eq!(DataEncoder::encode_all(b""), b".\r\n");
        assert_eq!(DataEncoder::encode_all(b"a\r"), b"a\r\n.\r\n");
    }

    #[test]
    fn lone_cr_and_lf_become_crlf() {
        assert_eq!(DataEncoder::encode_all(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n.\r\n");
        // The smuggling shapes can never end the data early.
        assert_eq!(DataEncoder::encode_all(b"x\n.\nMAIL"), b"x\r\n..\r\nMAIL\r\n.\r\n");
        assert_eq!(DataEncoder::encode_all(b"x\r.\r\nQUIT"), b"x\r\n..\r\nQUIT\r\n.\r\n");
        assert_eq!(DataEncoder::encode_all(b"\r\r\n"), b"\r\n\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let msg = b".a\r\n\r\n.\r\n..\r\nx\ry\nz.\r\n.";
        let whole = DataEncoder::encode_all(msg);
        for size in 1..msg.len() {
            assert_eq!(chunked(msg, size), whole, "chunk size {size}");
        }
    }

    /// An independent statement of the intended result: every line end becomes CRLF and the
    /// last line is completed.
    fn normalised(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < msg.len() {
            match (msg[i], msg.get(i + 1)) {
                (b'\r', Some(b'\n')) => {
                    out.extend_from_slice(b"\r\n");
                    i += 1;
                }
                (b'\r' | b'\n', _) => out.extend_from_slice(b"\r\n"),
                (b, _) => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn round_trip_through_the_server_decoder() {
        // A small deterministic generator over the octets that matter.
        let alphabet = b".\r\na\x00\xff ";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut msg = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                msg.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let wire = chunked(&msg, (seed % 7) as usize + 1);
            assert_eq!(decoded(&wire), normalised(&msg), "{msg:?}");
        }
    }
}
