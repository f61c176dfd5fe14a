//! The users file: format, reading, and atomic replacement under a lock.
//!
//! ```text
//! # comment
//! alice@example.org:$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH
//! ```
//! Comment and blank lines are kept across rewrites: the lines above a user line (back to
//! the previous user line) travel with that user when the users are sorted; above the first
//! user, only those below the last blank line do, the rest is the file's header; lines after
//! the last user stay at the bottom.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::AuthError;
use crate::error::io_err;
use crate::hash::check_phc;
use crate::name::normalize_user;

/// Written at the top of a users file that this crate creates.
const HEADER: &str = "# dakiya users: one `address:argon2id-PHC-hash` line per user.\n\
                      # Managed with `dakiya user add|passwd|del|list`; see docs/auth.md.\n";

/// One user's line and the comment lines just above it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) comments: Vec<String>,
    pub(crate) hash: String,
}

/// The parsed users file.
#[derive(Debug, Clone, Default)]
pub(crate) struct UsersFile {
    header: Vec<String>,
    pub(crate) users: BTreeMap<String, Entry>,
    footer: Vec<String>,
}

/// Identifies one version of the file: an atomic replace changes the inode, an edit in
/// place changes the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp { dev: meta.dev(), ino: meta.ino(), size: meta.len(), mtime: meta.modified().ok() }
    }

    /// The stamp of the file now at `path`; `None` if there is none.
    pub(crate) fn current(path: &Path) -> Result<Option<Stamp>, AuthError> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(Stamp::of(&meta))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }
}

impl UsersFile {
    /// The contents of a users file that does not exist yet: just the header comment.
    fn new_file() -> UsersFile {
        UsersFile { header: HEADER.lines().map(str::to_owned).collect(), ..UsersFile::default() }
    }

    /// Parses the file's text; errors name `path` and the 1-based line.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<UsersFile, AuthError> {
        let mut file = UsersFile::default();
        let mut pending = Vec::new();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let lines = if bytes.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
        for (i, raw) in lines.into_iter().enumerate() {
            let line = i + 1;
            let bad = |reason: &str| AuthError::Malformed { path: path.to_owned(), line, reason: reason.to_string() };
            let text = std::str::from_utf8(raw).map_err(|_| bad("not valid UTF-8"))?;
            if text.trim().is_empty() || text.starts_with('#') {
                pending.push(text.to_string());
                continue;
            }
            if text.contains('\r') {
                return Err(bad("carriage return (the file must use LF line ends)"));
            }
            let (name, hash) = text.split_once(':').ok_or_else(|| bad("expected `address:hash` or a `#` comment"))?;
            let name = normalize_user(name).map_err(|e| bad(&e.to_string()))?;
            check_phc(hash).map_err(|why| bad(&why))?;
            if file.users.is_empty() {
                // Up to the last blank line: the file's header; below it: about this user.
                let split = pending.iter().rposition(|l| l.trim().is_empty());
                file.header = pending.drain(..split.map_or(0, |i| i + 1)).collect();
            }
            let entry = Entry { comments: std::mem::take(&mut pending), hash: hash.to_string() };
            if file.users.insert(name.clone(), entry).is_some() {
                return Err(bad(&format!("user {name} appears twice")));
            }
        }
        if file.users.is_empty() {
            file.header = pending;
        } else {
            file.footer = pending;
        }
        Ok(file)
    }

    /// The file's text: header, users sorted by address, footer.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(line);
            out.push('\n');
        }
        // Keep the header a header: without a blank line after it, its last comments would
        // be read back as belonging to the first user.
        let header_open = self.header.last().is_some_and(|l| !l.trim().is_empty());
        if header_open && !self.users.is_empty() {
            out.push('\n');
        }
        for (name, entry) in &self.users {
            for line in &entry.comments {
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(name);
            out.push(':');
            out.push_str(&entry.hash);
            out.push('\n');
        }
        for line in &self.footer {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Reads and parses the file at `path`; a missing file is an empty one. Returns the stamp
/// of the very file that was read (from the open handle, so a concurrent replace cannot
/// pair new contents with an old stamp).
pub(crate) fn read(path: &Path) -> Result<(UsersFile, Option<Stamp>), AuthError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((UsersFile::new_file(), None)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let meta = file.metadata().map_err(io_err(path))?;
    warn_if_readable_by_others(path, &meta);
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok((UsersFile::parse(path, &bytes)?, Some(Stamp::of(&meta))))
}

/// Hashes are not passwords, but a readable hash invites offline guessing.
fn warn_if_readable_by_others(path: &Path, meta: &fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    // Group read is allowed: Dovecot's auth process reads the file as its group
    // (docs/dovecot.md).
    if mode & 0o037 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "users file is writable by group or accessible to others; it should be mode 0600 or 0640"
        );
    }
}

