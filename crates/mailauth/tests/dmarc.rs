//! DMARC (RFC 7489, as DMARCbis in mail-auth 0.13): alignment of the DKIM `d=` and the SPF
//! MAIL FROM domain with the From domain, relaxed and strict; `p=` and `sp=`.

mod common;

use common::{CLIENT, keys, message, publish, signed, start, unfolded};
use dakiya_mailauth::{Algorithm, AuthResult, DmarcPolicy, KeyStore, Verdict, Verifier};
use dakiya_route::testdns::{TestDns, Zone};

const SIGNERS: [&str; 4] = ["example.org", "other.test", "strict.test", "relaxed.test"];

struct World {
    _dns: TestDns,
    verifier: Verifier,
    _dirs: Vec<tempfile::TempDir>,
    stores: Vec<(&'static str, KeyStore)>,
}

async fn world() -> World {
    let spf = "v=spf1 ip4:192.0.2.0/24 -all";
    let mut zone = Zone::new()
        .txt("example.org", spf)
        .txt("bounces.example.org", spf)
        .servfail("spftemp.example.org")
        .txt("other.test", spf)
        .txt("strict.test", spf)
        .txt("bounces.strict.test", spf)
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("_dmarc.none.test", "v=DMARC1; p=none")
        .txt("_dmarc.relaxed.test", "v=DMARC1; p=reject")
        .txt("_dmarc.strict.test", "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s")
        .txt("_dmarc.sub.test", "v=DMARC1; p=none; sp=reject")
        .servfail("_dmarc.temp.test");
    for existing in ["mail.strict.test", "mail.relaxed.test", "news.sub.test", "sub.test"] {
        zone = zone.a(existing, "192.0.2.80".parse().unwrap());
    }
    let (mut dirs, mut stores) = (Vec::new(), Vec::new());
    for domain in SIGNERS {
        let (dir, store, records) = keys(domain, &[("sel", Algorithm::Ed25519)]);
        zone = publish(zone, &records);
        dirs.push(dir);
        stores.push((domain, store));
    }
    let (dns, verifier) = start(zone).await;
    World { _dns: dns, verifier, _dirs: dirs, stores }
}

impl World {
    /// A message from `from`, signed by `signer` (if any), arriving with `mail_from`.
    async fn verdict(&self, from: &str, signer: Option<&str>, mail_from: &str) -> Verdict {
        let msg = message(from);
        let signatures = match signer {
            Some(d) => self.stores.iter().find(|(s, _)| *s == d).unwrap().1.sign(msg.as_bytes(), d).unwrap(),
            None => String::new(),
        };
        let spf = self.verifier.check_spf(CLIENT, "mail.client.test", mail_from).await;
        self.verifier.verify(signed(&signatures, &msg).as_bytes(), &spf).await
    }
}

fn outcome(v: &Verdict) -> (AuthResult, DmarcPolicy) {
    (v.dmarc, v.dmarc_policy)
}

#[tokio::test]
async fn aligned_dkim_passes() {
    let w = world().await;
    let v = w.verdict("alice@example.org", Some("example.org"), "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Pass, DmarcPolicy::Reject));
    assert_eq!(v.from_domain, "example.org");
    assert!(unfolded(&v.header).contains("dmarc=pass header.from=example.org policy.dmarc=reject"), "{}", v.header);
}

#[tokio::test]
async fn aligned_spf_passes_relaxed() {
    let w = world().await;
    let v = w.verdict("alice@example.org", None, "bounce@example.org").await;
    assert_eq!((v.spf.mail_from, v.dmarc), (AuthResult::Pass, AuthResult::Pass));
    // Relaxed (the default): the MAIL FROM domain shares the organizational domain.
    let v = w.verdict("alice@example.org", None, "bounce@bounces.example.org").await;
    assert_eq!((v.spf.mail_from, v.dmarc), (AuthResult::Pass, AuthResult::Pass));
}

#[tokio::test]
async fn misaligned_identities_fail_under_each_policy() {
    let w = world().await;
    // Both SPF and DKIM pass, for other.test: neither is aligned with example.org.
    let v = w.verdict("alice@example.org", Some("other.test"), "bounce@other.test").await;
    assert_eq!(v.dkim[0].result, AuthResult::Pass);
    assert_eq!(v.spf.mail_from, AuthResult::Pass);
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::Reject));
    assert!(unfolded(&v.header).contains("dmarc=fail"), "{}", v.header);
    assert!(unfolded(&v.header).contains("policy.dmarc=reject"), "{}", v.header);

