//! The milter's packets read as actions (`SMFIR_*`), each checked against what it may do.

use crate::negotiate::{Negotiated, actions};
use crate::packet::Packet;

/// The SMTP reply a milter gave with `SMFIR_REPLYCODE`, checked: a 4xx or 5xx code, an
/// optional enhanced code of the same class, and printable text on every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    /// `(class, subject, detail)`.
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

/// What the milter decided for the stage (or, at the end of message, for the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next stage.
    Continue,
    /// Accept: this milter wants nothing more of the transaction.
    Accept,
    /// Refuse permanently; with the milter's own reply when it gave a valid one.
    Reject(Option<Refusal>),
    /// Refuse temporarily; with the milter's own reply when it gave a valid one.
    Tempfail(Option<Refusal>),
    /// Accept and silently drop the message.
    Discard,
    /// Send no more body chunks (only after a body chunk, when negotiated).
    Skip,
}

/// An edit asked for before the final action at the end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// `SMFIR_ADDHEADER`: append a field to the header.
    AddHeader { name: String, value: String },
    /// `SMFIR_CHGHEADER`: change (empty value: delete) the `index`-th (from 1) field named `name`.
    ChangeHeader { index: u32, name: String, value: String },
    /// `SMFIR_INSHEADER`: insert a field at position `index` (0 is the top).
    InsertHeader { index: u32, name: String, value: String },
    /// `SMFIR_REPLBODY`: one chunk of the new body (chunks concatenate).
    ReplaceBody(Vec<u8>),
    /// `SMFIR_CHGFROM`: a new reverse-path (and ESMTP parameters, ignored).
    ChangeFrom(String),
    /// `SMFIR_ADDRCPT` / `SMFIR_ADDRCPT_PAR`: a new recipient.
    AddRcpt(String),
    /// `SMFIR_DELRCPT`: remove a recipient.
    DelRcpt(String),
    /// `SMFIR_QUARANTINE`: accept, but hold the message with this reason.
    Quarantine(String),
}

/// One packet from the milter, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Action(Action),
    Modify(Modification),
    /// `SMFIR_PROGRESS`: still working; wait again.
    Progress,
}

/// Why a packet cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A code the protocol does not define (or that makes no sense from a milter).
    Unknown(u8),
    /// A known code with data that does not parse.
    Malformed(u8),
    /// An edit the milter did not negotiate.
    NotNegotiated(u8),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Unknown(c) => write!(f, "unknown reply code {:?}", char::from(*c)),
            ReplyError::Malformed(c) => write!(f, "malformed {:?} reply", char::from(*c)),
            ReplyError::NotNegotiated(c) => write!(f, "{:?} reply without the negotiated action", char::from(*c)),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Reads one packet. Edits are refused unless negotiated; `SMFIR_REPLYCODE` becomes a