/// `path` with `suffix` appended to its file name: `users` → `users.lock`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The directory that holds `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Runs `change` on the current contents of the users file and, if it succeeds, replaces
/// the file atomically with the result. Returns the new contents and their stamp.
///
/// Writers serialize on an exclusive lock of the sibling file `PATH.lock` (kept, never
/// deleted: removing a lock file lets two writers hold locks on different inodes). Under
/// the lock the file is re-read, so a change made by another process is never lost. The
/// new text goes to `PATH.tmp` (mode 0600, or 0640 keeping the group if the old file had
/// group read), is fsynced, renamed over `PATH`, and the
/// directory is fsynced so that the rename itself survives a crash.
pub(crate) fn update(
    path: &Path,
    change: impl FnOnce(&mut UsersFile) -> Result<(), AuthError>,
) -> Result<(UsersFile, Stamp), AuthError> {
    let lock_path = sibling(path, ".lock");
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;

    let (mut users, _) = read(path)?;
    change(&mut users)?;
    let tmp = sibling(path, ".tmp");
    let previous = fs::metadata(path).ok();
    let stamp = match write_tmp(&tmp, users.render().as_bytes(), previous.as_ref()) {
        Ok(stamp) => stamp,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    let dir = parent_dir(path);
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    // The lock is released when `lock` is dropped, after the directory fsync.
    drop(lock);
    Ok((users, stamp))
}

/// The group of the `previous` file if that group may read it (mode 0640, e.g. group
/// `dovecot` so that Dovecot's passwd-file passdb reads dakiya's users): a rewrite keeps it.
fn group_reader(previous: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    (previous.permissions().mode() & 0o040 != 0).then(|| previous.gid())
}

/// A modification time for the new file that differs from the `previous` one in whole
/// seconds: Dovecot's passwd-file notices a change by mtime in seconds and size, and a
/// password change keeps the size (argon2id hashes all have one length), so a rewrite within
/// the second of the previous one would go unseen. One second ahead at most.
fn distinct_mtime(previous: &fs::Metadata, now: SystemTime) -> Option<SystemTime> {
    let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let old = previous.modified().ok()?;
    (secs(old) >= secs(now)).then(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs(old) + 1))
}

/// Writes `bytes` to a fresh `tmp` with mode 0600 (0640 and the group of the `previous` file
/// if it had group read) and fsyncs it; returns its stamp (which the rename keeps: same
/// inode, size and mtime).
fn write_tmp(tmp: &Path, bytes: &[u8], previous: Option<&fs::Metadata>) -> Result<Stamp, AuthError> {
    // A temporary file left by a crash may have other permissions; start from nothing.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_err(tmp)(e)),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp).map_err(io_err(tmp))?;
    if let Some(gid) = previous.and_then(group_reader) {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::fchown(&file, None, Some(gid)).map_err(io_err(tmp))?;
        file.set_permissions(fs::Permissions::from_mode(0o640)).map_err(io_err(tmp))?;
    }
    file.write_all(bytes).map_err(io_err(tmp))?;
    if let Some(mtime) = previous.and_then(|p| distinct_mtime(p, SystemTime::now())) {
        file.set_modified(mtime).map_err(io_err(tmp))?;
    }
    let written: io::Result<fs::Metadata> = file.sync_all().and_then(|()| file.metadata());
    written.map(|m| Stamp::of(&m)).map_err(io_err(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                     K3Mbjf0ltHqQy8LhzBfuAeCGYTSdmGP2tDjLT+vcgNQ";

    fn parse(text: &str) -> Result<UsersFile, AuthError> {
        UsersFile::parse(Path::new("users"), text.as_bytes())
    }

    #[test]
    fn new_files_get_a_header() {
        assert!(parse("").unwrap().users.is_empty());
        assert_eq!(parse("").unwrap().render(), "");
        let mut file = UsersFile::new_file();
        assert_eq!(file.render(), HEADER);
        file.users.insert("a@b.test".into(), Entry { comments: vec![], hash: H.into() });
        let text = file.render();
        assert_eq!(text, format!("{HEADER}\na@b.test:{H}\n"));
        assert_eq!(parse(&text).unwrap().render(), text);
    }

    #[test]
    fn comments_survive_and_users_are_sorted() {
        let text = format!("# top\n\n# about bob\nBob@Example.org:{H}\n# about alice\nalice@example.org:{H}\n# end\n");
        let file = parse(&text).unwrap();
        assert_eq!(
            file.render(),
            format!("# top\n\n# about alice\nalice@example.org:{H}\n# about bob\nbob@example.org:{H}\n# end\n")
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            (format!("# c\nalice@example.org:{H}\nnonsense\n"), 3, "expected"),
            (format!("alice@example.org:{H}\nalice@EXAMPLE.org:{H}\n"), 2, "twice"),
            ("\n\nalice@example.org:secret\n".to_string(), 3, "PHC"),
            (format!("alice:{H}\n"), 1, "invalid user name"),
            (format!("alice@example.org:{H}\r\n"), 1, "carriage return"),
        ];
        for (text, line, reason) in cases {
            match parse(&text) {
                Err(AuthError::Malformed { line: l, reason: r, .. }) => {
                    assert_eq!(l, line, "{text:?}: {r}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                    assert!(!r.contains("secret"), "reason echoes the line: {r}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let err = UsersFile::parse(Path::new("/etc/u"), b"a@b.test:x\n\xff\n").unwrap_err();
        assert!(err.to_string().starts_with("/etc/u: line 1: "), "{err}");
        let err = UsersFile::parse(Path::new("/etc/u"), b"# ok\n\xff\n").unwrap_err();
        assert_eq!(err.to_string(), "/etc/u: line 2: not valid UTF-8");
    }

    #[test]
    fn sibling_names() {
        assert_eq!(sibling(Path::new("/a/users"), ".tmp"), Path::new("/a/users.tmp"));
        assert_eq!(parent_dir(Path::new("users")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/users")), Path::new("/a"));
    }
}
