//! Tests of the TLS layer (loopback handshakes only).
use super::*;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::client::{Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::{ClientConfig, NamedGroup, RootCertStore, SupportedCipherSuite};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(10);

fn settings(dir: &Path) -> TlsSettings {
    TlsSettings {
        cert: None,
        key: None,
        data_dir: dir.to_owned(),
        hostname: "mx.example.test".to_owned(),
        check_interval: Duration::from_millis(20),
    }
}

fn with_files(dir: &Path, cert: &Path, key: &Path) -> TlsSettings {
    TlsSettings { cert: Some(cert.to_owned()), key: Some(key.to_owned()), ..settings(dir) }
}

fn generated_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("tls/cert.pem"), dir.join("tls/key.pem"))
}

/// Writes a new self-signed pair for "localhost" (a fresh key); returns the certificate PEM.
fn write_pair(cert: &Path, key: &Path) -> Vec<u8> {
    let (cert_pem, key_pem) = self_signed_pem("localhost").unwrap();
    fs::write(key, key_pem).unwrap();
    fs::write(cert, &cert_pem).unwrap();
    cert_pem.into_bytes()
}

/// A TLS echo server on 127.0.0.1:0. Each connection takes `acceptor()` when it is
/// accepted and reports `describe` once its handshake is done.
async fn echo_server(
    acceptor: impl Fn() -> TlsAcceptor + Send + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let _ = tx.send(describe(tls.get_ref().1).unwrap());
                let mut buf = [0u8; 512];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn serve(manager: &Arc<TlsManager>) -> impl Fn() -> TlsAcceptor + Send + 'static {
    let manager = manager.clone();
    move || manager.acceptor()
}

/// A client trusting the certificates in `root_pem`, limited to the given suites.
fn client_with(root_pem: &[u8], suites: Vec<SupportedCipherSuite>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut versions: Vec<_> = suites.iter().map(|s| s.version()).collect();
    versions.dedup();
    let provider = CryptoProvider { cipher_suites: suites, ..rustls::crypto::ring::default_provider() };
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client with rustls' default suites for one protocol version.
fn client(root_pem: &[u8], version: ProtocolVersion) -> ClientConfig {
    let suites = rustls::crypto::ring::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| s.version().version == version)
        .copied()
        .collect();
    client_with(root_pem, suites)
}

async fn connect_as(addr: SocketAddr, config: ClientConfig, name: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    };
    tokio::time::timeout(WAIT, handshake).await.expect("handshake timed out")
}

async fn connect(addr: SocketAddr, config: ClientConfig) -> std::io::Result<TlsStream<TcpStream>> {
    connect_as(addr, config, "localhost").await
}

async fn round_trip(stream: &mut TlsStream<TcpStream>, msg: &[u8]) {
    let exchange = async {
        stream.write_all(msg).await?;
        stream.flush().await?;
        let mut back = vec![0; msg.len()];
        stream.read_exact(&mut back).await.map(|_| back)
    };
    let back = tokio::time::timeout(WAIT, exchange).await.expect("echo timed out").unwrap();
    assert_eq!(back, msg);
}

async fn described(rx: &mut mpsc::UnboundedReceiver<(String, String)>) -> (String, String) {
    tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap()
}

fn served_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn manager_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TlsManager>();
}

#[tokio::test]
async fn self_signed_is_generated_with_a_private_key_file_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generated_paths(dir.path());
    TlsManager::new(settings(dir.path())).unwrap();
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(dir.path().join("tls")).unwrap().permissions().mode() & 0o777, 0o700);
    let (cert_pem, key_pem) = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
    assert!(is_self_issued(&read_chain(&cert).unwrap()[0]));
    assert!(!dir.path().join("tls/key.pem.tmp").exists());

    TlsManager::new(settings(dir.path())).unwrap();
    assert_eq!(fs::read(&cert).unwrap(), cert_pem, "the second start reuses the certificate");
    assert_eq!(fs::read(&key).unwrap(), key_pem);
}

