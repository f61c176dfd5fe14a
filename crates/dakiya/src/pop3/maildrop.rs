//! A user's maildrop for POP3: the Maildir local delivery writes (docs/maildir.md), locked for
//! one session at a time, with the messages of `new/` moved to `cur/` at login the way
//! Dovecot does, sizes counted with CRLF line ends, and deletions applied at QUIT.
//! Everything here blocks on the file system: the driver calls it on the blocking pool.

use dakiya_pop3::{CrlfSize, Entry};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// The maildrops with a POP3 session, by Maildir path (RFC 1939 §8: one session per
/// maildrop; a second gets `-ERR [IN-USE]`). In-process: dakiya is the only POP3 server of
/// its Maildirs.
static LOCKED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Holds the lock on a maildrop; dropping it (however the session ends) releases it.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock on `path`, or `None` if another session holds it.
    pub fn take(path: &Path) -> Option<Lock> {
        let mut locked = LOCKED.lock().unwrap_or_else(PoisonError::into_inner);
        locked.get_or_insert_with(HashSet::new).insert(path.to_owned()).then(|| Lock { path: path.to_owned() })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let mut locked = LOCKED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = locked.as_mut() {
            set.remove(&self.path);
        }
    }
}

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another session holds the lock.
    InUse,
    /// A file system error.
    Io(io::Error),
}

/// An open maildrop: the lock, and the files of `cur/` as listed at login.
#[derive(Debug)]
pub struct Maildrop {
    cur: PathBuf,
    files: Vec<String>,
    _lock: Lock,
}

impl Maildrop {
    /// Locks the Maildir at `path`, moves `new/` into `cur/` and lists `cur/`. A Maildir
    /// that does not exist yet (nothing was ever delivered) is an empty maildrop.
    pub fn open(path: &Path) -> Result<(Maildrop, Vec<Entry>), OpenError> {
        let lock = Lock::take(path).ok_or(OpenError::InUse)?;
        let cur = path.join("cur");
        if !path.exists() {
            return Ok((Maildrop { cur, files: Vec::new(), _lock: lock }, Vec::new()));
        }
        move_new(&path.join("new"), &cur).map_err(OpenError::Io)?;
        let listed = list(&cur).map_err(OpenError::Io)?;
        let mut files = Vec::with_capacity(listed.len());
        let mut entries = Vec::with_capacity(listed.len());
        let mut buf = vec![0u8; 64 * 1024];
        for name in listed {
            match crlf_size(&cur.join(&name), &name, &mut buf) {
                Ok(size) => {
                    entries.push(Entry { size, uid: uid(&name) });
                    files.push(name);
                }
                // Removed meanwhile by another reader (Dovecot IMAP): not part of this session.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpenError::Io(e)),
            }
        }
        Ok((Maildrop { cur, files, _lock: lock }, entries))
    }

    /// The file of message `i` (0-based).
    pub fn file(&self, i: usize) -> Option<PathBuf> {
        self.files.get(i).map(|name| self.cur.join(name))
    }

    /// UPDATE (RFC 1939 §6): unlinks the messages at `indices`, then fsyncs `cur/` so the
    /// removals are durable before `+OK`. A message already gone counts as removed.
    pub fn remove(&self, indices: &[usize]) -> io::Result<()> {
        if indices.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        for path in indices.iter().filter_map(|&i| self.file(i)) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        File::open(&self.cur)?.sync_all()?;
        first_error.map_or(Ok(()), Err)
    }
}

/// Moves every message of `new/` into `cur/`, adding the `:2,` info (no flags) as Dovecot
/// and the Maildir spec expect of a message that has been seen by a client; an atomic rename.
fn move_new(new: &Path, cur: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(new) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut moved = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        let target = if name.contains(':') { name.to_string() } else { format!("{name}:2,") };
        match fs::rename(entry.path(), cur.join(target)) {
            Ok(()) => moved = true,
            // Moved by another reader (Dovecot) between listing and renaming.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if moved {
        // Not needed for correctness (a message found back in new/ is moved again), but a
        // maildrop that looks the same after a crash is less surprising.
        File::open(cur)?.sync_all()?;
    }
    Ok(())
}

/// The message files of `cur/`, oldest first (by modification time, which a rename keeps,
/// then by name); dotfiles and anything but regular files are skipped.
fn list(cur: &Path) -> io::Result<Vec<String>> {
    let mut files: Vec<(SystemTime, String)> = Vec::new();
    let entries = match fs::read_dir(cur) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let meta = entry.metadata()?;
        if name.starts_with('.') || !meta.is_file() {
            continue;
        }
        files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, n)| n).collect())
}

