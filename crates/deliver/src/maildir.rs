//! Local delivery into a Maildir (<https://cr.yp.to/proto/maildir.html>).
//! Layout and naming: docs/maildir.md.

use std::fmt::Write as _;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dakiya_spool::GroupSync;

use crate::DeliverError;
use crate::anon::{self, LinkError};
use crate::crlf::CrlfToLf;
use crate::maildirsize;
use crate::quota::{self, QuotaLimit};
use crate::writeback;

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
    options: StagingOptions,
    /// [`Staging`] as decided by the first copy: `STAGING_*`.
    staging: AtomicU8,
    /// Copies' files fsynced so far ([`Maildir::file_sync_count`]).
    file_syncs: AtomicU64,
}

const STAGING_UNDECIDED: u8 = 0;
const STAGING_ANONYMOUS: u8 = 1;
const STAGING_RENAME: u8 = 2;

/// How a copy is written before it appears, complete, in `new/` (docs/maildir.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// An anonymous file (`O_TMPFILE`) on `new/`'s file system, linked into `new/` when
    /// complete: nothing to clean up after a failure or a crash.
    Anonymous,
    /// A named file in `tmp/`, renamed into `new/` when complete (the maildir spec's way):
    /// for file systems without `O_TMPFILE`, and processes without `/proc`.
    Rename,
}

/// How [`Maildir::open_or_create_with`] stages copies.
#[derive(Debug, Clone)]
pub struct StagingOptions {
    /// Try [`Staging::Anonymous`] first (the default); `false`: always [`Staging::Rename`].
    pub anonymous: bool,
    /// Where this process's descriptors appear as symbolic links, to link anonymous files
    /// through: `/proc/self/fd`.
    pub fd_dir: PathBuf,
}

impl Default for StagingOptions {
    fn default() -> StagingOptions {
        StagingOptions { anonymous: true, fd_dir: PathBuf::from("/proc/self/fd") }
    }
}

impl Maildir {
    /// Opens the Maildir at `path`, creating `path/{tmp,new,cur}` (and any
    /// missing parents) with mode 0700.
    ///
    /// Copies are written as anonymous files linked into `new/` where the file system and
    /// the process allow it, else in `tmp/` and renamed; the first copy decides, for all the
    /// copies of this value ([`staging`](Self::staging)).
    pub fn open_or_create(path: &Path) -> Result<Maildir, DeliverError> {
        Maildir::open_or_create_with(path, StagingOptions::default())
    }

