//! Syntax of domain names, mailbox names and addresses.

/// The most characters a mailbox name may have: the limit on a local part (RFC 5321
/// §4.5.3.1.1 counts octets; we count characters, which is no looser for ASCII).
const MAX_MAILBOX_CHARS: usize = 64;

/// Domains compare case-insensitively (RFC 5321 §2.4) and an absolute name `example.org.` is the
/// same domain as `example.org`: lowercase ASCII, strip one trailing dot.
pub(crate) fn normalize_domain(domain: &str) -> String {
    domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase()
}

/// Local parts compare case-insensitively: we lowercase them (Unicode-aware).
///
/// RFC 5321 §2.4 lets a server treat local parts as case-sensitive, but our mailboxes are
/// directory names: folding case means `Alice` and `alice` can never be two mailboxes, and
/// senders who capitalise a name still reach it.
pub(crate) fn normalize_local(local: &str) -> String {
    local.to_lowercase()
}

/// Whether `domain` is a syntactically valid (already normalized) domain name: dot-separated
/// labels of ASCII letters, digits and hyphens (RFC 1035 §2.3.1, RFC 1123 §2.1), each 1..=63
/// octets, not starting or ending with a hyphen, at most 253 octets in all. Internationalized
/// names must be written as A-labels (`xn--...`). A last label of digits only is refused, so an
/// IP address is never taken for a domain.
pub fn is_valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    domain.split('.').all(label_ok) && !domain.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` may be used as a mailbox, that is as a directory name under
/// `data_dir/mail/<domain>/`.
///
/// Under `any_mailbox` these names come from the network, so the rule is a whitelist: 1 to 64
/// characters, each alphanumeric (Unicode allowed) or one of `.`, `_`, `-`, `=`; not starting
/// with `.` (no hidden files, no `.` or `..`) and not containing `..`. That excludes `/`, `\`,
/// NUL, control characters and whitespace. Callers lowercase the name first.
pub fn is_valid_mailbox_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_MAILBOX_CHARS).contains(&count)
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '='))
        && !name.starts_with('.')
        && !name.contains("..")
}

/// Whether `local` is a local part we accept in configuration: an RFC 5322 dot-atom (atext
/// characters, with RFC 6531 UTF-8 allowed, separated by single dots), at most 64 octets
/// (RFC 5321 §4.5.3.1.1). Quoted local parts are not supported in configuration.
pub(crate) fn is_valid_local_part(local: &str) -> bool {
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    !local.is_empty() && local.len() <= 64 && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

/// Splits `local@domain` at the last `@`, checks both halves and returns them normalized:
/// the domain lowercased, the local part as written (remote local parts may be
/// case-sensitive). `None` if it is not a valid address.
pub(crate) fn parse_address(address: &str) -> Option<(String, String)> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = normalize_domain(domain);
    (is_valid_local_part(local) && is_valid_domain(&domain)).then(|| (local.to_owned(), domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for ok in ["localhost", "example.org", "a-b.example", "xn--bcher-kva.example", "1.example"] {
            assert!(is_valid_domain(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            "-a.org",
            "a-.org",
            "a_b.org",
            "a b",
            "127.0.0.1",
            "ex.123",
            "bücher.example",
            &long_label,
            &long_name,
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
        assert_eq!(normalize_domain("Example.ORG."), "example.org");
        assert_eq!(normalize_domain("a.."), "a.");
    }

    #[test]
    fn mailbox_names() {
        for ok in ["alice", "a.b", "a_b-c=d", "élodie", "用户", "a".repeat(64).as_str()] {
            assert!(is_valid_mailbox_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            ".",
            "..",
            "a..b",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a b",
            "a+b",
            "a@b",
            "a\nb",
            "a".repeat(65).as_str(),
        ] {
            assert!(!is_valid_mailbox_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("Carol.X+y@Elsewhere.Example"),
            Some(("Carol.X+y".to_owned(), "elsewhere.example".to_owned()))
        );
        assert_eq!(parse_address("josé@example.org").map(|a| a.0), Some("josé".into()));
        for bad in ["alice", "@example.org", "alice@", "a..b@x.org", ".a@x.org", "a b@x.org", "a@b@c", "a@[1.2.3.4]"] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
        assert!(!is_valid_local_part(&"a".repeat(65)));
    }
}
