//! Local delivery into a Maildir (<https://cr.yp.to/proto/maildir.html>).
//! Layout and naming: docs/maildir.md.

use std::fmt::Write as _;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dakiya_spool::GroupSync;

use crate::DeliverError;
use crate::crlf::CrlfToLf;
use crate::maildirsize;
use crate::quota::{self, QuotaLimit};

/// Read (and write) in chunks of this size: memory stays bounded.
const CHUNK: usize = 64 * 1024;

/// One Maildir. `Send + Sync`: share one per mailbox (e.g. in an `Arc`) so
/// that concurrent deliveries into it share fsyncs of `new/`.
pub struct Maildir {
    path: PathBuf,
    tmp: PathBuf,
    new: PathBuf,
    /// Group commit of fsyncs of `new/`.
    new_sync: GroupSync<File>,
}

impl Maildir {
    /// Opens the Maildir at `path`, creating `path/{tmp,new,cur}` (and any
    /// missing parents) with mode 0700.
    pub fn open_or_create(path: &Path) -> Result<Maildir, DeliverError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            let dir = path.join(sub);
            builder.create(&dir).map_err(|e| DeliverError::io(format!("mkdir {}", dir.display()), e))?;
        }
        let new = path.join("new");
        let handle = File::open(&new).map_err(|e| DeliverError::io(format!("open {}", new.display()), e))?;
        Ok(Maildir { path: path.to_owned(), tmp: path.join("tmp"), new, new_sync: GroupSync::new(handle) })
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Delivers one message: `prefix` (CRLF-terminated header lines such as
    /// `Return-Path:`), then `body`, with CRLF line ends turned into LF.
    ///
    /// The message is written to `tmp/` under a unique name, fsynced,
    /// renamed into `new/` with `,S=<size>` appended, and `new/` is fsynced
    /// (group-committed); only then does this return the path in `new/`. Any
    /// failure, including a read error from `body`, is temporary and leaves
    /// nothing behind in `tmp/` or `new/`.
    pub fn deliver(&self, prefix: &[u8], body: &mut dyn Read, hostname: &str) -> Result<PathBuf, DeliverError> {
        self.deliver_within(prefix, body, hostname, None)
    }

    /// [`deliver`](Self::deliver) under a Maildir++ quota: once the message's size is known
    /// (written to `tmp/`), the usage from `maildirsize` (recalculated if need be) plus the
    /// message must fit `limit`, else the copy is removed and the error is
    /// [`DeliverError::mailbox_full`]. After the delivery its line is appended to
    /// `maildirsize`.
    pub fn deliver_within(
        &self,
        prefix: &[u8],
        body: &mut dyn Read,
        hostname: &str,
        limit: Option<QuotaLimit>,
    ) -> Result<PathBuf, DeliverError> {
        let staged = self.stage_within(prefix, body, hostname, limit, &mut CopyBuffers::default())?;
        self.commit_staged(&[&staged]).map_err(|e| e.error)?;
        if limit.is_some() {
            self.record_size(staged.size);
        }
        Ok(staged.path)
    }

    /// The first half of a delivery, for callers that deliver several messages into this
    /// Maildir and make `new/` durable once for all of them ([`commit_staged`](Self::commit_staged)):
    /// the message is written to `tmp/`, fsynced, and renamed into `new/`. It is **not**
    /// delivered yet: until `new/` is fsynced the rename may be lost in a crash. Under a
    /// quota (`limit`) the check is made as in [`deliver_within`](Self::deliver_within), but
    /// `maildirsize` is not updated; callers that deliver under a quota should commit each
    /// message on its own so that the next check sees it. On error nothing is left behind.
    /// `bufs` are the copy's working buffers, kept by the caller for its next copy.
    pub fn stage_within(
        &self,
        prefix: &[u8],
        body: &mut dyn Read,
        hostname: &str,
        limit: Option<QuotaLimit>,
        bufs: &mut CopyBuffers,
    ) -> Result<Staged, DeliverError> {
        let file = self.create_tmp(hostname, bufs)?;
        let mut tmp = TmpFile { path: self.tmp.join(&bufs.name), armed: true };
        let (size, crlf_size) = copy_converted(&file, prefix, body, &tmp.path, bufs)?;
        if let Some(limit) = limit {
            let usage = maildirsize::usage(&self.path, limit)
                .map_err(|e| DeliverError::io(format!("quota of {}", self.path.display()), e))?;
            if quota::would_exceed(usage, limit, size) {
                return Err(DeliverError::mailbox_full(format!(
                    "mailbox full: {} bytes in {} messages, limit {} bytes, message {size} bytes",
                    usage.bytes, usage.messages, limit.bytes
                )));
            }
        }
        // The file's data before its name: a crash after the rename must not leave an empty
        // or partial message in `new/`.
        file.sync_all().map_err(|e| DeliverError::io(format!("fsync {}", tmp.path.display()), e))?;
        drop(file);
        // `W=` is the size with CRLF line ends, as Dovecot writes it: POP3 (RFC 1939 §5) and
        // IMAP report that size, and read it here instead of reading the file.
        let _ = write!(bufs.name, ",S={size},W={crlf_size}");
        let target = self.new.join(&bufs.name);
        fs::rename(&tmp.path, &target).map_err(|e| DeliverError::io(format!("rename to {}", target.display()), e))?;
        tmp.armed = false;
        Ok(Staged { path: target, size })
    }

    /// The second half: makes the `new/` entries of `staged` (all from this Maildir, all
    /// renamed before the call) durable with one fsync of `new/`, group-committed with
    /// concurrent callers. Only after `Ok` is a staged message delivered. On failure every
    /// staged file is taken back (removed): the delivery will be retried, and a copy not
    /// known durable must not become a duplicate.
    pub fn commit_staged(&self, staged: &[&Staged]) -> Result<(), CommitFailed> {
        if let Err(e) = self.new_sync.sync() {
            for s in staged {
                let _ = fs::remove_file(&s.path);
            }
            return Err(CommitFailed { error: DeliverError::io(format!("fsync {}", self.new.display()), e) });
        }
        Ok(())
    }

    /// `(requests, fsyncs)` of `new/` so far: how well its directory fsyncs were shared.
    pub fn dir_sync_stats(&self) -> (u64, u64) {
        self.new_sync.stats()
    }

    /// Appends a delivered message of `size` bytes to `maildirsize` (quota accounting).
    /// Delivered whatever happens here: a lost line is corrected by a recalculation.
    pub fn record_size(&self, size: u64) {
        if let Err(e) = maildirsize::record(&self.path, size) {
            tracing::warn!(maildir = %self.path.display(), error = %e, "maildirsize not updated");
        }
    }

    /// Creates a new file in `tmp/` under a fresh unique name, left in `bufs.name`.
    fn create_tmp(&self, hostname: &str, bufs: &mut CopyBuffers) -> Result<File, DeliverError> {
        let mut attempts = 0;
        loop {
            bufs.unique_name(hostname);
            let path = self.tmp.join(&bufs.name);
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok(file),
                // Another process with our pid (e.g. in a container) or a
                // stale file: try the next counter value.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 10 => attempts += 1,
                Err(e) => {
                    return Err(DeliverError::io(format!("create {}", path.display()), e));
                }
            }
        }
    }
}

