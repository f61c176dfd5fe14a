//! Text for the operator's terminal, shared by the `dakiya queue` commands: remote-controlled
//! text made harmless, and plurals.

/// `word`, with an `s` unless `n` is 1.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 { word.into() } else { format!("{word}s") }
}

/// `s` with control characters and bidirectional overrides escaped: addresses, errors and
/// headers come from other machines and must not be able to send escape sequences to the
/// operator's terminal or make text display in a misleading order.
pub(crate) fn clean(s: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    s.chars().map(|c| if unsafe_char(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Like [`clean`], but keeps tabs (header continuation lines start with one).
pub(crate) fn clean_keep_tabs(s: &str) -> String {
    s.split('\t').map(clean).collect::<Vec<_>>().join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}]0;x\u{7}b\r\n"), "a\\u{1b}]0;x\\u{7}b\\r\\n");
        assert_eq!(clean("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(clean("jörg@exämple.test"), "jörg@exämple.test");
        assert_eq!(clean_keep_tabs("\tby x\u{0}"), "\tby x\\u{0}");
    }

    #[test]
    fn plurals() {
        assert_eq!(
            (plural(0, "domain"), plural(1, "domain"), plural(2, "domain")),
            ("domains".into(), "domain".into(), "domains".into())
        );
    }
}
