//! Untrusted text, non-ASCII addresses, MIME boundaries and refused input.

mod common;

use common::*;
use dakiya_dsn::{DEFAULT_RETURN_LIMIT, DsnError, DsnInput, Enhanced, Kind, RcptReport, Ret, build_dsn};
use mail_parser::MimeHeaders;

#[test]
fn untrusted_text_cannot_inject_fields_or_parts() {
    let mut rcpt = failed("bob@example.net");
    rcpt.diagnostic = Some(
        "smtp; 550 5.1.1 gone\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; evil@x\r\n--fake\x00\x1b[2J\x7f end"
            .into(),
    );
    rcpt.remote_mta = Some("mx.example.net\r\nX-Injected: mta".into());
    rcpt.original_recipient = Some("rfc822;bob@example.net\r\nX-Injected: orcpt".into());
    let mut case = Case::new(Kind::Failure, vec![rcpt]);
    case.envid = Some("id\r\nX-Injected: envid");
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    let groups = groups(parts[1].contents());
    assert_eq!(groups.len(), 2, "no extra group");
    for g in &groups {
        assert!(!names(g).iter().any(|n| n.contains("Injected")), "{g:?}");
    }
    let rcpt = &groups[1];
    assert_eq!(get(rcpt, "Final-Recipient"), Some("rfc822; bob@example.net"));
    assert_eq!(
        get(rcpt, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 gone X-Injected: yes Final-Recipient: rfc822; evil@x --fake??[2J? end")
    );
    assert_eq!(get(rcpt, "Remote-MTA"), Some("dns; mx.example.net X-Injected: mta"));
    assert_eq!(get(rcpt, "Original-Recipient"), Some("rfc822; bob@example.net??X-Injected: orcpt"));
    assert_eq!(get(&groups[0], "Original-Envelope-Id"), Some("id X-Injected: envid"));
    let text = text_of(parts[0]);
    let raw_text = parts[0].text_contents().unwrap();
    assert!(!raw_text.contains('\0') && !raw_text.contains('\x1b') && !raw_text.contains("\nX-Injected"));
    assert!(text.contains("said: 550 5.1.1 gone X-Injected: yes Final-Recipient: rfc822; evil@x --fake??[2J? end"));
}

#[test]
fn long_diagnostics_are_folded() {
    let mut rcpt = failed("bob@example.net");
    let long = (0..60).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    rcpt.diagnostic = Some(format!("smtp; 550-5.7.1 {long}"));
    let raw = Case::new(Kind::Failure, vec![rcpt]).build().unwrap();
    let msg = parse(&raw);
    let report = parts(&msg)[1].contents();
    let text = std::str::from_utf8(report).unwrap();
    assert!(text.lines().all(|l| l.len() <= 78), "{text}");
    assert!(text.contains("\r\n word"), "folded: {text}");
    assert_eq!(get(&groups(report)[1], "Diagnostic-Code"), Some(format!("smtp; 550-5.7.1 {long}").as_str()));
}

#[test]
fn non_ascii_recipient_makes_a_global_report() {
    let mut rcpt = failed("jürgen@bücher.example");
    rcpt.original_recipient = Some("utf-8;J\\x{FC}rgen@b\\x{FC}cher.example".into());
    rcpt.diagnostic = Some("smtp; 550 5.1.1 Benutzer unbekannt: jürgen".into());
    let mut case = Case::new(Kind::Failure, vec![rcpt, failed("bob@example.net")]);
    case.original = "From: Jürgen <alice@example.com>\r\nSubject: Grüße\r\n\r\nHallo\r\n".as_bytes().to_vec();
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.attribute("report-type"), Some("global-delivery-status"));
    let parts = parts(&msg);
    assert_eq!(mime_type(parts[0]), "text/plain");
    assert_eq!(cte(parts[0]).as_deref(), Some("8bit"));
    assert!(text_of(parts[0]).contains("<jürgen@bücher.example> (originally <Jürgen@bücher.example>)"));
    assert_eq!(mime_type(parts[1]), "message/global-delivery-status");
    assert_eq!(cte(parts[1]).as_deref(), Some("8bit"));
    let groups = groups(parts[1].contents());
    assert_eq!(get(&groups[1], "Original-Recipient"), Some("utf-8; Jürgen@bücher.example"));
    assert_eq!(get(&groups[1], "Final-Recipient"), Some("utf-8; jürgen@bücher.example"));
    assert_eq!(get(&groups[1], "Diagnostic-Code"), Some("smtp; 550 5.1.1 Benutzer unbekannt: jürgen"));
    assert_eq!(get(&groups[2], "Final-Recipient"), Some("rfc822; bob@example.net"), "ASCII stays rfc822");
    assert_eq!(mime_type(parts[2]), "message/global-headers");
    assert_eq!(parts[2].contents(), "From: Jürgen <alice@example.com>\r\nSubject: Grüße\r\n".as_bytes());
}

#[test]
fn non_ascii_sender_makes_a_global_report() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.sender = "jürgen@bücher.example";
    case.ret = Some(Ret::Full);
    case.original = "From: jürgen@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n".as_bytes().to_vec();
    let raw = case.build().unwrap();
    let to = "To: <jürgen@bücher.example>\r\n".as_bytes();
    assert!(raw.windows(to.len()).any(|w| w == to), "UTF-8 address as is (RFC 6532)");
    let msg = parse(&raw);
    assert_eq!(msg.to().unwrap().first().unwrap().address(), Some("jürgen@bücher.example"));
    let parts = parts(&msg);
    assert_eq!(mime_type(parts[1]), "message/global-delivery-status");
    assert_eq!(mime_type(parts[2]), "message/global");
    assert_eq!(cte(parts[2]).as_deref(), Some("8bit"));
    assert_eq!(parts[2].message().unwrap().subject(), Some("Grüße"));
}

