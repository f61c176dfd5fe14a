//! The POP3 command grammar (RFC 1939 §3, RFC 2449 §3): a case-insensitive keyword, then
//! arguments separated by spaces. Framing (CRLF, the 255-octet line limit) is the server's.

/// The longest command line, CRLF included (RFC 2449 §4: 255 octets).
pub const MAX_COMMAND_LINE: usize = 255;

/// The longest SASL client response line, CRLF included. RFC 5034 §4 exempts responses from
/// the command line limit; a PLAIN response for the longest user name and password fits.
pub const MAX_RESPONSE_LINE: usize = 2048;

/// Message numbers and line counts have at most this many digits (larger is a syntax error,
/// not an overflow).
const MAX_DIGITS: usize = 9;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// CAPA (RFC 2449 §5).
    Capa,
    /// QUIT.
    Quit,
    /// STLS (RFC 2595 §4).
    Stls,
    /// USER name.
    User(String),
    /// PASS string — the whole rest of the line, spaces included (RFC 1939 §7).
    Pass(String),
    /// AUTH mechanism [initial-response] (RFC 5034 §4).
    Auth {
        /// The mechanism name, uppercase.
        mechanism: String,
        /// The initial response, still base64.
        initial: Option<String>,
    },
    /// STAT.
    Stat,
    /// LIST [msg].
    List(Option<usize>),
    /// RETR msg.
    Retr(usize),
    /// DELE msg.
    Dele(usize),
    /// NOOP.
    Noop,
    /// RSET.
    Rset,
    /// TOP msg n.
    Top(usize, u64),
    /// UIDL [msg].
    Uidl(Option<usize>),
}

/// Why a line is not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a keyword we know (APOP included: it is not offered).
    Unknown,
    /// A known keyword with missing, extra or malformed arguments.
    Syntax(&'static str),
    /// Not UTF-8, or a control character in the line.
    BadText,
}

/// Parses one command line (CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::BadText)?;
    if text.chars().any(char::is_control) {
        return Err(ParseError::BadText);
    }
    let (keyword, rest) = match text.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (text, None),
    };
    // RFC 1939 §3: keywords are case-insensitive, three or four characters.
    if keyword.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let args: Vec<&str> = rest.map(|r| r.split(' ').filter(|a| !a.is_empty()).collect()).unwrap_or_default();
    match keyword.to_ascii_uppercase().as_str() {
        "CAPA" => none(&args, Command::Capa),
        "QUIT" => none(&args, Command::Quit),
        "STLS" => none(&args, Command::Stls),
        "STAT" => none(&args, Command::Stat),
        "NOOP" => none(&args, Command::Noop),
        "RSET" => none(&args, Command::Rset),
        "USER" => match args.as_slice() {
            [name] => Ok(Command::User((*name).to_string())),
            _ => Err(ParseError::Syntax("USER takes one argument: the user name")),
        },
        "PASS" => match rest {
            Some(p) if !p.is_empty() => Ok(Command::Pass(p.to_string())),
            _ => Err(ParseError::Syntax("PASS takes the password as its argument")),
        },
        "AUTH" => match args.as_slice() {
            [m] => Ok(Command::Auth { mechanism: m.to_ascii_uppercase(), initial: None }),
            [m, ir] => Ok(Command::Auth { mechanism: m.to_ascii_uppercase(), initial: Some((*ir).to_string()) }),
            _ => Err(ParseError::Syntax("AUTH takes a mechanism and an optional initial response")),
        },
        "LIST" => optional_msg(&args).map(Command::List),
        "UIDL" => optional_msg(&args).map(Command::Uidl),
        "RETR" => one_msg(&args).map(Command::Retr),
        "DELE" => one_msg(&args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [m, n] => match (number(m), number(n)) {
                (Some(m), Some(n)) => Ok(Command::Top(m, n as u64)),
                _ => Err(ParseError::Syntax("TOP takes a message number and a line count")),
            },
            _ => Err(ParseError::Syntax("TOP takes a message number and a line count")),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn none(args: &[&str], cmd: Command) -> Result<Command, ParseError> {
    if args.is_empty() { Ok(cmd) } else { Err(ParseError::Syntax("this command takes no arguments")) }
}

fn one_msg(args: &[&str]) -> Result<usize, ParseError> {
    match args {
        [m] => number(m).ok_or(ParseError::Syntax("a message number is a decimal number")),
        _ => Err(ParseError::Syntax("this command takes one message number")),
    }
}

fn optional_msg(args: &[&str]) -> Result<Option<usize>, ParseError> {
    match args {
        [] => Ok(None),
        _ => one_msg(args).map(Some),
    }
}

/// A decimal number of at most [`MAX_DIGITS`] digits.
fn number(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(parse(b"capa"), Ok(Command::Capa));
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"uSeR alice@example.test"), Ok(Command::User("alice@example.test".into())));
        assert_eq!(
            parse(b"auth plain AGEAYg=="),
            Ok(Command::Auth { mechanism: "PLAIN".into(), initial: Some("AGEAYg==".into()) })
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(b"PASS two words "), Ok(Command::Pass("two words ".into())));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top(1, 0)));
        assert!(matches!(parse(b"RETR"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"RETR x"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"RETR -1"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"RETR 1234567890"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"STAT 1"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"PASS"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"USER a b"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn unknown_and_garbage() {
        assert_eq!(parse(b"APOP alice 0123"), Err(ParseError::Unknown));
        assert_eq!(parse(b"EHLO x"), Err(ParseError::Unknown));
        assert_eq!(parse(b""), Err(ParseError::Unknown));
        assert_eq!(parse(b"\xff\xfe"), Err(ParseError::BadText));
        assert_eq!(parse(b"USER a\0b"), Err(ParseError::BadText));
    }
}