#[tokio::test]
async fn tls13_handshake_for_every_name_in_the_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(settings(dir.path())).unwrap();
    let pem = fs::read(generated_paths(dir.path()).0).unwrap();
    let (addr, mut rx) = echo_server(serve(&manager)).await;
    for name in ["mx.example.test", "localhost", "127.0.0.1", "::1"] {
        let config = client(&pem, ProtocolVersion::TLSv1_3);
        let mut stream = connect_as(addr, config, name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        round_trip(&mut stream, b"EHLO client.example\r\n").await;
        let (version, suite) = described(&mut rx).await;
        assert_eq!(version, "TLSv1.3");
        let tls13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
        assert!(tls13.contains(&suite.as_str()), "{suite}");
    }
}

#[tokio::test]
async fn tls12_only_client_gets_an_intermediate_suite() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(settings(dir.path())).unwrap();
    let pem = fs::read(generated_paths(dir.path()).0).unwrap();
    let (addr, mut rx) = echo_server(serve(&manager)).await;
    let mut stream = connect(addr, client(&pem, ProtocolVersion::TLSv1_2)).await.unwrap();
    round_trip(&mut stream, b"EHLO client.example\r\n").await;
    let (version, suite) = described(&mut rx).await;
    assert_eq!(version, "TLSv1.2");
    // The generated certificate is ECDSA, so one of the three ECDHE-ECDSA AEAD suites.
    let intermediate = ["AES_128_GCM_SHA256", "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256"];
    let ecdsa = suite.strip_prefix("TLS_ECDHE_ECDSA_WITH_").unwrap_or_default();
    assert!(intermediate.contains(&ecdsa), "{suite}");
}

#[tokio::test]
async fn every_intermediate_suite_is_offered_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("rsa.crt"), dir.path().join("rsa.key"));
    fs::write(&cert, RSA_CERT).unwrap();
    fs::write(&key, RSA_KEY).unwrap();
    let rsa = TlsManager::new(with_files(dir.path(), &cert, &key)).unwrap();
    let ecdsa = TlsManager::new(settings(dir.path())).unwrap();
    let ecdsa_pem = fs::read(generated_paths(dir.path()).0).unwrap();
    let (rsa_addr, mut rsa_rx) = echo_server(serve(&rsa)).await;
    let (ecdsa_addr, mut ecdsa_rx) = echo_server(serve(&ecdsa)).await;
    for suite in provider().cipher_suites {
        let name = suite.suite().as_str().unwrap().replace("TLS13_", "TLS_");
        let (addr, rx, pem) = if name.contains("_RSA_") {
            (rsa_addr, &mut rsa_rx, RSA_CERT.as_bytes())
        } else {
            (ecdsa_addr, &mut ecdsa_rx, &ecdsa_pem[..])
        };
        let mut stream = connect(addr, client_with(pem, vec![suite])).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        round_trip(&mut stream, b"NOOP\r\n").await;
        let version = if name.contains("_WITH_") { "TLSv1.2" } else { "TLSv1.3" };
        assert_eq!(described(rx).await, (version.to_owned(), name));
    }
}

/// Counts the TLS 1.3 tickets a client is given.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tls13_tickets: AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server, group);
    }
    fn kx_hint(&self, server: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server)
    }
    fn set_tls12_session(&self, server: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server, value);
    }
    fn tls12_session(&self, server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server)
    }
    fn remove_tls12_session(&self, server: &ServerName<'static>) {
        self.inner.remove_tls12_session(server);
    }
    fn insert_tls13_ticket(&self, server: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.tls13_tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server, value);
    }
    fn take_tls13_ticket(&self, server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server)
    }
}

/// Connects with resumption enabled and returns how many tickets arrived. A server sends
/// its tickets after the client's Finished and before any application data (RFC 8446
/// §4.6.1), and records arrive in order: once the echo is back, every ticket is counted.
async fn tickets_received(addr: SocketAddr, root_pem: &[u8]) -> usize {
    let store = Arc::new(CountingStore { inner: ClientSessionMemoryCache::new(8), tls13_tickets: AtomicUsize::new(0) });
    let mut config = client(root_pem, ProtocolVersion::TLSv1_3);
    config.resumption = Resumption::store(store.clone());
    let mut stream = connect(addr, config).await.unwrap();
    round_trip(&mut stream, b"NOOP\r\n").await;
    store.tls13_tickets.load(Ordering::SeqCst)
}

