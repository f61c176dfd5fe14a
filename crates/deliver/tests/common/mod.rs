//! Helpers shared by the Maildir integration tests (each test binary uses some of them).
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use dakiya_deliver::{Staging, StagingOptions};

/// Runs `test` for both ways a copy reaches `new/` (docs/maildir.md): an anonymous file
/// linked into `new/` (the default; this file system has `O_TMPFILE`), and the fallback
/// through `tmp/` + rename. `test` gets the options and the staging they must lead to.
pub fn each_staging(test: impl Fn(StagingOptions, Staging)) {
    test(StagingOptions::default(), Staging::Anonymous);
    test(StagingOptions { anonymous: false, ..StagingOptions::default() }, Staging::Rename);
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}
