//! The message as a milter sees it (header fields, then the body) and the edits milters ask
//! for at the end of message, applied to the message's bytes.

use crate::reply::Modification;

/// One header field of a message: its name and its raw lines (with their CRLFs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Field {
    /// The value as `SMFIC_HEADER` carries it: after the colon and the white space that
    /// follows it, folded lines joined by LF, without the final CRLF.
    pub fn value(&self) -> Vec<u8> {
        let colon = self.raw.iter().position(|&b| b == b':').map_or(self.raw.len(), |i| i + 1);
        let v = &self.raw[colon..];
        let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
        let v = v[start..].strip_suffix(b"\r\n").unwrap_or(&v[start..]);
        let mut out = Vec::with_capacity(v.len());
        let mut i = 0;
        while i < v.len() {
            if v[i] == b'\r' && v.get(i + 1) == Some(&b'\n') {
                out.push(b'\n');
                i += 2;
            } else {
                out.push(v[i]);
                i += 1;
            }
        }
        out
    }

    /// A new field from a milter's name and value (lines separated by LF or CRLF; a
    /// continuation line that does not start with white space gets a tab, RFC 5322 §2.2.3).
    pub fn new(name: &str, value: &str) -> Field {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        for (i, line) in value.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if i > 0 {
                raw.extend_from_slice(b"\r\n");
                if !line.starts_with([' ', '\t']) {
                    raw.push(b'\t');
                }
            }
            raw.extend_from_slice(line.as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        Field { name: name.as_bytes().to_vec(), raw }
    }
}

/// Splits a message (CRLF lines) into its header fields and the offset where the body
/// starts (after the empty line; the end when there is none). Lines before the first field
/// that are not fields are kept as nameless fields, so nothing is lost.
pub fn split(message: &[u8]) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..].windows(2).position(|w| w == b"\r\n").map_or(message.len(), |i| pos + i + 2);
        let line = &message[pos..end];
        if line == b"\r\n" {
            return (fields, end);
        }
        let continued = matches!(line.first(), Some(b' ' | b'\t'));
        match fields.last_mut() {
            Some(last) if continued => last.raw.extend_from_slice(line),
            _ => {
                let name = line.iter().position(|&b| b == b':').map_or(Vec::new(), |i| line[..i].to_vec());
                fields.push(Field { name, raw: line.to_vec() });
            }
        }
        pos = end;
    }
    (fields, message.len())
}

/// A header edit, in the order the milter asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    Add { name: String, value: String },
    Change { index: u32, name: String, value: String },
    Insert { index: u32, name: String, value: String },
}

/// Everything the milters asked to change, collected over the end-of-message replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    pub headers: Vec<HeaderEdit>,
    /// The replacement body, when one was sent.
    pub body: Option<Vec<u8>>,
    /// A new reverse-path, without angle brackets.
    pub sender: Option<String>,
    /// Recipients to add and to remove, without angle brackets.
    pub add_rcpts: Vec<String>,
    pub del_rcpts: Vec<String>,
    /// Why the message must be held, when a milter quarantined it.
    pub quarantine: Option<String>,
    /// Octets held by the header and envelope edits, against [`MAX_EDIT_BYTES`].
    held: usize,
}

/// A milter sent more edits than the caps allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMuch;

/// At most this many header or envelope edits per message: a milter cannot make us keep an
/// unbounded list.
pub const MAX_EDITS: usize = 1000;

/// At most this many octets in header and envelope edits per message (each packet may be up
/// to 1 MiB; a thousand of them must not become a gigabyte).
pub const MAX_EDIT_BYTES: usize = 1024 * 1024;

impl Edits {
    /// Adds one modification; the body may grow to `body_cap` octets.
    pub fn push(&mut self, m: Modification, body_cap: usize) -> Result<(), TooMuch> {
        if self.headers.len() + self.add_rcpts.len() + self.del_rcpts.len() >= MAX_EDITS {
            return Err(TooMuch);
        }
        self.held += match &m {
            Modification::AddHeader { name, value }
            | Modification::ChangeHeader { name, value, .. }
            | Modification::InsertHeader { name, value, .. } => name.len() + value.len(),
            Modification::ChangeFrom(a) | Modification::AddRcpt(a) | Modification::DelRcpt(a) => a.len(),
            Modification::Quarantine(r) => r.len(),
            Modification::ReplaceBody(_) => 0,
        };
        if self.held > MAX_EDIT_BYTES {
            return Err(TooMuch);
        }
        match m {
            Modification::AddHeader { name, value } => self.headers.push(HeaderEdit::Add { name, value }),
            Modification::ChangeHeader { index, name, value } => {
                self.headers.push(HeaderEdit::Change { index, name, value })
            }
            Modification::InsertHeader { index, name, value } => {
                self.headers.push(HeaderEdit::Insert { index, name, value })
            }
            Modification::ReplaceBody(chunk) => {
                let body = self.body.get_or_insert_with(Vec::new);
                if body.len() + chunk.len() > body_cap {
                    return Err(TooMuch);
                }
                body.extend_from_slice(&chunk);
            }
            Modification::ChangeFrom(a) => self.sender = Some(unbracket(&a)),
            Modification::AddRcpt(a) => self.add_rcpts.push(unbracket(&a)),
            Modification::DelRcpt(a) => self.del_rcpts.push(unbracket(&a)),
            Modification::Quarantine(reason) => self.quarantine = Some(reason),
        }
        Ok(())
    }

