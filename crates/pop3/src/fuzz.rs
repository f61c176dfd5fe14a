//! The body of the fuzz target, kept here so the committed corpus also runs as an ordinary
//! test (`tests/corpus.rs`) on stable Rust, without a fuzzer.

use crate::server::{AuthFailure, Entry, Event, Policy, Server, ServerConfig};
use crate::{ContentEncoder, CrlfSize};
use std::sync::Arc;

/// The messages of the fuzzed maildrop; the second starts lines with dots.
const MESSAGES: [&[u8]; 3] = [b"Subject: a\n\nbody\n", b"Subject: b\n\n.\n..x\nlast", b"X: c\r\n\r\nline\r\n"];

/// Drives a whole session with `data` as the client's bytes, split into reads at positions
/// taken from the first octet, answering every event the way a real driver would. Panics if
/// an invariant breaks: every status line is `+OK`, `-ERR` or a `+ ` continuation, every
/// multi-line response ends with a lone `.`, and nothing in a message's content is a lone `.`.
pub fn session(data: &[u8]) {
    let cfg = Arc::new(ServerConfig { hostname: "fuzz.test".into(), max_errors: 20 });
    let flags = data.first().copied().unwrap_or(0);
    let policy =
        Policy { stls: flags & 0x20 != 0, implicit_tls: flags & 0x40 != 0, login_without_tls: flags & 0x80 != 0 };
    let mut server = Server::new(cfg, policy);
    let step = data.first().map_or(7, |b| usize::from(*b % 31) + 1);
    let mut input = Vec::new();
    let mut out = server.output().to_vec();
    server.clear_output();
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
                Event::Authenticate => {
                    let ok = server.credentials().is_some_and(|c| c.password == "pw");
                    server.auth_result(if ok { Ok("u".into()) } else { Err(AuthFailure::Invalid) });
                }
                Event::OpenMaildrop => server.maildrop_opened(Ok(entries())),
                Event::StartTls => server.tls_established(),
                Event::Retrieve { msg, body_lines } => {
                    server.retrieve_opened(true);
                    out.extend_from_slice(server.output());
                    server.clear_output();
                    let mut content = Vec::new();
                    let mut enc = ContentEncoder::new(body_lines);
                    enc.encode(MESSAGES[msg], &mut content);
                    enc.finish(&mut content);
                    check_content(&content);
                    out.extend_from_slice(&content);
                }
                Event::Commit => server.committed(Ok(())),
            }
        }
        out.extend_from_slice(server.output());
        server.clear_output();
    }
}

fn entries() -> Vec<Entry> {
    MESSAGES
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut size = CrlfSize::default();
            size.add(m);
            Entry { size: size.size(), uid: format!("uid{i}") }
        })
        .collect()
}

/// Content is CRLF lines; only the last is a lone `.`.
fn check_content(content: &[u8]) {
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    assert_eq!(lines.last(), Some(&&b""[..]), "content must end with CRLF");
    let body = &lines[..lines.len() - 1];
    for (i, l) in body.iter().enumerate() {
        assert!(l.ends_with(b"\r"), "line without CR");
        let is_last = i == body.len() - 1;
        assert_eq!(*l == b".\r", is_last, "a lone dot must end the content, and only there");
    }
}

/// Outside message content (which the fuzz driver checks on its own), every line starts
/// with `+OK`, `-ERR`, `+ `, or is part of a multi-line list.
fn check_output(out: &[u8]) {
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "output ends mid-line");
    for line in out.split(|&b| b == b'\n') {
        assert!(line.is_empty() || line.ends_with(b"\r"), "lone LF in output");
    }
}
