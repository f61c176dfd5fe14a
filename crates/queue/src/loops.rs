//! Mail loop detection (RFC 5321 §6.3): a message that has passed through too many servers
//! is failed instead of delivered.

use crate::outcome::{Failure, Outcome};
use dakiya_proto::Enhanced;
use std::io::{BufRead, Read};

/// RFC 5321 §6.3: a message with more `Received:` headers than this is in a loop.
pub const MAX_RECEIVED: usize = 100;

/// The outcome for every due recipient of a message with `received` `Received:` fields, if
/// it is looping: a permanent failure with 5.4.6, "routing loop detected" (RFC 3463 §3.5).
pub fn loop_failure(received: usize) -> Option<Outcome> {
    // RFC 5321 §6.3: a server SHOULD treat a message with more than about 100 Received:
    // headers as looping and fail it.
    (received > MAX_RECEIVED).then(|| {
        let error = format!("mail loop: the message has {received} Received: headers (limit {MAX_RECEIVED})");
        Outcome::Permanent(Failure::local(Enhanced(5, 4, 6), error))
    })
}

/// Counts the `Received:` fields of a message's header section, reading no further than its
/// end (and at most 1 MiB of a hostile one). A read error ends the count.
pub fn count_received(message: impl Read) -> usize {
    let mut head = std::io::BufReader::with_capacity(8192, message.take(1 << 20));
    let mut line = Vec::new();
    let mut count = 0;
    loop {
        line.clear();
        match head.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return count,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            return count;
        }
        if text.len() >= 9 && text[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
    }
}

/// [`count_received`] over a message that arrives in pieces (the SMTP session's DATA), so
/// that the count is known when the message is committed and the delivery run need not read
/// the stored message again to count. Counts exactly what `count_received` counts on the
/// same bytes.
#[derive(Debug, Default, Clone)]
pub struct ReceivedCounter {
    count: usize,
    /// Bytes looked at so far (`count_received` reads at most 1 MiB).
    seen: u64,
    /// The first bytes of the current line, up to the length of `received:`.
    start: [u8; 9],
    /// How many bytes of the current line (without its LF) have been seen.
    line: usize,
    /// The header section has ended (an empty line) or the 1 MiB limit was reached.
    done: bool,
}

impl ReceivedCounter {
    /// Looks at the next piece of the message.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done || self.seen >= 1 << 20 {
                self.done = true;
                return;
            }
            self.seen += 1;
            if b == b'\n' {
                // An empty line (bare LF or CRLF) ends the header section.
                if self.line == 0 || (self.line == 1 && self.start[0] == b'\r') {
                    self.done = true;
                }
                self.line = 0;
                continue;
            }
            if self.line < 9 {
                self.start[self.line] = b;
                if self.line == 8 && self.start.eq_ignore_ascii_case(b"received:") {
                    self.count += 1;
                }
            }
            self.line += 1;
        }
    }

    /// The number of `Received:` fields seen.
    pub fn count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(received: usize) -> Vec<u8> {
        let mut m = Vec::new();
        for i in 0..received {
            m.extend(format!("Received: from hop{i}\r\n").as_bytes());
        }
        m.extend(b"Subject: x\r\n\r\nReceived: in the body\r\n");
        m
    }

    #[test]
    fn counts_only_the_header_section() {
        assert_eq!(count_received(&message(0)[..]), 0);
        assert_eq!(count_received(&message(3)[..]), 3);
        assert_eq!(count_received(&b"RECEIVED: a\nreceived:b\nReceived\r\n"[..]), 2, "any case, bare LF");
        assert_eq!(count_received(&b"Received: unterminated"[..]), 1);
    }

    #[test]
    fn more_than_100_received_fields_fail_with_5_4_6() {
        assert_eq!(loop_failure(count_received(&message(MAX_RECEIVED)[..])), None, "exactly 100 is allowed");
        let Some(Outcome::Permanent(f)) = loop_failure(count_received(&message(MAX_RECEIVED + 1)[..])) else {
            panic!("101 is a loop")
        };
        assert_eq!(f.status, Enhanced(5, 4, 6));
        assert_eq!(f.error, "mail loop: the message has 101 Received: headers (limit 100)");
        assert_eq!((f.remote_mta, f.diagnostic), (None, None));
    }

    #[test]
    fn the_streaming_counter_counts_what_count_received_counts_at_every_split() {
        let inputs: [&[u8]; 6] = [
            &message(3),
            b"RECEIVED: a\nreceived:b\nReceived\r\n",
            b"Received: unterminated",
            b"X: 1\r\nReceived:\r\n\r\nReceived: body\r\n",
            b"\r\nReceived: after an empty first line\r\n",
            b"Received:\rReceived: a CR alone is no line end\n",
        ];
        for input in inputs {
            let expected = count_received(input);
            for cut in 0..=input.len() {
                let mut counter = ReceivedCounter::default();
                counter.push(&input[..cut]);
                counter.push(&input[cut..]);
                assert_eq!(counter.count(), expected, "{:?} cut at {cut}", String::from_utf8_lossy(input));
            }
        }
        let mut counter = ReceivedCounter::default();
        for b in message(MAX_RECEIVED + 1) {
            counter.push(&[b]);
        }
        assert_eq!(counter.count(), MAX_RECEIVED + 1);
    }
}
