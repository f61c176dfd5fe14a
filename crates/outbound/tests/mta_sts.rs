//! MTA-STS (RFC 8461) toward MX hosts, with TLS-RPT counts (RFC 8460): a policy server on
//! loopback speaking HTTPS with a certificate from a test CA, the test DNS server for
//! `_mta-sts`, `_smtp._tls`, MX and A records, and fake SMTP servers with or without
//! STARTTLS and with certificates for the right or a wrong name.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dakiya_outbound::{Outbound, StsSettings, TlsMode, TlsReportTally};
use dakiya_proto::client::RecipientOutcome;
use dakiya_route::testdns::{TestDns, Zone};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{FakeSmtp, MESSAGE, Script, config, job};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ENFORCE: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mail.dest.test\r\nmx: *.backup.test\r\nmax_age: 86400\r\n";
const TESTING: &str = "version: STSv1\nmode: testing\nmx: mail.dest.test\nmax_age: 86400\n";

/// A CA and certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        Ca::named("dakiya test CA")
    }

    /// A CA with this common name (CAs with the same name would be confused by a verifier).
    fn named(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server configuration with a certificate for `name`.
    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let cert =
            CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &self.cert, &self.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), self.der()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// How the policy server answers.
#[derive(Clone)]
enum Answer {
    /// HTTP 200 with this content type and body.
    Serve(&'static str, Vec<u8>),
    /// A redirect to another place.
    Redirect,
    /// Reads the request and never answers.
    Hang,
}

/// An HTTPS server on 127.0.0.1 answering every request the same way; counts requests.
struct PolicyServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyServer {
    async fn start(tls: Arc<rustls::ServerConfig>, answer: Answer) -> PolicyServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, answer, count) = (acceptor.clone(), answer.clone(), count.clone());
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
                    assert!(request.starts_with(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"));
                    count.fetch_add(1, Ordering::SeqCst);
                    let response = match answer {
                        Answer::Serve(media, body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                        Answer::Redirect => {
                            b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"
                                .to_vec()
                        }
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        PolicyServer { addr, requests, task }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn text(policy: &str) -> Answer {
    Answer::Serve("text/plain; charset=utf-8", policy.as_bytes().to_vec())
}

/// The zone of `dest.test`: MX mail.dest.test, the policy host, `_mta-sts` with `id`,
/// and a TLS-RPT record. TTL 0, so a changed zone shows at once.
fn zone(id: &str) -> Zone {
    Zone::new()
        .ttl(0)
        .mx("dest.test", 10, "mail.dest.test")
        .a("mail.dest.test", Ipv4Addr::LOCALHOST)
        .a("mta-sts.dest.test", Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.dest.test", &format!("v=STSv1; id={id}"))
        .txt("_smtp._tls.dest.test", "v=TLSRPTv1; rua=mailto:tlsrpt@dest.test,https://r.dest.test/")
}

/// Everything a test needs.
struct World {
    ca: Ca,
    dns: TestDns,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(zone: Zone) -> World {
        World { ca: Ca::new(), dns: TestDns::start(zone).await, dir: tempfile::tempdir().unwrap() }
    }

    async fn policy_server(&self, answer: Answer) -> PolicyServer {
        PolicyServer::start(self.ca.server("mta-sts.dest.test"), answer).await
    }

    /// An outbound service in `mta-sts` mode, MX hosts on `smtp`'s port, policies fetched
    /// from `https_port`.
    fn outbound(&self, smtp_port: u16, https_port: u16) -> Outbound {
        let mut cfg = config(&self.dns);
        cfg.default_tls = TlsMode::MtaSts;
        cfg.route.smtp_port = smtp_port;
        cfg.extra_roots = vec![self.ca.der()];
        cfg.idle_timeout = Duration::ZERO;
        let settings =
            StsSettings { dir: Some(self.dir.path().to_owned()), https_port, fetch_timeout: Duration::from_secs(2) };
        Outbound::with_mta_sts(cfg, settings).unwrap()
    }
}

async fn send(out: &Outbound) -> RecipientOutcome {
    out.deliver("dest.test", &job(&["a@dest.test"]), Arc::from(MESSAGE)).await.remove(0).outcome
}

fn reason(outcome: &RecipientOutcome) -> String {
    match outcome {
        RecipientOutcome::Temporary(f) => f.reason.clone(),
        other => panic!("expected a deferral, got {other:?}"),
    }
}

/// Today's report for dest.test.
fn report(out: &Outbound) -> TlsReportTally {
    let mut all = out.take_tls_reports(u64::MAX / 2, true);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn failures(t: &TlsReportTally, result: &str) -> u64 {
    t.failures.iter().filter(|f| f.result.as_str() == result).map(|f| f.count).sum()
}

#[tokio::test]
async fn enforce_with_a_valid_certificate_delivers_over_tls() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script { tls: Some(w.ca.server("mail.dest.test")), ..Script::default() }).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    let outcome = send(&out).await;
    assert!(outcome.is_delivered(), "{outcome:?}");
    assert!(mx.stats.messages()[0].tls);
    let t = report(&out);
    assert_eq!((t.domain.as_str(), t.successes, t.failure_total()), ("dest.test", 1, 0));
    assert_eq!(t.policy.kind, "sts");
    assert_eq!(t.policy.mx_host, ["mail.dest.test", "*.backup.test"]);
    assert_eq!(out.tls_report_addresses("dest.test").await, ["tlsrpt@dest.test"]);
    assert!(w.dir.path().join("policies/dest.test").exists(), "the policy is cached on disk");
}

#[tokio::test]
async fn enforce_without_starttls_is_deferred_never_downgraded() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    let why = reason(&send(&out).await);
    assert!(why.starts_with("MTA-STS policy of dest.test: "), "{why}");
    assert!(why.contains("STARTTLS"), "{why}");
    assert!(mx.stats.messages().is_empty(), "nothing sent in clear");
    assert_eq!(failures(&report(&out), "starttls-not-supported"), 1);
}

#[tokio::test]
async fn enforce_with_a_certificate_for_another_name_is_deferred() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script { tls: Some(w.ca.server("other.test")), ..Script::default() }).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    let why = reason(&send(&out).await);
    assert!(why.starts_with("MTA-STS policy of dest.test: "), "{why}");
    assert!(mx.stats.messages().is_empty());
    let t = report(&out);
    assert_eq!(failures(&t, "certificate-host-mismatch"), 1, "{t:?}");
    assert_eq!(t.failures[0].mx.as_deref(), Some("mail.dest.test"));
}

#[tokio::test]
async fn an_mx_host_outside_the_policy_is_not_used() {
    // bad.dest.test has the better preference and listens on 127.0.0.2, same port.
    let w =
        World::new(zone("1").mx("dest.test", 5, "bad.dest.test").a("bad.dest.test", Ipv4Addr::new(127, 0, 0, 2))).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let good = FakeSmtp::start(Script { tls: Some(w.ca.server("mail.dest.test")), ..Script::default() }).await;
    let bad_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), good.addr.port()));
    let bad =
        FakeSmtp::start_at(bad_addr, Script { tls: Some(w.ca.server("bad.dest.test")), ..Script::default() }).await;
    let out = w.outbound(good.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    assert_eq!(bad.stats.connections(), 0, "the host outside the policy was never contacted");
    assert_eq!(good.stats.messages().len(), 1);
    assert_eq!(failures(&report(&out), "validation-failure"), 1);

    // With only that host, the mail waits and says why.
    w.dns.set_zone(zone("1").mx("dest.test", 5, "bad.dest.test").a("bad.dest.test", Ipv4Addr::new(127, 0, 0, 2)));
    let only_bad = Zone::new()
        .ttl(0)
        .mx("dest.test", 5, "bad.dest.test")
        .a("bad.dest.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("mta-sts.dest.test", Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.dest.test", "v=STSv1; id=1");
    w.dns.set_zone(only_bad);
    let why = reason(&send(&out).await);
    assert_eq!(why, "MTA-STS policy of dest.test: bad.dest.test does not match the policy's MX hosts");
    assert_eq!(bad.stats.connections(), 0);
}

