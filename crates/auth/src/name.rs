//! What a user name and a password may be.

use dakiya_proto::address::{is_domain, is_dot_string};

use crate::AuthError;

/// Longest password accepted, in bytes. Long enough for any passphrase or generated
/// secret; short enough that nobody can make the server hash megabytes per attempt.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks a user name and returns its stored form (lowercase).
///
/// A user name is an address `local@domain`: the local part a dot-atom (ASCII or UTF-8,
/// RFC 6531 §3.3; quoted local parts are not accepted), at most 64 octets; the domain a
/// domain name (no address literal); at most 254 octets in all (RFC 5321 §4.5.3.1).
/// Whitespace, control characters and `:` (the users file's separator) are refused.
///
/// The error says why the name was refused but does not repeat it: a client that sends its
/// password as the user name must not find it in a log.
pub fn normalize_user(user: &str) -> Result<String, AuthError> {
    let bad = |why: &str| Err(AuthError::InvalidUser(why.to_string()));
    if user.is_empty() {
        return bad("empty");
    }
    if user.len() > 254 {
        return bad("longer than 254 octets");
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or a control character");
    }
    if user.contains(':') {
        return bad("contains `:`");
    }
    let Some((local, domain)) = user.rsplit_once('@') else {
        return bad("not of the form local@domain");
    };
    if local.is_empty() || local.len() > 64 || !is_dot_string(local) {
        return bad("local part is not a dot-atom of at most 64 octets");
    }
    if !is_domain(domain) {
        return bad("domain is not a valid domain name");
    }
    Ok(user.to_lowercase())
}

/// Checks that a password may be stored: 1 to [`MAX_PASSWORD_LEN`] bytes, no NUL (SASL
/// PLAIN uses NUL as its separator, RFC 4616 §2, so such a password could never be sent).
pub fn check_password(password: &str) -> Result<(), AuthError> {
    if password.is_empty() {
        Err(AuthError::InvalidPassword("empty"))
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(AuthError::InvalidPassword("longer than 1024 bytes"))
    } else if password.contains('\0') {
        Err(AuthError::InvalidPassword("contains a NUL character"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_are_lowercased() {
        assert_eq!(normalize_user("Alice@Example.ORG").unwrap(), "alice@example.org");
        assert_eq!(normalize_user("a.b+tag@localhost").unwrap(), "a.b+tag@localhost");
        assert_eq!(normalize_user("JOSÉ@Bücher.example").unwrap(), "josé@bücher.example");
    }

    #[test]
    fn bad_names_are_refused_without_echoing_them() {
        let long_local = format!("{}@d.test", "a".repeat(65));
        let long_all = format!("a@{}.test", vec!["b".repeat(60); 5].join("."));
        for bad in [
            "",
            "alice",
            "@example.org",
            "alice@",
            "a b@example.org",
            "a\u{a0}b@example.org",
            "a\tb@example.org",
            "a\u{0}@example.org",
            "a:b@example.org",
            "a..b@example.org",
            ".a@example.org",
            "\"quoted\"@example.org",
            "a@b@example.org",
            "a@[127.0.0.1]",
            "a@-x.test",
            "a@x..test",
            &long_local,
            &long_all,
        ] {
            match normalize_user(bad) {
                Err(AuthError::InvalidUser(why)) => {
                    assert!(bad.is_empty() || !why.contains(bad), "{why} echoes {bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("x").is_ok());
        assert!(check_password(&"p".repeat(1024)).is_ok());
        assert!(check_password("pässwörd with spaces").is_ok());
        for bad in [String::new(), "p".repeat(1025), "a\0b".to_string()] {
            assert!(matches!(check_password(&bad), Err(AuthError::InvalidPassword(_))));
        }
    }
}