#[tokio::test]
async fn no_session_tickets_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(settings(dir.path())).unwrap();
    let pem = fs::read(generated_paths(dir.path()).0).unwrap();
    let (addr, _rx) = echo_server(serve(&manager)).await;
    assert_eq!(tickets_received(addr, &pem).await, 0);

    // Control: the same configuration with tickets switched on is seen to send them, so
    // the zero above is the server's doing, not the client's.
    let config = manager.current.read().unwrap().config.clone();
    assert!(!config.ticketer.enabled(), "no stateless (RFC 5077 / TLS 1.3) ticketer");
    let mut with_tickets = (*config).clone();
    with_tickets.send_tls13_tickets = 2;
    let with_tickets = Arc::new(with_tickets);
    let (control, _rx) = echo_server(move || TlsAcceptor::from(with_tickets.clone())).await;
    assert_eq!(tickets_received(control, &pem).await, 2);
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_established_connections() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(settings(dir.path())).unwrap();
    let (cert, key) = generated_paths(dir.path());
    let old_pem = fs::read(&cert).unwrap();
    let (addr, _rx) = echo_server(serve(&manager)).await;
    let mut established = connect(addr, client(&old_pem, ProtocolVersion::TLSv1_3)).await.unwrap();
    round_trip(&mut established, b"MAIL FROM:<a@example.org>\r\n").await;

    let new_pem = write_pair(&cert, &key);
    assert!(manager.reload().unwrap(), "a new certificate is a change");
    assert!(!manager.reload().unwrap(), "reading the same files again is not");

    let fresh = connect(addr, client(&new_pem, ProtocolVersion::TLSv1_3)).await.unwrap();
    assert_eq!(served_leaf(&fresh), read_chain(&cert).unwrap()[0]);
    let stale = connect(addr, client(&old_pem, ProtocolVersion::TLSv1_3)).await;
    assert!(stale.is_err(), "the old certificate is no longer served");
    round_trip(&mut established, b"RCPT TO:<b@example.org>\r\n").await;
}

#[tokio::test]
async fn reload_with_a_broken_file_keeps_the_old_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let pem = write_pair(&cert, &key);
    let manager = TlsManager::new(with_files(dir.path(), &cert, &key)).unwrap();
    let (addr, _rx) = echo_server(serve(&manager)).await;
    let (good_cert, good_key) = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());

    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    write_pair(&other.join("cert.pem"), &other.join("key.pem"));
    let breakages: [(&str, &Path, Vec<u8>); 4] = [
        ("bad base64", &cert, b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec()),
        ("truncated", &cert, good_cert[..good_cert.len() / 2].to_vec()),
        ("empty key", &key, Vec::new()),
        ("other key", &key, fs::read(other.join("key.pem")).unwrap()),
    ];
    for (what, path, contents) in breakages {
        fs::write(path, contents).unwrap();
        let err = manager.reload().expect_err(what).to_string();
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
        let mut stream = connect(addr, client(&pem, ProtocolVersion::TLSv1_3)).await.unwrap();
        round_trip(&mut stream, what.as_bytes()).await;
        fs::write(&cert, &good_cert).unwrap();
        fs::write(&key, &good_key).unwrap();
    }
    fs::remove_file(&key).unwrap();
    let err = manager.reload().unwrap_err();
    assert!(matches!(err, TlsError::Read { ref path, .. } if *path == key), "{err}");
}

#[tokio::test]
async fn mismatched_key_and_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_pair(&p("a.crt"), &p("a.key"));
    write_pair(&p("b.crt"), &p("b.key"));
    let err = TlsManager::new(with_files(dir.path(), &p("a.crt"), &p("b.key"))).err().unwrap();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("a.crt") && text.contains("b.key"), "{text}");
}

