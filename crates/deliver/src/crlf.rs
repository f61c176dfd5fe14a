//! Streaming CRLF → LF conversion (Maildir files use bare LF line ends).

/// Converts CRLF to LF across arbitrarily split input. A CR not followed by
/// LF is kept (the server refuses such input, but we never drop bytes).
#[derive(Debug, Default)]
pub(crate) struct CrlfToLf {
    /// The previous chunk ended in CR; its fate depends on the next byte.
    pending_cr: bool,
}

impl CrlfToLf {
    /// Appends the converted form of `input` to `out`.
    pub fn convert(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        if std::mem::take(&mut self.pending_cr) {
            if input[0] == b'\n' {
                out.push(b'\n');
                input = &input[1..];
            } else {
                out.push(b'\r');
            }
        }
        while let Some(pos) = input.iter().position(|&b| b == b'\r') {
            out.extend_from_slice(&input[..pos]);
            match input.get(pos + 1) {
                Some(b'\n') => {
                    out.push(b'\n');
                    input = &input[pos + 2..];
                }
                Some(_) => {
                    out.push(b'\r');
                    input = &input[pos + 1..];
                }
                None => {
                    self.pending_cr = true;
                    input = &[];
                }
            }
        }
        out.extend_from_slice(input);
    }

    /// Flushes a CR left pending at the very end of the input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_split(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut conv = CrlfToLf::default();
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            conv.convert(&input[start..cut], &mut out);
            start = cut;
        }
        conv.finish(&mut out);
        out
    }

    #[test]
    fn converts_at_every_split_point() {
        let input = b"a\r\nbc\r\n\r\nd\re\r\r\nf\r";
        let expected = b"a\nbc\n\nd\re\r\nf\r";
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(convert_split(input, &[i, j]), expected, "cuts {i},{j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"Subject: x\r\n\r\nline\r\n";
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(convert_split(input, &cuts), b"Subject: x\n\nline\n");
    }
}
