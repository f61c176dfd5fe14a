//! The body of the `users_file` fuzz target (`fuzz/fuzz_targets/users_file.rs`), kept here so
//! the committed corpus also runs as an ordinary test (`tests/corpus.rs`) on stable Rust.

use crate::AuthError;
use crate::file::UsersFile;
use crate::name::normalize_user;
use std::path::Path;

/// Parses `data` as a users file. Errors are expected; panics are bugs. Checks:
/// - an error names the file and a line that exists, and never repeats a hash (a secret);
/// - a file that parses renders as text that parses back to the same users and hashes, whose
///   rendering is a fixed point (comments may move between the header and the first user,
///   but no line is lost or added);
/// - every user name is already normalized.
pub fn users_file(data: &[u8]) {
    let path = Path::new("users");
    let file = match UsersFile::parse(path, data) {
        Ok(file) => file,
        Err(e) => return check_error(data, &e),
    };
    for name in file.users.keys() {
        assert_eq!(normalize_user(name).ok().as_deref(), Some(name.as_str()), "name not normalized");
    }
    let text = file.render();
    let again = UsersFile::parse(path, text.as_bytes()).unwrap_or_else(|e| panic!("rendered file does not parse: {e}"));
    let users = |f: &UsersFile| f.users.iter().map(|(n, e)| (n.clone(), e.hash.clone())).collect::<Vec<_>>();
    assert_eq!(users(&again), users(&file));
    assert_eq!(again.render(), text, "rendering is not a fixed point");
    let lines = |t: &[u8]| t.split(|&b| b == b'\n').count();
    // Rendering may add one blank line after the header, and ends the text with a line feed.
    assert!(lines(text.as_bytes()) <= lines(data) + 2, "lines added");
}

fn check_error(data: &[u8], e: &AuthError) {
    let AuthError::Malformed { path, line, reason } = e else { panic!("parse gave {e:?}") };
    assert_eq!(path, Path::new("users"));
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    assert!((1..=lines.len()).contains(line), "line {line} of {}", lines.len());
    let bad = lines[line - 1];
    if let Some(colon) = bad.iter().position(|&b| b == b':') {
        let (name, hash) = (&bad[..colon], &bad[colon + 1..]);
        // Something shaped like a PHC string (the reasons' own words have no `$`), and not
        // also in the name (which a reason may quote).
        if hash.len() >= 16 && hash.starts_with(b"$") && !contains(name, hash) {
            assert!(!contains(reason.as_bytes(), hash), "reason repeats the hash: {reason}");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
