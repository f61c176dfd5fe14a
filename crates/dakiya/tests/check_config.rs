//! `dakiya check-config FILE` also reads the files the server reads at start (the TLS
//! certificate and key, the users file, the relay host's password file, the extra CA file,
//! the DKIM keys): a bad one is exit status 2 and `dakiya: ` + an error naming the
//! configuration file, the key and the file; with good files, stdout is the effective
//! configuration. The real binary, run as an operator would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A configuration in a temporary directory, with its data directory inside.
struct Setup {
    dir: tempfile::TempDir,
}

const BASE: &str = r#"
hostname = "mx.example.test"
[[listen]]
address = "127.0.0.1:0"
role = "mx"
verify = false
[domains."example.test"]
mailboxes = ["alice"]
"#;

impl Setup {
    fn new() -> Setup {
        Setup { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes dakiya.toml: the base, then `tables` (TOML tables).
    fn config(&self, tables: &str) -> PathBuf {
        let text = format!("data_dir = {:?}\n{BASE}\n{tables}", self.data().display().to_string());
        self.write("dakiya.toml", &text)
    }

    /// `dakiya ARGS` with `stdin` as input.
    fn dakiya(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dakiya"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `dakiya check-config` on dakiya.toml with `tables`.
    fn check(&self, tables: &str) -> Output {
        let cfg = self.config(tables);
        self.dakiya(&["check-config", &cfg.display().to_string()], "")
    }

    /// A certificate and its key (PEM files), self-signed for mx.example.test.
    fn cert_and_key(&self, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let pair = rcgen::generate_simple_self_signed(vec!["mx.example.test".to_string()]).unwrap();
        (self.write(cert, &pair.cert.pem()), self.write(key, &pair.key_pair.serialize_pem()))
    }
}

/// `[tls]` with these files.
fn tls(cert: &Path, key: &Path) -> String {
    format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string())
}

/// A relay host with AUTH and this password file.
fn relay(password_file: &Path) -> String {
    format!(
        "[outbound.relay_host]\nhost = \"127.0.0.1:2525\"\nusername = \"mail@example.test\"\npassword_file = {:?}\n",
        password_file.display().to_string()
    )
}

/// `[outbound]` trusting this CA file.
fn ca(file: &Path) -> String {
    format!("[outbound]\ntls_ca_file = {:?}\n", file.display().to_string())
}

/// `[auth]` with this users file.
fn users(file: &Path) -> String {
    format!("[auth]\nusers_file = {:?}\n", file.display().to_string())
}

/// Exit status 2, nothing on stdout, and one `dakiya: ` line naming dakiya.toml, `key` and
/// `file`; returns stderr.
fn refused(out: &Output, key: &str, file: &Path) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let line = err
        .lines()
        .find(|l| l.contains(&format!("key `{key}`")))
        .unwrap_or_else(|| panic!("no error names {key}: {err}"));
    assert!(line.starts_with("dakiya: ") && line.contains("dakiya.toml: "), "{err}");
    assert!(line.contains(&file.display().to_string()), "{file:?} not named: {err}");
    err
}

#[test]
fn a_good_config_with_every_file_passes() {
    let s = Setup::new();
    let (cert, key) = s.cert_and_key("tls/cert.pem", "tls/key.pem");
    let password = s.write("relay-password", "secret\n");
    let users_file = s.path("users");
    let tables = format!("{}{}{}{}", tls(&cert, &key), relay(&password), ca(&cert), users(&users_file));
    let cfg = s.config(&tables).display().to_string();
    // The users file and a DKIM key, made as an operator makes them.
    let added = s.dakiya(&["user", "--config", &cfg, "add", "alice@example.test"], "a good password\n");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(users_file.exists());
    let generated = s.dakiya(&["dkim", "--config", &cfg, "generate", "example.test", "--algorithm", "ed25519"], "");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));

    let out = s.dakiya(&["check-config", &cfg], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.is_empty(), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hostname = \"mx.example.test\""), "{text}");
    assert!(text.contains(&format!("tls_ca_file = {:?}", cert.display().to_string())), "{text}");
    // The password is read but never shown.
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn a_config_naming_no_files_passes_and_writes_nothing() {
    let s = Setup::new();
    let out = s.check("");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[tls]"));
    // The server would generate a self-signed certificate at start; check-config does not.
    assert!(!s.data().exists());
}