#[tokio::test]
async fn testing_mode_delivers_and_reports() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(TESTING)).await;
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    assert!(!mx.stats.messages()[0].tls, "delivered in clear, as without a policy");
    let t = report(&out);
    assert_eq!((t.successes, failures(&t, "starttls-not-supported")), (0, 1));
    assert!(t.policy.lines.contains(&"mode: testing".to_owned()));
}

#[tokio::test]
async fn a_cached_policy_holds_while_the_policy_server_is_down_and_the_id_change_refetches() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let port = policy.addr.port();
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), port);
    assert!(reason(&send(&out).await).contains("STARTTLS"));
    assert!(reason(&send(&out).await).contains("STARTTLS"));
    assert_eq!(policy.requests(), 1, "the same id: the cached policy, no second fetch");

    w.dns.set_zone(zone("2"));
    assert!(reason(&send(&out).await).contains("STARTTLS"));
    assert_eq!(policy.requests(), 2, "a new id: fetched again");

    // Server gone, id changed again: the fetch fails, the unexpired cached enforce policy
    // still holds, in this service and in a new one reading the file.
    drop(policy);
    w.dns.set_zone(zone("3"));
    assert!(reason(&send(&out).await).contains("STARTTLS"));
    // A service on the same directory shares the counts while another lives; dropped
    // first, the new one reads the files.
    out.flush_tls_reports();
    drop(out);
    let fresh = w.outbound(mx.addr.port(), port);
    assert!(reason(&send(&fresh).await).contains("STARTTLS"));
    let t = report(&fresh);
    assert_eq!(failures(&t, "sts-policy-fetch-error"), 2, "both fetch failures, one read back from the file: {t:?}");
    assert_eq!(failures(&t, "starttls-not-supported"), 5, "{t:?}");
    assert!(mx.stats.messages().is_empty());
}

