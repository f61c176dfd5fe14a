//! Checks on the domain names and selectors that become directory and file names under the
//! key directory and DNS names in the published record: nothing that could climb out of the
//! directory (`..`, `/`) or be an invalid DNS name gets through.

/// The longest domain name in its text form (RFC 1035 §2.3.4, less the root's dot).
const MAX_DOMAIN: usize = 253;
/// The longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// `label` as a letters-digits-hyphen DNS label (RFC 5890 §2.3.1), lower-cased; `None` if it
/// is not one.
fn ldh_label(label: &str) -> Option<String> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    ok.then(|| label.to_ascii_lowercase())
}

/// The signing domain in lower case, or why it is not acceptable. Internationalised names
/// must be given in their A-label (`xn--`) form, which is what DNS and `d=` carry.
pub(crate) fn domain(domain: &str) -> Result<String, String> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    if !trimmed.is_ascii() {
        return Err(format!("domain {domain:?} must be given in its A-label (xn--) form"));
    }
    if trimmed.is_empty() || trimmed.len() > MAX_DOMAIN {
        return Err(format!("domain {domain:?} is empty or too long"));
    }
    let labels: Option<Vec<String>> = trimmed.split('.').map(ldh_label).collect();
    match labels {
        Some(labels) => Ok(labels.join(".")),
        None => Err(format!("domain {domain:?} is not a valid domain name (letters, digits, hyphens, dots)")),
    }
}

/// The selector in lower case, or why it is not acceptable. RFC 6376 §3.1 allows dotted
/// selectors, but dakiya keeps one DNS label per selector: it is also a file name.
pub(crate) fn selector(selector: &str) -> Result<String, String> {
    ldh_label(selector)
        .ok_or_else(|| format!("selector {selector:?} is not a DNS label (1-63 letters, digits or inner hyphens)"))
}

#[cfg(test)]
mod tests {
    use super::{domain, selector};

    #[test]
    fn domains_are_lowered_and_checked() {
        assert_eq!(domain("Example.TEST").unwrap(), "example.test");
        assert_eq!(domain("example.test.").unwrap(), "example.test");
        assert_eq!(domain("xn--bcher-kva.example").unwrap(), "xn--bcher-kva.example");
        for bad in ["", ".", "..", "../etc", "a/b", "a..b", "-a.test", "a-.test", "bücher.example", "a b.test"] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
        assert!(domain(&format!("{}.test", "a".repeat(64))).is_err());
    }

    #[test]
    fn selectors_are_single_labels() {
        assert_eq!(selector("S2024").unwrap(), "s2024");
        assert_eq!(selector("mail-1").unwrap(), "mail-1");
        for bad in ["", ".", "..", "../x", "a.b", "a/b", "-a", "a-", "a_b", "sel.key", &"a".repeat(64)] {
            assert!(selector(bad).is_err(), "{bad:?}");
        }
    }
}
