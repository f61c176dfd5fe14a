//! Shared by the notice tests: a fixture that builds one notice, and helpers
//! that read it back with mail-parser, as a recipient's mail client would.
#![allow(dead_code)] // each test crate uses a different subset

use chrono::{DateTime, FixedOffset};
use dakiya_dsn::{Action, DEFAULT_RETURN_LIMIT, DsnError, DsnInput, Enhanced, Kind, RcptReport, Ret, build_dsn};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

pub const HOST: &str = "mx.example.org";
pub const ORIGINAL: &[u8] = b"Received: from client.example.com by mx.example.org\r\n\
From: Alice <alice@example.com>\r\n\
To: bob@example.net\r\n\
Subject: Lunch on Friday?\r\n\
Message-ID: <lunch-1@example.com>\r\n\
\r\n\
Shall we?\r\n";
pub const ORIGINAL_HEADERS: &[u8] = b"Received: from client.example.com by mx.example.org\r\n\
From: Alice <alice@example.com>\r\n\
To: bob@example.net\r\n\
Subject: Lunch on Friday?\r\n\
Message-ID: <lunch-1@example.com>\r\n";

pub fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// One notice to build; tests change what they are about.
pub struct Case {
    pub kind: Kind,
    pub ret: Option<Ret>,
    pub envid: Option<&'static str>,
    pub sender: &'static str,
    pub now: DateTime<FixedOffset>,
    pub original: Vec<u8>,
    pub limit: usize,
    pub recipients: Vec<RcptReport>,
}

impl Case {
    pub fn new(kind: Kind, recipients: Vec<RcptReport>) -> Case {
        Case {
            kind,
            ret: None,
            envid: None,
            sender: "alice@example.com",
            now: at("2025-07-01T10:00:05+02:00"),
            original: ORIGINAL.to_vec(),
            limit: DEFAULT_RETURN_LIMIT,
            recipients,
        }
    }

    pub fn build(&self) -> Result<Vec<u8>, DsnError> {
        build_dsn(DsnInput {
            kind: self.kind,
            reporting_mta: HOST,
            from: "MAILER-DAEMON@mx.example.org",
            original_sender: self.sender,
            queue_id: "0655E5A00A3F2C11",
            arrival_date: at("2025-07-01T09:58:00+02:00"),
            now: self.now,
            envid: self.envid,
            ret: self.ret,
            original: &mut &self.original[..],
            return_limit: self.limit,
            recipients: &self.recipients,
        })
    }
}

pub fn failed(addr: &str) -> RcptReport {
    RcptReport {
        final_recipient: addr.into(),
        original_recipient: None,
        action: Action::Failed,
        status: Enhanced(5, 1, 1),
        remote_mta: Some("mx.example.net".into()),
        diagnostic: Some(format!("smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown")),
        last_attempt: Some(at("2025-07-01T10:00:04+02:00")),
        will_retry_until: None,
    }
}

pub fn delayed(addr: &str) -> RcptReport {
    RcptReport {
        action: Action::Delayed,
        status: Enhanced(4, 4, 1),
        diagnostic: Some("smtp; 451 4.4.1 Connection timed out".into()),
        will_retry_until: Some(at("2025-07-06T09:58:00+02:00")),
        ..failed(addr)
    }
}

pub fn delivered(addr: &str) -> RcptReport {
    RcptReport {
        action: Action::Delivered,
        status: Enhanced(2, 0, 0),
        diagnostic: Some("smtp; 250 2.0.0 Ok: queued as 4bQxyz".into()),
        will_retry_until: Some(at("2025-07-06T09:58:00+02:00")), // ignored: not delayed
        ..failed(addr)
    }
}

/// Invariants of every notice: CRLF only, no line over 998 octets.
pub fn check_lines(raw: &[u8]) {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in raw.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
}

pub fn parse(raw: &[u8]) -> Message<'_> {
    check_lines(raw);
    MessageParser::default().parse(raw).expect("the notice parses")
}

/// The three (or two) parts of the multipart/report.
pub fn parts<'a>(msg: &'a Message<'a>) -> Vec<&'a MessagePart<'a>> {
    let ids = msg.root_part().sub_parts().expect("multipart root");
    ids.iter().map(|&id| msg.part(id).unwrap()).collect()
}

pub fn mime_type(part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("content type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

pub fn cte(part: &MessagePart<'_>) -> Option<String> {
    part.content_transfer_encoding().map(str::to_owned)
}

pub type Fields = Vec<(String, String)>;

/// The groups of a delivery-status body (RFC 3464 §2.1), unfolded.
pub fn groups(body: &[u8]) -> Vec<Fields> {
    let body = std::str::from_utf8(body).expect("UTF-8 report");
    body.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            g.replace("\r\n ", " ")
                .replace("\r\n\t", " ")
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, value) = l.split_once(':').unwrap_or_else(|| panic!("not a field: {l:?}"));
                    (name.to_owned(), value.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

pub fn get<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    let mut found = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let first = found.next().map(|(_, v)| v.as_str());
    assert!(found.next().is_none(), "{name} appears twice");
    first
}

/// The text part with its wrapping undone: whitespace runs become one space.
pub fn text_of(part: &MessagePart<'_>) -> String {
    part.text_contents().expect("text").split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn names(fields: &Fields) -> Vec<&str> {
    fields.iter().map(|(n, _)| n.as_str()).collect()
}

pub fn parts_of<'a>(msg: &'a Message<'a>, i: usize) -> &'a MessagePart<'a> {
    parts(msg)[i]
}
