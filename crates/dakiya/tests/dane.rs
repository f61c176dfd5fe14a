//! DANE (RFC 7672) and REQUIRETLS (RFC 8689) end to end: a sending dakiya delivers to a
//! second dakiya, the MX of `dest.test` and two subdomains in a DNSSEC-signed zone served by
//! knotd on loopback, with that zone's key as the sender's trust anchor. A REQUIRETLS
//! message, received over STARTTLS, goes to the DANE-authenticated MX (`dest.test`); one
//! for a domain whose MX has no TLSA records (`nodane.dest.test`) bounces to its sender
//! with 5.7.30; a TLSA record for another key (`bad.dest.test`) holds ordinary mail but
//! not a message with `TLS-Required: No`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use common::{TestServer, wait_files, wait_log};
use dakiya_route::testdns::signed::{Damage, SignedZone};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// SHA-256 of the DER SubjectPublicKeyInfo, hex: a `3 1 1` TLSA record's data.
fn spki_sha256(key: &KeyPair) -> String {
    let digest = ring_digest(&key.public_key_der());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn ring_digest(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

/// An SMTP session over STARTTLS, trusting `ca` for `mx.example.test`.
struct TlsClient {
    io: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

fn reply_of(io: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

impl TlsClient {
    fn connect(addr: SocketAddr, ca: &CertificateDer<'static>) -> TlsClient {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
        let mut plain = BufReader::new(tcp.try_clone().unwrap());
        assert!(reply_of(&mut plain).starts_with("220"));
        let mut w = tcp.try_clone().unwrap();
        w.write_all(b"EHLO client.test\r\n").unwrap();
        let ehlo = reply_of(&mut plain);
        assert!(!ehlo.contains("REQUIRETLS"), "not offered in clear: {ehlo}");
        w.write_all(b"STARTTLS\r\n").unwrap();
        assert!(reply_of(&mut plain).starts_with("220"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("mx.example.test").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut c = TlsClient { io: BufReader::new(StreamOwned::new(conn, tcp)) };
        let ehlo = c.cmd("EHLO client.test");
        assert!(ehlo.contains("250-REQUIRETLS") || ehlo.contains("250 REQUIRETLS"), "{ehlo}");
        c
    }

    fn cmd(&mut self, line: &str) -> String {
        self.io.get_mut().write_all(format!("{line}\r\n").as_bytes()).unwrap();
        reply_of(&mut self.io)
    }

    fn send(&mut self, mail: &str, to: &str, body: &str) -> String {
        for line in [mail.to_owned(), format!("RCPT TO:<{to}>")] {
            let r = self.cmd(&line);
            assert!(r.starts_with("250"), "{line}: {r}");
        }
        assert!(self.cmd("DATA").starts_with("354"));
        self.cmd(&format!("{body}\r\n."))
    }
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(ca: &(rcgen::Certificate, KeyPair), name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert, key)
}

#[test]
fn dane_authenticates_requiretls_and_tls_required_no() {
    let files = tempfile::tempdir().unwrap();
    let ca = ca();
    let (b_cert, b_key) = leaf(&ca, "mail.dest.test");
    let (a_cert, a_key) = leaf(&ca, "mx.example.test");
    let (_, other_key) = leaf(&ca, "mail.dest.test");
    let pem = |name: &str, text: String| write(files.path(), name, &text);
    let b_tls =
        format!("[tls]\ncert = {:?}\nkey = {:?}\n", pem("b.pem", b_cert.pem()), pem("b.key", b_key.serialize_pem()));
    let domains = ["dest.test", "nodane.dest.test", "bad.dest.test"];
    let mut b_cfg = b_tls;
    for d in domains {
        b_cfg.push_str(&format!("[domains.\"{d}\"]\nmailboxes = [\"bob\"]\n"));
    }
    let b = TestServer::start(&b_cfg);
    let port = b.addr.port();
    let records = format!(
        "@ IN MX 10 mail.dest.test.\nmail IN A 127.0.0.1\n_{port}._tcp.mail IN TLSA 3 1 1 {}\n\
         nodane IN MX 10 mail2.dest.test.\nmail2 IN A 127.0.0.1\n\
         bad IN MX 10 mail3.dest.test.\nmail3 IN A 127.0.0.1\n_{port}._tcp.mail3 IN TLSA 3 1 1 {}\n",
        spki_sha256(&b_key),
        spki_sha256(&other_key)
    );
    let zone = SignedZone::start("dest.test", &records, &Damage::default());
    let a_cfg = format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[tls]\ncert = {:?}\nkey = {:?}\n[delivery]\nretry_schedule = [\"1s\"]\n\
         [outbound]\nnameservers = [\"{}\"]\nsmtp_port = {port}\nip_preference = \"ipv4_only\"\n\
         dnssec_trust_anchor = {:?}\n",
        pem("a.pem", a_cert.pem()),
        pem("a.key", a_key.serialize_pem()),
        zone.addr,
        zone.trust_anchor.display().to_string(),
    );
    let a = TestServer::start(&a_cfg);
    let ca_der = ca.0.der().clone();
    let mut c = TlsClient::connect(a.addr, &ca_der);
    let msg =
        |subject: &str, extra: &str| format!("From: alice@example.test\r\n{extra}Subject: {subject}\r\n\r\nHello.");
    let r = c.send("MAIL FROM:<alice@example.test> REQUIRETLS", "bob@dest.test", &msg("dane", ""));
    assert!(r.starts_with("250"), "{r}");
    let r = c.send("MAIL FROM:<alice@example.test> REQUIRETLS", "bob@nodane.dest.test", &msg("nodane", ""));
    assert!(r.starts_with("250"), "{r}");
    let r = c.send("MAIL FROM:<alice@example.test>", "bob@bad.dest.test", &msg("held", ""));
    assert!(r.starts_with("250"), "{r}");
    let r = c.send("MAIL FROM:<alice@example.test>", "bob@bad.dest.test", &msg("optional", "TLS-Required: No\r\n"));
    assert!(r.starts_with("250"), "{r}");

    // REQUIRETLS over DANE: delivered.
    let got = wait_files(&b.data().join("mail/dest.test/bob/new"), 1);
    assert!(got[0].contains("Subject: dane"), "{}", a.log());
    // No authenticating policy for nodane.dest.test: bounced to alice, 5.7.30, saying why.
    let bounces = a.wait_for("alice", 1);
    assert!(bounces[0].contains("5.7.30"), "{}", bounces[0]);
    // The diagnostic may be folded: compare with runs of white space made one space.
    let flat = bounces[0].split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("REQUIRETLS: TLS with mail2.dest.test"), "{}", bounces[0]);
    assert!(flat.contains("would not be authenticated by DANE or MTA-STS"), "{}", bounces[0]);
    // bad.dest.test: the message with TLS-Required: No arrives, the other waits.
    let got = wait_files(&b.data().join("mail/bad.dest.test/bob/new"), 1);
    assert!(got[0].contains("Subject: optional"), "{got:?}");
    assert!(wait_log(&a, "DANE (TLSA of _", 20), "{}", a.log());
    let held = std::fs::read_dir(b.data().join("mail/bad.dest.test/bob/new")).unwrap().count();
    assert_eq!(held, 1, "the message without TLS-Required: No waits");
    assert!(std::fs::read_dir(b.data().join("mail/nodane.dest.test/bob/new")).map_or(true, |mut d| d.next().is_none()));
}

/// Runs `dakiya SUBCOMMAND --config CFG ARGS…`; its standard output.
fn cli(server: &TestServer, sub: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dakiya"))
        .arg(sub)
        .arg("--config")
        .arg(server.config_path())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "dakiya {sub} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// RFC 7672 §2.1.1, §2.2.1: an MX RRset whose signature does not validate is a lookup
/// error: the mail to `bogus.dest.test` is deferred with a reason that says so (in the
/// queue listing and `dakiya trace`), never sent without DANE; `dest.test`, in the same
/// zone and under the same trust anchor, is delivered.
#[test]
fn a_bogus_mx_answer_defers_the_delivery() {
    let files = tempfile::tempdir().unwrap();
    let ca = ca();
    let (b_cert, b_key) = leaf(&ca, "mail.dest.test");
    let pem = |name: &str, text: String| write(files.path(), name, &text);
    let mut b_cfg =
        format!("[tls]\ncert = {:?}\nkey = {:?}\n", pem("b.pem", b_cert.pem()), pem("b.key", b_key.serialize_pem()));
    for d in ["dest.test", "bogus.dest.test"] {
        b_cfg.push_str(&format!("[domains.\"{d}\"]\nmailboxes = [\"bob\"]\n"));
    }
    let b = TestServer::start(&b_cfg);
    let port = b.addr.port();
    // Both MX hosts have matching TLSA records: only the broken MX signature can stop it.
    let records = format!(
        "@ IN MX 10 mail.dest.test.\nmail IN A 127.0.0.1\n_{port}._tcp.mail IN TLSA 3 1 1 {spki}\n\
         bogus IN MX 10 mail4.dest.test.\nmail4 IN A 127.0.0.1\n_{port}._tcp.mail4 IN TLSA 3 1 1 {spki}\n",
        spki = spki_sha256(&b_key),
    );
    let damage = Damage { bad_rrsig: Some(("bogus.dest.test.".into(), "MX".into())) };
    let zone = SignedZone::start("dest.test", &records, &damage);
    let a_cfg = format!(
        "trusted_networks = [\"127.0.0.1/32\"]\n[delivery]\nretry_schedule = [\"1h\"]\n\
         [outbound]\nnameservers = [\"{}\"]\nsmtp_port = {port}\nip_preference = \"ipv4_only\"\n\
         dnssec_trust_anchor = {:?}\n",
        zone.addr,
        zone.trust_anchor.display().to_string(),
    );
    let a = TestServer::start(&a_cfg);
    let mut c = a.connect();
    let body = "From: alice@example.test\r\nSubject: bogus\r\n\r\nHello.";
    let r = c.send_mail("alice@example.test", &["bob@bogus.dest.test"], body);
    assert!(r.starts_with("250"), "{r}");
    let id = common::queue_id(&r);
    let r = c.send_mail("alice@example.test", &["bob@dest.test"], &body.replace("bogus", "control"));
    assert!(r.starts_with("250"), "{r}");

    let got = wait_files(&b.data().join("mail/dest.test/bob/new"), 1);
    assert!(got[0].contains("Subject: control"), "{}", a.log());
    let want = "DNSSEC validation failed for the MX of bogus.dest.test";
    assert!(wait_log(&a, want, 20), "{}", a.log());
    let listing: serde_json::Value = serde_json::from_str(&cli(&a, "queue", &["list", "--json"])).unwrap();
    let rcpt = &listing["messages"][0]["recipients"][0];
    assert_eq!(rcpt["address"], "bob@bogus.dest.test", "{listing}");
    assert_eq!(rcpt["state"], "deferred", "{listing}");
    let error = rcpt["error"].as_str().unwrap_or_default();
    assert!(error.contains(want) && error.contains("4.4.3"), "{listing}");
    let trace = cli(&a, "trace", &[&id]);
    assert!(trace.split_whitespace().collect::<Vec<_>>().join(" ").contains(want), "{trace}");
    let held = std::fs::read_dir(b.data().join("mail/bogus.dest.test/bob/new")).map_or(0, Iterator::count);
    assert_eq!(held, 0, "never sent without DANE");
}
