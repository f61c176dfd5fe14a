//! Message content readers: the DATA decoder (dot-unstuffing, end at CRLF.CRLF only) and the
//! line-ending checker used for BDAT chunks.
//!
//! RFC 5321 §4.1.1.4: the mail data ends with the line ".", i.e. CRLF "." CRLF; §4.5.2
//! defines dot-stuffing. RFC 5321 §2.3.8 forbids lone CR and LF, and accepting them is the
//! root of SMTP smuggling (CVE-2023-51764/51765/51766): `\n.\n`, `\r.\r`, `\r\n.\n` and
//! `\n.\r\n` must never end a message. Here any lone CR or LF is an error the moment it is
//! seen, so no ambiguous terminator can be interpreted at all.

/// A framing error inside message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// LF not preceded by CR.
    #[error("bare LF in message content")]
    BareLf,
    /// CR not followed by LF.
    #[error("bare CR in message content")]
    BareCr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// At the start of a line (also the very start of the data).
    #[default]
    LineStart,
    /// A line that began with '.'.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR was seen inside a line.
    Cr,
}

/// Incremental DATA decoder.
#[derive(Debug, Default)]
pub struct DataDecoder {
    state: State,
    nul: bool,
}

impl DataDecoder {
    /// A decoder positioned at the start of the data (right after the 354 reply).
    pub fn new() -> DataDecoder {
        DataDecoder::default()
    }

    /// True if a NUL octet was seen. NUL is a content error (RFC 5322 §2.3 and RFC 6152 §3
    /// exclude it from text bodies): the message is refused at its end, the session goes on.
    pub fn saw_nul(&self) -> bool {
        self.nul
    }

    /// Decodes `input`, appending the unstuffed content (with CRLF line ends) to `out`.
    ///
    /// Returns the number of input octets consumed and whether the end-of-data line was
    /// reached (in which case input after it is left unconsumed: it is the next command).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), DataError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Mid | State::LineStart if b != b'.' || self.state == State::Mid => {
                    // Fast path: copy the run up to the next CR or LF.
                    let run = input[i..].iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(input.len() - i);
                    if run > 0 {
                        let chunk = &input[i..i + run];
                        self.nul |= chunk.contains(&0);
                        out.extend_from_slice(chunk);
                        i += run;
                        self.state = State::Mid;
                        continue;
                    }
                    match b {
                        b'\r' => self.state = State::Cr,
                        _ => return Err(DataError::BareLf),
                    }
                }
                State::LineStart => self.state = State::Dot, // b == '.'
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    b'\n' => return Err(DataError::BareLf),
                    // The leading dot was stuffing (RFC 5321 §4.5.2): drop it, keep this octet.
                    _ => {
                        self.nul |= b == 0;
                        out.push(b);
                        self.state = State::Mid;
                    }
                },
                State::DotCr => {
                    return if b == b'\n' { Ok((i + 1, true)) } else { Err(DataError::BareCr) };
                }
                State::Cr => {
                    if b != b'\n' {
                        return Err(DataError::BareCr);
                    }
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                }
                State::Mid => unreachable!("handled by the fast path"),
            }
            i += 1;
        }
        Ok((i, false))
    }
}

/// Checks BDAT chunks (RFC 3030) for lone CR/LF and NUL across chunk boundaries. BDAT content
/// is not dot-stuffed and has no terminator; we still require CRLF line ends because we do
/// not offer BINARYMIME.
#[derive(Debug, Default, Clone)]
pub struct CrlfChecker {
    prev_cr: bool,
    nul: bool,
}

impl CrlfChecker {
    /// A checker at the start of a message.
    pub fn new() -> CrlfChecker {
        CrlfChecker::default()
    }

    /// True if a NUL octet was seen.
    pub fn saw_nul(&self) -> bool {
        self.nul
    }

    /// Checks the next piece of content.
    pub fn check(&mut self, chunk: &[u8]) -> Result<(), DataError> {
        self.nul |= chunk.contains(&0);
        for &b in chunk {
            match (self.prev_cr, b) {
                (true, b'\n') => self.prev_cr = false,
                (true, _) => return Err(DataError::BareCr),
                (false, b'\n') => return Err(DataError::BareLf),
                (false, b'\r') => self.prev_cr = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// Called at the end of the message: a trailing CR is a lone CR.
    pub fn finish(&self) -> Result<(), DataError> {
        if self.prev_cr { Err(DataError::BareCr) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), DataError> {
        let mut out = Vec::new();
        let (n, end) = DataDecoder::new().decode(input, &mut out)?;
        Ok((out, n, end))
    }

    /// Feeds one octet at a time, which must give the same result as one big buffer.
    fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, bool), DataError> {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            let (n, end) = d.decode(std::slice::from_ref(b), &mut out)?;
            if end {
                return Ok((out, i + n, true));
            }
        }
        Ok((out, input.len(), false))
    }

    #[test]
    fn simple_message_and_following_command() {
        let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
        let want = (b"Subject: x\r\n\r\nhello\r\n".to_vec(), input.len() - 6, true);
        assert_eq!(decode_all(input), Ok(want.clone()));
        assert_eq!(decode_bytewise(input), Ok(want));
    }

    #[test]
    fn empty_message_and_dot_unstuffing() {
        assert_eq!(decode_all(b".\r\n"), Ok((vec![], 3, true)));
        let input = b"..leading\r\n...\r\n.x\r\n.\r\n";
        let want = b".leading\r\n..\r\nx\r\n".to_vec();
        assert_eq!(decode_all(input).unwrap().0, want);
        assert_eq!(decode_bytewise(input).unwrap().0, want);
    }

    #[test]
    fn smuggling_variants_are_errors_not_terminators() {
        for (input, err) in [
            (&b"a\n.\nMAIL FROM:<x@y>\r\n"[..], DataError::BareLf),
            (b"a\r.\rMAIL", DataError::BareCr),
            (b"a\r\n.\nMAIL", DataError::BareLf),
            (b"a\n.\r\nMAIL", DataError::BareLf),
            (b"a\r\n.\r.\r\n", DataError::BareCr),
            (b"a\r\n\n.\r\n", DataError::BareLf),
            (b"a\rb\r\n.\r\n", DataError::BareCr),
        ] {
            assert_eq!(decode_all(input), Err(err), "{input:?}");
            assert_eq!(decode_bytewise(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn nul_is_noticed_but_not_fatal() {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b"a\0b\r\n.\r\n", &mut out), Ok((8, true)));
        assert!(d.saw_nul());
        let mut d = DataDecoder::new();
        d.decode(b".\0\r\n", &mut out).unwrap();
        assert!(d.saw_nul());
    }

    #[test]
    fn crlf_checker_across_chunks() {
        let mut c = CrlfChecker::new();
        assert_eq!(c.check(b"abc\r"), Ok(()));
        assert_eq!(c.check(b"\ndef\r\n"), Ok(()));
        assert_eq!(c.finish(), Ok(()));
        assert_eq!(CrlfChecker::new().check(b"a\nb"), Err(DataError::BareLf));
        assert_eq!(CrlfChecker::new().check(b"a\rb"), Err(DataError::BareCr));
        let mut c = CrlfChecker::new();
        c.check(b"a\r").unwrap();
        assert_eq!(c.finish(), Err(DataError::BareCr));
        let mut c = CrlfChecker::new();
        c.check(b"a\0").unwrap();
        assert!(c.saw_nul());
    }
}