#[test]
fn a_missing_relay_password_file_is_named() {
    let s = Setup::new();
    let missing = s.path("no-such-password");
    let out = s.check(&relay(&missing));
    let err = refused(&out, "outbound.relay_host.password_file", &missing);
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn a_missing_ca_file_is_named() {
    let s = Setup::new();
    let missing = s.path("no-such-ca.pem");
    refused(&s.check(&ca(&missing)), "outbound.tls_ca_file", &missing);
}

#[test]
fn a_damaged_ca_file_is_named() {
    let s = Setup::new();
    // An END line missing: not PEM.
    let file = s.write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    refused(&s.check(&ca(&file)), "outbound.tls_ca_file", &file);
}

#[test]
fn a_ca_file_holding_no_certificate_is_named() {
    let s = Setup::new();
    // Well-formed PEM, but the content is no X.509 certificate: no trust anchor.
    let file = s.write("ca.pem", "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
    let err = refused(&s.check(&ca(&file)), "outbound.tls_ca_file", &file);
    assert!(err.contains("extra root #1"), "{err}");
}

#[test]
fn a_missing_certificate_is_named() {
    let s = Setup::new();
    let (_, key) = s.cert_and_key("cert.pem", "key.pem");
    let missing = s.path("no-such-cert.pem");
    refused(&s.check(&tls(&missing, &key)), "tls.cert", &missing);
}

#[test]
fn a_garbage_certificate_is_named() {
    let s = Setup::new();
    let (_, key) = s.cert_and_key("cert.pem", "key.pem");
    let garbage = s.write("garbage.pem", "not a certificate\n");
    let err = refused(&s.check(&tls(&garbage, &key)), "tls.cert", &garbage);
    assert!(err.contains("no certificate in file"), "{err}");
}

#[test]
fn a_garbage_key_is_named() {
    let s = Setup::new();
    let (cert, _) = s.cert_and_key("cert.pem", "key.pem");
    let garbage = s.write("garbage.pem", "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n");
    let err = refused(&s.check(&tls(&cert, &garbage)), "tls.key", &garbage);
    assert!(err.contains("unusable private key"), "{err}");
}

#[test]
fn a_key_of_another_certificate_is_named() {
    let s = Setup::new();
    let (cert, _) = s.cert_and_key("cert.pem", "key.pem");
    let (_, other_key) = s.cert_and_key("other-cert.pem", "other-key.pem");
    let err = refused(&s.check(&tls(&cert, &other_key)), "tls.key", &other_key);
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn half_a_generated_certificate_pair_is_named() {
    let s = Setup::new();
    // No [tls] files: the server uses DATA_DIR/tls, and refuses half a pair there.
    let (cert, _) = s.cert_and_key("data/tls/cert.pem", "elsewhere/key.pem");
    let err = refused(&s.check(""), "data_dir", &cert);
    assert!(err.contains("key.pem does not"), "{err}");
}

#[test]
fn a_malformed_users_file_is_named_with_its_line() {
    let s = Setup::new();
    let file = s.write("users", "# users\nalice@example.test\n");
    let err = refused(&s.check(&users(&file)), "auth.users_file", &file);
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn an_unreadable_users_file_is_named() {
    let s = Setup::new();
    // A directory where the file should be: cannot be read (whoever runs the test).
    let dir = s.path("users.d");
    std::fs::create_dir(&dir).unwrap();
    refused(&s.check(&users(&dir)), "auth.users_file", &dir);
}

#[test]
fn a_bad_dkim_key_is_named() {
    let s = Setup::new();
    let file = s.write("data/dkim/example.test/s1.key", "not a key\n");
    let err = refused(&s.check(""), "data_dir", &file);
    assert!(err.contains("DKIM key"), "{err}");
}

#[test]
fn every_bad_file_is_reported_at_once() {
    let s = Setup::new();
    let password = s.path("no-such-password");
    let users_file = s.write("users", "alice@example.test\n");
    let out = s.check(&format!("{}{}", relay(&password), users(&users_file)));
    refused(&out, "outbound.relay_host.password_file", &password);
    let err = refused(&out, "auth.users_file", &users_file);
    assert_eq!(err.lines().count(), 2, "{err}");
}
