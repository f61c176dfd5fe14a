//! An Apple configuration profile (`.mobileconfig`, unsigned): a property list with one
//! `com.apple.mail.managed` payload. Its PayloadUUIDs are derived from the domain (and the
//! address, when given), so repeated downloads are identical and installing it again
//! replaces the account instead of adding a second one.

use crate::xml::Doc;
use crate::{Domain, Server, Services, Tls};
use quick_xml::events::{BytesText, Event};

/// The media type iOS and macOS install profiles from.
pub const CONTENT_TYPE: &str = "application/x-apple-aspen-config";

/// The profile for `domain`, for `address` when the client named one (else the user types
/// it on the device). `None` when there is no incoming or no outgoing server to configure.
pub fn profile(domain: &Domain, address: Option<&str>, services: &Services) -> Option<String> {
    let incoming = services.incoming().next()?;
    let outgoing = services.outgoing().next()?;
    let seed = format!("{}\0{}", domain.ascii, address.unwrap_or(""));
    let reverse: Vec<&str> = domain.ascii.rsplit('.').collect();
    let identifier = format!("{}.mail", reverse.join("."));
    let mut d = Doc::new();
    d.event(Event::DocType(BytesText::from_escaped(
        r#"plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd""#,
    )));
    d.open("plist", &[("version", "1.0")]);
    d.open("dict", &[]);
    d.leaf("key", "PayloadContent");
    d.open("array", &[]);
    d.open("dict", &[]);
    string(&mut d, "EmailAccountDescription", &domain.unicode);
    string(&mut d, "EmailAccountType", if incoming.0 == "imap" { "EmailTypeIMAP" } else { "EmailTypePOP" });
    if let Some(a) = address {
        string(&mut d, "EmailAddress", a);
    }
    server(&mut d, "Incoming", incoming.1, address);
    server(&mut d, "Outgoing", outgoing, address);
    boolean(&mut d, "OutgoingPasswordSameAsIncomingPassword", true);
    string(&mut d, "PayloadDisplayName", &format!("Mail account for {}", domain.unicode));
    string(&mut d, "PayloadIdentifier", &format!("{identifier}.account"));
    string(&mut d, "PayloadType", "com.apple.mail.managed");
    string(&mut d, "PayloadUUID", &uuid(&seed, "account"));
    integer(&mut d, "PayloadVersion", 1);
    d.close("dict");
    d.close("array");
    string(&mut d, "PayloadDisplayName", &format!("Mail for {}", domain.unicode));
    string(&mut d, "PayloadIdentifier", &identifier);
    boolean(&mut d, "PayloadRemovalDisallowed", false);
    string(&mut d, "PayloadType", "Configuration");
    string(&mut d, "PayloadUUID", &uuid(&seed, "profile"));
    integer(&mut d, "PayloadVersion", 1);
    d.close("dict");
    d.close("plist");
    Some(d.finish())
}

/// The `IncomingMailServer…` or `OutgoingMailServer…` keys. Apple's `UseSSL` means TLS,
/// implicit on the TLS ports and STARTTLS on the others.
fn server(d: &mut Doc, which: &str, s: &Server, address: Option<&str>) {
    string(d, &format!("{which}MailServerAuthentication"), "EmailAuthPassword");
    string(d, &format!("{which}MailServerHostName"), &s.host);
    integer(d, &format!("{which}MailServerPortNumber"), s.port.into());
    boolean(d, &format!("{which}MailServerUseSSL"), matches!(s.tls, Tls::Implicit | Tls::StartTls));
    if let Some(a) = address {
        string(d, &format!("{which}MailServerUsername"), a);
    }
}

fn string(d: &mut Doc, key: &str, value: &str) {
    d.leaf("key", key);
    d.leaf("string", value);
}

fn integer(d: &mut Doc, key: &str, value: u32) {
    d.leaf("key", key);
    d.leaf("integer", &value.to_string());
}

fn boolean(d: &mut Doc, key: &str, value: bool) {
    d.leaf("key", key);
    d.empty(if value { "true" } else { "false" });
}

/// A UUID made from SHA-256 of `seed` and `part`, with the version (8, custom) and variant
/// bits of RFC 9562 §5.8.
fn uuid(seed: &str, part: &str) -> String {
    let mut b = crate::sha256(format!("dakiya mobileconfig\0{seed}\0{part}").as_bytes());
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::hex(&b[..16]).to_ascii_uppercase();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        let s = |port, tls| Some(Server { host: "mail.example.org".into(), port, tls });
        Services {
            host: "mail.example.org".into(),
            submissions: s(465, Tls::Implicit),
            submission: None,
            pop3s: s(995, Tls::Implicit),
            pop3: None,
            imaps: None,
            imap: None,
        }
    }

    #[test]
    fn stable_and_escaped() {
        let d = Domain::new("example.org").unwrap();
        let a = profile(&d, Some("x<y>@example.org"), &services()).unwrap();
        assert_eq!(a, profile(&d, Some("x<y>@example.org"), &services()).unwrap());
        assert!(a.contains("x&lt;y&gt;@example.org") && !a.contains("x<y>"), "{a}");
        assert!(a.contains("<string>com.apple.mail.managed</string>"), "{a}");
        assert!(a.contains("<string>EmailTypePOP</string>"), "{a}");
        let b = profile(&d, None, &services()).unwrap();
        assert_ne!(uuid("example.org\0", "profile"), uuid("example.org\0", "account"));
        assert!(b.contains(&uuid("example.org\0", "profile")));
        assert_eq!(uuid("x", "y").len(), 36);
    }

    #[test]
    fn nothing_to_configure() {
        let mut s = services();
        s.pop3s = None;
        assert_eq!(profile(&Domain::new("example.org").unwrap(), None, &s), None);
    }
}
