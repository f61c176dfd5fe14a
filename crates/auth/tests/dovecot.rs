//! The Dovecot auth driver against a scripted auth server on a unix socket in a temp dir:
//! verdicts, a reconnect after the server closed a kept connection, a silent server (the
//! timeout), no server at all, and the authenticator's mapping to outcomes with the throttle
//! still in front, and the `service=` each protocol's check sends. The real Dovecot is
//! exercised by tests/interop/test_dovecot_auth.py.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dakiya_auth::{
    AuthOutcome, Authenticator, CheckPool, DovecotAuth, DovecotError, DovecotTarget, Service, Throttle, UserStore,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// How the scripted server behaves after the handshake.
#[derive(Clone, Copy)]
enum Script {
    /// `OK` for password "right", `FAIL` otherwise, `FAIL temp` for "tempfail".
    Judge,
    /// Answers one request per connection, then closes it.
    OncePerConnection,
    /// Never answers an AUTH.
    Silent,
}

/// The `service=` field of every AUTH line the scripted server received, in order.
type Services = Arc<Mutex<Vec<String>>>;

/// Starts the scripted server; returns its socket path and a count of connections accepted.
fn serve(dir: &Path, script: Script) -> (PathBuf, Arc<AtomicUsize>) {
    let (path, accepted, _) = serve_recording(dir, script);
    (path, accepted)
}

/// [`serve`], also recording the `service=` of each AUTH line.
fn serve_recording(dir: &Path, script: Script) -> (PathBuf, Arc<AtomicUsize>, Services) {
    let path = dir.join("auth-client");
    let listener = UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let services = Services::default();
    let seen = services.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let hello = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n";
                write.write_all(hello.as_bytes()).await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let fields: Vec<&str> = line.split('\t').collect();
                    if fields[0] != "AUTH" {
                        continue;
                    }
                    assert!(fields.contains(&"rip=127.0.0.1"), "{line}");
                    let service = fields.iter().find_map(|f| f.strip_prefix("service=")).unwrap_or("(none)");
                    seen.lock().unwrap().push(service.to_owned());
                    let resp = fields.iter().find_map(|f| f.strip_prefix("resp=")).unwrap();
                    let plain = String::from_utf8(STANDARD.decode(resp).unwrap()).unwrap();
                    let password = plain.rsplit('\0').next().unwrap().to_owned();
                    let id = fields[1];
                    let answer = match (script, password.as_str()) {
                        (Script::Silent, _) => continue,
                        (_, "right") => format!("OK\t{id}\tuser=x\n"),
                        (_, "tempfail") => format!("FAIL\t{id}\ttemp\n"),
                        _ => format!("FAIL\t{id}\n"),
                    };
                    // A reply to some other request first: the client must skip it.
                    write.write_all(format!("OK\t999999\n{answer}").as_bytes()).await.unwrap();
                    if matches!(script, Script::OncePerConnection) {
                        break;
                    }
                }
            });
        }
    });
    (path, accepted, services)
}

fn client(path: PathBuf, timeout: Duration) -> DovecotAuth {
    DovecotAuth::new(DovecotTarget::Unix(path), timeout, 4)
}

#[tokio::test]
async fn verdicts_follow_the_server_and_the_connection_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, accepted) = serve(dir.path(), Script::Judge);
    let auth = client(path, Duration::from_secs(5));
    assert!(auth.check(Service::Smtp, "alice@example.org", "right", IP, true).await.unwrap());
    assert!(!auth.check(Service::Smtp, "alice@example.org", "wrong", IP, true).await.unwrap());
    assert!(matches!(
        auth.check(Service::Smtp, "alice@example.org", "tempfail", IP, true).await,
        Err(DovecotError::TempFail(_))
    ));
    // A NUL cannot be carried by PLAIN: refused without asking.
    assert!(!auth.check(Service::Smtp, "alice@example.org", "a\0b", IP, true).await.unwrap());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_closed_kept_connection_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (path, accepted) = serve(dir.path(), Script::OncePerConnection);
    let auth = client(path, Duration::from_secs(5));
    for _ in 0..3 {
        assert!(auth.check(Service::Smtp, "alice@example.org", "right", IP, true).await.unwrap());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = serve(dir.path(), Script::Silent);
    let auth = client(path, Duration::from_millis(300));
    assert!(matches!(
        auth.check(Service::Smtp, "alice@example.org", "right", IP, true).await,
        Err(DovecotError::Timeout(_))
    ));
}

#[tokio::test]
async fn no_server_is_an_error_never_an_accept() {
    let dir = tempfile::tempdir().unwrap();
    let auth = client(dir.path().join("nothing-here"), Duration::from_secs(5));
    assert!(matches!(
        auth.check(Service::Smtp, "alice@example.org", "right", IP, true).await,
        Err(DovecotError::Io { .. })
    ));
    let auth = DovecotAuth::new(DovecotTarget::Inet("127.0.0.1:1".into()), Duration::from_secs(5), 1);
    assert!(auth.check(Service::Smtp, "alice@example.org", "right", IP, true).await.is_err());
}

#[tokio::test]
async fn the_authenticator_maps_dovecot_and_keeps_the_throttle() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = serve(dir.path(), Script::Judge);
    let users = Arc::new(UserStore::open(&dir.path().join("users")).unwrap());
    // Two failures lock the client out; no delay.
    let throttle = Throttle::new(2, Duration::from_secs(600), Duration::from_secs(600), Duration::ZERO);
    let pool = CheckPool::new(1, Duration::from_secs(5)).unwrap();
    let auth = Authenticator::with_dovecot(users, throttle, pool, client(path, Duration::from_secs(5)));
    // The user is not in dakiya's (empty) users file: Dovecot alone decides.
    assert!(matches!(
        auth.authenticate(Service::Smtp, IP, "alice@example.org", "right".into()).await,
        AuthOutcome::Accepted
    ));
    assert!(matches!(
        auth.authenticate(Service::Smtp, IP, "alice@example.org", "tempfail".into()).await,
        AuthOutcome::Unavailable(_)
    ));
    assert!(matches!(
        auth.authenticate(Service::Smtp, IP, "alice@example.org", "wrong".into()).await,
        AuthOutcome::Rejected
    ));
    assert!(matches!(
        auth.authenticate(Service::Smtp, IP, "alice@example.org", "wrong".into()).await,
        AuthOutcome::Rejected
    ));
    assert!(matches!(
        auth.authenticate(Service::Smtp, IP, "alice@example.org", "right".into()).await,
        AuthOutcome::Locked { .. }
    ));
}

#[tokio::test]
async fn each_protocol_names_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, services) = serve_recording(dir.path(), Script::Judge);
    let users = Arc::new(UserStore::open(&dir.path().join("users")).unwrap());
    let throttle = Throttle::new(10, Duration::from_secs(600), Duration::from_secs(600), Duration::ZERO);
    let pool = CheckPool::new(1, Duration::from_secs(5)).unwrap();
    let auth = Authenticator::with_dovecot(users, throttle, pool, client(path, Duration::from_secs(5)));
    for service in [Service::Pop3, Service::Smtp, Service::Pop3] {
        assert!(matches!(
            auth.authenticate(service, IP, "alice@example.org", "right".into()).await,
            AuthOutcome::Accepted
        ));
    }
    assert_eq!(*services.lock().unwrap(), ["pop3", "smtp", "pop3"]);
}
