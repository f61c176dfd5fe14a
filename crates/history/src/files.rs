//! The history's files: one per UTC day, `YYYY-MM-DD.jsonl`, and which of them have expired.
//! Pure: the time is passed in.

/// Seconds in a day.
const DAY: u64 = 86_400;
/// The extension of history files.
const EXT: &str = ".jsonl";

/// The day (days since the Unix epoch, UTC) of unix time `t`.
pub fn day_of(t: u64) -> u64 {
    t / DAY
}

/// The file holding the events of `day`: `YYYY-MM-DD.jsonl`.
pub fn file_name(day: u64) -> String {
    let date = chrono::DateTime::from_timestamp((day * DAY) as i64, 0).unwrap_or_default().date_naive();
    format!("{}{EXT}", date.format("%Y-%m-%d"))
}

/// The day of a history file named `name`; `None` for any other file.
pub fn day_of_name(name: &str) -> Option<u64> {
    let date = name.strip_suffix(EXT)?;
    if date.len() != 10 {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let secs = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    let day = u64::try_from(secs).ok().map(day_of)?;
    // Only the names this crate writes: chrono also reads `+2026-12-7`.
    (file_name(day) == name).then_some(day)
}

/// Of the files `names`, the history files to remove at time `now` when `days` days are kept
/// (today's file and the `days - 1` before it). Other files are never touched.
pub fn expired<'a>(names: impl IntoIterator<Item = &'a str>, now: u64, days: u32) -> Vec<&'a str> {
    let first_kept = day_of(now).saturating_sub(u64::from(days.max(1)) - 1);
    names.into_iter().filter(|n| day_of_name(n).is_some_and(|d| d < first_kept)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_days() {
        // 2026-12-07 01:32:30 UTC
        let t = 1_796_607_150;
        assert_eq!(file_name(day_of(t)), "2026-12-07.jsonl");
        assert_eq!(day_of_name("2026-12-07.jsonl"), Some(day_of(t)));
        assert_eq!(file_name(0), "1970-01-01.jsonl");
        for bad in ["2026-12-07.json", "2026-13-07.jsonl", "x.jsonl", "2026-12-07.jsonl.tmp", "+2026-12-7.jsonl"] {
            assert_eq!(day_of_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn files_older_than_the_kept_days_expire() {
        let names = ["2026-11-29.jsonl", "2026-11-30.jsonl", "2026-12-01.jsonl", "2026-12-07.jsonl", "notes.txt"];
        let now = day_of_name("2026-12-07.jsonl").unwrap() * DAY + 3600;
        // Seven days: 12-01 .. 12-07.
        assert_eq!(expired(names, now, 7), ["2026-11-29.jsonl", "2026-11-30.jsonl"]);
        assert_eq!(expired(names, now, 1), ["2026-11-29.jsonl", "2026-11-30.jsonl", "2026-12-01.jsonl"]);
        assert!(expired(names, now, 30).is_empty());
        // A day later, 12-01 goes too.
        assert_eq!(expired(names, now + DAY, 7), ["2026-11-29.jsonl", "2026-11-30.jsonl", "2026-12-01.jsonl"]);
        // Zero is treated as one; a clock before every file removes nothing.
        assert_eq!(expired(names, now, 0).len(), 3);
        assert!(expired(names, 0, 7).is_empty());
    }
}
