//! Reading the history back: every file from a given time on, in order, damaged lines
//! skipped (a crash can leave half a line; a disk error can leave garbage).

use crate::event::Record;
use crate::files;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// What was read.
#[derive(Debug, Default)]
pub struct Read {
    /// The records, in file order (oldest day first).
    pub records: Vec<Record>,
    /// Lines that were not records and were skipped.
    pub skipped: usize,
}

/// Reads every history file in `dir` whose day is not before `since`'s (unix seconds; `0` for
/// all), keeping the records at or after `since`.
pub fn read_dir(dir: &Path, since: u64) -> std::io::Result<Read> {
    let mut days: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            let day = files::day_of_name(e.file_name().to_str()?)?;
            Some((day, e.path()))
        })
        .filter(|(day, _)| *day >= files::day_of(since))
        .collect();
    days.sort();
    let mut out = Read::default();
    for (_, path) in days {
        match std::fs::File::open(&path) {
            Ok(f) => read_lines(BufReader::new(f), since, &mut out)?,
            // Removed by expiry since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads the records of one file.
pub fn read_lines(mut r: impl BufRead, since: u64, out: &mut Read) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Record::from_line(&line) {
            Some(rec) if rec.t >= since => out.records.push(rec),
            Some(_) => {}
            None => out.skipped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Final};

    fn done(t: u64, id: &str) -> Vec<u8> {
        Record { t, id: id.into(), event: Event::Done { state: Final::Delivered } }.to_line()
    }

    #[test]
    fn garbage_and_truncated_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = done(86_400 * 3 + 5, "A");
        text.extend_from_slice(b"\x00\x01garbage \xff\n\n");
        let b = done(86_400 * 3 + 6, "B");
        text.extend_from_slice(&b[..b.len() - 9]);
        std::fs::write(tmp.path().join(files::file_name(3)), &text).unwrap();
        let mut later = done(86_400 * 4, "C");
        later.extend_from_slice(b"{\"t\":1,");
        std::fs::write(tmp.path().join(files::file_name(4)), &later).unwrap();
        std::fs::write(tmp.path().join(files::file_name(1)), done(86_400 + 1, "OLD")).unwrap();
        std::fs::write(tmp.path().join("README"), b"not history").unwrap();
        let all = read_dir(tmp.path(), 0).unwrap();
        let ids: Vec<&str> = all.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["OLD", "A", "C"]);
        assert_eq!(all.skipped, 3);
        let recent = read_dir(tmp.path(), 86_400 * 3 + 6).unwrap();
        let ids: Vec<&str> = recent.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["C"]);
    }
}
