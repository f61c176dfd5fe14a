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
}
