//! The basic DNS records of a new mail domain, printed by `dakiya setup`. (`dakiya dns`
//! prints the complete set for a running configuration.)

use super::names::Name;

/// One record as a zone-file line; TXT values split into strings of at most 255 octets
/// (RFC 1035 §3.3.14).
fn zone_line(name: &str, kind: &str, value: &str) -> String {
    let value = if kind == "TXT" {
        let parts: Vec<String> =
            value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
        parts.join(" ")
    } else {
        value.to_string()
    };
    format!("{name}. 3600 IN {kind} {value}")
}

/// MX (RFC 5321 §5.1), the host's addresses, SPF (RFC 7208), DKIM (RFC 6376 §3.6.1) and
/// DMARC (RFC 7489 §6.3), as zone-file lines.
pub(crate) fn basic(domain: &Name, hostname: &Name, dkim: &(String, String)) -> Vec<String> {
    let (d, h) = (&domain.ascii, &hostname.ascii);
    vec![
        zone_line(d, "MX", &format!("10 {h}.")),
        format!("{h}. 3600 IN A     <this server's IPv4 address>"),
        format!("{h}. 3600 IN AAAA  <this server's IPv6 address>"),
        zone_line(d, "TXT", "v=spf1 mx -all"),
        zone_line(&dkim.0, "TXT", &dkim.1),
        zone_line(&format!("_dmarc.{d}"), "TXT", &format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_use_a_labels_and_split_long_txt() {
        let domain = super::super::names::parse("bücher.example", "domain").unwrap();
        let host = super::super::names::parse("mail.bücher.example", "host name").unwrap();
        let dkim = ("s._domainkey.xn--bcher-kva.example".to_string(), format!("v=DKIM1; k=rsa; p={}", "A".repeat(300)));
        let lines = basic(&domain, &host, &dkim);
        assert_eq!(lines[0], "xn--bcher-kva.example. 3600 IN MX 10 mail.xn--bcher-kva.example.");
        assert_eq!(lines[3], "xn--bcher-kva.example. 3600 IN TXT \"v=spf1 mx -all\"");
        assert!(lines[4].contains("\" \""), "{}", lines[4]);
        assert!(lines[5].starts_with("_dmarc.xn--bcher-kva.example. 3600 IN TXT \"v=DMARC1; p=quarantine"));
    }
}
