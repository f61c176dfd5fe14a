//! Status lines (`+OK` / `-ERR`, RFC 1939 §3) with the response codes of RFC 2449 §8 and
//! RFC 3206, and multi-line responses.

/// A response code, sent in brackets after `-ERR` (RFC 2449 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `[AUTH]`: the credentials were refused, or authentication is not allowed like this
    /// (RFC 3206 §4).
    Auth,
    /// `[SYS/TEMP]`: a temporary failure on our side; trying later may work (RFC 3206 §5).
    SysTemp,
    /// `[SYS/PERM]`: a permanent failure on our side (RFC 3206 §5).
    SysPerm,
}

impl Code {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InUse => "IN-USE",
            Code::Auth => "AUTH",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
        }
    }
}

/// Appends `+OK text` CRLF.
pub fn ok(out: &mut Vec<u8>, text: &str) {
    line(out, "+OK", None, text);
}

/// Appends `-ERR [code] text` CRLF.
pub fn err(out: &mut Vec<u8>, code: Option<Code>, text: &str) {
    line(out, "-ERR", code, text);
}

fn line(out: &mut Vec<u8>, status: &str, code: Option<Code>, text: &str) {
    out.extend_from_slice(status.as_bytes());
    if let Some(c) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(c.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        // Reply texts are ours, but a line break inside one would end the line early.
        out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the lines of a multi-line response and its terminating `.` (RFC 1939 §3); lines
/// starting with `.` are dot-stuffed.
pub fn lines<I: IntoIterator<Item = String>>(out: &mut Vec<u8>, items: I) {
    for item in items {
        if item.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(item.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        ok(&mut out, "hi");
        err(&mut out, Some(Code::InUse), "locked");
        err(&mut out, None, "bad\r\nline");
        lines(&mut out, ["a".to_string(), ".b".to_string()]);
        assert_eq!(out, b"+OK hi\r\n-ERR [IN-USE] locked\r\n-ERR bad  line\r\na\r\n..b\r\n.\r\n");
    }
}
