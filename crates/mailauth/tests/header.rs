//! The `Authentication-Results` field (RFC 8601) a verdict carries, and recognising our own.

mod common;

use common::{CLIENT, HOST, STRANGER, keys, message, publish, signed, start, unfolded};
use dakiya_mailauth::{Algorithm, claims_our_results};
use dakiya_route::testdns::Zone;

fn zone() -> Zone {
    Zone::new().txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all").txt("_dmarc.example.org", "v=DMARC1; p=reject")
}

/// Checks what every field must be: ours, CRLF-terminated, lines within 998 octets.
fn well_formed(header: &str) {
    assert!(header.starts_with(&format!("Authentication-Results: {HOST};\r\n\t")), "{header}");
    assert!(header.ends_with("\r\n") && !header.ends_with("\r\n\r\n"), "{header:?}");
    for line in header.trim_end_matches("\r\n").split("\r\n") {
        assert!(line.len() <= 998, "line of {} octets", line.len());
        assert!(!line.contains('\r') && !line.contains('\n'), "bare CR or LF in {line:?}");
    }
    assert!(claims_our_results(header.as_bytes(), HOST));
    assert!(!claims_our_results(header.as_bytes(), "mx.other.test"));
}

#[tokio::test]
async fn passing_message() {
    let (_dir, store, records) = keys("example.org", &[("s1", Algorithm::Ed25519)]);
    let (_dns, v) = start(publish(zone(), &records)).await;
    let msg = message("alice@example.org");
    let received = signed(&store.sign(msg.as_bytes(), "example.org").unwrap(), &msg);
    let spf = v.check_spf(CLIENT, "mail.example.org", "alice@example.org").await;
    let verdict = v.verify(received.as_bytes(), &spf).await;
    well_formed(&verdict.header);
    let header = unfolded(&verdict.header);
    let parts = [
        "spf=pass (mx.example.net: domain of alice@example.org designates 192.0.2.10 as permitted sender) \
         smtp.mailfrom=alice@example.org;",
        "dkim=pass header.d=example.org header.s=s1 header.b=",
        "dmarc=pass header.from=example.org policy.dmarc=reject;",
        "arc=none smtp.remote-ip=192.0.2.10\r\n",
    ];
    let mut at = 0;
    for part in parts {
        let found = header[at..].find(part).unwrap_or_else(|| panic!("{part:?} after {at} in {header}"));
        at += found + part.len();
    }
}

#[tokio::test]
async fn failing_message() {
    let (_dir, store, records) = keys("other.test", &[("s1", Algorithm::Ed25519)]);
    let (_dns, v) = start(publish(zone(), &records)).await;
    let msg = message("alice@example.org");
    let received = signed(&store.sign(msg.as_bytes(), "other.test").unwrap(), &msg).replace("Hello", "Hullo");
    let spf = v.check_spf(STRANGER, "mail.example.org", "alice@example.org").await;
    let verdict = v.verify(received.as_bytes(), &spf).await;
    well_formed(&verdict.header);
    let header = unfolded(&verdict.header);
    for part in [
        "spf=fail (mx.example.net: domain of alice@example.org does not designate 198.51.100.7 as permitted sender)",
        "dkim=fail (body hash did not verify) header.d=other.test header.s=s1",
        "dmarc=fail",
        "policy.dmarc=reject",
        "arc=none",
    ] {
        assert!(header.contains(part), "{part:?} in {header}");
    }
}

#[tokio::test]
async fn null_sender_unsigned_no_policy() {
    let (_dns, v) = start(zone()).await;
    let spf = v.check_spf(CLIENT, "mail.nowhere.test", "").await;
    let verdict = v.verify(message("bounce@nowhere.test").as_bytes(), &spf).await;
    well_formed(&verdict.header);
    let header = unfolded(&verdict.header);
    for part in ["spf=none", "smtp.mailfrom=<>", "dkim=none", "dmarc=none header.from=nowhere.test", "arc=none"] {
        assert!(header.contains(part), "{part:?} in {header}");
    }
}

#[tokio::test]
async fn huge_identities_are_folded_within_the_line_limit() {
    let (_dns, v) = start(zone()).await;
    let local = "x".repeat(900);
    let spf = v.check_spf(CLIENT, "mail.example.org", &format!("{local}@example.org")).await;
    let verdict = v.verify(message("alice@example.org").as_bytes(), &spf).await;
    well_formed(&verdict.header);
    assert!(unfolded(&verdict.header).contains(&local));
}

#[test]
fn claims_only_fields_naming_us() {
    assert!(claims_our_results(b"Authentication-Results: mx.example.net; spf=pass\r\n", HOST));
    assert!(claims_our_results(b"authentication-results:\r\n\t(hmm) MX.EXAMPLE.NET 1;\r\n none\r\n", HOST));
    assert!(!claims_our_results(b"Authentication-Results: mx.example.network; spf=pass\r\n", HOST));
    assert!(!claims_our_results(b"ARC-Authentication-Results: i=1; mx.example.net; spf=pass\r\n", HOST));
}

/// The server shares these across connection tasks and awaits the checks inside them.
#[tokio::test]
async fn shared_types_are_send_and_sync_and_checks_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<dakiya_mailauth::Verifier>();
    send_sync::<dakiya_mailauth::KeyStore>();
    send_sync::<dakiya_mailauth::Verdict>();
    let (_dns, v) = start(zone()).await;
    let spf_check = v.check_spf(CLIENT, "mail.example.org", "a@example.org");
    send(&spf_check);
    let spf = spf_check.await;
    send(&v.verify(b"From: a@example.org\r\n\r\nhi\r\n", &spf));
}
