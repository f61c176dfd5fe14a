//! SMTP command lines (RFC 5321 §4.1.1) parsed into typed commands.
//!
//! The input is one line without its CRLF; framing (CRLF strictness, length) is done by
//! [`crate::line`]. Parsing never allocates more than the line itself.

use crate::address::{self, AddressError, ForwardPath, ReversePath};
use crate::params::{self, MailParams, ParamError, RcptParams};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `EHLO domain-or-literal`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail(ReversePath, MailParams),
    /// `RCPT TO:<path> [params]`.
    Rcpt(ForwardPath, RcptParams),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets in this chunk.
        size: u64,
        /// This is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `HELP [topic]`.
    Help,
    /// `VRFY string`.
    Vrfy,
    /// `EXPN string`.
    Expn,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954); the line is kept for the SASL layer.
    Auth(String),
    /// An HTTP request line sent to an SMTP port (cross-protocol attack or confused client).
    Http,
}

/// Why a command line was refused; [`crate::server`] maps each to its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The verb is not one we know (500 5.5.1).
    #[error("unrecognised command")]
    Unknown,
    /// Known verb, wrong arguments (501 5.5.2 or 5.5.4); the text says what was expected.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The line is not UTF-8 or holds control characters (500 5.5.2).
    #[error("invalid characters")]
    Invalid,
    /// MAIL FROM path refused (501 5.1.7).
    #[error("bad sender address: {0}")]
    Sender(AddressError),
    /// RCPT TO path refused (501 5.1.3).
    #[error("bad recipient address: {0}")]
    Recipient(AddressError),
    /// ESMTP parameters refused (555 5.5.4 or 501 5.5.4).
    #[error("{0}")]
    Param(ParamError),
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Invalid)?;
    if line.chars().any(|c| c.is_control()) {
        return Err(CommandError::Invalid);
    }
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" => hello(rest, true).map(Command::Ehlo),
        "HELO" => hello(rest, false).map(Command::Helo),
        "MAIL" => mail(rest),
        "RCPT" => rcpt(rest),
        "DATA" => no_args(rest, Command::Data, "DATA takes no arguments"),
        "BDAT" => bdat(rest),
        "RSET" => no_args(rest, Command::Rset, "RSET takes no arguments"),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(rest, Command::Quit, "QUIT takes no arguments"),
        "HELP" => Ok(Command::Help),
        "VRFY" if rest.trim().is_empty() => Err(CommandError::Syntax("VRFY needs an argument")),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "STARTTLS" => no_args(rest, Command::StartTls, "STARTTLS takes no arguments"),
        "AUTH" if rest.trim().is_empty() => Err(CommandError::Syntax("AUTH needs a mechanism")),
        "AUTH" => Ok(Command::Auth(rest.to_string())),
        "GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "CONNECT" | "PATCH" | "TRACE" => Ok(Command::Http),
        _ => Err(CommandError::Unknown),
    }
}

fn no_args(rest: &str, cmd: Command, msg: &'static str) -> Result<Command, CommandError> {
    if rest.is_empty() { Ok(cmd) } else { Err(CommandError::Syntax(msg)) }
}

/// `EHLO domain / address-literal` (RFC 5321 §4.1.1.1); HELO takes a domain only.
fn hello(arg: &str, ehlo: bool) -> Result<String, CommandError> {
    let arg = arg.trim_end_matches(' ');
    let ok =
        address::is_domain(arg) || (ehlo && address::parse_mailbox(&format!("x@{arg}")).is_ok_and(|m| m.is_literal()));
    if ok {
        Ok(arg.to_string())
    } else if ehlo {
        Err(CommandError::Syntax("EHLO needs a domain or address literal"))
    } else {
        Err(CommandError::Syntax("HELO needs a domain"))
    }
}

/// Strips a case-insensitive `FROM:`/`TO:` prefix, and the spaces some clients put after the
/// colon (widely tolerated; harmless because the path itself is still strictly checked).
fn strip_keyword<'a>(rest: &'a str, kw: &str) -> Option<&'a str> {
    let head = rest.get(..kw.len())?;
    head.eq_ignore_ascii_case(kw).then(|| rest[kw.len()..].trim_start_matches(' '))
}

/// Splits `<path> params...` at the `>` that closes the path, honouring quoted local parts.
fn split_path(s: &str) -> Option<(&str, &str)> {
    if !s.starts_with('<') {
        return None;
    }
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let rest = &s[i + 1..];
                // RFC 5321 §4.1.2: parameters are separated from the path by SP.
                if rest.is_empty() || rest.starts_with(' ') {
                    return Some((&s[..=i], rest));
                }
                return None;
            }
            _ => {}
        }
    }
    None
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ').filter(|w| !w.is_empty())
}

fn mail(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "use MAIL FROM:<address> [parameters]";
    let after = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax(USAGE))?;
    let (path, params) = split_path(after).ok_or(CommandError::Syntax(USAGE))?;
    let from = address::parse_reverse_path(path).map_err(CommandError::Sender)?;
    let params = params::parse_mail_params(words(params)).map_err(CommandError::Param)?;
    Ok(Command::Mail(from, params))
}