#[tokio::test]
async fn bad_configurations_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let cert_pem = write_pair(&p("good.crt"), &p("good.key"));
    fs::write(p("junk.crt"), "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n").unwrap();
    fs::write(
        p("encrypted.key"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    fs::write(p("cert-as.key"), &cert_pem).unwrap();
    fs::write(p("junk.key"), "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n").unwrap();
    // (what, cert file, key file, the file the error must name, the expected error)
    type Case = (&'static str, &'static str, &'static str, &'static str, fn(&TlsError) -> bool);
    let cases: [Case; 7] = [
        ("missing cert", "absent.crt", "good.key", "absent.crt", |e| matches!(e, TlsError::Read { .. })),
        ("missing key", "good.crt", "absent.key", "absent.key", |e| matches!(e, TlsError::Read { .. })),
        ("key as cert", "good.key", "good.key", "good.key", |e| matches!(e, TlsError::NoCertificate { .. })),
        ("cert as key", "good.crt", "cert-as.key", "cert-as.key", |e| matches!(e, TlsError::NoKey { .. })),
        ("encrypted key", "good.crt", "encrypted.key", "encrypted.key", |e| matches!(e, TlsError::NoKey { .. })),
        ("junk certificate", "junk.crt", "good.key", "junk.crt", |e| matches!(e, TlsError::BadCertificate { .. })),
        ("junk key", "good.crt", "junk.key", "junk.key", |e| matches!(e, TlsError::BadKey { .. })),
    ];
    for (what, cert, key, blamed, expected) in cases {
        let err = TlsManager::new(with_files(dir.path(), &p(cert), &p(key))).err().expect(what);
        assert!(expected(&err), "{what}: {err:?}");
        assert!(err.to_string().contains(&p(blamed).display().to_string()), "{what}: {err}");
    }
    let only_cert = TlsSettings { key: None, ..with_files(dir.path(), &p("good.crt"), &p("good.key")) };
    let err = TlsManager::new(only_cert).err().unwrap();
    assert!(matches!(err, TlsError::Incomplete { missing: "key", .. }), "{err}");
}

#[tokio::test]
async fn half_generated_pair_is_refused_rather_than_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generated_paths(dir.path());
    fs::create_dir(dir.path().join("tls")).unwrap();
    fs::write(&key, "precious").unwrap();
    let err = TlsManager::new(settings(dir.path())).err().unwrap();
    assert!(
        matches!(err, TlsError::Partial { ref present, ref missing } if *present == key && *missing == cert),
        "{err}"
    );
    assert_eq!(fs::read(&key).unwrap(), b"precious");
}

