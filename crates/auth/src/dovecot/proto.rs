//! The client side of Dovecot's authentication protocol (version 1.x, the one Postfix speaks
//! for `smtpd_sasl_type = dovecot`), as pure functions over lines: no I/O, no clock.
//!
//! ```text
//! C: VERSION 1 2            S: VERSION 1 2
//! C: CPID <pid>             S: MECH PLAIN plaintext ... SPID .. CUID .. COOKIE .. DONE
//! C: AUTH <id> PLAIN service=smtp nologin rip=.. lip=.. [secured] resp=<base64>
//! S: OK <id> user=..   |   FAIL <id> [temp] [reason=..]   |   CONT <id> <base64>
//! ```
//! Fields are separated by TAB, lines end with LF. Only PLAIN with an initial response is
//! used, so a `CONT` is a protocol error here.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The longest line accepted from Dovecot (its own limit for auth-client lines is 8 KiB of
/// data plus escapes); anything longer is an error, not a reason to grow a buffer forever.
pub const MAX_LINE: usize = 16 * 1024;

/// What went wrong talking to Dovecot's auth server. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A line longer than [`MAX_LINE`] without its LF.
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A line that is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// The server speaks another major version of the protocol.
    #[error("unsupported protocol version {0:?} (expected 1)")]
    Version(String),
    /// The handshake ended (DONE) without a VERSION line or without the PLAIN mechanism.
    #[error("handshake incomplete: {0}")]
    Handshake(&'static str),
    /// A line that is not allowed at this point; the text is the line's first field.
    #[error("unexpected {0:?} line")]
    Unexpected(String),
}

/// Splits a byte stream into LF-terminated lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (without LF or a CR before it), `Ok(None)` if more bytes are
    /// needed.
    pub fn next_line(&mut self) -> Result<Option<String>, ProtoError> {
        let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
            return if self.buf.len() > MAX_LINE { Err(ProtoError::LineTooLong) } else { Ok(None) };
        };
        if end > MAX_LINE {
            return Err(ProtoError::LineTooLong);
        }
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map(Some).map_err(|_| ProtoError::NotUtf8)
    }
}

/// The client's half of the handshake, sent as soon as the connection is open.
pub fn hello(cpid: u32) -> String {
    format!("VERSION\t1\t2\nCPID\t{cpid}\n")
}

/// The server's half of the handshake, read line by line until `DONE`.
#[derive(Debug, Default)]
pub struct Handshake {
    version: bool,
    plain: bool,
}

impl Handshake {
    /// Takes one server line; `Ok(true)` once the handshake is complete and PLAIN usable.
    pub fn feed(&mut self, line: &str) -> Result<bool, ProtoError> {
        let mut fields = line.split('\t');
        match fields.next().unwrap_or("") {
            "VERSION" => {
                let major = fields.next().unwrap_or("");
                if major != "1" {
                    return Err(ProtoError::Version(major.chars().take(16).collect()));
                }
                self.version = true;
            }
            "MECH" => self.plain |= fields.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")),
            "DONE" if !self.version => return Err(ProtoError::Handshake("no VERSION line")),
            "DONE" if !self.plain => return Err(ProtoError::Handshake("the PLAIN mechanism is not offered")),
            "DONE" => return Ok(true),
            // SPID, CUID, COOKIE and any later additions are of no use to a client.
            _ => {}
        }
        Ok(false)
    }
}

/// One password check to ask about.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request id, unique on its connection.
    pub id: u32,
    /// The user name as the client gave it.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
    /// The protocol, for Dovecot's `%s` and `protocol` variables and logs (`smtp`, `pop3`).
    pub service: &'a str,
    /// The client's address (`rip`), for Dovecot's own penalty and logs.
    pub remote: Option<IpAddr>,
    /// Whether the client's connection is encrypted (`secured`): Dovecot refuses plaintext
    /// mechanisms on insecure connections unless `disable_plaintext_auth = no`.
    pub secured: bool,
}

/// The AUTH line for `req`, using PLAIN with the initial response (RFC 4616). `None` if the
/// user name or password holds a NUL, which PLAIN cannot carry: such credentials can never
/// be right, and no line is sent.
pub fn auth_line(req: &Request<'_>) -> Option<String> {
    if req.user.contains('\0') || req.password.contains('\0') || req.service.contains(['\t', '\n']) {
        return None;
    }
    let resp = STANDARD.encode(format!("\0{}\0{}", req.user, req.password));
    let mut line = format!("AUTH\t{}\tPLAIN\tservice={}\tnologin", req.id, req.service);
    if let Some(ip) = req.remote {
        line.push_str(&format!("\trip={ip}"));
    }
    if req.secured {
        line.push_str("\tsecured");
    }
    line.push_str(&format!("\tresp={resp}\n"));
    Some(line)
}

/// Dovecot's answer to one AUTH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `OK`: the passdb accepts the password.
    Accepted,
    /// `FAIL`: wrong password, unknown or disabled user.
    Rejected,
    /// `FAIL` with `temp`: the passdb could not be asked (database down); no verdict.
    TempFail,
}

