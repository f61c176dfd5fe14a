//! The notices of each kind, read back as a mail client would: structure,
//! fields, what is returned of the original.

mod common;

use common::*;
use dakiya_dsn::{Action, DEFAULT_RETURN_LIMIT, Enhanced, Kind, RcptReport, Ret};
use mail_parser::MimeHeaders;

#[test]
fn bounce_with_full_original() {
    let mut rcpt = failed("bob@example.net");
    rcpt.original_recipient = Some("rfc822;Bob@Example.NET".into());
    let mut case = Case::new(Kind::Failure, vec![rcpt]);
    case.ret = Some(Ret::Full);
    case.envid = Some("QQ314159");
    let raw = case.build().unwrap();
    let msg = parse(&raw);

    // Header section.
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Mail Delivery System"));
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx.example.org"));
    assert_eq!(msg.to().unwrap().first().unwrap().address(), Some("alice@example.com"));
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    assert_eq!(msg.date().unwrap().to_rfc3339(), "2025-07-01T10:00:05+02:00");
    let id = msg.message_id().unwrap();
    assert!(id.ends_with("@mx.example.org") && id.contains("0655E5A00A3F2C11"), "{id}");
    assert_eq!(msg.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));

    // multipart/report; report-type=delivery-status; boundary=…
    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let boundary = ct.attribute("boundary").unwrap();
    assert!(raw.windows(boundary.len() + 4).any(|w| w == format!("--{boundary}--").as_bytes()));

    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    assert_eq!(mime_type(parts[0]), "text/plain");
    assert_eq!(parts[0].content_type().unwrap().attribute("charset"), Some("utf-8"));
    assert_eq!(cte(parts[0]).as_deref(), Some("7bit"));
    let text = text_of(parts[0]);
    assert!(text.contains("This is the mail system at host mx.example.org."), "{text}");
    assert!(text.contains("<bob@example.net> (originally <Bob@Example.NET>): delivery failed (status 5.1.1)"));
    assert!(text.contains("The mail server mx.example.net said: 550 5.1.1 <bob@example.net>: Recipient"));
    assert!(text.contains("The original message is attached."));

    assert_eq!(mime_type(parts[1]), "message/delivery-status");
    assert_eq!(cte(parts[1]).as_deref(), Some("7bit"));
    let groups = groups(parts[1].contents());
    assert_eq!(groups.len(), 2);
    let per_message = &groups[0];
    assert_eq!(names(per_message), ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date", "X-Dakiya-Queue-ID"]);
    assert_eq!(get(per_message, "Original-Envelope-Id"), Some("QQ314159"));
    assert_eq!(get(per_message, "Reporting-MTA"), Some("dns; mx.example.org"));
    assert_eq!(get(per_message, "Arrival-Date"), Some("Tue, 1 Jul 2025 09:58:00 +0200"));
    assert_eq!(get(per_message, "X-Dakiya-Queue-ID"), Some("0655E5A00A3F2C11"));
    let rcpt = &groups[1];
    assert_eq!(
        names(rcpt),
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );
    assert_eq!(get(rcpt, "Original-Recipient"), Some("rfc822; Bob@Example.NET"));
    assert_eq!(get(rcpt, "Final-Recipient"), Some("rfc822; bob@example.net"));
    assert_eq!(get(rcpt, "Action"), Some("failed"));
    assert_eq!(get(rcpt, "Status"), Some("5.1.1"));
    assert_eq!(get(rcpt, "Remote-MTA"), Some("dns; mx.example.net"));
    assert_eq!(
        get(rcpt, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown")
    );
    assert_eq!(get(rcpt, "Last-Attempt-Date"), Some("Tue, 1 Jul 2025 10:00:04 +0200"));

    assert_eq!(mime_type(parts[2]), "message/rfc822");
    assert_eq!(cte(parts[2]).as_deref(), Some("7bit"));
    let returned = parts[2].message().expect("a nested message");
    assert_eq!(returned.subject(), Some("Lunch on Friday?"));
    assert_eq!(returned.message_id(), Some("lunch-1@example.com"));
    assert_eq!(returned.raw_message(), ORIGINAL, "returned unchanged");
}

#[test]
fn bounce_without_ret_returns_headers() {
    let raw = Case::new(Kind::Failure, vec![failed("bob@example.net")]).build().unwrap();
    let msg = parse(&raw);
    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
    assert_eq!(parts[2].contents(), ORIGINAL_HEADERS);
    assert!(!raw.windows(9).any(|w| w == b"Shall we?"), "the body is not returned");
    assert!(text_of(parts[0]).contains("The header section of the original message is attached."));
}

#[test]
fn bounce_with_ret_hdrs_returns_headers() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.ret = Some(Ret::Hdrs);
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    let parts = parts(&msg);
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
    assert_eq!(parts[2].contents(), ORIGINAL_HEADERS);
}

