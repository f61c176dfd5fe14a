//! Removing forged `Authentication-Results` fields from a message as it streams in.

use crate::claims_our_results;

/// Removes `Authentication-Results:` fields that claim to be ours from a message's header
/// section as it streams by (RFC 8601 §5: a receiver must not trust, and should remove,
/// such fields arriving from outside). The body passes untouched.
///
/// The output never depends on how the message is cut into pieces for [`HeaderFilter::push`]:
/// it is the input without the header fields (RFC 5322 §2.2: a line and its continuation
/// lines, which start with a space or a tab) that [`claims_our_results`] says are ours,
/// among those up to the limit in size. The header section ends at the first empty line
/// (RFC 5322 §2.1); a field longer than the limit is passed on as it is (ours are short),
/// without being held in memory.
pub struct HeaderFilter {
    authserv_id: String,
    max_field: usize,
    /// Still in the header section.
    in_header: bool,
    /// The next octet starts a line.
    at_line_start: bool,
    /// The current field outgrew the limit: its octets go straight out.
    passing: bool,
    /// The current field so far (first line, continuation lines, the current line's start).
    field: Vec<u8>,
    /// Fields removed so far.
    pub removed: usize,
}

/// The limit of [`HeaderFilter::new`]: a field longer than this is passed on as it is.
pub const MAX_FIELD: usize = 64 * 1024;

impl HeaderFilter {
    /// A filter for fields that claim to come from `authserv_id` (our host name), holding
    /// back no more than [`MAX_FIELD`] octets.
    pub fn new(authserv_id: &str) -> HeaderFilter {
        HeaderFilter::with_limit(authserv_id, MAX_FIELD)
    }

    /// As [`HeaderFilter::new`], with fields longer than `max_field` octets passed on (tests
    /// and the fuzz target use a small limit to reach that path).
    pub fn with_limit(authserv_id: &str, max_field: usize) -> HeaderFilter {
        HeaderFilter {
            authserv_id: authserv_id.to_string(),
            max_field,
            in_header: true,
            at_line_start: true,
            passing: false,
            field: Vec::new(),
            removed: 0,
        }
    }