/// Reads a reply line to the request `id`: `Ok(None)` for a line about another request
/// (or a notice to ignore).
pub fn reply(line: &str, id: u32) -> Result<Option<Verdict>, ProtoError> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or("");
    let for_us = fields.next().is_some_and(|f| f.parse() == Ok(id));
    match command {
        "OK" | "FAIL" | "CONT" if !for_us => Ok(None),
        "OK" => Ok(Some(Verdict::Accepted)),
        "FAIL" if fields.any(|f| f == "temp") => Ok(Some(Verdict::TempFail)),
        "FAIL" => Ok(Some(Verdict::Rejected)),
        // PLAIN with an initial response needs no continuation; asking for one is a fault.
        other => Err(ProtoError::Unexpected(other.chars().take(16).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader) -> Vec<String> {
        std::iter::from_fn(|| reader.next_line().unwrap()).collect()
    }

    #[test]
    fn lines_split_across_reads() {
        let mut r = LineReader::default();
        r.push(b"VERSION\t1\t2\nMEC");
        assert_eq!(lines(&mut r), ["VERSION\t1\t2"]);
        r.push(b"H\tPLAIN\r\nDONE\n");
        assert_eq!(lines(&mut r), ["MECH\tPLAIN", "DONE"]);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut r = LineReader::default();
        r.push(&vec![b'x'; MAX_LINE]);
        assert_eq!(r.next_line(), Ok(None));
        r.push(b"xx");
        assert_eq!(r.next_line(), Err(ProtoError::LineTooLong));
        let mut r = LineReader::default();
        r.push(&[vec![b'x'; MAX_LINE + 1], b"\n".to_vec()].concat());
        assert_eq!(r.next_line(), Err(ProtoError::LineTooLong));
        let mut r = LineReader::default();
        r.push(b"\xff\n");
        assert_eq!(r.next_line(), Err(ProtoError::NotUtf8));
    }

    #[test]
    fn handshake_as_dovecot_2_3_sends_it() {
        let mut h = Handshake::default();
        let server =
            ["VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext", "SPID\t1", "CUID\t3", "COOKIE\tab"];
        for line in server {
            assert_eq!(h.feed(line), Ok(false), "{line}");
        }
        assert_eq!(h.feed("DONE"), Ok(true));
        assert_eq!(hello(42), "VERSION\t1\t2\nCPID\t42\n");
    }

    #[test]
    fn handshake_faults() {
        assert!(matches!(Handshake::default().feed("VERSION\t2\t0"), Err(ProtoError::Version(v)) if v == "2"));
        assert!(matches!(Handshake::default().feed("DONE"), Err(ProtoError::Handshake(_))));
        let mut h = Handshake::default();
        h.feed("VERSION\t1\t1").unwrap();
        h.feed("MECH\tCRAM-MD5").unwrap();
        assert_eq!(h.feed("DONE"), Err(ProtoError::Handshake("the PLAIN mechanism is not offered")));
    }

    #[test]
    fn auth_line_carries_plain_initial_response() {
        let req = Request {
            id: 7,
            user: "alice@example.org",
            password: "pw",
            service: "smtp",
            remote: Some("192.0.2.1".parse().unwrap()),
            secured: true,
        };
        let line = auth_line(&req).unwrap();
        let resp = STANDARD.encode("\0alice@example.org\0pw");
        assert_eq!(line, format!("AUTH\t7\tPLAIN\tservice=smtp\tnologin\trip=192.0.2.1\tsecured\tresp={resp}\n"));
        let bare = auth_line(&Request { remote: None, secured: false, ..req }).unwrap();
        assert_eq!(bare, format!("AUTH\t7\tPLAIN\tservice=smtp\tnologin\tresp={resp}\n"));
        assert_eq!(auth_line(&Request { password: "a\0b", ..req }), None);
        assert_eq!(auth_line(&Request { user: "a\0b", ..req }), None);
    }

    #[test]
    fn replies_map_to_verdicts() {
        assert_eq!(reply("OK\t7\tuser=alice@example.org", 7), Ok(Some(Verdict::Accepted)));
        assert_eq!(reply("FAIL\t7\tuser=alice@example.org", 7), Ok(Some(Verdict::Rejected)));
        assert_eq!(reply("FAIL\t7\treason=db down\ttemp", 7), Ok(Some(Verdict::TempFail)));
        assert_eq!(reply("FAIL\t7\tuser=temp", 7), Ok(Some(Verdict::Rejected)));
        assert_eq!(reply("OK\t8", 7), Ok(None));
        assert_eq!(reply("FAIL\tx", 7), Ok(None));
        assert_eq!(reply("CONT\t7\t", 7), Err(ProtoError::Unexpected("CONT".into())));
        assert_eq!(reply("HELLO", 7), Err(ProtoError::Unexpected("HELLO".into())));
    }
}
