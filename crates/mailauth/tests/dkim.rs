//! DKIM (RFC 6376, RFC 8463): signing with the key store and verifying through the test DNS
//! server, which serves the records `dns_records` gives.

mod common;

use common::{CLIENT, keys, message, publish, signed, spf, start, unfolded};
use dakiya_mailauth::{Algorithm, AuthResult, Verdict};
use dakiya_route::testdns::Zone;

const DOMAIN: &str = "example.org";

/// Signs `message()` with keys of `selectors`, serves their records, verifies.
async fn sign_and_verify(selectors: &[(&str, Algorithm)], alter: impl Fn(String) -> String) -> (String, Verdict) {
    let (_dir, store, records) = keys(DOMAIN, selectors);
    let (_dns, v) = start(publish(Zone::new(), &records)).await;
    let msg = message("alice@example.org");
    let signatures = store.sign(msg.as_bytes(), DOMAIN).unwrap();
    let received = alter(signed(&signatures, &msg));
    let check = spf(&v, CLIENT, "alice@example.org").await;
    let verdict = v.verify(received.as_bytes(), &check).await;
    (signatures, verdict)
}

fn unchanged(m: String) -> String {
    m
}

#[tokio::test]
async fn ed25519_signature_passes() {
    let (sig, verdict) = sign_and_verify(&[("ed", Algorithm::Ed25519)], unchanged).await;
    assert!(sig.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=ed; d=example.org; c=relaxed/relaxed;"), "{sig}");
    assert!(sig.ends_with("\r\n"));
    assert_eq!(verdict.dkim.len(), 1);
    let dkim = &verdict.dkim[0];
    assert_eq!((dkim.result, dkim.domain.as_str(), dkim.selector.as_str()), (AuthResult::Pass, DOMAIN, "ed"));
    assert_eq!(dkim.reason, None);
    assert!(unfolded(&verdict.header).contains("dkim=pass header.d=example.org header.s=ed"), "{}", verdict.header);
}

#[tokio::test]
async fn rsa_signature_passes_with_a_key_record_split_into_strings() {
    let (sig, verdict) = sign_and_verify(&[("rsa", Algorithm::Rsa)], unchanged).await;
    assert!(sig.contains("a=rsa-sha256; s=rsa; d=example.org; c=relaxed/relaxed;"), "{sig}");
    assert_eq!(verdict.dkim.len(), 1);
    assert_eq!(verdict.dkim[0].result, AuthResult::Pass, "{:?}", verdict.dkim[0]);
}

#[tokio::test]
async fn signed_fields_are_those_present_with_from_oversigned() {
    let (_dir, store, _) = keys(DOMAIN, &[("ed", Algorithm::Ed25519)]);
    let sig = store.sign(message("alice@example.org").as_bytes(), DOMAIN).unwrap();
    let flat = unfolded(&sig).replace(' ', "");
    let h = flat.split("h=").nth(1).unwrap().split(';').next().unwrap().to_ascii_lowercase();
    let mut listed: Vec<&str> = h.split(':').collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["content-type", "date", "from", "from", "message-id", "mime-version", "subject", "to"],
        "h={h}"
    );
}

#[tokio::test]
async fn an_added_from_breaks_the_signature() {
    let add_from = |m: String| format!("From: Mallory <boss@example.org>\r\n{m}");
    let (_, verdict) = sign_and_verify(&[("ed", Algorithm::Ed25519)], add_from).await;
    assert_eq!(verdict.dkim[0].result, AuthResult::Fail);
}

#[tokio::test]
async fn altered_body_is_a_body_hash_failure() {
    let alter = |m: String| m.replace("the numbers are in.", "the numbers are in. Pay to IBAN X.");
    let (_, verdict) = sign_and_verify(&[("ed", Algorithm::Ed25519)], alter).await;
    let dkim = &verdict.dkim[0];
    assert_eq!(dkim.result, AuthResult::Fail);
    assert_eq!(dkim.reason.as_deref(), Some("body hash did not verify"));
    assert!(unfolded(&verdict.header).contains("dkim=fail (body hash did not verify)"), "{}", verdict.header);
}

