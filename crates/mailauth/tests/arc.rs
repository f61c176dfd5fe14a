//! ARC (RFC 8617): sealing forwarded mail with the key store and verifying the chain.

mod common;

use common::{CLIENT, keys, message, publish, signed, start, unfolded};
use dakiya_mailauth::{Algorithm, AuthResult, KeyStore, Verdict, Verifier};
use dakiya_route::testdns::{TestDns, Zone};

struct World {
    _dns: TestDns,
    verifier: Verifier,
    _dirs: Vec<tempfile::TempDir>,
    author: KeyStore,
    forwarder: KeyStore,
    second: KeyStore,
}

async fn world() -> World {
    let (d1, author, r1) = keys("example.org", &[("sel", Algorithm::Ed25519)]);
    let (d2, forwarder, r2) = keys("lists.example.net", &[("arc", Algorithm::Rsa), ("b", Algorithm::Ed25519)]);
    let (d3, second, r3) = keys("relay.example.com", &[("arc", Algorithm::Ed25519)]);
    let zone =
        Zone::new().txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all").txt("_dmarc.example.org", "v=DMARC1; p=reject");
    let zone = publish(publish(publish(zone, &r1), &r2), &r3);
    let (dns, verifier) = start(zone).await;
    World { _dns: dns, verifier, _dirs: vec![d1, d2, d3], author, forwarder, second }
}

impl World {
    async fn verify(&self, message: &str) -> Verdict {
        let spf = self.verifier.check_spf(CLIENT, "mail.example.org", "alice@example.org").await;
        self.verifier.verify(message.as_bytes(), &spf).await
    }

    /// The author's signed message as the forwarder received it.
    fn original(&self) -> String {
        let msg = message("alice@example.org");
        signed(&self.author.sign(msg.as_bytes(), "example.org").unwrap(), &msg)
    }
}

#[tokio::test]
async fn sealed_message_verifies_as_arc_pass() {
    let w = world().await;
    let received = w.original();
    let verdict = w.verify(&received).await;
    assert_eq!((verdict.arc, verdict.dmarc), (AuthResult::None, AuthResult::Pass));
    let seal = w.forwarder.seal(received.as_bytes(), &verdict, "lists.example.net").unwrap();
    assert!(seal.starts_with("ARC-Seal: i=1; a=rsa-sha256; s=arc; d=lists.example.net; cv=none;"), "{seal}");
    assert!(seal.contains("ARC-Message-Signature: i=1;"), "{seal}");
    assert!(seal.contains("ARC-Authentication-Results: i=1; mx.example.net;"), "{seal}");
    assert!(unfolded(&seal).contains("dkim=pass header.d=example.org"), "{seal}");
    assert!(unfolded(&seal).contains("dmarc=pass"), "{seal}");
    assert!(seal.ends_with("\r\n"));

    let forwarded = format!("{seal}{received}");
    let verdict = w.verify(&forwarded).await;
    assert_eq!(verdict.arc, AuthResult::Pass, "{}", verdict.header);
    assert!(unfolded(&verdict.header).contains("arc=pass"), "{}", verdict.header);

    // A second hop extends the chain: i=2, cv=pass, and it still verifies.
    let seal2 = w.second.seal(forwarded.as_bytes(), &verdict, "relay.example.com").unwrap();
    assert!(seal2.starts_with("ARC-Seal: i=2; a=ed25519-sha256; s=arc; d=relay.example.com; cv=pass;"), "{seal2}");
    let verdict = w.verify(&format!("{seal2}{forwarded}")).await;
    assert_eq!(verdict.arc, AuthResult::Pass, "{}", verdict.header);
}

#[tokio::test]
async fn tampered_sealed_message_fails() {
    let w = world().await;
    let received = w.original();
    let seal = w.forwarder.seal(received.as_bytes(), &w.verify(&received).await, "lists.example.net").unwrap();
    let forwarded = format!("{seal}{received}");

    let body = forwarded.replace("the numbers are in.", "the numbers are out.");
    assert_eq!(w.verify(&body).await.arc, AuthResult::Fail);
    let subject = forwarded.replace("Subject: Quarterly numbers", "Subject: Quarterly numbers!");
    let verdict = w.verify(&subject).await;
    assert_eq!(verdict.arc, AuthResult::Fail);
    assert!(unfolded(&verdict.header).contains("arc=fail"), "{}", verdict.header);

    // The next hop records the failure (cv=fail); after that, nobody seals it again.
    let seal2 = w.second.seal(subject.as_bytes(), &verdict, "relay.example.com").unwrap();
    assert!(seal2.contains("i=2;") && seal2.contains("cv=fail;"), "{seal2}");
    let twice = format!("{seal2}{subject}");
    let verdict = w.verify(&twice).await;
    assert_eq!(verdict.arc, AuthResult::Fail);
    assert_eq!(w.forwarder.seal(twice.as_bytes(), &verdict, "lists.example.net").unwrap(), "");
}

#[tokio::test]
async fn sealing_needs_keys_and_the_verified_chain() {
    let w = world().await;
    let received = w.original();
    let verdict = w.verify(&received).await;
    assert_eq!(w.forwarder.seal(received.as_bytes(), &verdict, "unknown.example").unwrap(), "");
    // The first key by selector seals: "arc" before "b".
    let seal = w.forwarder.seal(received.as_bytes(), &verdict, "LISTS.example.net").unwrap();
    assert!(seal.contains("s=arc;"), "{seal}");
    // ARC sets added after verification are refused rather than sealed blindly.
    let forwarded = format!("{seal}{received}");
    assert!(w.second.seal(forwarded.as_bytes(), &verdict, "relay.example.com").is_err());
}
