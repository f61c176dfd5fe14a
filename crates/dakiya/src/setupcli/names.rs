//! Domain and host names as typed by a person: Unicode or A-labels in, both forms out
//! (UTS #46 / IDNA 2008 through the `idna` crate; RFC 5890 §2.3.2.1 for the two forms).

/// A name in both forms: `ascii` for the configuration and DNS, `unicode` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    /// The A-label form (`xn--…` labels), lowercase, without a trailing dot.
    pub ascii: String,
    /// The form to show: U-labels where the name has any.
    pub unicode: String,
}

impl Name {
    /// `ascii`, followed by `(unicode)` when the two differ.
    pub fn shown(&self) -> String {
        if self.ascii == self.unicode { self.ascii.clone() } else { format!("{} ({})", self.unicode, self.ascii) }
    }
}

/// Parses `text` as a domain name of at least two labels; `what` ("domain", "host name")
/// goes into the error.
pub(crate) fn parse(text: &str, what: &str) -> Result<Name, String> {
    let trimmed = text.trim().strip_suffix('.').unwrap_or(text.trim());
    let invalid = |why: &str| format!("{text:?} is not a valid {what}: {why}");
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| invalid("not a domain name under IDNA (UTS #46)"))?;
    if !dakiya_config::is_valid_domain(&ascii) {
        return Err(invalid(
            "labels are letters, digits and hyphens (not first or last), 1 to 63 octets each, \
             253 in all, and the last is not a number",
        ));
    }
    if !ascii.contains('.') {
        return Err(invalid("it needs at least two labels, e.g. example.org"));
    }
    let (unicode, result) = idna::domain_to_unicode(&ascii);
    result.map_err(|_| invalid("its xn-- labels do not decode"))?;
    Ok(Name { ascii, unicode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_lowercased() {
        let n = parse("Example.ORG.", "domain").unwrap();
        assert_eq!((n.ascii.as_str(), n.unicode.as_str()), ("example.org", "example.org"));
        assert_eq!(n.shown(), "example.org");
    }

    #[test]
    fn international_names_have_both_forms() {
        let n = parse("Bücher.example", "domain").unwrap();
        assert_eq!(n.ascii, "xn--bcher-kva.example");
        assert_eq!(n.unicode, "bücher.example");
        assert_eq!(parse("xn--bcher-kva.example", "domain").unwrap(), n);
        assert_eq!(n.shown(), "bücher.example (xn--bcher-kva.example)");
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        for bad in [
            "",
            "example",
            "exa mple.org",
            "-x.example",
            "a..b",
            "example.123",
            "a_b.example",
            &format!("{}.org", "a".repeat(64)),
        ] {
            let e = parse(bad, "domain").unwrap_err();
            assert!(e.contains("is not a valid domain"), "{bad}: {e}");
        }
        assert!(parse("example", "host name").unwrap_err().contains("at least two labels"));
    }
}
