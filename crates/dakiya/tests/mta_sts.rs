//! MTA-STS (RFC 8461) and TLS reporting (RFC 8460) end to end: a sending dakiya delivers to
//! a second dakiya as the MX of two domains through the test DNS server. Both publish an
//! enforced policy, served over HTTPS by a small server in this test with a certificate
//! from a test CA; the MX's certificate (from the same CA) names `mail.dest.test` only, so
//! `dest.test` gets its mail and `bad.test` (MX `mx.bad.test`) does not. The TLS reports
//! come back to the sender's own postmaster: DKIM-signed, gzip-compressed JSON, counting
//! the success and the `certificate-host-mismatch` failures.

mod common;

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, wait_files};
use dakiya_route::testdns::{TestDns, Zone};
use mail_parser::{MessageParser, MimeHeaders};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DEST_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.dest.test\r\nmax_age: 86400\r\n";
const BAD_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: *.bad.test\r\nmax_age: 86400\r\n";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate for `names` and its key.
    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }
}

/// An HTTPS server answering each policy host (by `Host:`) with its policy.
async fn policy_server(ca: &Ca) -> (u16, tokio::task::JoinHandle<()>) {
    let (cert, key) = ca.leaf(&["mta-sts.dest.test", "mta-sts.bad.test"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), CertificateDer::from(ca.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let body = if text.contains("\r\nhost: mta-sts.bad.test") { BAD_POLICY } else { DEST_POLICY };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, task)
}

fn zone() -> Zone {
    let mut z = Zone::new()
        .mx("dest.test", 10, "mail.dest.test")
        .a("mail.dest.test", Ipv4Addr::LOCALHOST)
        .mx("bad.test", 10, "mx.bad.test")
        .a("mx.bad.test", Ipv4Addr::LOCALHOST);
    for d in ["dest.test", "bad.test"] {
        z = z
            .a(&format!("mta-sts.{d}"), Ipv4Addr::LOCALHOST)
            .txt(&format!("_mta-sts.{d}"), "v=STSv1; id=20261207")
            .txt(&format!("_smtp._tls.{d}"), "v=TLSRPTv1; rua=mailto:postmaster@example.test");
    }
    z
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The reports in `maildir`, as (policy domain, JSON report), after checking each message.
fn reports(maildir: &Path) -> Vec<(String, serde_json::Value)> {
    let Ok(entries) = std::fs::read_dir(maildir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let raw = std::fs::read(entry.path()).unwrap();
        let msg = MessageParser::default().parse(&raw[..]).expect("the report parses");
        let subject = msg.subject().unwrap_or_default().to_owned();
        if !subject.starts_with("Report Domain: ") {
            continue;
        }
        let ct = msg.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype(), ct.attribute("report-type")),
            ("multipart", Some("report"), Some("tlsrpt"))
        );
        let text = String::from_utf8_lossy(&raw);
        // Maildir files end lines with LF.
        assert!(text.contains("\nTLS-Report-Submitter: mx.example.test\n"), "{text}");
        assert!(text.starts_with("Return-Path: <>\n"), "from the null sender: {text}");
        assert!(text.contains("\nDKIM-Signature: v=1; a=rsa-sha256; s=s1; d=example.test;"), "signed: {text}");
        let part = msg
            .parts
            .iter()
            .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("tlsrpt+gzip")))
            .expect("an application/tlsrpt+gzip part");
        let mut json = String::new();
        flate2::read::GzDecoder::new(part.contents()).read_to_string(&mut json).unwrap();
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        let domain = report["policies"][0]["policy"]["policy-domain"].as_str().unwrap().to_owned();
        assert!(
            subject.contains(&format!("Report Domain: {domain} Submitter: mx.example.test Report-ID: <")),
            "{subject}"
        );
        out.push((domain, report));
    }
    out
}