/// Bad policy servers: each is a defined outcome, "no policy" without a cache (so the mail
/// goes in clear to a server without STARTTLS), counted by type.
#[tokio::test]
async fn hostile_policy_servers_give_defined_outcomes() {
    let big = {
        let mut b = ENFORCE.as_bytes().to_vec();
        b.extend(std::iter::repeat_n(b'#', 70 * 1024));
        b
    };
    let cases = [
        (Answer::Serve("text/plain", big), "sts-policy-invalid"),
        (text("<html>not a policy</html>"), "sts-policy-invalid"),
        (Answer::Serve("text/html", ENFORCE.as_bytes().to_vec()), "sts-policy-invalid"),
        (Answer::Redirect, "sts-policy-fetch-error"),
        (Answer::Hang, "sts-policy-fetch-error"),
    ];
    for (answer, counted) in cases {
        let w = World::new(zone("1")).await;
        let policy = w.policy_server(answer).await;
        let mx = FakeSmtp::start(Script::default()).await;
        let out = w.outbound(mx.addr.port(), policy.addr.port());
        let outcome = send(&out).await;
        assert!(outcome.is_delivered(), "{counted}: {outcome:?}");
        let t = report(&out);
        assert_eq!(t.policy.kind, "no-policy-found");
        assert_eq!(failures(&t, counted), 1, "{t:?}");
    }
}