#[test]
fn ascii_report_keeps_diagnostics_ascii() {
    let mut rcpt = failed("bob@example.net");
    rcpt.diagnostic = Some("smtp; 550 5.1.1 Benutzer unbekannt: Jürgen".into());
    let raw = Case::new(Kind::Failure, vec![rcpt]).build().unwrap();
    assert!(raw.is_ascii(), "an all-ASCII notice needs no 8-bit transport");
    let msg = parse(&raw);
    let parts = parts(&msg);
    assert_eq!(mime_type(parts[1]), "message/delivery-status");
    assert_eq!(
        get(&groups(parts[1].contents())[1], "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 Benutzer unbekannt: J?rgen")
    );
}

#[test]
fn boundary_never_occurs_in_the_parts() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.ret = Some(Ret::Full);
    let raw = case.build().unwrap();
    let first = parse(&raw).content_type().unwrap().attribute("boundary").unwrap().to_owned();
    // The same notice, but the original now contains that boundary.
    case.original = format!("Subject: trap\r\n\r\n--{first}\r\n--{first}--\r\n").into_bytes();
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    let second = msg.content_type().unwrap().attribute("boundary").unwrap();
    assert_ne!(second, first);
    assert_eq!(parts(&msg).len(), 3);
    assert_eq!(parts_of(&msg, 2).message().unwrap().subject(), Some("trap"));
}

#[test]
fn refuses_bad_input() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.sender = "";
    assert!(matches!(case.build(), Err(DsnError::NullSender)));

    let case = Case::new(Kind::Failure, vec![]);
    assert!(matches!(case.build(), Err(DsnError::NoRecipients)));

    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.sender = "alice@example.com\r\nBcc: victim@example.org";
    assert!(matches!(case.build(), Err(DsnError::BadAddress { what: "original sender", .. })));

    let case = Case::new(Kind::Failure, vec![failed("bob@example.net>\r\nX: y")]);
    assert!(matches!(case.build(), Err(DsnError::BadAddress { what: "final recipient", .. })));

    for status in [Enhanced(3, 0, 0), Enhanced(5, 1000, 0), Enhanced(4, 0, 1000), Enhanced(0, 0, 0)] {
        let case = Case::new(Kind::Failure, vec![RcptReport { status, ..failed("bob@example.net") }]);
        assert!(matches!(case.build(), Err(DsnError::BadStatus(..))), "{status:?}");
    }

    let err = build_dsn(DsnInput {
        kind: Kind::Failure,
        reporting_mta: "mx example org",
        from: "MAILER-DAEMON@mx.example.org",
        original_sender: "alice@example.com",
        queue_id: "X",
        arrival_date: at("2025-07-01T09:58:00+02:00"),
        now: at("2025-07-01T09:58:00+02:00"),
        envid: None,
        ret: None,
        original: &mut &ORIGINAL[..],
        return_limit: DEFAULT_RETURN_LIMIT,
        recipients: &[failed("bob@example.net")],
    });
    assert!(matches!(err, Err(DsnError::BadHostname(_))));
}

#[test]
fn read_errors_are_reported() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let err = build_dsn(DsnInput {
        kind: Kind::Failure,
        reporting_mta: HOST,
        from: "MAILER-DAEMON@mx.example.org",
        original_sender: "alice@example.com",
        queue_id: "X",
        arrival_date: at("2025-07-01T09:58:00+02:00"),
        now: at("2025-07-01T09:58:00+02:00"),
        envid: None,
        ret: Some(Ret::Full),
        original: &mut Broken,
        return_limit: DEFAULT_RETURN_LIMIT,
        recipients: &[failed("bob@example.net")],
    });
    assert!(matches!(err, Err(DsnError::Io(e)) if e.to_string() == "disk on fire"));
}
