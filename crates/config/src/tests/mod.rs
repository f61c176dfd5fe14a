//! Crate-level tests: one per bad configuration, round trips, and recipient resolution.

mod access;
mod acme;
mod bad_access;
mod bad_config;
mod bad_mail;
mod bad_outbound;
mod client;
mod greylist;
mod load;
mod milter;
mod outbound;
mod resolve;
mod screen;

use crate::{Config, ConfigError};

/// The file name used in tests.
const FILE: &str = "test.toml";

/// `text` followed by one listener, so that a test's lines keep their numbers from 1.
fn with_listener(text: &str) -> String {
    format!("{text}\n[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, FILE)
}

fn parse_ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("{e}\n--- text:\n{text}"))
}

/// Asserts that `text` is refused with this key, line and message fragment.
fn check(text: &str, key: Option<&str>, line: Option<usize>, fragment: &str) {
    let e = parse(text).expect_err("the configuration should be refused");
    assert_eq!(e.file, FILE, "{e}");
    assert_eq!(e.key.as_deref(), key, "{e}");
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains(fragment), "{e:?} lacks {fragment:?}");
    assert!(!e.message.contains('\n'), "{e:?}");
}

/// `text` plus a valid listener is refused at `key`, `line`.
fn bad(text: &str, key: &str, line: usize, fragment: &str) {
    check(&with_listener(text), Some(key), Some(line), fragment);
}

/// Lines 1-2: a local domain with two mailboxes.
const DOMAIN: &str = "[domains.\"example.org\"]\nmailboxes = [\"alice\", \"bob\"]\n";