#[test]
fn delay_notice() {
    let mut case = Case::new(Kind::Delay, vec![delayed("bob@example.net")]);
    case.ret = Some(Ret::Full); // RET applies to failures only
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
    let parts = parts(&msg);
    let text = text_of(parts[0]);
    assert!(text.contains("has not yet been delivered"), "{text}");
    assert!(text.contains("<bob@example.net>: delivery delayed (status 4.4.1)"));
    assert!(text.contains("Delivery will be attempted until Sun, 6 Jul 2025 09:58:00 +0200."));
    let groups = groups(parts[1].contents());
    let rcpt = &groups[1];
    assert_eq!(get(rcpt, "Action"), Some("delayed"));
    assert_eq!(get(rcpt, "Status"), Some("4.4.1"));
    assert_eq!(get(rcpt, "Diagnostic-Code"), Some("smtp; 451 4.4.1 Connection timed out"));
    assert_eq!(get(rcpt, "Will-Retry-Until"), Some("Sun, 6 Jul 2025 09:58:00 +0200"));
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
}

#[test]
fn success_notice() {
    let mut case = Case::new(Kind::Success, vec![delivered("bob@example.net")]);
    case.ret = Some(Ret::Full);
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Successful Mail Delivery Report"));
    let parts = parts(&msg);
    assert!(
        text_of(parts[0]).contains(
            "<bob@example.net>: delivered The mail server mx.example.net said: 250 2.0.0 Ok: queued as 4bQxyz"
        )
    );
    let groups = groups(parts[1].contents());
    let rcpt = &groups[1];
    assert_eq!(get(rcpt, "Action"), Some("delivered"));
    assert_eq!(get(rcpt, "Status"), Some("2.0.0"));
    assert_eq!(get(rcpt, "Will-Retry-Until"), None, "only for delayed recipients");
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
}

#[test]
fn relayed_and_expanded_actions() {
    let relayed = RcptReport { action: Action::Relayed, ..delivered("list@example.net") };
    let expanded = RcptReport { action: Action::Expanded, ..delivered("team@example.org") };
    let raw = Case::new(Kind::Success, vec![relayed, expanded]).build().unwrap();
    let msg = parse(&raw);
    let parts = parts(&msg);
    let groups = groups(parts[1].contents());
    assert_eq!(get(&groups[1], "Action"), Some("relayed"));
    assert_eq!(get(&groups[2], "Action"), Some("expanded"));
    let text = text_of(parts[0]);
    assert!(text.contains("<list@example.net>: relayed to a system that does not send delivery reports"));
    assert!(text.contains("<team@example.org>: delivered to an alias or list, which was expanded"));
}

