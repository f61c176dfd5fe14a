//! The body of the `header_filter` fuzz target (`fuzz/fuzz_targets/header_filter.rs`), kept
//! here so the committed corpus also runs as an ordinary test (`tests/corpus.rs`) on stable
//! Rust.

use crate::{HeaderFilter, claims_our_results};

/// Runs `data[2..]` through a [`HeaderFilter`] whole and cut into pieces, and compares both
/// with [`model`], a plain reading of what the filter promises. `data[0]` sets the field
/// limit (small, so that over-long fields are explored too) and the host name's spelling;
/// `data[1]` seeds the piece sizes. Also checks that the output is never longer than the
/// input, and is the input itself when no field is named `Authentication-Results`.
pub fn header_filter(data: &[u8]) {
    let (Some(&knobs), Some(&seed)) = (data.first(), data.get(1)) else { return };
    let input = &data[2..];
    let limit = usize::from(knobs & 0x7f) * 2 + 1;
    let id = if knobs & 0x80 == 0 { "mx.example.test" } else { "MX.Example.Test." };
    let want = model(input, id, limit);
    assert!(want.0.len() <= input.len());
    if !contains_ignoring_case(input, b"authentication-results") {
        assert_eq!(want, (input.to_vec(), 0), "changed without a field to remove");
    }
    assert_eq!(run(id, limit, [input]), want, "in one piece");
    assert_eq!(run(id, limit, pieces(input, seed)), want, "in pieces");
}

/// What the filter promises, read off the whole message at once: the header section ends at
/// the first empty line; a field is a line and the continuation lines after it (starting
/// with a space or a tab); a field up to `limit` octets that claims to be ours is dropped.
fn model(input: &[u8], id: &str, limit: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut removed = 0;
    let mut decide = |field: &[u8], out: &mut Vec<u8>| {
        if field.len() <= limit && claims_our_results(field, id) {
            removed += 1;
        } else {
            out.extend_from_slice(field);
        }
    };
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in input.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            if let Some(s) = start {
                decide(&input[s..offset], &mut out);
            }
            out.extend_from_slice(&input[offset..]);
            return (out, removed);
        }
        let continues = matches!(line[0], b' ' | b'\t') && start.is_some();
        if !continues {
            if let Some(s) = start {
                decide(&input[s..offset], &mut out);
            }
            start = Some(offset);
        }
        offset += line.len();
    }
    if let Some(s) = start {
        decide(&input[s..], &mut out);
    }
    (out, removed)
}

fn run<'a>(id: &str, limit: usize, parts: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, usize) {
    let mut filter = HeaderFilter::with_limit(id, limit);
    let mut out = Vec::new();
    for part in parts {
        filter.push(part, &mut out);
    }
    filter.finish(&mut out);
    (out, filter.removed)
}

/// `input` cut into pieces of 0 to 40 octets, sizes from a small generator seeded by `seed`
/// (empty pieces included: a read may return nothing new).
fn pieces(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut rest = input;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let (part, tail) = rest.split_at(((state % 41) as usize).min(rest.len()));
        parts.push(part);
        rest = tail;
    }
    parts
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
