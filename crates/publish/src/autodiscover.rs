//! Microsoft Autodiscover, the plain-old-XML (POX) flavour Outlook and other clients POST to
//! `/autodiscover/autodiscover.xml`: the request names an `EMailAddress`; the response lists
//! one `Protocol` per service (SMTP, POP3, IMAP) with server, port and TLS mode.

use crate::xml::Doc;
use crate::{Domain, Server, Services, Tls, parse_address};
use quick_xml::Reader;
use quick_xml::events::Event;

/// The media type of the response.
pub const CONTENT_TYPE: &str = "application/xml; charset=utf-8";
/// The largest request body accepted (a real request is a few hundred octets).
pub const MAX_REQUEST: usize = 16 * 1024;

const RESPONSE_NS: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const OUTLOOK_NS: &str = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// Why a request is refused (each a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Larger than [`MAX_REQUEST`].
    TooLarge,
    /// Not well-formed XML, or it declares a document type (no entities, ever).
    Malformed,
    /// No `Autodiscover/Request/EMailAddress` element.
    NoAddress,
    /// The `EMailAddress` is not an address.
    BadAddress,
}

/// The email address a request asks about, with its domain. Element names are matched
/// without their namespace prefix; anything outside `Autodiscover/Request/EMailAddress` is
/// ignored.
pub fn parse_request(body: &[u8]) -> Result<(String, Domain), BadRequest> {
    if body.len() > MAX_REQUEST {
        return Err(BadRequest::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| BadRequest::Malformed)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut found: Option<String> = None;
    loop {
        match reader.read_event().map_err(|_| BadRequest::Malformed)? {
            Event::Start(e) => path.push(e.local_name().as_ref().to_ascii_lowercase()),
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if is_address_path(&path) => {
                let t = t.unescape().map_err(|_| BadRequest::Malformed)?;
                found.get_or_insert_with(String::new).push_str(&t);
            }
            Event::DocType(_) => return Err(BadRequest::Malformed),
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(BadRequest::Malformed);
    }
    let found = found.ok_or(BadRequest::NoAddress)?;
    parse_address(&found).ok_or(BadRequest::BadAddress)
}

fn is_address_path(path: &[Vec<u8>]) -> bool {
    matches!(path, [a, r, e] if a == b"autodiscover" && r == b"request" && e == b"emailaddress")
}

/// The response for `address` (already checked by [`parse_request`]).
pub fn response(address: &str, services: &Services) -> String {
    let mut d = Doc::new();
    d.open("Autodiscover", &[("xmlns", RESPONSE_NS)]);
    d.open("Response", &[("xmlns", OUTLOOK_NS)]);
    d.open("User", &[]);
    d.leaf("DisplayName", address);
    d.close("User");
    d.open("Account", &[]);
    d.leaf("AccountType", "email");
    d.leaf("Action", "settings");
    // One entry per protocol type, the preferred server of each (Outlook reads the first).
    let imap = services.imaps.as_ref().or(services.imap.as_ref());
    let pop3 = services.pop3s.as_ref().or(services.pop3.as_ref());
    let smtp = services.outgoing().next();
    for (kind, server) in [("IMAP", imap), ("POP3", pop3), ("SMTP", smtp)] {
        if let Some(s) = server {
            protocol(&mut d, kind, s, address);
        }
    }
    d.close("Account");
    d.close("Response");
    d.close("Autodiscover");
    d.finish()
}

fn protocol(d: &mut Doc, kind: &str, s: &Server, address: &str) {
    d.open("Protocol", &[]);
    d.leaf("Type", kind);
    d.leaf("Server", &s.host);
    d.leaf("Port", &s.port.to_string());
    d.leaf("LoginName", address);
    d.leaf("DomainRequired", "off");
    d.leaf("SPA", "off");
    d.leaf("SSL", "on");
    // `SSL`: TLS from the first byte; `TLS`: STARTTLS.
    d.leaf("Encryption", if s.tls == Tls::Implicit { "SSL" } else { "TLS" });
    d.leaf("AuthRequired", "on");
    d.close("Protocol");
}

/// A response for a request that cannot be answered: the POX error form.
pub fn error_response(code: &str, message: &str) -> String {
    let mut d = Doc::new();
    d.open("Autodiscover", &[("xmlns", RESPONSE_NS)]);
    d.open("Response", &[]);
    d.open("Error", &[]);
    d.leaf("ErrorCode", code);
    d.leaf("Message", message);
    d.empty("DebugData");
    d.close("Error");
    d.close("Response");
    d.close("Autodiscover");
    d.finish()
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadRequest::TooLarge => "request too large",
            BadRequest::Malformed => "malformed XML",
            BadRequest::NoAddress => "no Request/EMailAddress",
            BadRequest::BadAddress => "EMailAddress is not an email address",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>alice@example.org</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

    #[test]
    fn reads_the_address() {
        let (a, d) = parse_request(REQ.as_bytes()).unwrap();
        assert_eq!((a.as_str(), d.ascii.as_str()), ("alice@example.org", "example.org"));
        let prefixed = REQ.replace("<Request>", "<a:Request xmlns:a=\"x\">").replace("</Request>", "</a:Request>");
        assert!(parse_request(prefixed.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_bad_requests() {
        assert_eq!(parse_request(b"<Autodiscover><Request>"), Err(BadRequest::Malformed));
        assert_eq!(parse_request(b"<a></b>"), Err(BadRequest::Malformed));
        assert_eq!(parse_request(&[0xff, 0xfe]), Err(BadRequest::Malformed));
        let doctype = format!("<!DOCTYPE x [<!ENTITY e \"a@example.org\">]>{}", &REQ[39..]);
        assert_eq!(parse_request(doctype.as_bytes()), Err(BadRequest::Malformed));
        assert_eq!(parse_request(b"<Autodiscover><Request/></Autodiscover>"), Err(BadRequest::NoAddress));
        let bad = REQ.replace("alice@example.org", "alice");
        assert_eq!(parse_request(bad.as_bytes()), Err(BadRequest::BadAddress));
        assert_eq!(parse_request(&vec![b' '; MAX_REQUEST + 1]), Err(BadRequest::TooLarge));
    }

    #[test]
    fn escapes_the_address() {
        let doc = response(
            "a&b<c>@example.org",
            &Services {
                host: "h".into(),
                submissions: None,
                submission: None,
                pop3s: None,
                pop3: None,
                imaps: None,
                imap: None,
            },
        );
        assert!(doc.contains("a&amp;b&lt;c&gt;@example.org"), "{doc}");
    }
}