    /// [`open_or_create`](Self::open_or_create) with the staging chosen by `options`.
    pub fn open_or_create_with(path: &Path, options: StagingOptions) -> Result<Maildir, DeliverError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            let dir = path.join(sub);
            builder.create(&dir).map_err(|e| DeliverError::io(format!("mkdir {}", dir.display()), e))?;
        }
        let new = path.join("new");
        let handle = File::open(&new).map_err(|e| DeliverError::io(format!("open {}", new.display()), e))?;
        let staging = AtomicU8::new(if options.anonymous { STAGING_UNDECIDED } else { STAGING_RENAME });
        Ok(Maildir {
            path: path.to_owned(),
            tmp: path.join("tmp"),
            new,
            new_sync: GroupSync::new(handle),
            options,
            staging,
            file_syncs: AtomicU64::new(0),
        })
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Delivers one message: `prefix` (CRLF-terminated header lines such as
    /// `Return-Path:`), then `body`, with CRLF line ends turned into LF.
    ///
    /// The message is written to an anonymous file (or to `tmp/` under a unique name),
    /// fsynced, linked (renamed) into `new/` under a unique name with `,S=<size>,W=<size>`,
    /// and `new/` is fsynced (group-committed); only then does this return the path in
    /// `new/`. Any failure, including a read error from `body`, is temporary and leaves
    /// nothing behind in `tmp/` or `new/`.
    pub fn deliver(&self, prefix: &[u8], body: &mut dyn Read, hostname: &str) -> Result<PathBuf, DeliverError> {
        self.deliver_within(prefix, body, hostname, None)
    }

    /// [`deliver`](Self::deliver) under a Maildir++ quota: once the message's size is known
    /// (written, not yet in `new/`), the usage from `maildirsize` (recalculated if need be) plus the
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
    /// the message is written to an anonymous file (or to `tmp/`; see [`Staging`]),
    /// fsynced, and linked (renamed) into `new/`. It is **not** delivered yet: until `new/`
    /// is fsynced the new name may be lost in a crash. Under a
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
        let copy = self.write(prefix, body, hostname, limit, bufs)?;
        self.link(copy, hostname, bufs)
    }

    /// The first of three phases of [`stage_within`](Self::stage_within), for callers that
    /// write several copies at once (a delivery round): the message is written (as there,
    /// the quota checked) and its writeback started, but it is neither fsynced nor in `new/`.
    /// Writing every copy of a round before fsyncing any lets one journal commit make all of
    /// them durable (writeback.rs). Then [`fsync`](Self::fsync) each copy, then
    /// [`link`](Self::link) each into `new/`, then [`commit_staged`](Self::commit_staged).
    /// Dropping the [`Pending`] copy (after a failure) leaves nothing behind.
    pub fn write_within(
        &self,
        prefix: &[u8],
        body: &mut dyn Read,
        hostname: &str,
        limit: Option<QuotaLimit>,
        bufs: &mut CopyBuffers,
    ) -> Result<Pending, DeliverError> {
        let copy = self.write(prefix, body, hostname, limit, bufs)?;
        writeback::start(&copy.file, copy.size);
        Ok(copy)
    }

    /// Writes a copy: an anonymous file (or one in `tmp/`; see [`Staging`]), not fsynced.
    fn write(
        &self,
        prefix: &[u8],
        body: &mut dyn Read,
        hostname: &str,
        limit: Option<QuotaLimit>,
        bufs: &mut CopyBuffers,
    ) -> Result<Pending, DeliverError> {
        if self.staging() != Some(Staging::Rename) {
            match anon::open_in(&self.new) {
                Ok(Some(file)) => {
                    let (size, crlf_size) = copy_converted(&file, prefix, body, &self.new, bufs)?;
                    self.check_quota(limit, size)?;
                    return Ok(Pending { file, tmp: None, size, crlf_size, synced: false });
                }
                Ok(None) => {
                    tracing::debug!(maildir = %self.path.display(), "no O_TMPFILE here: copies go through tmp/");
                    self.decide(Staging::Rename);
                }
                Err(e) => return Err(DeliverError::io(format!("create a file in {}", self.new.display()), e)),
            }
        }
        let file = self.create_tmp(hostname, bufs)?;
        let tmp = TmpFile { path: self.tmp.join(&bufs.name), armed: true };
        let (size, crlf_size) = copy_converted(&file, prefix, body, &tmp.path, bufs)?;
        self.check_quota(limit, size)?;
        Ok(Pending { file, tmp: Some(tmp), size, crlf_size, synced: false })
    }

    /// The second phase ([`write_within`](Self::write_within)): fsyncs the copy's file
    /// (once: a copy fsynced already is not fsynced again). On error drop the copy.
    pub fn fsync(&self, copy: &mut Pending) -> Result<(), DeliverError> {
        if copy.synced {
            return Ok(());
        }
        copy.file.sync_all().map_err(|e| match &copy.tmp {
            Some(tmp) => DeliverError::io(format!("fsync {}", tmp.path.display()), e),
            None => DeliverError::io(format!("fsync a new file in {}", self.new.display()), e),
        })?;
        self.file_syncs.fetch_add(1, Ordering::Relaxed);
        copy.synced = true;
        Ok(())
    }

    /// The third phase ([`write_within`](Self::write_within)): gives the copy its name in
    /// `new/` (a link of the anonymous file, or a rename from `tmp/`), under a unique name
    /// with `,S=<size>,W=<size>`. A copy not yet fsynced is fsynced first: the file's data
    /// before its name, so that a crash never leaves an empty or partial message in `new/`.
    /// Not delivered until [`commit_staged`](Self::commit_staged). On error nothing is left.
    pub fn link(&self, mut copy: Pending, hostname: &str, bufs: &mut CopyBuffers) -> Result<Staged, DeliverError> {
        self.fsync(&mut copy)?;
        let Pending { file, tmp, size, crlf_size, .. } = copy;
        match tmp {
            Some(tmp) => self.rename_into_new(file, tmp, size, crlf_size),
            None => self.link_anonymous(&file, size, crlf_size, hostname, bufs),
        }
    }

    /// How copies reach `new/` in this Maildir, once the first copy has decided it
    /// (`None` before).
    pub fn staging(&self) -> Option<Staging> {
        match self.staging.load(Ordering::Relaxed) {
            STAGING_ANONYMOUS => Some(Staging::Anonymous),
            STAGING_RENAME => Some(Staging::Rename),
            _ => None,
        }
    }

    fn decide(&self, staging: Staging) {
        let value = match staging {
            Staging::Anonymous => STAGING_ANONYMOUS,
            Staging::Rename => STAGING_RENAME,
        };
        self.staging.store(value, Ordering::Relaxed);
    }

    /// Links the anonymous `file`, written and fsynced, into `new/` under a unique name (a
    /// name taken already is never replaced: the next one is tried). On error `file` is
    /// dropped unnamed.
    fn link_anonymous(
        &self,
        file: &File,
        size: u64,
        crlf_size: u64,
        hostname: &str,
        bufs: &mut CopyBuffers,
    ) -> Result<Staged, DeliverError> {
        let mut attempts = 0;
        loop {
            bufs.unique_name(hostname);
            let _ = write!(bufs.name, ",S={size},W={crlf_size}");
            let target = self.new.join(&bufs.name);
            let err = match anon::link(file, &self.options.fd_dir, &target) {
                Ok(()) => {
                    self.decide(Staging::Anonymous);
                    return Ok(Staged { path: target, size });
                }
                // Another process with our pid (e.g. in a container): the next counter value.
                Err(LinkError::Exists) if attempts < 10 => {
                    attempts += 1;
                    continue;
                }
                Err(LinkError::Exists) => io::Error::from(ErrorKind::AlreadyExists),
                Err(LinkError::Unsupported(e)) => {
                    tracing::warn!(maildir = %self.path.display(), error = %e,
                        "cannot link anonymous files through {}: copies go through tmp/", self.options.fd_dir.display());
                    // Decided only once the rescue worked: a `new/` gone or unwritable
                    // (ENOENT, EACCES) fails the rescue too and must not decide.
                    let staged = self.rescue(file, size, crlf_size, hostname, bufs)?;
                    self.decide(Staging::Rename);
                    return Ok(staged);
                }
                Err(LinkError::Failed(e)) => e,
            };
            return Err(DeliverError::io(format!("link into {}", target.display()), err));
        }
    }

    /// The anonymous `file` could not be linked: its contents are copied to `tmp/`, fsynced
    /// and renamed into `new/` instead, so that this delivery does not fail for it.
    fn rescue(
        &self,
        mut file: &File,
        size: u64,
        crlf_size: u64,
        hostname: &str,
        bufs: &mut CopyBuffers,
    ) -> Result<Staged, DeliverError> {
        let mut copy = self.create_tmp(hostname, bufs)?;
        let tmp = TmpFile { path: self.tmp.join(&bufs.name), armed: true };
        let copied = file.seek(SeekFrom::Start(0)).and_then(|_| io::copy(&mut file, &mut copy));
        match copied {
            Ok(n) if n == size => {}
            Ok(n) => {
                return Err(DeliverError::temporary(format!("copy to {}: {n} of {size} bytes", tmp.path.display())));
            }
            Err(e) => return Err(DeliverError::io(format!("copy to {}", tmp.path.display()), e)),
        }
        copy.sync_all().map_err(|e| DeliverError::io(format!("fsync {}", tmp.path.display()), e))?;
        self.file_syncs.fetch_add(1, Ordering::Relaxed);
        self.rename_into_new(copy, tmp, size, crlf_size)
    }

    /// Renames `file`, written and fsynced as `tmp`, into `new/` with its sizes appended to
    /// its name.
    fn rename_into_new(&self, file: File, mut tmp: TmpFile, size: u64, crlf_size: u64) -> Result<Staged, DeliverError> {
        drop(file);
        // `W=` is the size with CRLF line ends, as Dovecot writes it: POP3 (RFC 1939 §5) and
        // IMAP report that size, and read it here instead of reading the file.
        let mut name = tmp.path.file_name().unwrap_or_default().to_owned();
        name.push(format!(",S={size},W={crlf_size}"));
        let target = self.new.join(name);
        fs::rename(&tmp.path, &target).map_err(|e| DeliverError::io(format!("rename to {}", target.display()), e))?;
        tmp.armed = false;
        Ok(Staged { path: target, size })
    }

    /// Under a quota (`limit`): the usage from `maildirsize` plus a message of `size` bytes
    /// must fit, else [`DeliverError::mailbox_full`].
    fn check_quota(&self, limit: Option<QuotaLimit>, size: u64) -> Result<(), DeliverError> {
        let Some(limit) = limit else { return Ok(()) };
        let usage = maildirsize::usage(&self.path, limit)
            .map_err(|e| DeliverError::io(format!("quota of {}", self.path.display()), e))?;
        if quota::would_exceed(usage, limit, size) {
            return Err(DeliverError::mailbox_full(format!(
                "mailbox full: {} bytes in {} messages, limit {} bytes, message {size} bytes",
                usage.bytes, usage.messages, limit.bytes
            )));
        }
        Ok(())
    }

    /// The second half: makes the `new/` entries of `staged` (all from this Maildir, all
    /// linked or renamed before the call) durable with one fsync of `new/`, group-committed with
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

    /// How many copies' files this Maildir has fsynced so far (each once, before its name
    /// appears in `new/`).
    pub fn file_sync_count(&self) -> u64 {
        self.file_syncs.load(Ordering::Relaxed)
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

/// A message linked or renamed into `new/` whose directory entry is not yet known durable
/// ([`Maildir::stage_within`]); delivered once [`Maildir::commit_staged`] returns `Ok`.
#[derive(Debug)]
#[must_use = "a staged message is not delivered until its Maildir's new/ is committed"]
pub struct Staged {
    /// Its path in `new/`.
    pub path: PathBuf,
    /// Its size in bytes, as written (LF line ends).
    pub size: u64,
}

/// A copy written by [`Maildir::write_within`], its writeback started: not yet durable, and
/// not in `new/` (an anonymous file, or a file in `tmp/`). [`Maildir::fsync`], then
/// [`Maildir::link`]; dropped, it leaves nothing behind (the anonymous file is freed, the
/// file in `tmp/` removed).
#[derive(Debug)]
#[must_use = "a written copy is not delivered until it is linked into new/ and committed"]
pub struct Pending {
    file: File,
    /// Its name in `tmp/` when the Maildir stages copies there ([`Staging::Rename`]).
    tmp: Option<TmpFile>,
    size: u64,
    crlf_size: u64,
    /// Whether [`Maildir::fsync`] has fsynced it.
    synced: bool,
}

impl Pending {
    /// Its size in bytes, as written (LF line ends).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether its file has been fsynced ([`Maildir::fsync`]).
    pub fn is_synced(&self) -> bool {
        self.synced
    }
}

/// The fsync of `new/` failed: the staged messages were removed and are not delivered.
#[derive(Debug)]
pub struct CommitFailed {
    /// Why (a temporary failure).
    pub error: DeliverError,
}

/// Removes the temporary file on failure.
#[derive(Debug)]
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
