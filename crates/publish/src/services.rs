//! Which servers and ports clients are told about, and a local domain in both spellings.

use dakiya_config::{Config, Role};
use std::net::SocketAddr;

/// How a client secures a connection to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (RFC 8314): submissions 465, pop3s 995, imaps 993.
    Implicit,
    /// STARTTLS / STLS after the greeting: submission 587, pop3 110, imap 143.
    StartTls,
}

/// One service clients can use: host, port, TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host name (an A-label, no trailing dot).
    pub host: String,
    /// The port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: Tls,
}

/// The services offered, each `None` when not configured. dakiya serves submission and
/// POP3 itself; IMAP is announced from `[client]` (Dovecot on the same Maildirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The public host name (`[client] host`).
    pub host: String,
    /// Submission over implicit TLS (RFC 8314), the first `submissions` listener.
    pub submissions: Option<Server>,
    /// Submission with STARTTLS (RFC 6409), the first `submission` listener.
    pub submission: Option<Server>,
    /// POP3 over implicit TLS, the first `pop3s` listener.
    pub pop3s: Option<Server>,
    /// POP3 with STLS, the first `pop3` listener.
    pub pop3: Option<Server>,
    /// IMAP over implicit TLS (`[client] imaps_port`).
    pub imaps: Option<Server>,
    /// IMAP with STARTTLS (`[client] imap_port`).
    pub imap: Option<Server>,
}

impl Services {
    /// The services of `cfg` with the ports its listeners are configured with.
    pub fn from_config(cfg: &Config) -> Services {
        let listeners: Vec<(SocketAddr, Role)> = cfg.listeners.iter().map(|l| (l.address, l.role)).collect();
        Services::with_listeners(cfg, &listeners)
    }

    /// The services of `cfg` with the ports of `listeners` (as bound: a configured port 0
    /// becomes the real one).
    pub fn with_listeners(cfg: &Config, listeners: &[(SocketAddr, Role)]) -> Services {
        let host = cfg.client.host.clone();
        let of = |role: Role, tls: Tls| {
            listeners.iter().find(|(_, r)| *r == role).map(|(a, _)| Server { host: host.clone(), port: a.port(), tls })
        };
        let imap = |port: Option<u16>, tls| port.map(|port| Server { host: cfg.client.imap_host.clone(), port, tls });
        Services {
            submissions: of(Role::Submissions, Tls::Implicit),
            submission: of(Role::Submission, Tls::StartTls),
            pop3s: of(Role::Pop3s, Tls::Implicit),
            pop3: of(Role::Pop3, Tls::StartTls),
            imaps: imap(cfg.client.imaps_port, Tls::Implicit),
            imap: imap(cfg.client.imap_port, Tls::StartTls),
            host,
        }
    }

    /// The outgoing servers, preferred first (implicit TLS, RFC 8314 §3.3).
    pub fn outgoing(&self) -> impl Iterator<Item = &Server> {
        self.submissions.iter().chain(self.submission.iter())
    }

    /// The incoming servers as (protocol, server), preferred first: IMAP before POP3,
    /// implicit TLS before STARTTLS.
    pub fn incoming(&self) -> impl Iterator<Item = (&'static str, &Server)> {
        let imap = self.imaps.iter().chain(self.imap.iter()).map(|s| ("imap", s));
        let pop3 = self.pop3s.iter().chain(self.pop3.iter()).map(|s| ("pop3", s));
        imap.chain(pop3)
    }
}

/// A domain in both spellings: the A-label for DNS and the wire, the U-label for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lowercase ASCII (punycode A-labels), no trailing dot.
    pub ascii: String,
    /// The same name with A-labels decoded (equal to `ascii` for an ASCII name).
    pub unicode: String,
}

impl Domain {
    /// `name` (either spelling, any case, an optional trailing dot) as both spellings;
    /// `None` if it is not a valid domain name (UTS #46).
    pub fn new(name: &str) -> Option<Domain> {
        let name = name.trim().strip_suffix('.').unwrap_or(name.trim());
        let ascii = idna::domain_to_ascii(name).ok()?;
        // UTS #46 alone lets through spaces and edge hyphens: host names are LDH (RFC 1123 §2.1).
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if ascii.len() > 253 || !ascii.split('.').all(label_ok) {
            return None;
        }
        let (unicode, check) = idna::domain_to_unicode(&ascii);
        check.ok()?;
        Some(Domain { ascii, unicode })
    }

    /// Whether the two spellings differ (the name is internationalised).
    pub fn is_idn(&self) -> bool {
        self.ascii != self.unicode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idn_both_ways() {
        let d = Domain::new("Bücher.Example.").unwrap();
        assert_eq!(d.ascii, "xn--bcher-kva.example");
        assert_eq!(d.unicode, "bücher.example");
        assert!(d.is_idn());
        assert_eq!(Domain::new("xn--bcher-kva.example"), Some(d));
        assert!(!Domain::new("example.org").unwrap().is_idn());
        assert_eq!(Domain::new("a b.example"), None);
        assert_eq!(Domain::new(""), None);
    }

    #[test]
    fn ports_come_from_listeners_and_imap_from_client() {
        let text = "hostname = \"mail.example.org\"\n[client]\nimaps_port = 993\n\
            [[listen]]\naddress = \"0.0.0.0:465\"\nrole = \"submissions\"\n\
            [[listen]]\naddress = \"0.0.0.0:110\"\nrole = \"pop3\"\n";
        let cfg = Config::parse(text, "t").unwrap();
        let s = Services::from_config(&cfg);
        assert_eq!(s.submissions, Some(Server { host: "mail.example.org".into(), port: 465, tls: Tls::Implicit }));
        assert_eq!(s.submission, None);
        let incoming: Vec<_> = s.incoming().map(|(p, s)| (p, s.port)).collect();
        assert_eq!(incoming, [("imap", 993), ("pop3", 110)]);
    }
}

/// An email address as a client sends it (the `emailaddress` parameter, Autodiscover's
/// `EMailAddress`): hostile text. Accepted: at most 254 octets (RFC 5321 §4.5.3.1.3), a
/// local part of 1 to 64 octets without controls, spaces or `@`, and a valid domain. Returns
/// the address with its domain as an A-label, and the domain.
pub fn parse_address(text: &str) -> Option<(String, Domain)> {
    let text = text.trim();
    if text.len() > 254 {
        return None;
    }
    let (local, domain) = text.rsplit_once('@')?;
    let local_ok = (1..=64).contains(&local.len())
        && !local.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '@' | '<' | '>' | '"'));
    let domain = Domain::new(domain)?;
    local_ok.then(|| (format!("{local}@{}", domain.ascii), domain))
}

#[cfg(test)]
mod address_tests {
    use super::parse_address;

    #[test]
    fn hostile_addresses_are_refused() {
        assert_eq!(parse_address("Alice@Example.ORG").unwrap().0, "Alice@example.org");
        assert_eq!(parse_address("jo@bücher.example").unwrap().0, "jo@xn--bcher-kva.example");
        for bad in ["", "@example.org", "alice", "a b@example.org", "a\n@example.org", "<a>@example.org", "a@-x-", "a@"]
        {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
        assert_eq!(parse_address(&format!("{}@example.org", "a".repeat(65))), None);
    }
}