#[tokio::test]
async fn altered_signed_field_is_a_signature_failure() {
    let alter = |m: String| m.replace("Subject: Quarterly numbers", "Subject: Urgent wire transfer");
    let (_, verdict) = sign_and_verify(&[("rsa", Algorithm::Rsa)], alter).await;
    let dkim = &verdict.dkim[0];
    assert_eq!(dkim.result, AuthResult::Fail);
    assert_eq!(dkim.reason.as_deref(), Some("signature did not verify"));
}

#[tokio::test]
async fn relaxed_canonicalisation_survives_whitespace_changes() {
    let alter = |m: String| m.replace("Subject: Quarterly numbers", "subject:  Quarterly\r\n numbers");
    let (_, verdict) = sign_and_verify(&[("ed", Algorithm::Ed25519)], alter).await;
    assert_eq!(verdict.dkim[0].result, AuthResult::Pass);
}

#[tokio::test]
async fn missing_key_is_permerror_and_dns_failure_is_temperror() {
    let (_dir, store, records) = keys(DOMAIN, &[("ed", Algorithm::Ed25519)]);
    let msg = message("alice@example.org");
    let received = signed(&store.sign(msg.as_bytes(), DOMAIN).unwrap(), &msg);

    let (_dns, v) = start(Zone::new().txt("example.org", "v=spf1 -all")).await;
    let verdict = v.verify(received.as_bytes(), &spf(&v, CLIENT, "alice@example.org").await).await;
    assert_eq!(verdict.dkim[0].result, AuthResult::PermError);
    assert_eq!(verdict.dkim[0].reason.as_deref(), Some("no key for signature"));

    let (_dns, v) = start(Zone::new().servfail(&records[0].0)).await;
    let verdict = v.verify(received.as_bytes(), &spf(&v, CLIENT, "alice@example.org").await).await;
    assert_eq!(verdict.dkim[0].result, AuthResult::TempError);
    assert!(unfolded(&verdict.header).contains("dkim=temperror"), "{}", verdict.header);
}

#[tokio::test]
async fn two_selectors_make_two_signatures_that_both_pass() {
    let (sig, verdict) = sign_and_verify(&[("new", Algorithm::Ed25519), ("old", Algorithm::Rsa)], unchanged).await;
    assert_eq!(sig.matches("DKIM-Signature:").count(), 2);
    let mut seen: Vec<(&str, AuthResult)> = verdict.dkim.iter().map(|d| (d.selector.as_str(), d.result)).collect();
    seen.sort_unstable_by_key(|(s, _)| *s);
    assert_eq!(seen, [("new", AuthResult::Pass), ("old", AuthResult::Pass)]);
}

#[tokio::test]
async fn unsigned_mail_has_no_dkim_results() {
    let (_dns, v) = start(Zone::new()).await;
    let verdict = v.verify(message("alice@example.org").as_bytes(), &spf(&v, CLIENT, "a@example.org").await).await;
    assert!(verdict.dkim.is_empty());
    assert!(unfolded(&verdict.header).contains("dkim=none"), "{}", verdict.header);
}

#[test]
fn signing_looks_the_domain_up_in_lower_case_and_skips_unknown_domains() {
    let (_dir, store, _) = keys(DOMAIN, &[("ed", Algorithm::Ed25519)]);
    let msg = message("alice@example.org");
    assert!(store.has_keys("example.org"));
    assert!(store.has_keys("Example.ORG"));
    assert!(!store.has_keys("example.com"));
    assert!(store.sign(msg.as_bytes(), "Example.ORG").unwrap().contains("d=example.org;"));
    assert_eq!(store.sign(msg.as_bytes(), "example.com").unwrap(), "");
}
