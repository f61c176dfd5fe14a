//! Calendar days in UTC from Unix time, for the report's date range (RFC 8460 §4.4,
//! RFC 3339 date-time) and its day buckets.

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// The day number (days since 1970-01-01) of `secs`.
pub fn day_of(secs: u64) -> u64 {
    secs / DAY
}

/// `(year, month, day)` of a day number (the proleptic Gregorian calendar).
pub fn civil(day: u64) -> (i64, u32, u32) {
    // Days are counted from 0000-03-01 in 400-year eras of 146097 days, so the leap day
    // falls at the end of each year.
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2016-04-01` for a day number.
pub fn ymd(day: u64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2016-04-01T00:00:00Z`: the start of a day, as RFC 3339 wants it.
pub fn start_of(day: u64) -> String {
    format!("{}T00:00:00Z", ymd(day))
}

/// `2016-04-01T23:59:59Z`: the end of a day.
pub fn end_of(day: u64) -> String {
    format!("{}T23:59:59Z", ymd(day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(day_of(951_782_400)), "2000-02-29");
        assert_eq!(ymd(day_of(1_459_468_800)), "2016-04-01");
        assert_eq!(start_of(day_of(1_709_251_199)), "2024-02-29T00:00:00Z");
        assert_eq!(end_of(19_783), "2024-03-01T23:59:59Z");
    }
}
