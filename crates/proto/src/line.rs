//! CRLF-strict line framing for the command phase.
//!
//! RFC 5321 §2.3.8: lines end with CRLF, and a receiver must not treat a lone CR or LF as a
//! line end. Treating them as anything but an error is what SMTP smuggling exploits
//! (CVE-2023-51764/51765/51766), so here a lone CR or LF is an error, never a line end.

/// Command line length limit including CRLF (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Framing errors in the command phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// No CRLF within the limit.
    #[error("line too long")]
    TooLong,
    /// LF not preceded by CR.
    #[error("bare LF")]
    BareLf,
    /// CR not followed by LF.
    #[error("bare CR")]
    BareCr,
}

/// Finds the first complete line in `buf`.
///
/// Returns `Ok(Some((len, consumed)))` where `buf[..len]` is the line without CRLF and
/// `consumed` includes the CRLF; `Ok(None)` when more input is needed.
pub fn next_line(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, LineError> {
    let limit = buf.len().min(max);
    match buf.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if buf[i] == b'\n' => Err(LineError::BareLf),
        Some(i) => match buf.get(i + 1) {
            Some(b'\n') if i + 2 <= max => Ok(Some((i, i + 2))),
            Some(b'\n') => Err(LineError::TooLong),
            Some(_) => Err(LineError::BareCr),
            None if i + 2 > max => Err(LineError::TooLong),
            None => Ok(None),
        },
        None if limit >= max => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// Skips input up to and including the next CRLF, used after a too-long line.
///
/// Returns `(consumed, found)`; framing errors still count.
pub fn skip_line(buf: &[u8]) -> Result<(usize, bool), LineError> {
    if let Some(p) = buf.iter().position(|&b| b == b'\r' || b == b'\n') {
        if buf[p] == b'\n' {
            return Err(LineError::BareLf);
        }
        match buf.get(p + 1) {
            Some(b'\n') => return Ok((p + 2, true)),
            Some(_) => return Err(LineError::BareCr),
            // Keep the CR: its LF may be in the next read.
            None => return Ok((p, false)),
        }
    }
    Ok((buf.len(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_and_partial_lines() {
        assert_eq!(next_line(b"NOOP\r\nQUIT\r\n", 512), Ok(Some((4, 6))));
        assert_eq!(next_line(b"NOOP", 512), Ok(None));
        assert_eq!(next_line(b"NOOP\r", 512), Ok(None));
        assert_eq!(next_line(b"\r\n", 512), Ok(Some((0, 2))));
    }

    #[test]
    fn bare_cr_and_lf_are_errors() {
        assert_eq!(next_line(b"NOOP\n", 512), Err(LineError::BareLf));
        assert_eq!(next_line(b"NOOP\rQUIT\r\n", 512), Err(LineError::BareCr));
        assert_eq!(next_line(b"\n\r\n", 512), Err(LineError::BareLf));
    }

    #[test]
    fn length_limit_counts_crlf() {
        let ok = [vec![b'a'; 510], b"\r\n".to_vec()].concat();
        assert_eq!(next_line(&ok, 512), Ok(Some((510, 512))));
        let long = [vec![b'a'; 511], b"\r\n".to_vec()].concat();
        assert_eq!(next_line(&long, 512), Err(LineError::TooLong));
        assert_eq!(next_line(&[b'a'; 512], 512), Err(LineError::TooLong));
        assert_eq!(next_line(&[b'a'; 511], 512), Ok(None));
        let mut cr_at_edge = vec![b'a'; 511];
        cr_at_edge.push(b'\r');
        assert_eq!(next_line(&cr_at_edge, 512), Err(LineError::TooLong));
    }

    #[test]
    fn skipping() {
        assert_eq!(skip_line(b"aaaa"), Ok((4, false)));
        assert_eq!(skip_line(b"aa\r\nNOOP\r\n"), Ok((4, true)));
        assert_eq!(skip_line(b"aa\r"), Ok((2, false)));
        assert_eq!(skip_line(b"aa\nb"), Err(LineError::BareLf));
    }
}
