//! Maildir++ quota: the `maildirsize` file that Dovecot's quota plugin (`quota = maildir`)
//! and dakiya both keep, as pure functions over its text (<https://www.courier-mta.org/imap/README.maildirquota.html>).
//!
//! ```text
//! 10485760S,0C        limits: bytes (S) and messages (C); 0 is no limit
//! 1234 1              one line per change: bytes and messages added (or removed, negative)
//! ```
//! The usage is the sum of the lines after the first. The file is recalculated from the
//! Maildir's contents when it is missing, unreadable, has other limits than configured, or
//! has grown past [`RECALC_SIZE`] bytes.

/// A `maildirsize` file this large (or larger) is rewritten from a fresh count: the
/// Maildir++ rule, so that the file stays small.
pub const RECALC_SIZE: u64 = 5120;

/// The limits of a mailbox; 0 means no limit on that dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaLimit {
    /// Most bytes of messages.
    pub bytes: u64,
    /// Most messages.
    pub messages: u64,
}

/// What a mailbox holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes of messages (the sizes of their files).
    pub bytes: i64,
    /// Number of messages.
    pub messages: i64,
}

/// A parsed `maildirsize` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaildirSize {
    /// The limits on its first line.
    pub limit: QuotaLimit,
    /// The sum of the other lines.
    pub usage: Usage,
}

/// Parses the text of a `maildirsize` file; `None` if it is malformed (then it is
/// recalculated). A last line without its LF is a write in progress, or torn by a crash:
/// malformed, like Dovecot treats it.
pub fn parse(text: &str) -> Option<MaildirSize> {
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    let limit = parse_limit(lines.next()?)?;
    let mut usage = Usage::default();
    for line in lines {
        let (bytes, messages) = line.trim().split_once(' ')?;
        usage.bytes = usage.bytes.checked_add(bytes.trim().parse().ok()?)?;
        usage.messages = usage.messages.checked_add(messages.trim().parse().ok()?)?;
    }
    Some(MaildirSize { limit, usage })
}

/// `<bytes>S,<count>C`, either part optional.
fn parse_limit(line: &str) -> Option<QuotaLimit> {
    if line.trim().is_empty() {
        return None;
    }
    let mut limit = QuotaLimit::default();
    for part in line.trim().split(',').filter(|p| !p.is_empty()) {
        if let Some(n) = part.strip_suffix('S') {
            limit.bytes = n.parse().ok()?;
        } else if let Some(n) = part.strip_suffix('C') {
            limit.messages = n.parse().ok()?;
        } else {
            return None;
        }
    }
    Some(limit)
}

/// The first line for `limit`.
pub fn header(limit: QuotaLimit) -> String {
    format!("{}S,{}C\n", limit.bytes, limit.messages)
}

/// The line recording a change of `bytes` and `messages`.
pub fn line(bytes: i64, messages: i64) -> String {
    format!("{bytes} {messages}\n")
}

/// A whole fresh file: the limits, then the current usage as one line.
pub fn fresh(limit: QuotaLimit, usage: Usage) -> String {
    header(limit) + &line(usage.bytes, usage.messages)
}

/// Whether the file (of `len` bytes, parsed as `parsed`) must be recalculated before use.
pub fn needs_recalc(len: u64, parsed: Option<&MaildirSize>, limit: QuotaLimit) -> bool {
    match parsed {
        None => true,
        Some(p) => len >= RECALC_SIZE || p.limit != limit || p.usage.bytes < 0 || p.usage.messages < 0,
    }
}

/// Whether adding a message of `size` bytes would take `usage` over `limit`.
pub fn would_exceed(usage: Usage, limit: QuotaLimit, size: u64) -> bool {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let over_bytes = limit.bytes > 0 && usage.bytes.saturating_add(size) > limit.bytes as i64;
    let over_count = limit.messages > 0 && usage.messages.saturating_add(1) > limit.messages as i64;
    over_bytes || over_count
}