/// The size RFC 1939 §5 asks for: stored messages have LF line ends, sent ones CRLF. A
/// name with Dovecot's `,W=<size>` field (the size with CRLF line ends) is trusted as is;
/// otherwise the file is read, into `buf` (one buffer for the whole listing).
fn crlf_size(path: &Path, name: &str, buf: &mut [u8]) -> io::Result<u64> {
    if let Some(size) = name_field(name, 'W') {
        return Ok(size);
    }
    let mut file = File::open(path)?;
    let mut size = CrlfSize::default();
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(size.size()),
            Ok(n) => size.add(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The value of the `,<key>=<number>` field of a Maildir file name (before its `:2,` info),
/// as Dovecot writes `S=` and `W=`.
fn name_field(name: &str, key: char) -> Option<u64> {
    let base = name.split_once(':').map_or(name, |(b, _)| b);
    base.split(',').skip(1).find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// A message read for RETR or TOP: whole if it is at most `cap` bytes, else the open file
/// to stream from.
#[derive(Debug)]
pub enum Message {
    /// The whole content (in the buffer passed to [`read_message`]).
    Whole,
    /// Too big to hold: the caller streams it from this file.
    Large(File),
}

/// Opens `path` and, if its size is at most `cap`, reads all of it into `buf` (cleared
/// first) — one blocking call per RETR rather than one per chunk.
pub fn read_message(path: &Path, cap: u64, buf: &mut Vec<u8>) -> io::Result<Message> {
    buf.clear();
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > cap {
        return Ok(Message::Large(file));
    }
    // The size is a hint: a file that grew meanwhile is still read to its end.
    buf.reserve(usize::try_from(len).unwrap_or(0) + 1);
    file.read_to_end(buf)?;
    Ok(Message::Whole)
}

/// The unique-id of a message: its Maildir base name, the part before `:2,` — what Dovecot
/// shows with `pop3_uidl_format = %f` — so it is stable across sessions and restarts. RFC
/// 1939 §7 allows 1 to 70 characters 0x21–0x7E; any other name is replaced by a hash of it.
pub fn uid(name: &str) -> String {
    let base = name.split_once(":2,").map_or(name, |(b, _)| b);
    let valid = (1..=70).contains(&base.len()) && base.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid { base.to_string() } else { hashed(base) }
}

/// A stable 128-bit hash (two FNV-1a runs with different offsets), in hex: stable across
/// restarts and Rust releases, unlike the standard library's hasher.
fn hashed(base: &str) -> String {
    let fnv = |offset: u64| base.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("H{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert_eq!(uid("1733.M5P7Q1.mx.test,S=120:2,"), "1733.M5P7Q1.mx.test,S=120");
        assert_eq!(uid("1733.M5P7Q1.mx.test,S=120:2,S"), "1733.M5P7Q1.mx.test,S=120");
        assert_eq!(uid("plain"), "plain");
        let long = format!("1733.M5P7Q1.{}:2,", "h".repeat(80));
        let h = uid(&long);
        assert_eq!(h.len(), 33);
        assert_eq!(h, uid(&long), "stable");
        assert_ne!(uid("with space"), "with space");
        assert_ne!(uid("with space"), uid("with spacf"));
    }

    #[test]
    fn name_fields() {
        assert_eq!(name_field("1.M1P1Q1.h,S=120,W=124:2,S", 'W'), Some(124));
        assert_eq!(name_field("1.M1P1Q1.h,S=120,W=124:2,S", 'S'), Some(120));
        assert_eq!(name_field("1.M1P1Q1.h,S=120:2,W", 'W'), None, "flags are not fields");
        assert_eq!(name_field("1.M1P1Q1.h,W=x", 'W'), None);
        assert_eq!(name_field("W=5", 'W'), None, "the first part is no field");
    }

    #[test]
    fn sizes_from_w_field_or_content() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("box");
        fs::create_dir_all(md.join("cur")).unwrap();
        // W= is trusted without reading (Dovecot's CRLF size); here it disagrees on purpose.
        fs::write(md.join("cur/1.M1P1Q1.h,S=5,W=99:2,"), "a\nbb\n").unwrap();
        fs::write(md.join("cur/2.M1P1Q2.h,S=5:2,"), "a\r\nb\n.").unwrap();
        let (_drop, entries) = Maildrop::open(&md).unwrap();
        let mut sizes: Vec<u64> = entries.iter().map(|e| e.size).collect();
        sizes.sort();
        assert_eq!(sizes, vec![7, 99]);
    }

    #[test]
    fn read_message_whole_or_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        fs::write(&path, "0123456789").unwrap();
        let mut buf = b"stale".to_vec();
        assert!(matches!(read_message(&path, 10, &mut buf).unwrap(), Message::Whole));
        assert_eq!(buf, b"0123456789");
        assert!(matches!(read_message(&path, 9, &mut buf).unwrap(), Message::Large(_)));
        assert!(buf.is_empty());
        assert!(read_message(&dir.path().join("gone"), 9, &mut buf).is_err());
    }

    #[test]
    fn open_moves_new_to_cur_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("box");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(md.join(sub)).unwrap();
        }
        fs::write(md.join("new/1.M1P1Q1.h,S=6"), "a\nbb\n").unwrap();
        fs::write(md.join("new/.hidden"), "x").unwrap();
        fs::write(md.join("tmp/2.M1P1Q2.h"), "partial").unwrap();
        let (drop, entries) = Maildrop::open(&md).unwrap();
        assert_eq!(entries, vec![Entry { size: 7, uid: "1.M1P1Q1.h,S=6".into() }]);
        assert!(md.join("cur/1.M1P1Q1.h,S=6:2,").exists());
        assert!(matches!(Maildrop::open(&md), Err(OpenError::InUse)));
        drop.remove(&[0]).unwrap();
        assert!(!md.join("cur/1.M1P1Q1.h,S=6:2,").exists());
        std::mem::drop(drop);
        let (_again, entries) = Maildrop::open(&md).unwrap();
        assert!(entries.is_empty());
    }
}
