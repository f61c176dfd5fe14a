//! The body of the `config` fuzz target (`fuzz/fuzz_targets/config.rs`), kept here so the
//! committed corpus also runs as an ordinary test (`tests/corpus.rs`) on stable Rust.

use crate::Config;

/// The source name the fuzzed text is parsed under.
const SOURCE: &str = "fuzz.toml";

/// Parses `data` as a configuration file. Errors are expected; panics are bugs. Checks:
/// - an error names the file, and its line (when it has one) lies inside the text;
/// - a configuration that loads prints ([`Config::to_toml`]) as text that loads back to an
///   equal `Config`, and that text is a fixed point of print-then-parse.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, SOURCE) {
        Err(e) => {
            assert_eq!(e.file, SOURCE);
            let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            assert!(!e.to_string().is_empty());
        }
        Ok(config) => {
            let printed = config.to_toml();
            let again = Config::parse(&printed, SOURCE)
                .unwrap_or_else(|e| panic!("to_toml output does not load: {e}\n{printed}"));
            assert_eq!(again, config, "{printed}");
            assert_eq!(again.to_toml(), printed);
        }
    }
}
