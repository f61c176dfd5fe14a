//! The service extensions a server lists in its EHLO reply (RFC 5321 §4.1.1.1, §2.2.2).

use crate::reply::Reply;

/// What the server offers, from its EHLO reply. Unknown keywords are ignored.
///
/// The list is only valid for the session it came from: after STARTTLS it is thrown away
/// and asked for again (RFC 3207 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE offered (RFC 1870): the client may declare `SIZE=n` on MAIL.
    pub size: bool,
    /// The fixed maximum message size, when SIZE carries a non-zero number (RFC 1870 §4:
    /// 0 or no number means no fixed maximum is declared).
    pub size_limit: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// SASL mechanisms listed with AUTH (RFC 4954 §3), upper-cased.
    pub auth: Vec<String>,
    /// CHUNKING (RFC 3030). Recorded only: this client sends DATA.
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// REQUIRETLS (RFC 8689).
    pub requiretls: bool,
}

impl Extensions {
    /// Reads the keywords of a 250 EHLO reply. The first line is the server's greeting
    /// (`domain [text]`) and carries no keyword; each further line is
    /// `ehlo-keyword *(SP ehlo-param)`, compared without regard to case.
    pub fn parse(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => {
                    ext.size = true;
                    // A malformed number declares nothing rather than a wrong limit.
                    ext.size_limit = words.next().and_then(|n| n.parse::<u64>().ok()).filter(|&n| n > 0);
                }
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "STARTTLS" => ext.starttls = true,
                "CHUNKING" => ext.chunking = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "REQUIRETLS" => ext.requiretls = true,
                "AUTH" => ext.add_mechanisms(words),
                // Servers written before RFC 2554 was final advertise `AUTH=LOGIN PLAIN`.
                k if k.starts_with("AUTH=") => {
                    ext.add_mechanisms(std::iter::once(&k["AUTH=".len()..]).chain(words));
                }
                _ => {}
            }
        }
        ext
    }

    fn add_mechanisms<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for name in names.filter(|n| !n.is_empty()) {
            let name = name.to_ascii_uppercase();
            if !self.auth.contains(&name) {
                self.auth.push(name);
            }
        }
    }

    /// True if the SASL mechanism `name` (upper case) is offered.
    pub fn offers_auth(&self, name: &str) -> bool {
        self.auth.iter().any(|m| m == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Extensions {
        Extensions::parse(&Reply::plain(250, lines.iter().map(|l| l.to_string()).collect()))
    }

    #[test]
    fn every_keyword() {
        let ext = ehlo(&[
            "mx.test greets client.test",
            "PIPELINING",
            "SIZE 10240000",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "CHUNKING",
            "ENHANCEDSTATUSCODES",
            "X-UNKNOWN whatever",
        ]);
        assert!(ext.pipelining && ext.size && ext.eight_bit_mime && ext.smtputf8 && ext.dsn);
        assert!(ext.starttls && ext.chunking && ext.enhanced_status_codes);
        assert_eq!(ext.size_limit, Some(10_240_000));
        assert_eq!(ext.auth, ["PLAIN", "LOGIN"]);
        assert!(ext.offers_auth("LOGIN") && !ext.offers_auth("CRAM-MD5"));
    }

    #[test]
    fn case_spacing_and_old_auth_syntax() {
        let ext = ehlo(&["mx", "pipelining", "auth=login  plain", "Auth login xoauth2", "  "]);
        assert!(ext.pipelining);
        assert_eq!(ext.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
    }

    #[test]
    fn the_greeting_line_is_not_a_keyword() {
        assert_eq!(ehlo(&["STARTTLS"]), Extensions::default());
        assert_eq!(ehlo(&["mx.test"]), Extensions::default());
    }

    #[test]
    fn size_variants() {
        let limit = |l: &str| {
            let e = ehlo(&["mx", l]);
            (e.size, e.size_limit)
        };
        assert_eq!(limit("SIZE"), (true, None));
        assert_eq!(limit("SIZE 0"), (true, None));
        assert_eq!(limit("SIZE 1000"), (true, Some(1000)));
        assert_eq!(limit("SIZE lots"), (true, None));
        assert_eq!(limit("SIZE 99999999999999999999999"), (true, None));
        assert_eq!(limit("SIZEX 5"), (false, None));
    }
}
