//! The body of the `control` fuzz target (`fuzz/fuzz_targets/control.rs`), kept here so the
//! committed corpus also runs as an ordinary test (`tests/corpus.rs`) on stable Rust.

use crate::{MAX_REQUEST, Response, parse_request};

/// Reads `data` both as a request line (as the server does) and as a response line (as
/// `dakiya queue` does). Errors are expected; panics are bugs. Checks that whatever parses
/// encodes as one line that parses back to the same value (and, for a request, fits in
/// [`MAX_REQUEST`]), and that encoding what was parsed back is a fixed point.
pub fn control(data: &[u8]) {
    if let Ok(request) = parse_request(data) {
        let line = request.encode();
        assert!(line.len() <= MAX_REQUEST && !line.contains('\n'), "{line}");
        assert_eq!(parse_request(line.as_bytes()), Ok(request));
    }
    if let Ok(response) = Response::parse(data) {
        let line = response.encode();
        assert!(!line.contains('\n'), "{line}");
        let again = Response::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(again, response);
        assert_eq!(again.encode(), line);
    }
}
