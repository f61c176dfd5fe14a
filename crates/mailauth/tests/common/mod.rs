//! Shared by the integration tests: the test DNS server on 127.0.0.1, keys, messages.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dakiya_mailauth::{Algorithm, KeyStore, SpfCheck, Verifier, dns_records, generate_key};
use dakiya_route::testdns::{TestDns, Zone};

/// Our host name, the authserv-id.
pub const HOST: &str = "mx.example.net";
/// The client's address (TEST-NET-1; nothing is ever sent to it).
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
/// Another address, not allowed by any record.
pub const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

/// A verifier asking only the test server.
pub fn verifier(dns: &TestDns) -> Verifier {
    Verifier::new(&[dns.addr], HOST).expect("verifier")
}

/// Serves `zone` and returns the server with a verifier using it.
pub async fn start(zone: Zone) -> (TestDns, Verifier) {
    let dns = TestDns::start(zone).await;
    let verifier = verifier(&dns);
    (dns, verifier)
}

/// Adds DKIM key records, each TXT value split into strings of at most 255 octets as a
/// zone file would carry a 2048-bit RSA key (RFC 6376 §3.6.2.2).
pub fn publish(mut zone: Zone, records: &[(String, String)]) -> Zone {
    for (name, value) in records {
        let parts: Vec<&str> = value.as_bytes().chunks(255).map(|c| std::str::from_utf8(c).unwrap()).collect();
        zone = zone.txt_parts(name, &parts);
    }
    zone
}

/// A plain message from `from` (an address).
pub fn message(from: &str) -> String {
    format!(
        "From: Alice <{from}>\r\n\
         To: Bob <bob@example.net>\r\n\
         Subject: Quarterly numbers\r\n\
         Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         Message-ID: <20250602100000.1@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello Bob,\r\n\
         \r\n\
         the numbers are in.\r\n"
    )
}

/// An SPF check whose MAIL FROM identity is `mail_from`, made against `zone` entries the
/// test set up (or none: then the result is whatever the zone says, usually `none`).
pub async fn spf(verifier: &Verifier, ip: IpAddr, mail_from: &str) -> SpfCheck {
    let helo = mail_from.rsplit_once('@').map_or("client.example.org", |(_, d)| d).to_string();
    verifier.check_spf(ip, &format!("mail.{helo}"), mail_from).await
}

/// A key directory with keys for `domain` (selectors and algorithms given), its store and
/// the records to publish. RSA keys are generated once per test binary and copied: RSA
/// generation takes seconds in a debug build.
pub fn keys(domain: &str, selectors: &[(&str, Algorithm)]) -> (tempfile::TempDir, KeyStore, Vec<(String, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for &(selector, algorithm) in selectors {
        match algorithm {
            Algorithm::Ed25519 => {
                generate_key(dir.path(), domain, selector, algorithm).expect("generate");
            }
            Algorithm::Rsa => {
                let target = dir.path().join(domain);
                std::fs::create_dir_all(&target).unwrap();
                std::fs::copy(rsa_key(), target.join(format!("{selector}.key"))).unwrap();
            }
        }
    }
    let store = KeyStore::load(dir.path()).expect("load keys");
    let records = dns_records(dir.path(), domain).expect("records");
    (dir, store, records)
}

/// One RSA key file, generated with `generate_key` on first use.
pub fn rsa_key() -> &'static Path {
    static KEY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_key(dir.path(), "rsa.test", "rsa", Algorithm::Rsa).expect("generate RSA");
        let path = dir.path().join("rsa.test/rsa.key");
        (dir, path)
    });
    path
}

/// `signatures` on top of `message`.
pub fn signed(signatures: &str, message: &str) -> String {
    format!("{signatures}{message}")
}

/// The value of the `Authentication-Results` field unfolded, for `contains` checks.
pub fn unfolded(header: &str) -> String {
    header.replace("\r\n\t", " ").replace("\r\n ", " ")
}