/// A message renamed into `new/` whose directory entry is not yet known durable
/// ([`Maildir::stage_within`]); delivered once [`Maildir::commit_staged`] returns `Ok`.
#[derive(Debug)]
#[must_use = "a staged message is not delivered until its Maildir's new/ is committed"]
pub struct Staged {
    /// Its path in `new/`.
    pub path: PathBuf,
    /// Its size in bytes, as written (LF line ends).
    pub size: u64,
}

/// The fsync of `new/` failed: the staged messages were removed and are not delivered.
#[derive(Debug)]
pub struct CommitFailed {
    /// Why (a temporary failure).
    pub error: DeliverError,
}

/// Removes the temporary file on failure.
struct TmpFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The working buffers of Maildir copies, reused from one copy to the next
/// ([`Maildir::stage_within`]): the 64 KiB input and output chunks, the file name, and the
/// host name as escaped for it. A thread delivering many messages keeps one.
#[derive(Debug, Default)]
pub struct CopyBuffers {
    input: Vec<u8>,
    out: Vec<u8>,
    name: String,
    /// `(hostname, escaped)`: the last host name and its escaped form.
    host: (String, String),
}

impl CopyBuffers {
    /// Puts a fresh `<secs>.M<micros>P<pid>Q<counter>.<host>` in `self.name`: unique per
    /// delivery within a process (the counter), across processes (the pid) and across
    /// reboots (the time).
    fn unique_name(&mut self, hostname: &str) {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        if self.host.0 != hostname || self.host.1.is_empty() {
            self.host = (hostname.to_string(), escape_host(hostname));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.name.clear();
        let (secs, micros, pid) = (now.as_secs(), now.subsec_micros(), pid());
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let _ = write!(self.name, "{secs}.M{micros}P{pid}Q{counter}.{}", self.host.1);
    }
}

/// Writes `prefix` and `body`, converted to LF, to `file`; returns the size and the size
/// with CRLF line ends.
fn copy_converted(
    mut file: &File,
    prefix: &[u8],
    body: &mut dyn Read,
    path: &Path,
    bufs: &mut CopyBuffers,
) -> Result<(u64, u64), DeliverError> {
    let write_err = |e| DeliverError::io(format!("write {}", path.display()), e);
    let mut conv = CrlfToLf::default();
    let (input, out) = (&mut bufs.input, &mut bufs.out);
    input.resize(CHUNK, 0);
    out.clear();
    out.reserve(CHUNK + prefix.len());
    let mut size = 0u64;
    let mut bare_lf = BareLf::default();
    conv.convert(prefix, out);
    loop {
        let n = match body.read(input) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(DeliverError::io("read message body", e)),
        };
        conv.convert(&input[..n], out);
        if out.len() >= CHUNK {
            file.write_all(out).map_err(write_err)?;
            size += out.len() as u64;
            bare_lf.add(out);
            out.clear();
        }
    }
    conv.finish(out);
    file.write_all(out).map_err(write_err)?;
    size += out.len() as u64;
    bare_lf.add(out);
    Ok((size, size + bare_lf.count))
}

