//! Early talkers (pure): a client that speaks before the greeting is complete, or pipelines
//! commands where PIPELINING was not offered (RFC 2920 §3.1: a client may pipeline only after
//! the EHLO reply offered it). Real mail servers wait for each reply; spamware often does
//! not.

/// Whether the input waiting in a non-pipelining session holds more than one command: a
/// complete line followed by anything more. Called in a session that has not offered
/// PIPELINING (no EHLO reply yet, or HELO) and is not receiving message content.
pub fn pipelined(input: &[u8]) -> bool {
    input.windows(2).position(|w| w == b"\r\n").is_some_and(|at| at + 2 < input.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_or_a_partial_one_is_not_pipelining() {
        assert!(!pipelined(b""));
        assert!(!pipelined(b"HELO a\r\n"));
        assert!(!pipelined(b"HELO a"));
        assert!(!pipelined(b"HELO a\r"));
        assert!(pipelined(b"HELO a\r\nM"));
        assert!(pipelined(b"EHLO a\r\nMAIL FROM:<>\r\n"));
    }
}
