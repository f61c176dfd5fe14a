//! Thunderbird's autoconfig document (`config-v1.1.xml`, the `clientConfig` format of
//! Mozilla's ISP database): the domain, the incoming servers (IMAP when configured, POP3)
//! and the outgoing submission servers, each logging in with the whole email address and a
//! password sent inside TLS.

use crate::xml::Doc;
use crate::{Domain, Server, Services, Tls};

/// The media type the document is served with.
pub const CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// The autoconfig document for `domain`.
pub fn document(domain: &Domain, services: &Services) -> String {
    let mut d = Doc::new();
    d.open("clientConfig", &[("version", "1.1")]);
    d.open("emailProvider", &[("id", &domain.ascii)]);
    d.leaf("domain", &domain.ascii);
    d.leaf("displayName", &format!("Mail for {}", domain.unicode));
    d.leaf("displayShortName", &domain.unicode);
    for (protocol, server) in services.incoming() {
        server_element(&mut d, "incomingServer", protocol, server);
    }
    for server in services.outgoing() {
        server_element(&mut d, "outgoingServer", "smtp", server);
    }
    d.close("emailProvider");
    d.close("clientConfig");
    d.finish()
}

fn server_element(d: &mut Doc, element: &str, protocol: &str, s: &Server) {
    d.open(element, &[("type", protocol)]);
    d.leaf("hostname", &s.host);
    d.leaf("port", &s.port.to_string());
    d.leaf("socketType", socket_type(s.tls));
    // Our logins are full addresses, and passwords travel only inside TLS.
    d.leaf("authentication", "password-cleartext");
    d.leaf("username", "%EMAILADDRESS%");
    d.close(element);
}

/// Thunderbird's name for the TLS mode: `SSL` is implicit TLS.
fn socket_type(tls: Tls) -> &'static str {
    match tls {
        Tls::Implicit => "SSL",
        Tls::StartTls => "STARTTLS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        let s = |port, tls| Some(Server { host: "mail.example.org".into(), port, tls });
        Services {
            host: "mail.example.org".into(),
            submissions: s(465, Tls::Implicit),
            submission: s(587, Tls::StartTls),
            pop3s: s(995, Tls::Implicit),
            pop3: None,
            imaps: s(993, Tls::Implicit),
            imap: None,
        }
    }

    #[test]
    fn lists_servers_in_order_of_preference() {
        let doc = document(&Domain::new("bücher.example").unwrap(), &services());
        assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{doc}");
        assert!(doc.contains("<emailProvider id=\"xn--bcher-kva.example\">"), "{doc}");
        assert!(doc.contains("<displayShortName>bücher.example</displayShortName>"), "{doc}");
        let imap = doc.find("type=\"imap\"").unwrap();
        let pop = doc.find("type=\"pop3\"").unwrap();
        let ssl = doc.find("<port>465</port>").unwrap();
        let starttls = doc.find("<port>587</port>").unwrap();
        assert!(imap < pop && ssl < starttls, "{doc}");
        assert_eq!(doc.matches("<username>%EMAILADDRESS%</username>").count(), 4);
    }
}