#[test]
fn several_recipients_in_one_notice() {
    let mut third = failed("carol@example.net");
    third.status = Enhanced(5, 2, 2);
    third.diagnostic = Some("smtp; 552 5.2.2 Mailbox full".into());
    third.original_recipient = Some("rfc822;carol@example.net".into());
    let case = Case::new(Kind::Failure, vec![failed("bob@example.net"), failed("dave@example.net"), third]);
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    let parts = parts(&msg);
    let groups = groups(parts[1].contents());
    assert_eq!(groups.len(), 4, "per-message fields + three recipients");
    let finals: Vec<_> = groups[1..].iter().map(|g| get(g, "Final-Recipient").unwrap()).collect();
    assert_eq!(finals, ["rfc822; bob@example.net", "rfc822; dave@example.net", "rfc822; carol@example.net"]);
    assert_eq!(get(&groups[3], "Status"), Some("5.2.2"));
    assert_eq!(get(&groups[1], "Original-Recipient"), None);
    assert_eq!(get(&groups[3], "Original-Recipient"), Some("rfc822; carol@example.net"));
    let text = text_of(parts[0]);
    for who in ["<bob@example.net>", "<dave@example.net>", "<carol@example.net>: delivery failed (status 5.2.2)"] {
        assert!(text.contains(who), "{who} in {text}");
    }
    assert!(!text.contains("originally"), "ORCPT equal to the final address is not repeated");
}

#[test]
fn without_envid_orcpt_and_optional_fields() {
    let bare = RcptReport {
        final_recipient: "bob@example.net".into(),
        original_recipient: None,
        action: Action::Failed,
        status: Enhanced(5, 0, 0),
        remote_mta: None,
        diagnostic: None,
        last_attempt: None,
        will_retry_until: None,
    };
    let raw = Case::new(Kind::Failure, vec![bare]).build().unwrap();
    let msg = parse(&raw);
    let groups = groups(parts(&msg)[1].contents());
    assert_eq!(names(&groups[0]), ["Reporting-MTA", "Arrival-Date", "X-Dakiya-Queue-ID"]);
    assert_eq!(names(&groups[1]), ["Final-Recipient", "Action", "Status"]);
}

#[test]
fn too_large_original_falls_back_to_headers() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.ret = Some(Ret::Full);
    let mut big = ORIGINAL_HEADERS.to_vec();
    big.extend_from_slice(b"\r\n");
    let line = format!("{}\r\n", "x".repeat(76));
    while big.len() <= DEFAULT_RETURN_LIMIT {
        big.extend_from_slice(line.as_bytes());
    }
    case.original = big;
    let raw = case.build().unwrap();
    assert!(raw.len() < 64 * 1024, "{} bytes", raw.len());
    let msg = parse(&raw);
    let parts = parts(&msg);
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
    assert_eq!(parts[2].contents(), ORIGINAL_HEADERS);
    let text = text_of(parts[0]);
    assert!(
        text.contains("larger than 10 MiB, too large to be returned; only its header section is attached."),
        "{text}"
    );

    // Just within the limit, it is returned whole.
    case.original.truncate(DEFAULT_RETURN_LIMIT - DEFAULT_RETURN_LIMIT % line.len());
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    assert_eq!(mime_type(parts_of(&msg, 2)), "message/rfc822");
}

#[test]
fn configured_return_limit() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.ret = Some(Ret::Full);
    case.limit = ORIGINAL.len() - 1;
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    assert_eq!(mime_type(parts_of(&msg, 2)), "text/rfc822-headers");
    assert!(text_of(parts_of(&msg, 0)).contains(&format!("larger than {} bytes", ORIGINAL.len() - 1)));
}

#[test]
fn empty_original_leaves_out_the_third_part() {
    let mut case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    case.original = Vec::new();
    let raw = case.build().unwrap();
    let msg = parse(&raw);
    assert_eq!(parts(&msg).len(), 2);
    assert!(text_of(parts_of(&msg, 0)).contains("The original message could not be attached."));
}

#[test]
fn same_input_same_bytes() {
    let case = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    assert_eq!(case.build().unwrap(), case.build().unwrap());
    let mut later = Case::new(Kind::Failure, vec![failed("bob@example.net")]);
    later.now = at("2025-07-01T10:00:06+02:00");
    let (a, b) = (case.build().unwrap(), later.build().unwrap());
    assert_ne!(parse(&a).message_id(), parse(&b).message_id());
    let other = Case::new(Kind::Failure, vec![failed("carol@example.net")]);
    let c = other.build().unwrap();
    assert_ne!(parse(&a).message_id(), parse(&c).message_id(), "same second, other recipient");
}
