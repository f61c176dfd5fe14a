//! SPF, DKIM, DMARC and ARC end to end: the real binary with a verifying `mx` listener, DNS
//! from a server the test runs on loopback, messages signed by dakiya's own signer or by the
//! key store directly.

mod common;

use common::{Client, TestServer, queue_id, wait_files};
use dakiya_mailauth::{Algorithm, KeyStore, dns_records, generate_key};
use dakiya_route::testdns::{TestDns, Zone};
use std::path::{Path, PathBuf};

/// A DNS server on loopback with its own runtime, alive as long as this value.
struct Dns {
    server: TestDns,
    _rt: tokio::runtime::Runtime,
}

fn dns(zone: Zone) -> Dns {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = rt.block_on(TestDns::start(zone));
    Dns { server, _rt: rt }
}

/// Adds the TXT records of `domain`'s keys in `keys_dir` to `zone`.
fn with_keys(mut zone: Zone, keys_dir: &Path, domain: &str) -> Zone {
    for (name, value) in dns_records(keys_dir, domain).unwrap() {
        zone = zone.txt(&name, &value);
    }
    zone
}

/// The zone most tests use: `sender.test` signs and publishes p=reject; `strict.test` has
/// p=reject and an SPF record that does not list 127.0.0.1; `quarantine.test` and
/// `relaxed.test` likewise with p=quarantine and p=none; `broken.test` answers SERVFAIL.
fn zone(keys_dir: &Path) -> Zone {
    let zone = Zone::new()
        .txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all")
        .txt("_dmarc.sender.test", "v=DMARC1; p=reject")
        .txt("strict.test", "v=spf1 ip4:192.0.2.1 -all")
        .txt("_dmarc.strict.test", "v=DMARC1; p=reject")
        .txt("quarantine.test", "v=spf1 ip4:192.0.2.1 -all")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("relaxed.test", "v=spf1 ip4:192.0.2.1 -all")
        .txt("_dmarc.relaxed.test", "v=DMARC1; p=none")
        .servfail("broken.test")
        .servfail("_dmarc.broken.test");
    with_keys(zone, keys_dir, "sender.test")
}

/// A receiver whose second mx listener verifies, asking `dns`.
fn receiver(dns: &Dns, listen_extra: &str, tables: &str) -> TestServer {
    TestServer::start(&format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = true\n{listen_extra}\n[outbound]\nnameservers = [\"{}\"]\n{tables}",
        dns.server.addr
    ))
}

/// The verifying listener (the base configuration's own mx listener comes first).
fn verifying(server: &TestServer) -> std::net::SocketAddr {
    server.listeners[1].0
}

fn keys_for(domain: &str, algorithm: Algorithm, selector: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("dkim");
    generate_key(&keys, domain, selector, algorithm).unwrap();
    (dir, keys)
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\r\nHello.\r\n"
    )
}

/// Sends raw `data` (a complete message, not dot-stuffed: no line starts with a dot) and
/// returns (MAIL reply, final reply or "").
fn send(addr: std::net::SocketAddr, mail_from: &str, rcpt: &str, data: &str) -> (String, String) {
    let mut c = Client::connect(addr, None);
    assert!(c.cmd("EHLO client.sender.test").starts_with("250"));
    let mail = c.cmd(&format!("MAIL FROM:<{mail_from}>"));
    if !mail.starts_with("250") {
        return (mail, String::new());
    }
    assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(data.as_bytes());
    (mail, c.cmd("."))
}

/// The Authentication-Results fields of a delivered message, unfolded.
fn auth_results(msg: &str) -> Vec<String> {
    let header = msg.split("\n\n").next().unwrap_or("");
    let mut fields: Vec<String> = Vec::new();
    for line in header.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields.into_iter().filter(|f| f.to_ascii_lowercase().starts_with("authentication-results:")).collect()
}

