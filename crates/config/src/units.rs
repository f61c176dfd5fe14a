//! Sizes ("35M") and durations ("5m") as written in the configuration, both ways.

use std::time::Duration;

/// What a size may look like, for error messages.
pub(crate) const SIZE_HINT: &str = "expected a size: an integer number of bytes, or a string \
     like \"35M\" (suffixes K, M, G, also KiB, MiB, GiB: binary multiples, 1K = 1024 bytes)";

/// What a duration may look like, for error messages.
pub(crate) const DURATION_HINT: &str =
    "expected a duration: a string like \"30s\", \"5m\", \"1h\", \"5d\", or an integer number of seconds";

const KIB: u64 = 1024;
const UNITS: [(&str, u64); 3] = [("G", KIB * KIB * KIB), ("M", KIB * KIB), ("K", KIB)];

/// Parses a size string: digits, optional spaces, an optional binary suffix. Decimal suffixes
/// ("MB") are refused rather than guessed.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let multiplier = match suffix.trim_start().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => KIB,
        "M" | "MIB" => KIB * KIB,
        "G" | "GIB" => KIB * KIB * KIB,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Writes a size in the largest binary unit that divides it ("35M"), or plain bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    for (suffix, unit) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses a humantime duration ("90s", "5m", "1h 30m", "5d").
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// Writes a duration in the largest unit that divides it ("5d", "90m", "1500ms"), in a form
/// [`parse_duration`] reads back exactly.
pub(crate) fn format_duration(d: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    if d.subsec_nanos() == 0 {
        let secs = d.as_secs();
        for (suffix, unit) in UNITS {
            if secs != 0 && secs.is_multiple_of(unit) {
                return format!("{}{suffix}", secs / unit);
            }
        }
        return "0s".to_owned();
    }
    let nanos = d.as_nanos();
    if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("35M"), Some(35 * 1024 * 1024));
        assert_eq!(parse_size(" 35 MiB "), Some(35 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("123B"), Some(123));
        for bad in ["", "M", "35MB", "3.5M", "-1", "35 M x", "99999999999999999999G", "18446744073709551615K"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        for n in [1, 1000, 1024, 35 << 20, 3 << 30, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(n)), Some(n));
        }
        assert_eq!(format_size(35 << 20), "35M");
        assert_eq!(format_size(1536), "1536"); // 1.5K is not a whole number of K
        assert_eq!(format_size(1536 * 1024), "1536K");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(5 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(5 * 86_400)), "5d");
        for d in [
            Duration::from_secs(1),
            Duration::from_secs(61),
            Duration::from_secs(7200),
            Duration::from_millis(1500),
            Duration::from_micros(3),
            Duration::from_nanos(7),
            Duration::from_secs(0),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{d:?}");
        }
    }
}
