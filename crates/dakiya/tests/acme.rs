//! ACME (RFC 8555) end to end against Pebble (`/usr/bin/pebble`, Debian package `pebble`), all
//! on loopback: Pebble's HTTPS uses a certificate from a test CA made here (given to dakiya as
//! `tls.acme.ca_file`), it resolves names through a test DNS server that answers 127.0.0.x
//! only, and validates HTTP-01 on the port of dakiya's `http` listener. docs/acme.md.

mod common;

use common::{TestServer, wait_log};
use dakiya_route::testdns::{TestDns, Zone};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAME: &str = "mail.example.test";

/// A Pebble process; killed when dropped.
struct Pebble {
    child: Child,
    /// The directory URL.
    directory: String,
    management: SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port`, resolving through `dns`.
    fn start(http_port: u16, dns: SocketAddr) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(p("ca.pem"), ca.pem()).unwrap();
        std::fs::write(p("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
        let (listen, management) = (free_port(), free_port());
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}",
               "certificate": {:?}, "privateKey": {:?}, "httpPort": {http_port}, "tlsPort": {},
               "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            p("cert.pem"),
            p("key.pem"),
            free_port(),
        );
        std::fs::write(p("pebble.json"), config).unwrap();
        let child = Command::new("/usr/bin/pebble")
            .arg("-config")
            .arg(p("pebble.json"))
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble) must be installed: scripts/test installs it");
        let pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: SocketAddr::from((Ipv4Addr::LOCALHOST, management)),
            ca_file: p("ca.pem"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }

    /// Pebble's current intermediate (what it signs leaf certificates with), DER.
    fn intermediate(&self) -> Vec<u8> {
        let out = Command::new("curl")
            // Pebble's management interface serves a certificate of its own making.
            .args(["-sSk"])
            .arg(format!("https://127.0.0.1:{}/intermediates/0", self.management.port()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        CertificateDer::from_pem_slice(&out.stdout).unwrap().to_vec()
    }
}

/// A DNS server answering `NAME` with `addr`.
fn dns(rt: &tokio::runtime::Runtime, addr: Ipv4Addr) -> TestDns {
    rt.block_on(TestDns::start(Zone::new().ttl(0).a(NAME, addr)))
}

/// The server's configuration: an `http` listener on `http_port`, a submissions listener,
/// and `[tls.acme]` with `acme`.
fn config(http_port: u16, directory: &str, ca_file: &Path, acme: &str) -> String {
    format!(
        "[[listen]]\naddress = \"127.0.0.1:{http_port}\"\nrole = \"http\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
         [tls.acme]\ndirectory = {directory:?}\ncontact = \"mailto:postmaster@example.test\"\n\
         names = [\"{NAME}\"]\nca_file = {ca_file:?}\n{acme}\n"
    )
}

/// Accepts any certificate: the test looks at what is served, not whether it verifies.
#[derive(Debug)]
struct Any(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Any {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The chain a new implicit-TLS connection to `addr` is served (DER, leaf first), after
/// reading the SMTP greeting over it.
fn served_chain(addr: SocketAddr) -> Vec<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(provider)))
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(NAME).unwrap()).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut greeting = String::new();
    BufReader::new(&mut tls).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    tls.write_all(b"QUIT\r\n").unwrap();
    let _ = tls.read(&mut [0; 64]);
    conn.peer_certificates().unwrap().iter().map(|c| c.to_vec()).collect()
}

/// The first certificate in a PEM file (DER).
fn first_cert(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

#[test]
fn issues_installs_without_restart_and_renews() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = dns(&rt, Ipv4Addr::LOCALHOST);
    let http_port = free_port();
    let pebble = Pebble::start(http_port, dns.addr);
    // renew_before longer than any certificate's life: every check finds it due, so the
    // second order is a renewal of a CA-issued certificate.
    let started = Instant::now();
    let s = TestServer::start(&config(
        http_port,
        &pebble.directory,
        &pebble.ca_file,
        "renew_before = \"100000d\"\ncheck_interval = \"2s\"",
    ));
    let submissions = s.addr_of("submissions");
    let self_signed = served_chain(submissions);
    assert_eq!(self_signed.len(), 1, "the placeholder serves until the order completes");
    assert!(wait_log(&s, "certificate issued and installed", 60), "no certificate issued:\n{}", s.log());
    eprintln!("start to issued certificate: {:?}", started.elapsed());
    let chain = served_chain(submissions);
    assert_ne!(chain[0], self_signed[0]);
    assert_eq!(chain[1], pebble.intermediate(), "the served chain is Pebble's");
    let cert_file = s.data().join("tls/cert.pem");
    assert_eq!(chain[0], first_cert(&cert_file));
    let key_mode = std::fs::metadata(s.data().join("tls/key.pem")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777, 0o600);
    assert!(s.data().join("acme/account.json").exists());
    assert!(s.log().contains("the certificate is self-signed"), "the reason for the first order is logged");

    // The renewal replaces it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.log().matches("certificate issued and installed").count() < 2 {
        assert!(Instant::now() < deadline, "no renewal:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.log().contains("expires within tls.acme.renew_before"));
    let renewed = served_chain(submissions);
    assert_ne!(renewed[0], chain[0], "a renewed certificate is served");
    assert_eq!(renewed[0], first_cert(&cert_file));
    // The challenge answers are withdrawn once an order is done: nothing is left to serve.
    assert!(!s.log().contains("order failed"), "{}", s.log());
}

#[test]
fn a_failed_challenge_keeps_the_placeholder_and_the_server_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The name points where nothing serves the token.
    let dns = dns(&rt, Ipv4Addr::new(127, 0, 0, 2));
    let http_port = free_port();
    let pebble = Pebble::start(http_port, dns.addr);
    let s = TestServer::start(&config(http_port, &pebble.directory, &pebble.ca_file, ""));
    assert!(wait_log(&s, "certificate order failed", 60), "no failure logged:\n{}", s.log());
    let log = s.log();
    assert!(log.contains(&format!("ACME challenge for {NAME} failed")), "{log}");
    assert!(log.contains("keeping the current certificate") && log.contains("retry_in_secs=60"), "{log}");
    let chain = served_chain(s.addr_of("submissions"));
    assert_eq!(chain[0], first_cert(&s.data().join("tls/cert.pem")));
    assert_eq!(chain.len(), 1, "still the self-signed placeholder");
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.example.test").starts_with("250"), "the server keeps serving");
}

#[test]
fn an_unreachable_directory_is_logged_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("none.pem");
    let closed = free_port();
    // No ca_file: the web PKI only (the directory is not reached anyway).
    let cfg = config(free_port(), &format!("https://127.0.0.1:{closed}/dir"), &ca, "")
        .replace(&format!("ca_file = {ca:?}\n"), "");
    let s = TestServer::start(&cfg);
    assert!(wait_log(&s, "certificate order failed", 30), "{}", s.log());
    let log = s.log();
    assert!(log.contains(&format!("ACME account at https://127.0.0.1:{closed}/dir")), "{log}");
    let chain = served_chain(s.addr_of("submissions"));
    assert_eq!(chain.len(), 1, "still the self-signed placeholder");
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.example.test").starts_with("250"));
}