/// Whether the mailbox is already full: no further message, however small, fits. This is
/// what RCPT can know before the message's size is (RFC 5321 §4.2.2 `452`).
pub fn is_full(usage: Usage, limit: QuotaLimit) -> bool {
    let full_bytes = limit.bytes > 0 && usage.bytes >= limit.bytes as i64;
    let full_count = limit.messages > 0 && usage.messages >= limit.messages as i64;
    full_bytes || full_count
}

/// A message's size from its Maildir file name (`,S=<size>`), if it carries one.
pub fn size_from_name(name: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    base.split(',').find_map(|f| f.strip_prefix("S=")).and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: QuotaLimit = QuotaLimit { bytes: 1000, messages: 0 };

    #[test]
    fn parses_the_header_and_sums_the_lines() {
        let p = parse("1000S,0C\n300 1\n200 1\n-100 -1\n").unwrap();
        assert_eq!(p.limit, LIMIT);
        assert_eq!(p.usage, Usage { bytes: 400, messages: 1 });
        assert_eq!(parse("1000S\n  5   1\n").unwrap().usage, Usage { bytes: 5, messages: 1 });
        assert_eq!(parse("7C\n").unwrap().limit, QuotaLimit { bytes: 0, messages: 7 });
        assert_eq!(parse("0S,0C\n").unwrap().usage, Usage::default());
    }

    #[test]
    fn malformed_files_are_none() {
        for bad in ["", "\n", "1000S,0C", "1000S,0C\n300 1", "1000X\n", "1000S\n300\n", "1000S\nx 1\n", "S\n"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let overflow = format!("0S\n{} 1\n1 1\n", i64::MAX);
        assert_eq!(parse(&overflow), None);
    }

    #[test]
    fn writes_what_it_reads() {
        let text = fresh(LIMIT, Usage { bytes: 42, messages: 2 }) + &line(10, 1);
        assert_eq!(text, "1000S,0C\n42 2\n10 1\n");
        assert_eq!(parse(&text).unwrap(), MaildirSize { limit: LIMIT, usage: Usage { bytes: 52, messages: 3 } });
    }

    #[test]
    fn recalculation_rules() {
        let ok = parse("1000S,0C\n1 1\n").unwrap();
        assert!(!needs_recalc(12, Some(&ok), LIMIT));
        assert!(needs_recalc(RECALC_SIZE, Some(&ok), LIMIT), "too large");
        assert!(needs_recalc(12, Some(&ok), QuotaLimit { bytes: 2000, messages: 0 }), "other limits");
        assert!(needs_recalc(12, None, LIMIT), "malformed or missing");
        let negative = parse("1000S,0C\n-5 -1\n").unwrap();
        assert!(needs_recalc(12, Some(&negative), LIMIT));
    }

    #[test]
    fn limits_are_inclusive() {
        let u = Usage { bytes: 900, messages: 3 };
        assert!(!would_exceed(u, LIMIT, 100));
        assert!(would_exceed(u, LIMIT, 101));
        assert!(!would_exceed(u, QuotaLimit::default(), u64::MAX), "no limit");
        assert!(would_exceed(u, QuotaLimit { bytes: 0, messages: 3 }, 1));
        assert!(!is_full(u, LIMIT));
        assert!(is_full(Usage { bytes: 1000, messages: 0 }, LIMIT));
        assert!(is_full(u, QuotaLimit { bytes: 0, messages: 3 }));
        assert!(!is_full(u, QuotaLimit::default()));
    }

    #[test]
    fn sizes_from_names() {
        assert_eq!(size_from_name("1.M2P3Q4.host,S=1234"), Some(1234));
        assert_eq!(size_from_name("1.M2P3.host,S=1234,W=1250:2,S"), Some(1234));
        assert_eq!(size_from_name("1.M2P3.host:2,S"), None);
    }
}
