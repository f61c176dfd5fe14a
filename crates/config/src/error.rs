//! The two error types: [`ConfigError`] (loading) and [`RcptError`] (routing).

use std::fmt;
use std::ops::Range;

/// A configuration that cannot be loaded: unreadable file, bad TOML, or a value that fails
/// validation.
///
/// It names the file, and where known the line and the key, so that an operator can go straight
/// to the mistake. [`Display`](fmt::Display) renders `FILE: line L: key `K`: MESSAGE`, leaving
/// out the parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file, as given to [`Config::from_file`](crate::Config::from_file) or
    /// [`Config::parse`](crate::Config::parse).
    pub file: String,
    /// The 1-based line of the offending key or value, if the error has a position.
    pub line: Option<usize>,
    /// The dotted TOML key, e.g. `limits.max_recipients` or `domains."example.org".mailboxes`.
    pub key: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why [`Config::resolve`](crate::Config::resolve) refused a recipient.
///
/// The binary maps these to SMTP replies; the variants are stable, new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RcptError {
    /// The domain is not one of ours (we do not relay).
    #[error("domain is not local")]
    NotLocal,
    /// The domain is ours, but no alias, mailbox or catch-all takes this local part.
    #[error("no such mailbox")]
    UnknownMailbox,
    /// Alias expansion looped, or nested deeper than the limit of 10 levels.
    #[error("alias loop or alias nesting too deep")]
    AliasLoop,
    /// The local part cannot safely be used as a mailbox (directory) name.
    #[error("local part is not a valid mailbox name")]
    InvalidMailboxName,
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Builds [`ConfigError`]s for one source text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The TOML text (to turn byte offsets into lines).
    pub text: &'a str,
    /// The file name to report.
    pub file: &'a str,
}

impl Ctx<'_> {
    /// An error about `key`, positioned at `span` if there is one.
    pub fn err(&self, key: impl Into<String>, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Converts a toml parse or type error, naming the key found at its position.
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let key = span.as_ref().and_then(|s| crate::locate::key_at(self.text, s.start));
        // toml messages may span lines ("invalid string\nexpected ..."); we report one line.
        let message = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        ConfigError { file: self.file.to_owned(), line: span.map(|s| line_of(self.text, s.start)), key, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_missing_parts() {
        let mut e = ConfigError {
            file: "f.toml".into(),
            line: Some(3),
            key: Some("limits.max_errors".into()),
            message: "must be at least 1".into(),
        };
        assert_eq!(e.to_string(), "f.toml: line 3: key `limits.max_errors`: must be at least 1");
        e.line = None;
        assert_eq!(e.to_string(), "f.toml: key `limits.max_errors`: must be at least 1");
        e.key = None;
        assert_eq!(e.to_string(), "f.toml: must be at least 1");
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