/// Sums a failure type's count over the reports of `domain`.
fn failed(reports: &[(String, serde_json::Value)], domain: &str, result: &str) -> u64 {
    reports
        .iter()
        .filter(|(d, _)| d == domain)
        .flat_map(|(_, r)| r["policies"][0]["failure-details"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["result-type"] == result)
        .map(|f| f["failed-session-count"].as_u64().unwrap())
        .sum()
}

fn succeeded(reports: &[(String, serde_json::Value)], domain: &str) -> u64 {
    reports
        .iter()
        .filter(|(d, _)| d == domain)
        .map(|(_, r)| r["policies"][0]["summary"]["total-successful-session-count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn enforced_policies_deliver_defer_and_report() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.cert.pem());
    let (mx_cert, mx_key) = ca.leaf(&["mail.dest.test"]);
    let mx_cert_file = write(files.path(), "mx.pem", &format!("{}{}", mx_cert.pem(), ca.cert.pem()));
    let mx_key_file = write(files.path(), "mx.key", &mx_key.serialize_pem());
    let (policy_port, _policy) = policy_server(&ca).await;
    let dns = TestDns::start(zone()).await;

    let remote_cfg = format!(
        "[tls]\ncert = {mx_cert_file:?}\nkey = {mx_key_file:?}\n\
         [domains.\"dest.test\"]\nmailboxes = [\"bob\"]\n[domains.\"bad.test\"]\nmailboxes = [\"bob\"]\n"
    );
    let b = tokio::task::spawn_blocking(move || TestServer::start(&remote_cfg)).await.unwrap();
    let sender_cfg = format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"1s\"]\n\
         [outbound]\nnameservers = [\"{}\"]\nsmtp_port = {}\nip_preference = \"ipv4_only\"\n\
         tls_ca_file = {ca_file:?}\nmta_sts_port = {policy_port}\ntls_report_interval = \"1s\"\n",
        dns.addr,
        b.addr.port()
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        // A DKIM key for example.test first (read at start-up), so the reports are signed.
        let first = TestServer::start(&sender_cfg);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dakiya"))
            .args(["dkim", "--config"])
            .arg(first.config_path())
            .args(["generate", "example.test", "--selector", "s1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let a = TestServer::start_in(first.stop(), &sender_cfg);

        let mut c = a.connect();
        let msg = "From: alice@example.test\r\nSubject: sts\r\n\r\nHello.\r\n";
        assert!(c.send_mail("alice@example.test", &["bob@dest.test"], msg).starts_with("250"));
        assert!(c.send_mail("alice@example.test", &["bob@bad.test"], msg).starts_with("250"));
        let delivered = wait_files(&b.data().join("mail").join("dest.test").join("bob").join("new"), 1);
        assert_eq!(delivered.len(), 1, "{}", a.log());

        let maildir = a.maildir("postmaster");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = reports(&maildir);
            if succeeded(&all, "dest.test") >= 1 && failed(&all, "bad.test", "certificate-host-mismatch") >= 1 {
                let (_, r) = all.iter().find(|(d, _)| d == "bad.test").unwrap();
                assert_eq!(r["organization-name"], "mx.example.test");
                assert_eq!(r["policies"][0]["policy"]["policy-type"], "sts");
                assert_eq!(r["policies"][0]["policy"]["mx-host"][0], "*.bad.test");
                assert_eq!(r["policies"][0]["failure-details"][0]["receiving-mx-hostname"], "mx.bad.test");
                assert_eq!(failed(&all, "dest.test", "certificate-host-mismatch"), 0);
                break;
            }
            assert!(Instant::now() < deadline, "no complete reports yet: {all:?}\n--- log ---\n{}", a.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        // The mail for bad.test waits, and says why.
        assert!(a.log().contains("MTA-STS policy of bad.test: "), "{}", a.log());
        (a, b)
    })
    .await
    .unwrap();
    assert!(std::fs::read_dir(b.data().join("mail/bad.test/bob/new")).map_or(true, |mut d| d.next().is_none()));
    assert!(a.data().join("mta-sts/policies/dest.test").exists(), "policies cached under the data dir");
    drop((a, b));
}