#[test]
fn signed_and_aligned_mail_passes_dkim_and_dmarc() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let store = KeyStore::load(&keys).unwrap();
    let raw = message("news@sender.test", "signed");
    let signed = format!("{}{raw}", store.sign(raw.as_bytes(), "sender.test").unwrap());
    let (mail, end) = send(verifying(&r), "news@sender.test", "alice@example.test", &signed);
    assert!(mail.starts_with("250") && end.starts_with("250"), "{mail} {end}\n{}", r.log());
    let got = r.wait_for("alice", 1);
    let ar = auth_results(&got[0]);
    assert_eq!(ar.len(), 1, "{}", got[0]);
    let ar = &ar[0];
    assert!(ar.contains("mx.example.test"), "{ar}");
    assert!(ar.contains("spf=pass"), "{ar}");
    assert!(ar.contains("dkim=pass"), "{ar}");
    assert!(ar.contains("header.d=sender.test"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    assert!(!got[0].contains("X-Spam-Flag"));
    // The verdict line names the message it is about (issue #16).
    let id = queue_id(&end);
    let log = r.log();
    let verdict = log.lines().find(|l| l.contains(" message authentication")).unwrap_or_else(|| panic!("{log}"));
    assert!(verdict.contains(&format!("queue_id={id} ")), "{verdict}");
}

#[test]
fn dmarc_reject_refuses_forged_mail_at_the_end_of_data() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let (_, end) = send(verifying(&r), "ceo@strict.test", "alice@example.test", &message("ceo@strict.test", "forged"));
    assert!(end.starts_with("550 5.7.1"), "{end}");
    assert!(end.contains("strict.test"), "{end}");
    assert!(r.spooled_envelopes().is_empty(), "nothing kept");
    assert!(r.messages("alice").is_empty());
    // The verdict and the refusal carry the queue ID the message would have had (issue #16).
    let log = r.log();
    let id_of = |what: &str| {
        let line = log.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{log}"));
        let id = line.split(" queue_id=").nth(1).and_then(|v| v.split(' ').next()).unwrap_or_default();
        assert!(!id.is_empty(), "{line}");
        id.to_string()
    };
    assert_eq!(id_of(" message authentication"), id_of(" message refused by authentication policy"));
    // The same mail on a listener with dmarc_reject = false is marked instead.
    let lenient = receiver(&dns, "dmarc_reject = false", "");
    let (_, end) = send(verifying(&lenient), "ceo@strict.test", "alice@example.test", &message("ceo@strict.test", "x"));
    assert!(end.starts_with("250"), "{end}");
    let got = lenient.wait_for("alice", 1);
    assert!(got[0].contains("X-Spam-Flag: YES"), "{}", got[0]);
    assert!(auth_results(&got[0])[0].contains("dmarc=fail"));
}

#[test]
fn dmarc_quarantine_marks_and_none_only_reports() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let (_, end) = send(verifying(&r), "a@quarantine.test", "alice@example.test", &message("a@quarantine.test", "q"));
    assert!(end.starts_with("250"), "{end}");
    let (_, end) = send(verifying(&r), "a@relaxed.test", "bob@example.test", &message("a@relaxed.test", "n"));
    assert!(end.starts_with("250"), "{end}");
    let quarantined = r.wait_for("alice", 1);
    assert!(quarantined[0].contains("X-Spam-Flag: YES\nX-Dakiya-Quarantine: dmarc\n"), "{}", quarantined[0]);
    assert!(auth_results(&quarantined[0])[0].contains("dmarc=fail"));
    assert!(auth_results(&quarantined[0])[0].contains("spf=fail"));
    let reported = r.wait_for("bob", 1);
    assert!(!reported[0].contains("X-Spam-Flag"), "{}", reported[0]);
    assert!(auth_results(&reported[0])[0].contains("dmarc=fail"), "{}", reported[0]);
}

#[test]
fn spf_fail_is_refused_at_mail_only_when_asked() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "spf_reject = true", "");
    let (mail, _) = send(verifying(&r), "x@strict.test", "alice@example.test", "");
    assert!(mail.starts_with("550 5.7.23"), "{mail}");
    // SPF pass goes through.
    let raw = message("news@sender.test", "spf ok");
    let signed = format!("{}{raw}", KeyStore::load(&keys).unwrap().sign(raw.as_bytes(), "sender.test").unwrap());
    let (mail, end) = send(verifying(&r), "news@sender.test", "alice@example.test", &signed);
    assert!(mail.starts_with("250") && end.starts_with("250"), "{mail} {end}");
}

#[test]
fn dns_trouble_defers_instead_of_passing() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let (mail, end) = send(verifying(&r), "x@broken.test", "alice@example.test", &message("x@broken.test", "dns"));
    assert!(mail.starts_with("250"), "{mail}");
    assert!(end.starts_with("451 4.7."), "{end}");
    assert!(r.spooled_envelopes().is_empty());
}