    let v = w.verdict("alice@quarantine.test", Some("other.test"), "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::Quarantine));
    let v = w.verdict("alice@none.test", None, "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::None));
}

#[tokio::test]
async fn strict_dkim_alignment_needs_the_exact_domain() {
    let w = world().await;
    let v = w.verdict("alice@strict.test", Some("strict.test"), "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Pass, DmarcPolicy::Reject));
    // adkim=s: d=strict.test does not align with mail.strict.test; sp= applies there.
    let v = w.verdict("alice@mail.strict.test", Some("strict.test"), "bounce@other.test").await;
    assert_eq!(v.dkim[0].result, AuthResult::Pass);
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::Quarantine));
    // The same with relaxed alignment passes.
    let v = w.verdict("alice@mail.relaxed.test", Some("relaxed.test"), "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Pass, DmarcPolicy::Reject));
}

#[tokio::test]
async fn strict_spf_alignment_needs_the_exact_domain() {
    let w = world().await;
    let v = w.verdict("alice@strict.test", None, "bounce@strict.test").await;
    assert_eq!(v.dmarc, AuthResult::Pass);
    let v = w.verdict("alice@strict.test", None, "bounce@bounces.strict.test").await;
    assert_eq!(v.spf.mail_from, AuthResult::Pass);
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::Reject));
}

#[tokio::test]
async fn subdomains_get_the_subdomain_policy() {
    let w = world().await;
    let v = w.verdict("alice@news.sub.test", None, "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::Reject));
    assert_eq!(v.from_domain, "news.sub.test");
    let v = w.verdict("alice@sub.test", None, "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::Fail, DmarcPolicy::None));
}

#[tokio::test]
async fn no_record_is_none() {
    let w = world().await;
    let v = w.verdict("alice@norecord.test", None, "bounce@other.test").await;
    assert_eq!(outcome(&v), (AuthResult::None, DmarcPolicy::None));
    assert!(unfolded(&v.header).contains("dmarc=none"), "{}", v.header);
}

#[tokio::test]
async fn dns_failures_are_temperror_never_pass() {
    let w = world().await;
    let v = w.verdict("alice@temp.test", None, "bounce@other.test").await;
    assert_eq!(v.dmarc, AuthResult::TempError);
    // SPF could not be checked for an aligned MAIL FROM domain, nothing else passed.
    let v = w.verdict("alice@example.org", None, "bounce@spftemp.example.org").await;
    assert_eq!(v.spf.mail_from, AuthResult::TempError);
    assert_eq!(v.dmarc, AuthResult::TempError);
    assert!(unfolded(&v.header).contains("dmarc=temperror"), "{}", v.header);
}

#[tokio::test]
async fn a_message_without_from_has_no_dmarc_and_one_without_header_is_an_error() {
    let w = world().await;
    let spf = w.verifier.check_spf(CLIENT, "mail.client.test", "bounce@other.test").await;
    let v = w.verifier.verify(b"Subject: no author\r\n\r\nbody\r\n", &spf).await;
    assert_eq!((v.dmarc, v.from_domain.as_str()), (AuthResult::None, ""));
    let v = w.verifier.verify(b"", &spf).await;
    assert_eq!((v.dmarc, v.arc), (AuthResult::PermError, AuthResult::None));
    assert!(v.dkim.is_empty());
    let header = unfolded(&v.header);
    assert!(header.contains("dkim=none") && header.contains("dmarc=permerror"), "{header}");
}
