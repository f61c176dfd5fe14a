//! The body of the fuzz targets, kept here so the committed corpus also runs as an ordinary
//! test (`tests/corpus.rs`) on stable Rust, without a fuzzer.

use crate::address::ForwardPath;
use crate::server::SessionPolicy;
use crate::{Enhanced, Event, Reply, Server, ServerConfig};
use std::sync::Arc;

/// Drives a whole server session with `data` as the client's bytes, split into reads at
/// positions taken from the first octet, answering every decision the way a real driver
/// would. Panics if an invariant breaks: every reply line is `DDD[ -]text CRLF`, and no body
/// octet ever contains a lone LF or CR (the smuggling invariant).
pub fn session(data: &[u8]) {
    let cfg = Arc::new(ServerConfig {
        hostname: "fuzz.test".into(),
        max_message_size: 4096,
        max_recipients: 5,
        max_errors: 50,
    });
    // Bits of the first octet choose the listener policy, so AUTH and STARTTLS paths are
    // explored as well as the plain MX session.
    let flags = data.first().copied().unwrap_or(0);
    let policy = SessionPolicy {
        starttls: flags & 0x20 != 0,
        implicit_tls: false,
        auth: flags & 0x40 != 0,
        auth_without_tls: flags & 0x80 != 0,
        auth_required: flags & 0x60 == 0x60,
    };
    let mut server: Server<()> = Server::with_policy(cfg, policy);
    let step = data.first().map_or(7, |b| usize::from(*b % 31) + 1);
    let mut input = Vec::new();
    let mut body = Vec::new();
    let mut out = Vec::new();
    for chunk in data.get(1..).unwrap_or_default().chunks(step) {
        input.extend_from_slice(chunk);
        loop {
            match server.poll(&mut input) {
                Event::NeedInput => break,
                Event::Close => {
                    out.extend_from_slice(server.output());
                    check_output(&out);
                    return;
                }
                Event::CheckRecipient => {
                    let ok = matches!(server.pending_recipient(), Some((ForwardPath::Mailbox(m), _)) if m.domain == "fuzz.test");
                    let verdict = if ok { Ok(()) } else { Err(Reply::new(550, Enhanced(5, 7, 1), "no")) };
                    server.recipient_verdict(verdict);
                }
                Event::CheckSender => server.sender_verdict(Ok(())),
                Event::Authenticate => {
                    let ok = server.pending_auth().is_some_and(|c| c.password == "pw");
                    let verdict = if ok { Ok("u".to_string()) } else { Err(Reply::new(535, Enhanced(5, 7, 8), "no")) };
                    server.auth_result(verdict);
                }
                Event::StartTls => server.tls_established(),
                Event::MessageStart => body.clear(),
                Event::Body(b) => body.extend_from_slice(b),
                Event::MessageEnd => {
                    check_body(&body);
                    server.message_committed(Ok("FUZZ"));
                }
                Event::MessageAbort => body.clear(),
            }
        }
        out.extend_from_slice(server.output());
        server.clear_output();
    }
    check_output(&out);
}

fn check_body(body: &[u8]) {
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && body[i - 1] == b'\r', "lone LF in a stored body"),
            b'\r' => assert!(body.get(i + 1) == Some(&b'\n'), "lone CR in a stored body"),
            _ => {}
        }
    }
}

fn check_output(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("replies are UTF-8");
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit), "bad reply line {line:?}");
        assert!(b[3] == b' ' || b[3] == b'-', "bad reply line {line:?}");
        assert!(!line.contains('\n') && !line.contains('\r'), "CR/LF inside a reply line");
    }
    assert!(text.is_empty() || text.ends_with("\r\n"));
}
