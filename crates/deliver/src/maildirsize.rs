//! The `maildirsize` file of a Maildir on disk: read (recalculating it when the rules of
//! [`quota`](crate::quota) say so), and one line appended per delivery.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::quota::{self, MaildirSize, QuotaLimit, Usage};

/// The file's name inside the Maildir.
pub const FILE: &str = "maildirsize";

/// The file's parsed contents as they are, without recalculating: `None` if it is missing or
/// malformed. For RCPT, which only refuses what is known to be full.
pub fn peek(maildir: &Path) -> Option<MaildirSize> {
    let text = fs::read_to_string(maildir.join(FILE)).ok()?;
    quota::parse(&text)
}

/// The mailbox's usage under `limit`, from `maildirsize`, first recalculated from the
/// Maildir's files if it is missing, malformed, too large or has other limits.
pub fn usage(maildir: &Path, limit: QuotaLimit) -> std::io::Result<Usage> {
    let path = maildir.join(FILE);
    let (len, parsed) = match fs::read_to_string(&path) {
        Ok(text) => (text.len() as u64, quota::parse(&text)),
        Err(e) if e.kind() == ErrorKind::NotFound => (0, None),
        Err(e) => return Err(e),
    };
    match parsed {
        Some(p) if !quota::needs_recalc(len, Some(&p), limit) => Ok(p.usage),
        _ => recalculate(maildir, limit),
    }
}

/// Counts the messages of the Maildir and its Maildir++ folders (`.NAME/`) and replaces
/// `maildirsize` (temporary file and rename, so readers never see half a file).
pub fn recalculate(maildir: &Path, limit: QuotaLimit) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    count_folder(maildir, &mut usage)?;
    for entry in fs::read_dir(maildir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name != "." && name != ".." && entry.file_type()?.is_dir() {
            count_folder(&entry.path(), &mut usage)?;
        }
    }
    // Unique per recalculation: concurrent deliveries into one Maildir may recalculate at once.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = maildir.join(format!("tmp/{FILE}.{}.{n}", std::process::id()));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let written = file.write_all(quota::fresh(limit, usage).as_bytes()).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, maildir.join(FILE))) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(usage)
}

fn count_folder(folder: &Path, usage: &mut Usage) -> std::io::Result<()> {
    for sub in ["new", "cur"] {
        let dir = match fs::read_dir(folder.join(sub)) {
            Ok(dir) => dir,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let size = match quota::size_from_name(&name) {
                Some(size) => size,
                // Removed since the listing (an IMAP expunge): not counted.
                None => match entry.metadata() {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            usage.bytes = usage.bytes.saturating_add(i64::try_from(size).unwrap_or(i64::MAX));
            usage.messages += 1;
        }
    }
    Ok(())
}

/// Appends the line for one delivered message of `size` bytes. A single `write` with
/// `O_APPEND`, so concurrent writers (dakiya's deliveries, Dovecot) never interleave within
/// a line. A missing file is left missing: the next check recalculates it.
pub fn record(maildir: &Path, size: u64) -> std::io::Result<()> {
    let path = maildir.join(FILE);
    let mut file = match OpenOptions::new().append(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    file.write_all(quota::line(i64::try_from(size).unwrap_or(i64::MAX), 1).as_bytes())?;
    // Not fsynced: a lost line only makes the usage low until the next recalculation.
    drop::<File>(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: QuotaLimit = QuotaLimit { bytes: 100, messages: 0 };

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur", ".Sent/cur"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        dir
    }

    #[test]
    fn recalculates_counts_folders_then_appends() {
        let dir = maildir();
        let md = dir.path();
        fs::write(md.join("new/1.M1P1.h,S=10"), b"0123456789").unwrap();
        fs::write(md.join("cur/2.M1P1.h:2,S"), b"abc").unwrap(); // no S=: the file's size
        fs::write(md.join(".Sent/cur/3.M1P1.h,S=7:2,S"), b"1234567").unwrap();
        assert_eq!(peek(md), None);
        assert_eq!(usage(md, LIMIT).unwrap(), Usage { bytes: 20, messages: 3 });
        assert_eq!(fs::read_to_string(md.join(FILE)).unwrap(), "100S,0C\n20 3\n");
        record(md, 5).unwrap();
        assert_eq!(fs::read_to_string(md.join(FILE)).unwrap(), "100S,0C\n20 3\n5 1\n");
        assert_eq!(usage(md, LIMIT).unwrap(), Usage { bytes: 25, messages: 4 });
        assert_eq!(peek(md).unwrap().usage, Usage { bytes: 25, messages: 4 });
        // Other limits: recalculated (the appended line was not a real file: 20 again).
        let other = QuotaLimit { bytes: 200, messages: 0 };
        assert_eq!(usage(md, other).unwrap(), Usage { bytes: 20, messages: 3 });
        assert_eq!(fs::read_to_string(md.join(FILE)).unwrap(), "200S,0C\n20 3\n");
    }

    #[test]
    fn a_large_file_is_recalculated() {
        let dir = maildir();
        let md = dir.path();
        let many = "100S,0C\n".to_owned() + &"1 1\n".repeat(2000);
        fs::write(md.join(FILE), many).unwrap();
        assert_eq!(usage(md, LIMIT).unwrap(), Usage::default());
        assert_eq!(fs::read_to_string(md.join(FILE)).unwrap(), "100S,0C\n0 0\n");
    }

    #[test]
    fn record_without_a_file_leaves_none() {
        let dir = maildir();
        record(dir.path(), 5).unwrap();
        assert!(!dir.path().join(FILE).exists());
    }
}