fn rcpt(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "use RCPT TO:<address> [parameters]";
    let after = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax(USAGE))?;
    let (path, params) = split_path(after).ok_or(CommandError::Syntax(USAGE))?;
    let to = address::parse_forward_path(path).map_err(CommandError::Recipient)?;
    let params = params::parse_rcpt_params(words(params)).map_err(CommandError::Param)?;
    Ok(Command::Rcpt(to, params))
}

/// `BDAT SP chunk-size [SP end-marker]` (RFC 3030 §2).
fn bdat(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "use BDAT size [LAST]";
    let mut it = rest.split(' ');
    let size = it.next().filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()));
    let size = size.and_then(|s| s.parse().ok()).ok_or(CommandError::Syntax(USAGE))?;
    let last = match it.next() {
        None => false,
        Some(m) if m.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if it.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Mailbox;

    fn p(s: &str) -> Result<Command, CommandError> {
        parse(s.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(p("ehlo client.test"), Ok(Command::Ehlo("client.test".into())));
        assert_eq!(p("HeLo client.test"), Ok(Command::Helo("client.test".into())));
        assert_eq!(p("data"), Ok(Command::Data));
        assert_eq!(p("QUIT"), Ok(Command::Quit));
        assert_eq!(p("noop anything at all"), Ok(Command::Noop));
        assert_eq!(p("HELP"), Ok(Command::Help));
        assert_eq!(p("rset"), Ok(Command::Rset));
        assert_eq!(p("STARTTLS"), Ok(Command::StartTls));
        assert_eq!(p("AUTH PLAIN"), Ok(Command::Auth("PLAIN".into())));
        assert_eq!(p("VRFY bob"), Ok(Command::Vrfy));
        assert_eq!(p("EXPN list"), Ok(Command::Expn));
        assert_eq!(p("GET / HTTP/1.1"), Ok(Command::Http));
    }

    #[test]
    fn hello_arguments() {
        assert_eq!(p("EHLO [127.0.0.1]"), Ok(Command::Ehlo("[127.0.0.1]".into())));
        assert_eq!(p("EHLO [IPv6:::1]"), Ok(Command::Ehlo("[IPv6:::1]".into())));
        assert!(p("EHLO").is_err());
        assert!(p("EHLO bad_name!").is_err());
        assert!(p("HELO [127.0.0.1]").is_err());
        assert!(p("HELO").is_err());
    }

    #[test]
    fn mail_and_rcpt() {
        let m = Mailbox { local: "a".into(), domain: "b.test".into() };
        assert_eq!(
            p("MAIL FROM:<a@b.test> SIZE=10"),
            Ok(Command::Mail(ReversePath::Mailbox(m.clone()), MailParams { size: Some(10), ..Default::default() }))
        );
        assert_eq!(p("mail from: <>"), Ok(Command::Mail(ReversePath::Null, MailParams::default())));
        assert_eq!(p("RCPT TO:<a@b.test>"), Ok(Command::Rcpt(ForwardPath::Mailbox(m), RcptParams::default())));
        assert_eq!(p("RCPT TO:<postmaster>"), Ok(Command::Rcpt(ForwardPath::Postmaster, RcptParams::default())));
        assert!(matches!(p("RCPT TO:<\"x>y\"@b.test>"), Ok(Command::Rcpt(..))));
    }

    #[test]
    fn mail_and_rcpt_errors() {
        assert!(matches!(p("MAIL"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL TO:<a@b.test>"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL FROM:a@b.test"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL FROM:<a@b.test>SIZE=1"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL FROM:<a@>"), Err(CommandError::Sender(_))));
        assert!(matches!(p("MAIL FROM:<a@b.test> X=1"), Err(CommandError::Param(ParamError::Unknown(_)))));
        assert!(matches!(p("RCPT TO:<@>"), Err(CommandError::Recipient(_))));
        assert!(matches!(p("RCPT FROM:<a@b.test>"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("RCPT TO:<a@b.test> NOTIFY=SOMETIMES"), Err(CommandError::Param(_))));
    }

    #[test]
    fn bdat() {
        assert_eq!(p("BDAT 100"), Ok(Command::Bdat { size: 100, last: false }));
        assert_eq!(p("BDAT 0 last"), Ok(Command::Bdat { size: 0, last: true }));
        for bad in ["BDAT", "BDAT x", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x", "BDAT 123456789012345678901"] {
            assert!(matches!(p(bad), Err(CommandError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn junk() {
        assert_eq!(p("FROB"), Err(CommandError::Unknown));
        assert_eq!(p(""), Err(CommandError::Unknown));
        assert_eq!(parse(b"NOOP \xff"), Err(CommandError::Invalid));
        assert_eq!(parse(b"NOOP \x00"), Err(CommandError::Invalid));
        assert_eq!(p("DATA now"), Err(CommandError::Syntax("DATA takes no arguments")));
        assert!(p("QUIT now").is_err());
    }
}