    /// Filters `data`, appending what passes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(&first) = rest.first() {
            if !self.in_header {
                out.extend_from_slice(rest);
                return;
            }
            if self.at_line_start {
                self.line_starts(first, out);
            }
            let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => rest.split_at(i + 1),
                None => (rest, &[][..]),
            };
            rest = tail;
            self.at_line_start = line.ends_with(b"\n");
            if self.passing {
                out.extend_from_slice(line);
                continue;
            }
            self.field.extend_from_slice(line);
            if self.at_line_start && (self.field == b"\r\n" || self.field == b"\n") {
                // The empty line ends the header section.
                self.in_header = false;
                out.append(&mut self.field);
            } else if self.field.len() > self.max_field {
                self.passing = true;
                out.append(&mut self.field);
            }
        }
    }

    /// A line starts with `first`: a space or a tab continues the current field (RFC 5322
    /// §2.2.3); anything else ends it, so it is decided on.
    fn line_starts(&mut self, first: u8, out: &mut Vec<u8>) {
        let continues = matches!(first, b' ' | b'\t') && (self.passing || !self.field.is_empty());
        if !continues {
            self.passing = false;
            self.flush_field(out);
        }
    }

    /// Decides on the complete field held back: removed if it claims to be ours, else passed.
    fn flush_field(&mut self, out: &mut Vec<u8>) {
        if self.field.is_empty() {
            return;
        }
        if claims_our_results(&self.field, &self.authserv_id) {
            self.removed += 1;
            self.field.clear();
        } else {
            out.append(&mut self.field);
        }
    }

    /// Flushes what is held back at the end of the message.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_field(out);
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderFilter;

    fn filter(input: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        filter_parts(HeaderFilter::new("mx.example.test"), input.chunks(chunk))
    }

    fn filter_parts<'a>(mut f: HeaderFilter, parts: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        for part in parts {
            f.push(part, &mut out);
        }
        f.finish(&mut out);
        (out, f.removed)
    }

    /// Found while writing the `header_filter` fuzz target's model: a line longer than the limit that
    /// arrived in pieces was passed on, but the rest of it, after the read boundary, was
    /// taken for a line of its own — a lone `\r\n` for the blank line that ends the header
    /// section, so forged fields below it were kept.
    #[test]
    fn the_rest_of_an_over_long_line_is_not_a_line_of_its_own() {
        let long = format!("Subject: {}", "a".repeat(70));
        let forged = "Authentication-Results: mx.example.test; dkim=pass\r\n";
        let parts = [long.as_bytes(), b"\r\n", forged.as_bytes(), b"To: b@c.test\r\n\r\nbody\r\n"];
        let want = format!("{long}\r\nTo: b@c.test\r\n\r\nbody\r\n");
        assert_eq!(filter_parts(HeaderFilter::with_limit("mx.example.test", 64), parts), (want.into_bytes(), 1));
        // The same with the rest of the long line looking like a forged field of its own.
        let parts = [long.as_bytes(), forged.as_bytes(), b"\r\nbody\r\n"];
        let want = format!("{long}{forged}\r\nbody\r\n");
        assert_eq!(filter_parts(HeaderFilter::with_limit("mx.example.test", 64), parts), (want.into_bytes(), 0));
    }

    #[test]
    fn over_long_fields_pass_whatever_the_chunking() {
        let forged = "Authentication-Results: mx.example.test;\r\n dkim=pass\r\n";
        let msg = format!("{forged}X: y\r\n\r\nbody");
        for chunk in [1, 3, 17, 1000] {
            let f = HeaderFilter::with_limit("mx.example.test", forged.len());
            assert_eq!(filter_parts(f, msg.as_bytes().chunks(chunk)), (b"X: y\r\n\r\nbody".to_vec(), 1));
            let f = HeaderFilter::with_limit("mx.example.test", forged.len() - 1);
            assert_eq!(filter_parts(f, msg.as_bytes().chunks(chunk)), (msg.clone().into_bytes(), 0), "chunk {chunk}");
        }
    }

    #[test]
    fn forged_results_with_our_absolute_name_are_removed() {
        let msg = b"Authentication-Results: MX.Example.Test.; dkim=pass\r\nSubject: s\r\n\r\nbody\r\n";
        for chunk in [1, 4, 1000] {
            assert_eq!(filter(msg, chunk), (b"Subject: s\r\n\r\nbody\r\n".to_vec(), 1), "chunk {chunk}");
        }
    }

    #[test]
    fn passes_a_message_without_our_fields_unchanged_in_any_chunking() {
        let msg =
            b"From: a@b.test\r\nSubject: hi\r\n there\r\n\r\nAuthentication-Results: mx.example.test; x\r\nbody\r\n";
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(filter(msg, chunk), (msg.to_vec(), 0), "chunk {chunk}");
        }
    }

    #[test]
    fn removes_only_our_results_folded_or_not_in_any_chunking() {
        let msg = b"Received: x\r\nAUTHENTICATION-RESULTS: MX.example.test;\r\n\tdkim=pass\r\n header.d=bank.test\r\n\
Authentication-Results: other.test; spf=pass\r\nAuthentication-Results: mx.example.test.evil; x\r\n\
Authentication-Results:mx.example.test 1; spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.test; in body\r\n";
        let want = b"Received: x\r\nAuthentication-Results: other.test; spf=pass\r\n\
Authentication-Results: mx.example.test.evil; x\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.test; in body\r\n";
        for chunk in [1, 2, 5, 13, 4096] {
            assert_eq!(filter(msg, chunk), (want.to_vec(), 2), "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_without_body_or_final_newline_is_kept() {
        assert_eq!(filter(b"Subject: s\r\nX: y", 3), (b"Subject: s\r\nX: y".to_vec(), 0));
        assert_eq!(filter(b"Authentication-Results: mx.example.test; a", 3), (Vec::new(), 1));
    }
}
