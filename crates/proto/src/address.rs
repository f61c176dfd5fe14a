//! Mailbox addresses and paths (RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3).

use std::fmt;

/// Why an address failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not of the form `<...>`, or junk around it.
    #[error("address must be enclosed in <>")]
    Brackets,
    /// The local part is empty, too long or has characters not allowed there.
    #[error("bad local part")]
    LocalPart,
    /// The domain is missing, too long or not a valid domain name or address literal.
    #[error("bad domain")]
    Domain,
    /// A source route (`@a,@b:`) that is not well formed.
    #[error("bad source route")]
    Route,
    /// The path exceeds 256 octets (RFC 5321 §4.5.3.1.3).
    #[error("path too long")]
    TooLong,
}

/// A mailbox `local@domain`. The local part is kept unquoted; the domain is lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part, with quoting removed (quoted-pairs resolved).
    pub local: String,
    /// The domain, lowercased; an address literal keeps its brackets (`[192.0.2.1]`).
    pub domain: String,
}

impl Mailbox {
    /// True if the domain is an address literal such as `[192.0.2.1]`.
    pub fn is_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// True if every octet is ASCII; otherwise SMTPUTF8 is required (RFC 6531 §3.2).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            write!(f, "{}@{}", self.local, self.domain)
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        }
    }
}

/// A reverse-path: the null path `<>` (bounces) or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`, used for delivery status notifications (RFC 5321 §4.5.5).
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// A forward-path: a mailbox, or the bare `<Postmaster>` every server must accept
/// (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

/// Parses `<>` or a path, as after `MAIL FROM:`.
pub fn parse_reverse_path(s: &str) -> Result<ReversePath, AddressError> {
    if s == "<>" {
        return Ok(ReversePath::Null);
    }
    parse_path(s).map(ReversePath::Mailbox)
}

/// Parses a path as after `RCPT TO:`, accepting `<Postmaster>` (any case).
pub fn parse_forward_path(s: &str) -> Result<ForwardPath, AddressError> {
    if s.eq_ignore_ascii_case("<postmaster>") {
        return Ok(ForwardPath::Postmaster);
    }
    parse_path(s).map(ForwardPath::Mailbox)
}

/// Parses `"<" [ A-d-l ":" ] Mailbox ">"`. A source route is syntax-checked and then
/// ignored, as RFC 5321 §4.1.1.3 and Appendix C tell servers to do: relaying decisions are
/// made on the final mailbox only, so `<@local:user@remote>` is judged as `user@remote`.
pub fn parse_path(s: &str) -> Result<Mailbox, AddressError> {
    if s.len() > 256 {
        return Err(AddressError::TooLong);
    }
    let inner = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')).ok_or(AddressError::Brackets)?;
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => {
            let (route, rest) = split_route(inner)?;
            for hop in route.split(',') {
                let d = hop.strip_prefix('@').ok_or(AddressError::Route)?;
                if !is_domain(d) {
                    return Err(AddressError::Route);
                }
            }
            rest
        }
        None => inner,
    };
    parse_mailbox(mailbox)
}

/// Splits `@a,@b:rest` at the colon that ends the route (a quoted local part may hold colons,
/// but a route never holds quotes).
fn split_route(inner: &str) -> Result<(&str, &str), AddressError> {
    let colon = inner.find(':').ok_or(AddressError::Route)?;
    if inner[..colon].contains('"') {
        return Err(AddressError::Route);
    }
    Ok((&inner[..colon], &inner[colon + 1..]))
}

