//! Naming the TOML key at a byte offset, and writing keys the way TOML spells them.
//!
//! toml's deserialization errors carry a byte span but no key path. We re-read the text with
//! `toml_edit`, which keeps the span of every key and value, and look for the deepest entry
//! whose key or value covers the offset.

use std::ops::Range;

use toml_edit::{ImDocument, InlineTable, Item, Table, Value};

/// One step of a key path.
enum Seg {
    Key(String),
    Index(usize),
}

/// The dotted key whose key or value covers byte `offset` of `text`, e.g. `listen[0].role`.
///
/// `None` when the text is not valid TOML or nothing covers the offset.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    if in_table(doc.as_table(), offset, &mut path) && !path.is_empty() { Some(render(&path)) } else { None }
}

fn covers(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset))
}

/// Searches a standard table: every entry first (sub-tables may be anywhere in the file),
/// then the table's own span (its header and body) for an offset that is in no entry.
fn in_table(table: &Table, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (name, item) in table.iter() {
        path.push(Seg::Key(name.to_owned()));
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if in_item(item, offset, path) || covers(key_span, offset) {
            return true;
        }
        path.pop();
    }
    covers(table.span(), offset)
}

fn in_item(item: &Item, offset: usize, path: &mut Vec<Seg>) -> bool {
    match item {
        Item::None => false,
        Item::Value(v) => in_value(v, offset, path),
        Item::Table(t) => in_table(t, offset, path),
        Item::ArrayOfTables(tables) => {
            for (i, t) in tables.iter().enumerate() {
                path.push(Seg::Index(i));
                if in_table(t, offset, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
    }
}

fn in_value(value: &Value, offset: usize, path: &mut Vec<Seg>) -> bool {
    if !covers(value.span(), offset) {
        return false;
    }
    match value {
        Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                path.push(Seg::Index(i));
                if in_value(v, offset, path) {
                    return true;
                }
                path.pop();
            }
        }
        Value::InlineTable(t) if in_inline(t, offset, path) => return true,
        _ => {}
    }
    // Inside the value but not inside one of its elements: the value itself.
    true
}

fn in_inline(table: &InlineTable, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (name, value) in table.iter() {
        path.push(Seg::Key(name.to_owned()));
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if in_value(value, offset, path) || covers(key_span, offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key(k));
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A dotted key path from plain segments, quoting those that are not bare keys.
pub(crate) fn path(segments: &[&str]) -> String {
    segments.iter().map(|s| key(s)).collect::<Vec<_>>().join(".")
}

/// One key as TOML spells it: bare if it may be, else a quoted basic string.
pub(crate) fn key(k: &str) -> String {
    let bare = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { k.to_owned() } else { quote(k) }
}

/// A TOML basic string (`"..."`) holding `s`, escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> Option<String> {
        key_at(text, text.find(needle).unwrap())
    }

    #[test]
    fn finds_keys_values_and_headers() {
        let text = "a = 1\n[limits]\nmax_errors = 'x'\n[domains.\"ex.org\"]\nmailboxes = [\"a\", 3]\n\
                    [[listen]]\naddress = 'x'\n[[listen]]\nrole = 'y'\n";
        assert_eq!(at(text, "a =").as_deref(), Some("a"));
        assert_eq!(at(text, "max_errors").as_deref(), Some("limits.max_errors"));
        assert_eq!(at(text, "'x'").as_deref(), Some("limits.max_errors"));
        assert_eq!(at(text, "3]").as_deref(), Some("domains.\"ex.org\".mailboxes[1]"));
        assert_eq!(at(text, "[domains").as_deref(), Some("domains.\"ex.org\""));
        assert_eq!(at(text, "role").as_deref(), Some("listen[1].role"));
    }

    #[test]
    fn finds_inline_tables() {
        let text = "limits = { max_errors = 3, bogus = 1 }\n";
        assert_eq!(at(text, "bogus").as_deref(), Some("limits.bogus"));
    }

    #[test]
    fn invalid_toml_has_no_key() {
        assert_eq!(key_at("a = = 1", 4), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(path(&["domains", "example.org", "mailboxes"]), "domains.\"example.org\".mailboxes");
        assert_eq!(quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(key(""), "\"\"");
    }
}