/// A policy server whose certificate is not trusted is `sts-webpki-invalid`.
#[tokio::test]
async fn an_untrusted_policy_server_is_no_policy() {
    let w = World::new(zone("1")).await;
    let stranger = Ca::named("stranger CA");
    let policy = PolicyServer::start(stranger.server("mta-sts.dest.test"), text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    assert_eq!(failures(&report(&out), "sts-webpki-invalid"), 1);
}

/// Without a `_mta-sts` record nothing is fetched and nothing counted.
#[tokio::test]
async fn no_record_no_policy() {
    let w =
        World::new(Zone::new().mx("dest.test", 10, "mail.dest.test").a("mail.dest.test", Ipv4Addr::LOCALHOST)).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    assert_eq!(policy.requests(), 0);
    assert!(out.take_tls_reports(u64::MAX / 2, true).is_empty());
}

/// A cached `enforce` policy is never downgraded by a policy server that turns hostile: a
/// new id, then a malformed policy, a redirect, the wrong type: the cached policy holds.
#[tokio::test]
async fn a_hostile_policy_server_never_downgrades_a_cached_enforce_policy() {
    let w = World::new(zone("1")).await;
    let good = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script::default()).await;
    let out = w.outbound(mx.addr.port(), good.addr.port());
    assert!(reason(&send(&out).await).contains("STARTTLS"));
    drop(out);
    let hostile = [
        text("version: STSv1\nmode: none\nmx: x\nmax_age: nope\n"),
        Answer::Redirect,
        Answer::Serve("application/octet-stream", TESTING.as_bytes().to_vec()),
    ];
    for (i, answer) in hostile.into_iter().enumerate() {
        let bad = w.policy_server(answer).await;
        w.dns.set_zone(zone(&format!("new{i}")));
        let out = w.outbound(mx.addr.port(), bad.addr.port());
        let why = reason(&send(&out).await);
        assert!(why.starts_with("MTA-STS policy of dest.test: "), "case {i}: {why}");
        assert_eq!(bad.requests(), 1, "case {i}: the new id was fetched");
    }
    assert!(mx.stats.messages().is_empty(), "nothing went in clear");
}

/// Deliveries to one domain at once wait for one fetch (§5.1 leaves it to the sender; one
/// in flight keeps a slow policy server from being asked many times).
#[tokio::test]
async fn concurrent_deliveries_fetch_once() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let mx = FakeSmtp::start(Script { tls: Some(w.ca.server("mail.dest.test")), ..Script::default() }).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    let (a, b, c) = tokio::join!(send(&out), send(&out), send(&out));
    assert!(a.is_delivered() && b.is_delivered() && c.is_delivered());
    assert_eq!(policy.requests(), 1);
    assert_eq!(report(&out).successes, 3);
}

/// In testing mode the certificate is not required, but it is checked for the report.
#[tokio::test]
async fn testing_mode_reports_certificate_problems_and_still_delivers() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(TESTING)).await;
    let wrong = FakeSmtp::start(Script { tls: Some(w.ca.server("other.test")), ..Script::default() }).await;
    let out = w.outbound(wrong.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    assert!(wrong.stats.messages()[0].tls, "over TLS, unverified");
    let t = report(&out);
    assert_eq!((t.successes, failures(&t, "certificate-host-mismatch")), (0, 1), "{t:?}");
    drop(out);

    let stranger = Ca::named("stranger CA");
    let untrusted = FakeSmtp::start(Script { tls: Some(stranger.server("mail.dest.test")), ..Script::default() }).await;
    let out = w.outbound(untrusted.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    let t = report(&out);
    assert_eq!(failures(&t, "certificate-not-trusted"), 1, "{t:?}");
    drop(out);

    let right = FakeSmtp::start(Script { tls: Some(w.ca.server("mail.dest.test")), ..Script::default() }).await;
    let out = w.outbound(right.addr.port(), policy.addr.port());
    assert!(send(&out).await.is_delivered());
    let t = report(&out);
    assert_eq!((t.successes, t.failure_total()), (1, 0), "{t:?}");
}

#[tokio::test]
async fn enforce_with_an_untrusted_certificate_is_deferred() {
    let w = World::new(zone("1")).await;
    let policy = w.policy_server(text(ENFORCE)).await;
    let stranger = Ca::named("stranger CA");
    let mx = FakeSmtp::start(Script { tls: Some(stranger.server("mail.dest.test")), ..Script::default() }).await;
    let out = w.outbound(mx.addr.port(), policy.addr.port());
    let why = reason(&send(&out).await);
    assert!(why.starts_with("MTA-STS policy of dest.test: TLS handshake failed"), "{why}");
    assert!(mx.stats.messages().is_empty());
    assert_eq!(failures(&report(&out), "certificate-not-trusted"), 1);
}