#[test]
fn forged_results_claiming_our_name_are_removed() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let raw = format!(
        "Authentication-Results: mx.example.test;\r\n\tdkim=pass header.d=bank.test\r\nAuthentication-Results: other.test; spf=pass\r\n{}",
        message("a@relaxed.test", "forged-ar")
    );
    let (_, end) = send(verifying(&r), "a@relaxed.test", "alice@example.test", &raw);
    assert!(end.starts_with("250"), "{end}");
    let got = r.wait_for("alice", 1);
    let ar = auth_results(&got[0]);
    assert_eq!(ar.len(), 2, "ours and other.test's: {ar:?}");
    assert!(!got[0].contains("bank.test"), "{}", got[0]);
    assert!(ar.iter().any(|f| f.contains("other.test; spf=pass")));
    let log = r.log();
    let removed = log.lines().find(|l| l.contains("removed Authentication-Results")).unwrap_or_else(|| panic!("{log}"));
    assert!(removed.contains(&format!("queue_id={} ", queue_id(&end))), "{removed}");
}

/// Issue #9 item 8: our host name in its absolute form, with the trailing root dot.
#[test]
fn forged_results_naming_our_absolute_name_are_removed() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let raw = format!(
        "Authentication-Results: MX.example.test.; dkim=pass header.d=bank.test\r\n{}",
        message("a@relaxed.test", "forged-ar-dot")
    );
    let (_, end) = send(verifying(&r), "a@relaxed.test", "alice@example.test", &raw);
    assert!(end.starts_with("250"), "{end}");
    let got = r.wait_for("alice", 1);
    assert_eq!(auth_results(&got[0]).len(), 1, "only ours: {}", got[0]);
    assert!(!got[0].contains("bank.test"), "{}", got[0]);
}

