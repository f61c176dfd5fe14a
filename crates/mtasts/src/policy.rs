//! The policy file served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (RFC 8461
//! §3.2) and how an MX host is matched against it (§4.1).

use std::fmt;

/// The largest `max_age` allowed (RFC 8461 §3.2: 31557600 seconds, about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What the policy asks of senders (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS; never downgrade.
    Enforce,
    /// Deliver as without a policy, but report failures (RFC 8460).
    Testing,
    /// As if there were no policy (used to withdraw one).
    None,
}

impl Mode {
    /// The name used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// The MX patterns, lower case: host names, or `*.` and a domain (§3.2).
    pub mx: Vec<String>,
    /// How long the policy may be cached, in seconds (at most [`MAX_AGE_LIMIT`]).
    pub max_age: u64,
}

/// Why a policy file is refused (reported as `sts-policy-invalid`, RFC 8460 §4.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not UTF-8 text.
    #[error("the policy is not UTF-8 text")]
    NotText,
    /// A line is not `key: value`.
    #[error("line {0}: not \"key: value\"")]
    Syntax(usize),
    /// A required field is missing.
    #[error("no {0} field")]
    Missing(&'static str),
    /// A field other than `mx` appears twice.
    #[error("{0} given twice")]
    Duplicate(String),
    /// A field has a value outside its grammar.
    #[error("bad {0}: {1:?}")]
    Value(&'static str, String),
}

impl Policy {
    /// Parses the policy body strictly (RFC 8461 §3.2): `key: value` lines ended by CRLF or
    /// LF; `version: STSv1`, `mode`, `max_age` exactly once; `mx` once or more (none
    /// needed with `mode: none`); other keys are ignored as extensions.
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotText)?;
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or(PolicyError::Syntax(i + 1))?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PolicyError::Syntax(i + 1));
            }
            let once = |slot: &Option<&str>| match slot {
                Some(_) => Err(PolicyError::Duplicate(key.to_owned())),
                None => Ok(Some(value)),
            };
            match key {
                "version" => version = once(&version)?,
                "mode" => mode = once(&mode)?,
                "max_age" => max_age = once(&max_age)?,
                "mx" => mx.push(mx_pattern(value)?),
                _ => {}
            }
        }
        match version {
            Some("STSv1") => {}
            Some(other) => return Err(PolicyError::Value("version", other.to_owned())),
            None => return Err(PolicyError::Missing("version")),
        }
        let mode = match mode.ok_or(PolicyError::Missing("mode"))? {
            "enforce" => Mode::Enforce,
            "testing" => Mode::Testing,
            "none" => Mode::None,
            other => return Err(PolicyError::Value("mode", other.to_owned())),
        };
        let raw_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
        let max_age = Some(raw_age)
            .filter(|a| !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|&a| a <= MAX_AGE_LIMIT)
            .ok_or_else(|| PolicyError::Value("max_age", raw_age.to_owned()))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::Missing("mx"));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether `host` (an MX host name, any case, trailing dot allowed) matches one of the
    /// patterns (RFC 8461 §4.1): equal, or `*.rest` where the host is one label followed by
    /// `rest` (the wildcard covers exactly one label, never more or none).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(rest) => host.split_once('.').is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
            None => *pattern == host,
        })
    }

    /// The policy in its file form (canonical: LF line ends, fields in a fixed order), as
    /// kept in the cache and quoted in reports (`policy-string`, RFC 8460 §4.3).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec!["version: STSv1".to_owned(), format!("mode: {}", self.mode)];
        out.extend(self.mx.iter().map(|m| format!("mx: {m}")));
        out.push(format!("max_age: {}", self.max_age));
        out
    }
}

/// An `mx` value: a host name, or `*.` and a domain; letters, digits, hyphens, dots.
fn mx_pattern(value: &str) -> Result<String, PolicyError> {
    let bad = || PolicyError::Value("mx", value.to_owned());
    let lower = value.strip_suffix('.').unwrap_or(value).to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn parses_the_rfc_example() {
        let p = Policy::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net", "backupmx.example.com"]);
        assert_eq!(p.max_age, 604_800);
        let again = Policy::parse(p.lines().join("\n").as_bytes()).unwrap();
        assert_eq!(again, p, "the canonical form parses to the same policy");
    }

    #[test]
    fn lf_only_and_extensions_are_accepted() {
        let p = Policy::parse(b"version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 86400\nfuture_key: x\n")
            .unwrap();
        assert_eq!((p.mode, p.mx.as_slice()), (Mode::Testing, &["mx.example.com".to_owned()][..]));
        let none = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(none.mode, Mode::None);
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad = |text: &str| Policy::parse(text.as_bytes()).unwrap_err();
        assert_eq!(bad("mode: enforce\nmx: a.test\nmax_age: 1\n"), PolicyError::Missing("version"));
        assert!(matches!(bad("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n"), PolicyError::Value(..)));
        assert!(matches!(bad("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n"), PolicyError::Value(..)));
        assert_eq!(bad("version: STSv1\nmode: enforce\nmax_age: 1\n"), PolicyError::Missing("mx"));
        assert!(matches!(
            bad("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n"),
            PolicyError::Value(..)
        ));
        assert!(matches!(bad("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n"), PolicyError::Value(..)));
        assert!(matches!(
            bad("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999\n"),
            PolicyError::Value(..)
        ));
        assert!(matches!(
            bad("version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n"),
            PolicyError::Duplicate(_)
        ));
        assert!(matches!(bad("version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1\n"), PolicyError::Value(..)));
        assert!(matches!(bad("version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 1\n"), PolicyError::Value(..)));
        assert!(matches!(bad("<html>hello</html>\n"), PolicyError::Syntax(1)));
        assert_eq!(Policy::parse(&[0xff, 0xfe]).unwrap_err(), PolicyError::NotText);
        assert_eq!(Policy::parse(MAX_AGE_LIMIT.to_string().as_bytes()).unwrap_err(), PolicyError::Syntax(1));
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let p = Policy::parse(GOOD.as_bytes()).unwrap();
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("example.net"), "the wildcard needs a label");
        assert!(!p.matches("a.b.example.net"), "the wildcard covers one label only");
        assert!(!p.matches("mx.example.org"));
        assert!(!p.matches("xmail.example.com"));
        assert!(!p.matches(".example.net"));
    }
}
