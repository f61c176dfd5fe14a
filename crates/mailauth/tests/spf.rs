//! SPF (RFC 7208) for the MAIL FROM and HELO identities against the test DNS server.

mod common;

use common::{CLIENT, STRANGER, start};
use dakiya_mailauth::{AuthResult, SpfCheck, Verifier};
use dakiya_route::testdns::Zone;

fn zone() -> Zone {
    Zone::new()
        .txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("fail.test", "v=spf1 ip4:203.0.113.1 -all")
        .txt("soft.test", "v=spf1 ip4:203.0.113.1 ~all")
        .txt("neutral.test", "v=spf1 ?all")
        .a("none.test", "192.0.2.10".parse().unwrap())
        .txt("none.test", "some-site-verification=abc")
        .servfail("temp.test")
        .txt("two.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("two.test", "v=spf1 -all")
        .txt("syntax.test", "v=spf1 ip4 -all")
        .txt("broken-include.test", "v=spf1 include -all")
        .txt("include.test", "v=spf1 include:pass.test -all")
        .txt("amech.test", "v=spf1 a:out.amech.test -all")
        .a("out.amech.test", "192.0.2.10".parse().unwrap())
        .txt("explained.test", "v=spf1 -all exp=why.explained.test")
        .txt("why.explained.test", "%{i} is not a server of %{d}")
        // HELO names with their own records (RFC 7208 §2.3).
        .txt("mail.helo.test", "v=spf1 a -all")
        .a("mail.helo.test", "192.0.2.10".parse().unwrap())
        .txt("bad.helo.test", "v=spf1 -all")
}

async fn mail_from(verifier: &Verifier, ip: std::net::IpAddr, from: &str) -> SpfCheck {
    verifier.check_spf(ip, "mail.helo.test", from).await
}

#[tokio::test]
async fn mail_from_pass_fail_softfail_neutral() {
    let (_dns, v) = start(zone()).await;
    let pass = mail_from(&v, CLIENT, "alice@pass.test").await;
    assert_eq!(pass.mail_from, AuthResult::Pass);
    assert_eq!(pass.domain, "pass.test");
    assert!(pass.explanation.contains("designates 192.0.2.10"), "{}", pass.explanation);

    let fail = mail_from(&v, CLIENT, "alice@fail.test").await;
    assert_eq!(fail.mail_from, AuthResult::Fail);
    assert_eq!(fail.domain, "fail.test");
    assert!(fail.explanation.contains("does not designate"), "{}", fail.explanation);

    assert_eq!(mail_from(&v, CLIENT, "a@soft.test").await.mail_from, AuthResult::SoftFail);
    assert_eq!(mail_from(&v, CLIENT, "a@neutral.test").await.mail_from, AuthResult::Neutral);
    assert_eq!(mail_from(&v, CLIENT, "a@include.test").await.mail_from, AuthResult::Pass);
    assert_eq!(mail_from(&v, STRANGER, "a@include.test").await.mail_from, AuthResult::Fail);
    assert_eq!(mail_from(&v, CLIENT, "a@amech.test").await.mail_from, AuthResult::Pass);
    assert_eq!(mail_from(&v, STRANGER, "a@amech.test").await.mail_from, AuthResult::Fail);
}

#[tokio::test]
async fn mail_from_none_when_no_record_or_no_domain() {
    let (_dns, v) = start(zone()).await;
    let none = mail_from(&v, CLIENT, "a@none.test").await;
    assert_eq!(none.mail_from, AuthResult::None);
    assert!(none.explanation.contains("no SPF record"), "{}", none.explanation);
    assert_eq!(mail_from(&v, CLIENT, "a@nxdomain.test").await.mail_from, AuthResult::None);
}

#[tokio::test]
async fn dns_failure_is_temperror_never_pass() {
    let (_dns, v) = start(zone()).await;
    let temp = mail_from(&v, CLIENT, "a@temp.test").await;
    assert_eq!(temp.mail_from, AuthResult::TempError);
    assert_eq!(temp.domain, "temp.test");
}

#[tokio::test]
async fn two_records_or_a_syntax_error_is_permerror() {
    let (_dns, v) = start(zone()).await;
    // RFC 7208 §4.5: both records would pass or fail on their own; two is an error.
    assert_eq!(mail_from(&v, CLIENT, "a@two.test").await.mail_from, AuthResult::PermError);
    assert_eq!(mail_from(&v, STRANGER, "a@two.test").await.mail_from, AuthResult::PermError);
    assert_eq!(mail_from(&v, CLIENT, "a@syntax.test").await.mail_from, AuthResult::PermError);
    assert_eq!(mail_from(&v, CLIENT, "a@broken-include.test").await.mail_from, AuthResult::PermError);
}

#[tokio::test]
async fn the_domains_explanation_is_used_on_fail() {
    let (_dns, v) = start(zone()).await;
    let fail = mail_from(&v, CLIENT, "a@explained.test").await;
    assert_eq!(fail.mail_from, AuthResult::Fail);
    assert_eq!(fail.explanation, "192.0.2.10 is not a server of explained.test");
}

#[tokio::test]
async fn helo_identity_is_checked_too() {
    let (_dns, v) = start(zone()).await;
    let check = v.check_spf(CLIENT, "mail.helo.test", "a@fail.test").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::Pass, AuthResult::Fail));
    let check = v.check_spf(STRANGER, "mail.helo.test", "a@pass.test").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::Fail, AuthResult::Fail));
    let check = v.check_spf(CLIENT, "bad.helo.test", "a@pass.test").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::Fail, AuthResult::Pass));
    let check = v.check_spf(CLIENT, "temp.test", "a@pass.test").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::TempError, AuthResult::Pass));
    // An address literal is no domain to check (RFC 7208 §2.3).
    let check = v.check_spf(CLIENT, "[192.0.2.10]", "a@pass.test").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::None, AuthResult::Pass));
}

#[tokio::test]
async fn null_sender_uses_postmaster_at_the_helo_name() {
    let (_dns, v) = start(zone()).await;
    let check = v.check_spf(CLIENT, "mail.helo.test", "").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::Pass, AuthResult::Pass));
    assert_eq!(check.domain, "mail.helo.test");
    let check = v.check_spf(CLIENT, "bad.helo.test", "").await;
    assert_eq!((check.helo, check.mail_from), (AuthResult::Fail, AuthResult::Fail));
    assert_eq!(check.domain, "bad.helo.test");
}
