//! Key generation, the key directory layout and loading, and the published records.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dakiya_mailauth::{Algorithm, AuthError, KeyStore, dns_records, generate_key};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Puts a fixture key at `dir/<domain>/<selector>.key`.
fn install(dir: &Path, domain: &str, selector: &str, fixture: &str) {
    let target = dir.join(domain);
    fs::create_dir_all(&target).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(fixture),
        target.join(format!("{selector}.key")),
    )
    .unwrap();
}

#[test]
fn ed25519_key_is_written_private_and_its_record_returned() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("dkim");
    let (name, value) = generate_key(&keys, "Example.ORG", "S2025", Algorithm::Ed25519).unwrap();
    assert_eq!(name, "s2025._domainkey.example.org");
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
    assert_eq!(value.len(), "v=DKIM1; k=ed25519; p=".len() + 44, "32 octets in base64: {value}");

    let file = keys.join("example.org/s2025.key");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&keys.join("example.org")), 0o700);
    assert_eq!(mode(&keys), 0o700);
    assert!(fs::read_to_string(&file).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    // Nothing else is left behind (the temporary file is gone).
    assert_eq!(fs::read_dir(keys.join("example.org")).unwrap().count(), 1);

    assert_eq!(dns_records(&keys, "example.org").unwrap(), [(name, value)]);
    assert!(KeyStore::load(&keys).unwrap().has_keys("example.org"));
}

#[test]
fn rsa_key_record_carries_the_subject_public_key_info() {
    let key = common::rsa_key();
    assert_eq!(mode(key), 0o600);
    assert!(fs::read_to_string(key).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8");
    let records = dns_records(key.parent().unwrap().parent().unwrap(), "rsa.test").unwrap();
    assert_eq!(records.len(), 1);
    let (name, value) = &records[0];
    assert_eq!(name, "rsa._domainkey.rsa.test");
    // A 2048-bit SubjectPublicKeyInfo (rsaEncryption) always begins so in base64; a bare
    // PKCS#1 RSAPublicKey would begin "MIIBCgKCAQEA".
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"), "{value}");
}

#[test]
fn keys_made_by_openssl_load_and_publish_what_openssl_prints() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "example.org", "ed", "openssl-ed25519.pem");
    install(dir.path(), "example.org", "legacy", "pkcs1-rsa.pem");
    let store = KeyStore::load(dir.path()).unwrap();
    assert!(store.has_keys("example.org"));
    // The expected values are `openssl pkey -pubout` (the last 32 octets for Ed25519) and
    // `openssl rsa -pubout` of the fixtures, as RFC 6376 Appendix C makes them.
    assert_eq!(
        dns_records(dir.path(), "example.org").unwrap(),
        [
            (
                "ed._domainkey.example.org".to_string(),
                "v=DKIM1; k=ed25519; p=tf4RPA8RN+gSPAqFhuUYPbV50yTrrCL96j8R8R8xl1Q=".to_string()
            ),
            (
                "legacy._domainkey.example.org".to_string(),
                concat!(
                    "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApNxC+pzdnQYtzjCdsJfqwX0Toc/5mGec08ZE",
                    "7Np1MFEC1Cs7ZMizIYE24nW79wLEbOdcqrBfjKlO+TowTdfb5h9fJ3TX5whNf9IBlCQy9QwMG89r4nqUDEj7anZ9rRQCVIsVa",
                    "oSlLpwpZ+/EIak1SCcROP1EUcd7g3r2lg/iWevbzH8xXcm1OVYcbq7T1iOyDUADV0s/goSfKcR9G0gRuPI6XoamRCXm/AUNYw",
                    "IVKGqzPwPZlSEyB9NSdXJIC7XOyd0F85yXwMI7sBXCZqGyfSNT7ltKcGWrmVpOOelkaYdIupQI2skqe2Sp4OulUcIFBGtcfRc1",
                    "OzEYcQNlmb44NQIDAQAB"
                )
                .to_string()
            ),
        ]
    );
    let sig = store.sign(common::message("a@example.org").as_bytes(), "example.org").unwrap();
    assert!(sig.contains("a=ed25519-sha256; s=ed;") && sig.contains("a=rsa-sha256; s=legacy;"), "{sig}");
}

#[test]
fn an_existing_key_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    generate_key(dir.path(), "example.org", "sel", Algorithm::Ed25519).unwrap();
    let file = dir.path().join("example.org/sel.key");
    let before = fs::read(&file).unwrap();
    for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
        let err = generate_key(dir.path(), "EXAMPLE.org", "SEL", algorithm).unwrap_err();
        assert!(matches!(&err, AuthError::Key { path, .. } if *path == file), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
    }
    assert_eq!(fs::read(&file).unwrap(), before);
}

#[test]
fn bad_selectors_and_domains_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for selector in ["", "..", "../escape", "a/b", "a.b", "-x", "x_y", "sel ector", &"s".repeat(64)] {
        let err = generate_key(dir.path(), "example.org", selector, Algorithm::Ed25519).unwrap_err();
        assert!(err.to_string().contains("selector"), "{selector:?}: {err}");
    }
    for domain in ["", "..", "../etc", "a/b", "exa mple.org", "bücher.example", "-bad.example"] {
        let err = generate_key(dir.path(), domain, "sel", Algorithm::Ed25519).unwrap_err();
        assert!(err.to_string().contains("domain"), "{domain:?}: {err}");
        assert!(dns_records(dir.path(), domain).is_err(), "{domain:?}");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn loading_missing_and_odd_directories() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::load(&dir.path().join("missing")).unwrap();
    assert!(!store.has_keys("example.org"));
    assert_eq!(dns_records(dir.path(), "example.org").unwrap(), []);

    // Upper-case directory names are found in lower case; other files and directories
    // that are not domain names are ignored.
    install(dir.path(), "Example.ORG", "ed", "openssl-ed25519.pem");
    fs::write(dir.path().join("Example.ORG/README"), "not a key").unwrap();
    fs::create_dir(dir.path().join("not a domain")).unwrap();
    fs::write(dir.path().join("stray.key"), "not in a domain directory").unwrap();
    let store = KeyStore::load(dir.path()).unwrap();
    assert!(store.has_keys("example.org"));
    assert!(format!("{store:?}").contains("example.org"));
    assert!(!format!("{store:?}").contains("PRIVATE"));
}

#[test]
fn unusable_key_files_are_errors_naming_the_file() {
    let cases = [
        ("p256.pem", "unsupported key algorithm"),
        ("rsa-1024.pem", "RSA key"),
        ("garbage", "not a PEM file"),
        ("cert", "not a private key"),
    ];
    for (fixture, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.org/bad.key");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        match fixture {
            "garbage" => fs::write(&file, "hello").unwrap(),
            "cert" => fs::write(&file, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap(),
            _ => install(dir.path(), "example.org", "bad", fixture),
        };
        let err = KeyStore::load(dir.path()).unwrap_err();
        assert!(matches!(&err, AuthError::Key { path, .. } if *path == file), "{fixture}: {err}");
        assert!(err.to_string().contains(why), "{fixture}: {err}");
    }
    // A key file whose name is no selector is refused too.
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "example.org", "bad.name", "openssl-ed25519.pem");
    assert!(KeyStore::load(dir.path()).unwrap_err().to_string().contains("selector"));
}