/// Counts the LFs not preceded by a CR (each is one octet more with CRLF line ends), across
/// chunks.
#[derive(Debug, Default)]
struct BareLf {
    count: u64,
    after_cr: bool,
}

impl BareLf {
    fn add(&mut self, chunk: &[u8]) {
        let Some(&first) = chunk.first() else { return };
        let lf = chunk.iter().filter(|&&b| b == b'\n').count();
        let crlf = chunk[1..].iter().zip(chunk).filter(|&(&b, &prev)| b == b'\n' && prev == b'\r').count()
            + usize::from(self.after_cr && first == b'\n');
        self.count += (lf - crlf) as u64;
        self.after_cr = chunk.last() == Some(&b'\r');
    }
}

/// This process's id, asked of the kernel once rather than per message (it does not change:
/// dakiya never forks after starting deliveries).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The maildir spec turns `/` into `\057` and `:` into `\072`; we also turn
/// `,` into `\054` because Dovecot reads `,S=` fields from the first comma.
fn escape_host(hostname: &str) -> String {
    let host = if hostname.is_empty() { "localhost" } else { hostname };
    let mut escaped = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' => escaped.push_str("\\057"),
            ':' => escaped.push_str("\\072"),
            ',' => escaped.push_str("\\054"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_count_in_any_chunking() {
        // Three bare LFs; the CRLF (a lone CR kept before an LF) stays two octets.
        let data = b"a\nb\r\nc\n\nd\r";
        for step in 1..=data.len() {
            let mut n = BareLf::default();
            data.chunks(step).for_each(|c| n.add(c));
            assert_eq!(n.count, 3, "step {step}");
        }
    }

    #[test]
    fn host_escaping() {
        assert_eq!(escape_host("mx.example.org"), "mx.example.org");
        assert_eq!(escape_host("a/b:c,d"), "a\\057b\\072c\\054d");
        assert_eq!(escape_host(""), "localhost");
    }

    fn unique_name(hostname: &str) -> String {
        let mut bufs = CopyBuffers::default();
        bufs.unique_name(hostname);
        bufs.name
    }

    #[test]
    fn names_have_the_maildir_shape() {
        let name = unique_name("h:1");
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        assert!(parts[0].bytes().all(|b| b.is_ascii_digit()), "{name}");
        let middle = parts[1];
        assert!(middle.starts_with('M') && middle.contains('P') && middle.contains('Q'), "{name}");
        assert_eq!(parts[2], "h\\0721");
        assert_ne!(unique_name("h"), unique_name("h"));
    }
}