    /// Adds the edits of the next milter: its header and recipient edits after these, its
    /// body, sender and quarantine in place of these.
    pub fn merge(&mut self, next: Edits) {
        self.held += next.held;
        self.headers.extend(next.headers);
        self.add_rcpts.extend(next.add_rcpts);
        self.del_rcpts.extend(next.del_rcpts);
        if next.body.is_some() {
            self.body = next.body;
        }
        if next.sender.is_some() {
            self.sender = next.sender;
        }
        if next.quarantine.is_some() {
            self.quarantine = next.quarantine;
        }
    }

    /// Whether the message's bytes change.
    pub fn touches_content(&self) -> bool {
        !self.headers.is_empty() || self.body.is_some()
    }

    /// Whether the envelope changes.
    pub fn touches_envelope(&self) -> bool {
        self.sender.is_some() || !self.add_rcpts.is_empty() || !self.del_rcpts.is_empty()
    }

    /// The message with the header edits and body replacement applied.
    pub fn apply(&self, message: &[u8]) -> Vec<u8> {
        let (mut fields, body_at) = split(message);
        for edit in &self.headers {
            apply_one(&mut fields, edit);
        }
        let body = match &self.body {
            Some(b) => crlf(b),
            None => message[body_at..].to_vec(),
        };
        let mut out = Vec::with_capacity(message.len() + 256);
        for f in &fields {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    }
}

/// RFC 6409's milter semantics as libmilter documents them: CHGHEADER's index counts the
/// fields of that name from 1 and an empty value deletes (a missing field is added);
/// INSHEADER's index is a position in the whole header.
fn apply_one(fields: &mut Vec<Field>, edit: &HeaderEdit) {
    match edit {
        HeaderEdit::Add { name, value } => fields.push(Field::new(name, value)),
        HeaderEdit::Insert { index, name, value } => {
            let at = (*index as usize).min(fields.len());
            fields.insert(at, Field::new(name, value));
        }
        HeaderEdit::Change { index, name, value } => {
            let found = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name.eq_ignore_ascii_case(name.as_bytes()))
                .nth((*index).max(1) as usize - 1)
                .map(|(i, _)| i);
            match (found, value.is_empty()) {
                (Some(i), true) => {
                    fields.remove(i);
                }
                (Some(i), false) => fields[i] = Field::new(name, value),
                (None, false) => fields.push(Field::new(name, value)),
                (None, true) => {}
            }
        }
    }
}

/// Lone LFs become CRLF (milters often send LF-only bodies); existing CRLFs stay.
fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 32);
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' && (i == 0 || b[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

/// `<a@b>` → `a@b`.
fn unbracket(a: &str) -> String {
    let a = a.trim();
    a.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(a).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\n\tby y\r\nSubject: hi\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody\r\n";

    #[test]
    fn split_finds_fields_folds_and_body() {
        let (fields, at) = split(MSG);
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0].value(), b"from x\n\tby y");
        assert_eq!(fields[1].name, b"Subject");
        assert_eq!(&MSG[at..], b"body\r\n");
        let (none, at) = split(b"A: b\r\n");
        assert_eq!((none.len(), at), (1, 6));
    }

    fn edits(ms: Vec<Modification>) -> Edits {
        let mut e = Edits::default();
        for m in ms {
            e.push(m, 1 << 20).unwrap();
        }
        e
    }

    #[test]
    fn header_edits_apply_in_order() {
        let e = edits(vec![
            Modification::AddHeader { name: "X-Spam".into(), value: "Yes".into() },
            Modification::ChangeHeader { index: 2, name: "x-a".into(), value: "".into() },
            Modification::ChangeHeader { index: 1, name: "Subject".into(), value: "new\n folded".into() },
            Modification::InsertHeader { index: 0, name: "X-Top".into(), value: "t".into() },
            Modification::ChangeHeader { index: 1, name: "X-Missing".into(), value: "m".into() },
        ]);
        let out = e.apply(MSG);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Top: t\r\nReceived: from x\r\n\tby y\r\nSubject: new\r\n folded\r\nX-A: 1\r\nX-Spam: Yes\r\nX-Missing: m\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn body_replacement_and_envelope() {
        let e = edits(vec![
            Modification::ReplaceBody(b"new\n".to_vec()),
            Modification::ReplaceBody(b"more\r\n".to_vec()),
            Modification::ChangeFrom("<s@x>".into()),
            Modification::AddRcpt("<r@x>".into()),
            Modification::DelRcpt("q@x".into()),
        ]);
        assert!(e.touches_content() && e.touches_envelope());
        assert!(e.apply(MSG).ends_with(b"\r\n\r\nnew\r\nmore\r\n"));
        assert_eq!(
            (e.sender.as_deref(), e.add_rcpts[0].as_str(), e.del_rcpts[0].as_str()),
            (Some("s@x"), "r@x", "q@x")
        );
    }

    #[test]
    fn caps_hold() {
        let mut e = Edits::default();
        assert_eq!(e.push(Modification::ReplaceBody(vec![0; 11]), 10), Err(TooMuch));
        for _ in 0..MAX_EDITS {
            e.push(Modification::AddRcpt("a@b".into()), 0).unwrap();
        }
        assert_eq!(e.push(Modification::AddRcpt("a@b".into()), 0), Err(TooMuch));
        let mut e = Edits::default();
        let big = "v".repeat(600 * 1024);
        e.push(Modification::AddHeader { name: "X".into(), value: big.clone() }, 0).unwrap();
        assert_eq!(e.push(Modification::AddHeader { name: "X".into(), value: big }, 0), Err(TooMuch));
    }

    #[test]
    fn unchanged_message_round_trips() {
        assert_eq!(Edits::default().apply(MSG), MSG);
    }
}