/// reject or tempfail per its first digit, with the milter's text only when valid.
pub fn interpret(p: Packet, n: &Negotiated) -> Result<Response, ReplyError> {
    let code = p.code;
    let need = |bit: u32| if n.allows(bit) { Ok(()) } else { Err(ReplyError::NotNegotiated(code)) };
    let strings = || strings(&p.data).ok_or(ReplyError::Malformed(code));
    let indexed = || -> Result<(u32, String, String), ReplyError> {
        if p.data.len() < 4 {
            return Err(ReplyError::Malformed(code));
        }
        let index = u32::from_be_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]);
        let s = self::strings(&p.data[4..]).ok_or(ReplyError::Malformed(code))?;
        let [name, value, ..] = s.as_slice() else { return Err(ReplyError::Malformed(code)) };
        Ok((index, name.clone(), value.clone()))
    };
    let action = |a| Ok(Response::Action(a));
    let modify = |m| Ok(Response::Modify(m));
    match code {
        b'c' => action(Action::Continue),
        b'a' => action(Action::Accept),
        b'r' => action(Action::Reject(None)),
        b't' => action(Action::Tempfail(None)),
        b'd' => action(Action::Discard),
        b's' => action(Action::Skip),
        b'p' => Ok(Response::Progress),
        b'y' => match refusal(&p.data) {
            Some(r) if r.code >= 500 => action(Action::Reject(Some(r))),
            Some(r) => action(Action::Tempfail(Some(r))),
            None if p.data.first() == Some(&b'4') => action(Action::Tempfail(None)),
            None => action(Action::Reject(None)),
        },
        b'h' => {
            need(actions::ADDHDRS)?;
            let s = strings()?;
            let [name, value, ..] = s.as_slice() else { return Err(ReplyError::Malformed(code)) };
            header_name(name, code)?;
            modify(Modification::AddHeader { name: name.clone(), value: value.clone() })
        }
        b'm' => {
            need(actions::CHGHDRS)?;
            let (index, name, value) = indexed()?;
            header_name(&name, code)?;
            modify(Modification::ChangeHeader { index, name, value })
        }
        b'i' => {
            need(actions::ADDHDRS)?;
            let (index, name, value) = indexed()?;
            header_name(&name, code)?;
            modify(Modification::InsertHeader { index, name, value })
        }
        b'b' => {
            need(actions::CHGBODY)?;
            modify(Modification::ReplaceBody(p.data))
        }
        b'e' => {
            need(actions::CHGFROM)?;
            modify(Modification::ChangeFrom(first(strings()?, code)?))
        }
        b'+' => {
            need(actions::ADDRCPT)?;
            modify(Modification::AddRcpt(first(strings()?, code)?))
        }
        b'2' => {
            need(actions::ADDRCPT_PAR)?;
            modify(Modification::AddRcpt(first(strings()?, code)?))
        }
        b'-' => {
            need(actions::DELRCPT)?;
            modify(Modification::DelRcpt(first(strings()?, code)?))
        }
        b'q' => {
            need(actions::QUARANTINE)?;
            let reason = strings().ok().and_then(|s| s.into_iter().next()).unwrap_or_default();
            modify(Modification::Quarantine(reason))
        }
        _ => Err(ReplyError::Unknown(code)),
    }
}

/// NUL-terminated strings, each valid UTF-8; `None` when the last is unterminated.
fn strings(data: &[u8]) -> Option<Vec<String>> {
    if data.last() != Some(&0) {
        return None;
    }
    data[..data.len() - 1].split(|&b| b == 0).map(|s| String::from_utf8(s.to_vec()).ok()).collect()
}

fn first(s: Vec<String>, code: u8) -> Result<String, ReplyError> {
    s.into_iter().next().filter(|a| !a.is_empty()).ok_or(ReplyError::Malformed(code))
}

/// RFC 5322 §2.2: a field name is printable ASCII except the colon.
fn header_name(name: &str, code: u8) -> Result<(), ReplyError> {
    let ok = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if ok { Ok(()) } else { Err(ReplyError::Malformed(code)) }
}

/// Parses `SMFIR_REPLYCODE` data: `NNN[ -]x.y.z text` per line (lines separated by CRLF),
/// the code 4xx or 5xx and the same on every line, the enhanced code's class the code's
/// first digit (RFC 3463 §2), text printable. `None` when anything is off.
pub fn refusal(data: &[u8]) -> Option<Refusal> {
    let text = std::str::from_utf8(data.strip_suffix(&[0]).unwrap_or(data)).ok()?;
    let text = text.trim_end_matches(['\r', '\n']);
    let mut code = None;
    let mut enhanced = None;
    let mut lines = Vec::new();
    for (i, line) in text.split("\r\n").enumerate() {
        let (n, rest) = (line.get(..3)?, line.get(3..)?);
        let n: u16 = n.parse().ok().filter(|n| (400..600).contains(n))?;
        if *code.get_or_insert(n) != n || !rest.bytes().all(|b| (32..127).contains(&b)) {
            return None;
        }
        let rest = rest.strip_prefix([' ', '-']).unwrap_or(rest);
        let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let parsed = parse_enhanced(first).filter(|e| u16::from(e.0) == n / 100);
        let body = if parsed.is_some() { tail } else { rest };
        if i == 0 {
            enhanced = parsed;
        }
        lines.push(body.to_string());
    }
    if lines.iter().all(|l| l.trim().is_empty()) {
        return None;
    }
    Some(Refusal { code: code?, enhanced, lines })
}

fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut it = s.split('.');
    let mut num = |max: usize| {
        it.next().filter(|p| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
    };
    let (c, s, d): (u16, u16, u16) = (num(1)?, num(3)?, num(3)?);
    if it.next().is_some() {
        return None;
    }
    Some((c as u8, s, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiate::Negotiated;

    fn all() -> Negotiated {
        Negotiated { version: 6, actions: actions::OFFERED, protocol: 0 }
    }

    fn p(code: u8, data: &[u8]) -> Packet {
        Packet { code, data: data.to_vec() }
    }

    #[test]
    fn replycode_is_validated() {
        let r = refusal(b"554 5.7.1 Gtube pattern\0").unwrap();
        assert_eq!((r.code, r.enhanced, r.lines), (554, Some((5, 7, 1)), vec!["Gtube pattern".to_string()]));
        let r = refusal(b"451 try later\0").unwrap();
        assert_eq!((r.code, r.enhanced), (451, None));
        let multi = refusal(b"550-5.7.1 one\r\n550 5.7.1 two\0").unwrap();
        assert_eq!(multi.lines, ["one", "two"]);
        assert_eq!(refusal(b"250 2.0.0 ok\0"), None, "not a refusal");
        assert_eq!(refusal(b"550\0"), None, "no text");
        assert_eq!(refusal(b"550 5.7.1 a\x01b\0"), None, "control characters");
        assert_eq!(refusal(b"550-x\r\n450 y\0"), None, "codes differ");
        // An enhanced code of the wrong class is text, not an enhanced code.
        assert_eq!(refusal(b"550 4.7.1 hm\0").unwrap().enhanced, None);
        assert_eq!(
            interpret(p(b'y', b"nonsense\0"), &all()),
            Ok(Response::Action(Action::Reject(None))),
            "an invalid reply code still rejects, with our own text"
        );
        assert_eq!(interpret(p(b'y', b"4xx\0"), &all()), Ok(Response::Action(Action::Tempfail(None))));
    }

    #[test]
    fn edits_need_their_negotiated_action() {
        let none = Negotiated { version: 6, actions: 0, protocol: 0 };
        assert_eq!(interpret(p(b'h', b"X-A\0b\0"), &none), Err(ReplyError::NotNegotiated(b'h')));
        assert_eq!(
            interpret(p(b'h', b"X-A\0b\0"), &all()),
            Ok(Response::Modify(Modification::AddHeader { name: "X-A".into(), value: "b".into() }))
        );
        assert_eq!(
            interpret(p(b'm', b"\0\0\0\x02Subject\0\0"), &all()),
            Ok(Response::Modify(Modification::ChangeHeader { index: 2, name: "Subject".into(), value: "".into() }))
        );
        assert_eq!(
            interpret(p(b'2', b"<x@y>\0NOTIFY=NEVER\0"), &all()),
            Ok(Response::Modify(Modification::AddRcpt("<x@y>".into())))
        );
        assert_eq!(
            interpret(p(b'q', b"held\0"), &all()),
            Ok(Response::Modify(Modification::Quarantine("held".into())))
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(interpret(p(b'Z', b""), &all()), Err(ReplyError::Unknown(b'Z')));
        assert_eq!(interpret(p(b'h', b"X-A\0b"), &all()), Err(ReplyError::Malformed(b'h')), "unterminated");
        assert_eq!(interpret(p(b'h', b"X A\0b\0"), &all()), Err(ReplyError::Malformed(b'h')), "bad name");
        assert_eq!(interpret(p(b'm', b"\0\0"), &all()), Err(ReplyError::Malformed(b'm')));
        assert_eq!(interpret(p(b'e', b"\0"), &all()), Err(ReplyError::Malformed(b'e')));
        assert_eq!(interpret(p(b'h', b"X\0\xff\0"), &all()), Err(ReplyError::Malformed(b'h')), "not UTF-8");
    }
}