/// A header line longer than the filter's 64 KiB limit, whose end arrives after a pause:
/// the filter once took its final CRLF for the empty line that ends the header section and
/// let the forged field below it through.
#[test]
fn forged_results_behind_an_over_long_line_are_removed() {
    let (_k, keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    let dns = dns(zone(&keys));
    let r = receiver(&dns, "", "");
    let mut c = Client::connect(verifying(&r), None);
    assert!(c.cmd("EHLO client.sender.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@relaxed.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // In separate writes with pauses, so that the server's reads end where the writes do:
    // the second crosses the limit, the line's CRLF comes in the third.
    let long = format!("X-Long: {}", "a".repeat(65_000));
    let pause = std::time::Duration::from_millis(300);
    c.send(long.as_bytes());
    std::thread::sleep(pause);
    c.send("b".repeat(600).as_bytes());
    std::thread::sleep(pause);
    let rest = format!(
        "\r\nAuthentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n{}",
        message("a@relaxed.test", "forged-ar-long")
    );
    c.send(rest.as_bytes());
    let end = c.cmd(".");
    assert!(end.starts_with("250"), "{end}");
    let got = r.wait_for("alice", 1);
    assert!(got[0].contains(&format!("{long}{}\n", "b".repeat(600))), "the long line is kept whole");
    assert_eq!(auth_results(&got[0]).len(), 1, "only ours");
    assert!(!got[0].contains("bank.test"), "the forged field was kept");
}

#[test]
fn submitted_mail_is_signed_and_verifies_at_the_next_hop() {
    // The sender's keys: two selectors (rotation), RSA and Ed25519.
    let sender_dir = tempfile::tempdir().unwrap();
    let keys = sender_dir.path().join("data").join("dkim");
    generate_key(&keys, "example.test", "rsa1", Algorithm::Rsa).unwrap();
    generate_key(&keys, "example.test", "ed1", Algorithm::Ed25519).unwrap();
    let zone = with_keys(Zone::new(), &keys, "example.test")
        .txt("example.test", "v=spf1 -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=reject; adkim=s");
    let dns = dns(zone);
    let r = TestServer::start(&format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = true\n[domains.\"remote.test\"]\nmailboxes = [\"bob\"]\n[outbound]\nnameservers = [\"{}\"]\n",
        dns.server.addr
    ));
    let a = TestServer::start_in(
        sender_dir,
        &format!(
            "trusted_networks = [\"127.0.0.1/32\"]\n[outbound.routes.\"remote.test\"]\nhosts = [\"{}\"]\ntls = \"none\"\n",
            verifying(&r)
        ),
    );
    let raw = message("alice@example.test", "outgoing").replace("To: <alice@example.test>", "To: <bob@remote.test>");
    let reply = a.connect().send_mail("alice@example.test", &["bob@remote.test"], &raw);
    assert!(reply.starts_with("250"), "{reply}");
    let got = wait_files(&r.data().join("mail").join("remote.test").join("bob").join("new"), 1);
    assert_eq!(got.len(), 1, "A:\n{}\nR:\n{}", a.log(), r.log());
    assert_eq!(got[0].matches("DKIM-Signature:").count(), 2, "{}", got[0]);
    let ar = &auth_results(&got[0])[0];
    assert!(ar.contains("header.s=rsa1") && ar.contains("header.s=ed1"), "{ar}");
    assert_eq!(ar.matches("dkim=pass").count(), 2, "{ar}");
    assert!(ar.contains("dmarc=pass"), "SPF fails (-all) but DKIM is aligned: {ar}");
    let _ = queue_id;
}

#[test]
fn forwarded_mail_is_arc_sealed() {
    let (_k, sender_keys) = keys_for("sender.test", Algorithm::Ed25519, "s1");
    // The forwarder R2 has a key for example.test, the domain of its alias fwd@example.test.
    let fwd_dir = tempfile::tempdir().unwrap();
    let fwd_keys = fwd_dir.path().join("data").join("dkim");
    generate_key(&fwd_keys, "example.test", "arc1", Algorithm::Ed25519).unwrap();
    let zone = with_keys(zone(&sender_keys), &fwd_keys, "example.test");
    let dns = dns(zone);
    // The final destination verifies ARC.
    let b = TestServer::start(&format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = true\n[domains.\"elsewhere.test\"]\nany_mailbox = true\n[outbound]\nnameservers = [\"{}\"]\n",
        dns.server.addr
    ));
    let r2 = TestServer::start_in(
        fwd_dir,
        &format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = true\n[outbound]\nnameservers = [\"{}\"]\n[outbound.routes.\"elsewhere.test\"]\nhosts = [\"{}\"]\ntls = \"none\"\n",
            dns.server.addr,
            verifying(&b)
        ),
    );
    let raw = message("news@sender.test", "forwarded").replace("To: <alice@example.test>", "To: <fwd@example.test>");
    let signed = format!("{}{raw}", KeyStore::load(&sender_keys).unwrap().sign(raw.as_bytes(), "sender.test").unwrap());
    let (_, end) = send(verifying(&r2), "news@sender.test", "fwd@example.test", &signed);
    assert!(end.starts_with("250"), "{end}\n{}", r2.log());
    let got = wait_files(&b.data().join("mail").join("elsewhere.test").join("someone").join("new"), 1);
    assert_eq!(got.len(), 1, "R2:\n{}\nB:\n{}", r2.log(), b.log());
    assert!(got[0].contains("ARC-Seal: i=1"), "{}", got[0]);
    let ours = auth_results(&got[0]).into_iter().find(|f| f.contains("arc=")).expect("B's results");
    assert!(ours.contains("arc=pass"), "{ours}");
    // The local copy carries R2's results but no seal.
    let local = r2.wait_for("alice", 1);
    assert!(auth_results(&local[0])[0].contains("dkim=pass"));
}

#[test]
fn dkim_cli_generates_and_shows_the_record() {
    let s = TestServer::start("");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dakiya"))
            .args(["dkim", "--config"])
            .arg(s.config_path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["generate", "example.test", "--selector", "sel1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("name:  sel1._domainkey.example.test"), "{out}");
    assert!(out.contains("v=DKIM1; k=rsa; p="), "{out}");
    let (code, out2, _) = run(&["generate", "example.test", "--selector", "sel2", "--algorithm", "ed25519"]);
    assert_eq!(code, Some(0));
    assert!(out2.contains("k=ed25519"), "{out2}");
    // Never overwrites a key.
    let (code, _, err) = run(&["generate", "example.test", "--selector", "sel1"]);
    assert_ne!(code, Some(0), "{err}");
    let (code, shown, _) = run(&["show", "example.test"]);
    assert_eq!(code, Some(0));
    assert!(
        shown.contains("sel1._domainkey.example.test") && shown.contains("sel2._domainkey.example.test"),
        "{shown}"
    );
    let key = s.data().join("dkim").join("example.test").join("sel1.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, _, err) = run(&["show", "nokeys.test"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no DKIM keys"), "{err}");
}
