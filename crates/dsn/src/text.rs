//! The first part of the report: an explanation for people (RFC 6522 §3).
//! The wording is part of the product: keep it stable, and keep it free of
//! anything a remote server could inject (every foreign text is one line).

use std::fmt::Write as _;

use crate::clean::one_line;
use crate::original::{Original, Returned, Shortfall};
use crate::status::{diagnostic, original_recipient, remote_mta};
use crate::{Action, DsnInput, Kind, RcptReport};

/// The `Subject` of the notice.
pub(crate) fn subject(kind: Kind) -> &'static str {
    match kind {
        Kind::Failure => "Undelivered Mail Returned to Sender",
        Kind::Delay => "Delayed Mail (still being retried)",
        Kind::Success => "Successful Mail Delivery Report",
    }
}

/// The text/plain part, with CRLF line ends, wrapped at 76 columns so that
/// an ASCII text needs no transfer encoding.
pub(crate) fn render(input: &DsnInput<'_>, original: &Original, global: bool) -> String {
    let mut lines = vec![format!("This is the mail system at host {}.", input.reporting_mta), String::new()];
    let intro: &[&str] = match input.kind {
        Kind::Failure => &[
            "Your message could not be delivered to the recipients listed below.",
            "The mail system has given up; it will not try again.",
        ],
        Kind::Delay => &[
            "Your message has not yet been delivered to the recipients listed below.",
            "The mail system will keep trying; you do not need to send it again.",
        ],
        Kind::Success => &["Your message was delivered to the recipients listed below."],
    };
    lines.extend(intro.iter().map(|l| l.to_string()));
    for rcpt in input.recipients {
        lines.push(String::new());
        recipient_lines(&mut lines, rcpt, global);
    }
    lines.push(String::new());
    lines.push(returned_note(original, input.return_limit));
    let mut out = String::new();
    for line in &lines {
        push_wrapped(&mut out, line);
    }
    out
}

fn recipient_lines(lines: &mut Vec<String>, rcpt: &RcptReport, global: bool) {
    let status = rcpt.status;
    let mut head = format!("<{}>", rcpt.final_recipient);
    if let Some((_, orig)) = rcpt.original_recipient.as_deref().map(original_recipient)
        && orig != rcpt.final_recipient
    {
        let _ = write!(head, " (originally <{}>)", one_line(&orig, global, 512));
    }
    let _ = match rcpt.action {
        Action::Failed => write!(head, ": delivery failed (status {status})"),
        Action::Delayed => write!(head, ": delivery delayed (status {status})"),
        Action::Delivered => write!(head, ": delivered"),
        Action::Relayed => write!(head, ": relayed to a system that does not send delivery reports"),
        Action::Expanded => write!(head, ": delivered to an alias or list, which was expanded"),
    };
    lines.push(head);
    let mta = rcpt.remote_mta.as_deref().map(remote_mta).filter(|m| !m.is_empty());
    if let Some((kind, text)) = rcpt.diagnostic.as_deref().map(|d| diagnostic(d, global))
        && !text.is_empty()
    {
        lines.push(match (&mta, kind.as_str()) {
            (Some(mta), "smtp") => format!("    The mail server {mta} said: {text}"),
            _ => format!("    Reason: {text}"),
        });
    }
    if let (Action::Delayed, Some(until)) = (rcpt.action, &rcpt.will_retry_until) {
        lines.push(format!("    Delivery will be attempted until {}.", until.to_rfc2822()));
    }
}

/// Appends `line` and CRLF, wrapped at spaces to 76 columns; continuation
/// lines are indented two more than the line. Words longer than 900 bytes
/// (only a pathological diagnostic has one) are split, so that no line ever
/// exceeds RFC 5322's 998.
fn push_wrapped(out: &mut String, line: &str) {
    const WIDTH: usize = 76;
    const MAX_WORD: usize = 900;
    let body = line.trim_start_matches(' ');
    let indent = line.len() - body.len();
    out.push_str(&line[..indent]);
    let mut col = indent;
    let mut first = true;
    for word in body.split(' ') {
        let mut rest = word;
        while !rest.is_empty() || first {
            let mut cut = rest.len().min(MAX_WORD);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            if first {
                first = false;
            } else if col + 1 + piece.len() > WIDTH {
                out.push_str("\r\n");
                out.push_str(&" ".repeat(indent + 2));
                col = indent + 2;
            } else {
                out.push(' ');
                col += 1;
            }
            out.push_str(piece);
            col += piece.len();
            rest = tail;
        }
    }
    out.push_str("\r\n");
}

/// What the third part holds, and why it is less than asked for, if it is.
fn returned_note(original: &Original, limit: usize) -> String {
    match (original.returned, original.shortfall) {
        (Returned::Full, _) => "The original message is attached.".to_owned(),
        (Returned::Headers, Shortfall::TooLarge) => format!(
            "The original message is larger than {}, too large to be returned; only its header section is attached.",
            size(limit)
        ),
        (Returned::Headers, Shortfall::NotIntact) => "The original message cannot be returned unchanged (it has \
             overlong lines or NUL characters); only its header section is attached."
            .to_owned(),
        (Returned::Headers, Shortfall::HeadersCut) => {
            format!("The header section of the original message is attached, cut short at {}.", size(limit))
        }
        (Returned::Headers, Shortfall::None) => "The header section of the original message is attached.".to_owned(),
        (Returned::Nothing, _) => "The original message could not be attached.".to_owned(),
    }
}

/// A size for people: `10 MiB`, `64 KiB` or `1000 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping() {
        let mut out = String::new();
        push_wrapped(&mut out, "");
        push_wrapped(&mut out, "short line");
        assert_eq!(out, "\r\nshort line\r\n");

        let words = (0..60).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
        let mut out = String::new();
        push_wrapped(&mut out, &format!("    {words}"));
        let lines: Vec<&str> = out.trim_end().split("\r\n").collect();
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| l.len() <= 76), "{lines:?}");
        assert!(lines[0].starts_with("    word0 ") && lines[1].starts_with("      word"));
        let joined: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(joined.join(" "), words);

        let mut out = String::new();
        push_wrapped(&mut out, &"é".repeat(2000));
        assert!(out.split("\r\n").all(|l| l.len() <= 998));
        assert_eq!(out.replace("\r\n  ", "").replace(' ', "").trim_end(), "é".repeat(2000));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(10 * 1024 * 1024), "10 MiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