#[tokio::test]
async fn loads_rsa_pkcs1_ecdsa_sec1_and_pkcs8_keys() {
    let generated = |alg| {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let (ed_cert, ed_key) = generated(&rcgen::PKCS_ED25519);
    let (p384_cert, p384_key) = generated(&rcgen::PKCS_ECDSA_P384_SHA384);
    let cases = [
        ("RSA PKCS#1", "BEGIN RSA PRIVATE KEY", RSA_CERT, RSA_KEY),
        ("ECDSA P-256 SEC1", "BEGIN EC PRIVATE KEY", EC_CERT, EC_KEY),
        ("Ed25519 PKCS#8", "BEGIN PRIVATE KEY", &ed_cert, &ed_key),
        ("ECDSA P-384 PKCS#8", "BEGIN PRIVATE KEY", &p384_cert, &p384_key),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, label, cert_pem, key_pem) in cases {
        assert!(key_pem.contains(label), "{what}");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        fs::write(&cert, cert_pem).unwrap();
        fs::write(&key, key_pem).unwrap();
        let manager = TlsManager::new(with_files(dir.path(), &cert, &key)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let (addr, _rx) = echo_server(serve(&manager)).await;
        for version in [ProtocolVersion::TLSv1_2, ProtocolVersion::TLSv1_3] {
            let config = client(cert_pem.as_bytes(), version);
            let mut stream = connect(addr, config).await.unwrap_or_else(|e| panic!("{what} {version:?}: {e}"));
            round_trip(&mut stream, b"QUIT\r\n").await;
        }
    }
}

/// Waits until a handshake trusting `root_pem` succeeds, i.e. the new certificate is served.
async fn until_served(addr: SocketAddr, root_pem: &[u8]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while connect(addr, client(root_pem, ProtocolVersion::TLSv1_3)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watcher_reloads_when_the_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(settings(dir.path())).unwrap();
    manager.spawn_watcher();
    let (addr, _rx) = echo_server(serve(&manager)).await;
    let (cert, key) = generated_paths(dir.path());
    let new_pem = write_pair(&cert, &key);
    until_served(addr, &new_pem).await;
}

#[tokio::test]
async fn reload_serves_the_new_files_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let manager = TlsManager::new(TlsSettings {
        check_interval: Duration::ZERO, // no polling: only a configuration reload reloads
        ..settings(dir.path())
    })
    .unwrap();
    manager.spawn_watcher();
    let (addr, _rx) = echo_server(serve(&manager)).await;
    let (cert, key) = generated_paths(dir.path());
    let new_pem = write_pair(&cert, &key);
    // What SIGHUP (a full configuration reload, reload.rs) calls.
    assert!(manager.reload().unwrap(), "a new chain was loaded");
    until_served(addr, &new_pem).await;
}

#[test]
fn self_issued_certificates_are_recognised() {
    assert!(is_self_issued(&CertificateDer::from_pem_slice(EC_CERT.as_bytes()).unwrap()));
    let (ca_key, leaf_key) = (rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap());
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    assert!(is_self_issued(ca.der()));
    assert!(!is_self_issued(leaf.der()), "issued by the CA");
    assert!(!is_self_issued(b"\x30\x03\x02\x01\x01"));
    assert!(!is_self_issued(b""));
}

// Test-only keys and certificates (CN and SAN "localhost", valid 2025-2125), made with
// openssl: `genrsa -traditional 2048` (PKCS#1) and `ecparam -name prime256v1 -genkey`
// (SEC1), each self-signed with basicConstraints CA:FALSE.
const RSA_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAqZ7ZdW/Ahr6KWLyQyfJFBDvhO0fHOPCo1aes9iMtocJ6qYE4
Z0kc0057ZExPDkUd8ZsdDRRqwKE0MXukDaC0db8r74nnx/pWPRTKsoicaNBaCNO+
rnjiNzoERX02evZTj1kDwMwp8rRaRGDUglFB50L1XJxPxUlS7FZ6sa+LvpmXusRd
nsTXd8rBZscAYYBF8jvP9WXKX3BDe+w/S/ZT11o5WQSloddciULFJB8xB17PBSEY
UYErfNKUVyF51zaVRd524ldR2W8L83F6aQKYSbs8f4iDyMaOHZCgoy12tlwbrhLy
MVHsrJ0acyKwe49F4UbIbtxqHoutr9GIO9+uoQIDAQABAoIBAC/yG+vrK9OqtnaA
zriWx9V7i53zGyhINqE2JVjp9rMbwwp44VWowAIm1BA01b/l36H0w5B37fkHWDaI
iYXkoD4MTMIIDEFlzMy1PNqcbQHfqyOFnwe4WdFcj+qIi0bUrCf/9GSiEVVuj3l2
mXtAts1FCxAjixTsNgliJIpnYav9Tqz7vgB5aYB0UdYaeeoDEynXO96JBhC+HgLZ
7CHDY3vN+ItGq0rggQav4NsxFlUaQIvZn8wmzvNEKRMMFBaLEG++EibQrZp9oEu2
HLH/q5lyuiPgIZDFAIc9GTzYFhasTjtL3kVkrxPHTXbwZ0fv9dBYtwBij6Ok6t1r
KIHMLLUCgYEA0J74CuZyQtBIBIuIwnLHDdbPtJOtsnbIvahDjyz60dcp+jhobShM
aoDgLviRQW+DonqzBY9uQ7nLPxG+ukYbk9N7wp/Wcr1Cf7g/eEphJUBTmppDRmqz
E4ZgHRt59FBXtgtbMmJvYSdwd9kFKkAOQPtaElZvAdoBCYaN03unZW8CgYEA0CRt
6SqPVH5qO3m+nyhLVzAFa7c4QgFVOB9ALIL8CxkVlajZtUEYIx2j6oV2cy04KwFi
CqnFeaLJeUtzQqWVWNP7uaacnVeie8SX+Wl76IMF03htTyd0dSgE/Zv/QM1hCsCi
h2weuJB1mNQaNGeK1YyozJPr5M2etqWGrLyBxO8CgYArUvgb+2N7MJnkJ74M850W
6KdVzt1hlH13tXviPesQrOhQyGoXUSkdbQohdwljV280zNpkqzaw5eKphFvhfzG2
71JiRqNYTKmEsJStvHSUMdmq36Jc+0eZJGzNXqli7VRpv83+lqaevHwEx5LlBUxw
fkJkUILZFZbljYXih2lqDQKBgF/2G7JfS9uRuNqY45ivVCTrX+RsgYR05txMFCMx
dJCNTRVF1rGpRD6UYMk0JQsu8vFo3tG5ufC9a5P/hDFa9AMTIMBUH2qvR5s2ZTa5
OkZVee8oW4Ud1KRbAgoGzOUMi0wQyh4TbAp9l6oRR8+XWTvhcMV5AU3out7Ma83h
zxaDAoGAErMH4ih9xgskfCkNHyAN0MGwLQyYH7pxF8KVJkOaFXylz63bRnozahZu
H1Yf8fk/1SNoFML3BfGpElg45vyTiIw6QfsHFtIhZdNGJfqGRU/zCrtEsT80hyyL
15yjLwP+ux4/bZuiz0iaGq0xzSAaTi+Ga3Pd53Vx8q6HmHxZhR8=
-----END RSA PRIVATE KEY-----
-----END RSA PRIVATE KEY-----
";
const RSA_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDDzCCAfegAwIBAgIBATANBgkqhkiG9w0BAQsFADAUMRIwEAYDVQQDDAlsb2Nh
bGhvc3QwIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBQxEjAQBgNV
BAMMCWxvY2FsaG9zdDCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAKme
2XVvwIa+ili8kMnyRQQ74TtHxzjwqNWnrPYjLaHCeqmBOGdJHNNOe2RMTw5FHfGb
HQ0UasChNDF7pA2gtHW/K++J58f6Vj0UyrKInGjQWgjTvq544jc6BEV9Nnr2U49Z
A8DMKfK0WkRg1IJRQedC9VycT8VJUuxWerGvi76Zl7rEXZ7E13fKwWbHAGGARfI7
z/Vlyl9wQ3vsP0v2U9daOVkEpaHXXIlCxSQfMQdezwUhGFGBK3zSlFchedc2lUXe
duJXUdlvC/NxemkCmEm7PH+Ig8jGjh2QoKMtdrZcG64S8jFR7KydGnMisHuPReFG
yG7cah6Lra/RiDvfrqECAwEAAaNqMGgwDAYDVR0TAQH/BAIwADAUBgNVHREEDTAL
gglsb2NhbGhvc3QwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMB
MB0GA1UdDgQWBBTHph0NdAz1hekB51ei24DxA0QJtDANBgkqhkiG9w0BAQsFAAOC
AQEAIUGYpDGAoC90LViHA3wcel3mcBe8EI6xU3d/BH1+ws0L4WtyB1uDgObE8vh5
IYmyXCL8I6FGIVgxU2czmmhEHebrkLzMEYpuu1XLp+0+ve1u4gJ6h5vBZSI+Se4Y
pWP30/G/4s1DQmFDxjmc+loVS3kyyRzmnTg2lfd0Lwibm1n4iiNVCLvIr03jiiJr
ZMQ4/Oh3sBAmPD7JhMCsovAPlPL55j6x1gitxnVi8ou/zf1HfsLlPlo5sOvRCQlq
YN2uGmIzFahJK4CuHv4vokGQwetXcx8jCazsv+/KJ+Z9FfDvhJnUn2EvncAMumi4
QQv4yx3LMcNK+hxkHObs1mJevw==
-----END CERTIFICATE-----
";
const EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIHn48FvCnPWOfcXueVmWMO95FMC3GXxu3Drdaxx0+seLoAoGCCqGSM49
AwEHoUQDQgAEJjwbn9wMDq1+MIVbzog/krjTOQDHAM5CgAVgTvTyQKHskoFpPxk4
SJRszKhF/+3X91pTm+mqhcjKi47eTO+2pg==
-----END EC PRIVATE KEY-----
";
const EC_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIBAjAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCY8G5/cDA6tfjCF
W86IP5K40zkAxwDOQoAFYE708kCh7JKBaT8ZOEiUbMyoRf/t1/daU5vpqoXIyouO
3kzvtqajajBoMAwGA1UdEwEB/wQCMAAwFAYDVR0RBA0wC4IJbG9jYWxob3N0MA4G
A1UdDwEB/wQEAwIFoDATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQUsd0z
t/KeDCcEbinbJ90B3CKKNtMwCgYIKoZIzj0EAwIDSAAwRQIhAOlvPHm3m6GWkLIV
X7KCAa8jq+lYF8Ez5DWWZvgyfB6EAiBqr/0F2qnr+csWGbBhO5CYMs/ZijPoZWiV
6sGcPV5t+A==
-----END CERTIFICATE-----
";