/// Parses `Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, AddressError> {
    let (local, rest) = if s.starts_with('"') {
        parse_quoted(s)?
    } else {
        let at = s.rfind('@').ok_or(AddressError::Domain)?;
        let local = &s[..at];
        if !is_dot_string(local) {
            return Err(AddressError::LocalPart);
        }
        (local.to_string(), &s[at..])
    };
    // RFC 5321 §4.5.3.1.1: local part at most 64 octets.
    if local.is_empty() || local.len() > 64 {
        return Err(AddressError::LocalPart);
    }
    let domain = rest.strip_prefix('@').ok_or(AddressError::Domain)?;
    let domain = if domain.starts_with('[') {
        parse_literal(domain)?
    } else if is_domain(domain) {
        domain.to_lowercase()
    } else {
        return Err(AddressError::Domain);
    };
    Ok(Mailbox { local, domain })
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`; returns the unquoted text and what follows.
fn parse_quoted(s: &str) -> Result<(String, &str), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                // quoted-pairSMTP = %d92 %d32-126
                Some((_, q)) if (' '..='~').contains(&q) => out.push(q),
                _ => return Err(AddressError::LocalPart),
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii (RFC 6531).
            ' '..='~' => out.push(c),
            c if !c.is_ascii() && !c.is_control() => out.push(c),
            _ => return Err(AddressError::LocalPart),
        }
    }
    Err(AddressError::LocalPart)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// `Dot-string = Atom *("." Atom)`.
pub fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// `Domain = sub-domain *("." sub-domain)`, with U-labels allowed (RFC 6531 §3.3), at most
/// 255 octets (RFC 5321 §4.5.3.1.2). A single trailing dot is not allowed on the wire.
pub fn is_domain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('.').all(is_sub_domain)
}

fn is_sub_domain(label: &str) -> bool {
    if label.is_empty() || label.len() > 63 {
        return false;
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric());
    label.chars().all(ok_char) && !label.starts_with('-') && !label.ends_with('-')
}

/// `address-literal`: `[IPv4]` or `[IPv6:...]`; general literals are refused.
fn parse_literal(s: &str) -> Result<String, AddressError> {
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or(AddressError::Domain)?;
    let ok = if let Some(v6) = inner.get(..5).filter(|p| p.eq_ignore_ascii_case("IPv6:")) {
        let _ = v6;
        inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        inner.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if ok { Ok(s.to_ascii_lowercase().replace("[ipv6:", "[IPv6:")) } else { Err(AddressError::Domain) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(l: &str, d: &str) -> Mailbox {
        Mailbox { local: l.into(), domain: d.into() }
    }

    #[test]
    fn plain_paths() {
        assert_eq!(parse_path("<a.b@Example.ORG>"), Ok(mb("a.b", "example.org")));
        assert_eq!(parse_reverse_path("<>"), Ok(ReversePath::Null));
        assert_eq!(parse_forward_path("<POSTMASTER>"), Ok(ForwardPath::Postmaster));
        assert_eq!(parse_path("<user+tag@d.test>"), Ok(mb("user+tag", "d.test")));
    }

    #[test]
    fn source_route_is_ignored() {
        assert_eq!(parse_path("<@local.test,@b.test:user@remote.test>"), Ok(mb("user", "remote.test")));
        assert_eq!(parse_path("<@:user@remote.test>"), Err(AddressError::Route));
        assert_eq!(parse_path("<@local.test user@remote.test>"), Err(AddressError::Route));
    }

    #[test]
    fn quoted_local_parts() {
        let m = parse_path("<\"john doe\"@d.test>").unwrap();
        assert_eq!(m, mb("john doe", "d.test"));
        assert_eq!(m.to_string(), "\"john doe\"@d.test");
        let m = parse_path("<\"a\\\"b@c\"@d.test>").unwrap();
        assert_eq!(m.local, "a\"b@c");
        assert_eq!(m.to_string(), "\"a\\\"b@c\"@d.test");
        assert!(parse_path("<\"unterminated@d.test>").is_err());
        assert!(parse_path("<\"a\tb\"@d.test>").is_err());
    }

    #[test]
    fn literals() {
        assert_eq!(parse_path("<u@[127.0.0.1]>").unwrap().domain, "[127.0.0.1]");
        assert!(parse_path("<u@[127.0.0.1]>").unwrap().is_literal());
        assert_eq!(parse_path("<u@[IPv6:::1]>").unwrap().domain, "[IPv6:::1]");
        assert!(parse_path("<u@[300.1.1.1]>").is_err());
        assert!(parse_path("<u@[tag:stuff]>").is_err());
    }

    #[test]
    fn utf8_addresses() {
        let m = parse_path("<josé@bücher.example>").unwrap();
        assert!(!m.is_ascii());
        assert_eq!(m.local, "josé");
        assert_eq!(parse_path("<JOSÉ@BÜCHER.example>").unwrap().domain, "bücher.example");
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "a@b.test",
            "<a@b.test",
            "<>x",
            "<@b.test>",
            "<a@>",
            "<a@-b.test>",
            "<a@b-.test>",
            "<a..b@c.test>",
            "<.a@c.test>",
            "<a.@c.test>",
            "<a b@c.test>",
            "<a@b..test>",
            "<a@b.test.>",
            "<a\u{0}@b.test>",
            "<a@b_c.test>",
            "<a@@b.test>",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?} should be refused");
        }
        let long_local = format!("<{}@d.test>", "a".repeat(65));
        assert_eq!(parse_path(&long_local), Err(AddressError::LocalPart));
        let long_path = format!("<a@{}.test>", "b".repeat(260));
        assert_eq!(parse_path(&long_path), Err(AddressError::TooLong));
    }

    #[test]
    fn percent_and_bang_stay_in_the_local_part() {
        // The percent hack and UUCP bang paths are just local-part characters: the domain
        // that counts for relaying is the one after the last '@'.
        assert_eq!(parse_path("<user%remote.test@local.test>").unwrap().domain, "local.test");
        assert_eq!(parse_path("<remote.test!user@local.test>").unwrap().local, "remote.test!user");
    }
}
