//! Reading the queue: the scan at open that fills the index, then load,
//! body, list and recover, which go through the index.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::io_err;
use crate::format::{self, DecodeError, Extent, Found, ReadAt, SLOT_HEADER_LEN};
use crate::index::{BatchFile, Foreign, Loc, MSG_EXT, STATUS_EXT};
use crate::slots::{self, SLOT_CAPACITY};
use crate::spool::{CORRUPT_DIR, ignore_missing};
use crate::status::StatusLog;
use crate::{QueueId, QueuedMessage, Spool, SpoolError};

/// The body of a queued message, exactly the bytes given to
/// [`crate::MessageWriter::write`]. Reads are positioned (`pread`), so no seek is needed and
/// [`rewind`](Body::rewind) reads it again without reopening the file. Unbuffered: read in
/// large chunks (or wrap it in a `BufReader`). The first [`Spool::load_with_body`] of a
/// message just committed gives a body held in memory (the bytes that were written): reads
/// then copy from there.
pub struct Body {
    src: Source,
    /// How far into the body the next read starts.
    pos: u64,
    len: u64,
}

/// Where a [`Body`]'s bytes are.
enum Source {
    File {
        file: File,
        /// Where the body starts in the batch file.
        start: u64,
        /// Keeps the batch's file out of the pool of reused files while read.
        _batch: Arc<BatchFile>,
    },
    /// The committed bytes themselves (recent.rs); nothing to keep out of the pool.
    Memory(Vec<u8>),
}

impl Body {
    /// The body size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts reading from the beginning of the body again.
    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    /// Whether the body is held in memory (read without system calls).
    pub fn is_in_memory(&self) -> bool {
        matches!(self.src, Source::Memory(_))
    }

    /// The whole body, if it is held in memory: read it from here without a copy.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.src {
            Source::Memory(bytes) => Some(bytes),
            Source::File { .. } => None,
        }
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.pos;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = match &self.src {
            Source::File { file, start, .. } => FileExt::read_at(file, &mut buf[..want], start + self.pos)?,
            Source::Memory(bytes) => {
                let from = usize::try_from(self.pos).unwrap_or(usize::MAX);
                let rest = bytes.get(from..).unwrap_or_default();
                let n = want.min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Spool {
    /// A queued message, its recipients' last recorded states and whether
    /// it is held.
    pub fn load(&self, id: &QueueId) -> Result<QueuedMessage, SpoolError> {
        let loc = self.locate(id)?;
        let file = open_batch(&loc, id)?;
        let log = batch_log(&loc.batch)?;
        read_message(&file, id, &loc.extent, &loc, &log)
    }

    /// The body of a queued message.
    pub fn body(&self, id: &QueueId) -> Result<Body, SpoolError> {
        let loc = self.locate(id)?;
        let file = open_batch(&loc, id)?;
        Ok(body_of(file, &loc))
    }

    /// [`load`](Self::load) and [`body`](Self::body) in one: the message and its body from
    /// one open of its batch file (a delivery run reads both). The first call for a message
    /// just committed reads no file at all: its envelope and body come from the bytes the
    /// commit wrote, kept in memory (recent.rs; bounded, else read from disk as here), and
    /// its states from the status log if the batch has one.
    pub fn load_with_body(&self, id: &QueueId) -> Result<(QueuedMessage, Body), SpoolError> {
        let loc = self.locate(id)?;
        if let Some(kept) = self.inner.recent.take(id)
            && kept.body.len() as u64 == loc.extent.body_len
        {
            let extent = Extent::of_record(0, kept.line.len() as u64, loc.extent.body_len);
            let log = batch_log(&loc.batch)?;
            let message = read_message(&kept.line[..], id, &extent, &loc, &log)?;
            let len = loc.extent.body_len;
            return Ok((message, Body { src: Source::Memory(kept.body), pos: 0, len }));
        }
        let file = open_batch(&loc, id)?;
        let log = batch_log(&loc.batch)?;
        let message = read_message(&file, id, &loc.extent, &loc, &log)?;
        Ok((message, body_of(file, &loc)))
    }

    /// Every queued message, in id order, for a read-only look (e.g. a queue
    /// listing). Files that could not be decoded are not listed.
    pub fn list(&self) -> Result<Vec<QueuedMessage>, SpoolError> {
        let mut by_batch: BTreeMap<QueueId, Vec<(QueueId, Loc)>> = BTreeMap::new();
        for (id, loc) in self.inner.index().snapshot() {
            by_batch.entry(loc.batch.name.clone()).or_default().push((id, loc));
        }
        let mut messages = Vec::new();
        for members in by_batch.values() {
            // One open and one log read per batch file.
            let batch = &members[0].1.batch;
            let read = File::open(&batch.path).map_err(io_err("open", &batch.path)).and_then(|file| {
                let log = batch_log(batch)?;
                let read = |(id, loc): &(QueueId, Loc)| read_message(&file, id, &loc.extent, loc, &log);
                members.iter().map(read).collect::<Result<Vec<_>, _>>()
            });
            match read {
                Ok(found) => messages.extend(found),
                // Removed while we were listing.
                Err(SpoolError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => tracing::error!(error = %e, "spool: skipping unreadable batch"),
            }
        }
        messages.sort_by(|a, b| a.envelope.id.cmp(&b.envelope.id));
        Ok(messages)
    }

    /// Every queued message with its recipients' last states and its hold
    /// flag, in id order, for the queue manager at startup. Files that `open`
    /// could not decode are logged and moved (with their status logs) to
    /// `corrupt/` for an operator: never deleted. Files of an unknown format
    /// version and files that hit an I/O error were logged at open and are
    /// left in place.
    pub fn recover(&self) -> Result<Vec<QueuedMessage>, SpoolError> {
        let corrupt = self.inner.index().corrupt();
        for (name, reason) in corrupt {
            tracing::error!(batch = %name, %reason, "spool: moving corrupt batch file aside");
            self.move_aside(&name)?;
            self.inner.index().add_foreign(name, Foreign::MovedAside(reason));
        }
        self.list()
    }

    /// Where `id` lies, or why it is not queued.
    fn locate(&self, id: &QueueId) -> Result<Loc, SpoolError> {
        let index = self.inner.index();
        if let Some(loc) = index.get(id) {
            return Ok(loc);
        }
        let path = || self.inner.queue.join(format!("{id}.{MSG_EXT}"));
        Err(match index.foreign(id) {
            Some(Foreign::Corrupt(reason) | Foreign::MovedAside(reason)) => {
                SpoolError::Corrupt { path: path(), reason: reason.clone() }
            }
            Some(Foreign::Unsupported(version)) => {
                SpoolError::UnsupportedVersion { path: path(), version: version.clone() }
            }
            Some(Foreign::Unreadable) | None => SpoolError::NotFound(id.clone()),
        })
    }

    /// Reads every batch file in `queue/` into the index (at open). Deletes
    /// status logs without a batch and batches whose messages are all done.
    pub(crate) fn load_queue(&self) -> Result<(), SpoolError> {
        let (entries, slots) = self.queue_entries()?;
        let batches: BTreeSet<&QueueId> = entries.iter().filter(|(_, ext)| ext == MSG_EXT).map(|(n, _)| n).collect();
        for (name, ext) in &entries {
            if ext == STATUS_EXT && !batches.contains(name) {
                let path = self.inner.queue.join(format!("{name}.{STATUS_EXT}"));
                tracing::info!(path = %path.display(), "spool: removing orphan status log");
                fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            }
        }
        for name in batches {
            let batch = BatchFile::new(name.clone(), &self.inner.queue, 0, true);
            let why = match scan_batch(&batch.path, batch.log_path(), name) {
                Ok((found, log)) => {
                    self.index_batch(name, found, log)?;
                    continue;
                }
                Err(SpoolError::Corrupt { path, reason }) => {
                    tracing::warn!(path = %path.display(), %reason, "spool: corrupt batch file");
                    Foreign::Corrupt(reason)
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool: leaving unreadable batch file in place");
                    match e {
                        SpoolError::UnsupportedVersion { version, .. } => Foreign::Unsupported(version),
                        _ => Foreign::Unreadable,
                    }
                }
            };
            self.inner.index().add_foreign(name.clone(), why);
        }
        // The slots after the batch files: a message found in both was copied out of its slot
        // by a process that stopped before the slot's zeros reached the disk (copyout.rs), and
        // the batch file's copy wins.
        self.load_slots(&slots)
    }

    /// Indexes the messages of a batch that are not done, or deletes the
    /// batch if they all are.
    fn index_batch(&self, name: &QueueId, found: Vec<Found>, log: Option<StatusLog>) -> Result<(), SpoolError> {
        let mut index = self.inner.index();
        if let Some(dup) = found.iter().find(|f| index.is_taken(&f.envelope.id)) {
            let reason = format!("message {} is also queued in another file", dup.envelope.id);
            tracing::warn!(batch = %name, %reason, "spool: corrupt batch file");
            index.add_foreign(name.clone(), Foreign::Corrupt(reason));
            return Ok(());
        }
        let batch = Arc::new(BatchFile::new(name.clone(), &self.inner.queue, found.len(), true));
        // Known now whether it has a log: without one, loads need not look for it.
        batch.has_log.store(log.is_some(), Ordering::Release);
        if let Some(end) = found.iter().map(|f| f.extent.body_off + f.extent.body_len).max() {
            let _ = batch.len.set(end);
        }
        let log = log.unwrap_or_default();
        let live: Vec<_> = found
            .into_iter()
            .filter(|f| !log.done.contains(&f.envelope.id))
            .map(|f| (f.envelope.id, f.extent))
            .collect();
        if !live.is_empty() {
            index.add_batch(batch, live);
            return Ok(());
        }
        drop(index);
        tracing::info!(path = %batch.path.display(), "spool: removing batch whose messages are all done");
        fs::remove_file(&batch.path).map_err(io_err("unlink", &batch.path))?;
        ignore_missing(fs::remove_file(batch.log_path())).map_err(io_err("unlink", batch.log_path()))
    }

    /// Reads the slots found at open (slots.rs, docs/spool-slots.md "Recovery"): a slot whose
    /// first line is zeros is free; one whose batch decodes is indexed like any batch file,
    /// less its done messages (free if they all are); one that does not decode was being
    /// written when the process or the machine stopped (no client got a 250 for that batch,
    /// and the slot's previous batch was all done) or is damaged: it is moved to `corrupt/`,
    /// as any batch file, so that nothing is dropped silently, and made again when needed.
    fn load_slots(&self, entries: &[(u32, String)]) -> Result<(), SpoolError> {
        let made: BTreeSet<u32> = entries.iter().filter(|(_, ext)| ext == MSG_EXT).map(|(n, _)| *n).collect();
        for (n, ext) in entries {
            if ext == STATUS_EXT && !made.contains(n) {
                let path = self.inner.slots.log_path(*n);
                tracing::info!(path = %path.display(), "spool: removing orphan status log");
                ignore_missing(fs::remove_file(&path)).map_err(io_err("unlink", &path))?;
            }
        }
        for n in made {
            self.load_slot(n)?;
        }
        Ok(())
    }

    fn load_slot(&self, n: u32) -> Result<(), SpoolError> {
        let slots = &self.inner.slots;
        let (path, log_path) = (slots.path(n), slots.log_path(n));
        let opened = OpenOptions::new().read(true).write(true).open(&path).and_then(|file| {
            let len = file.metadata()?.len();
            let mut first = [0u8; SLOT_HEADER_LEN];
            let got = first.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            ReadAt::read_exact_at(&file, &mut first[..got], 0)?;
            // Zeros where the first line goes: no batch (an empty file too, made by a round
            // that a crash cut short).
            Ok((file, len, first[..got].iter().all(|&b| b == 0)))
        });
        let (file, len, free) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "spool: leaving unreadable slot in place");
                slots.adopt(n, None, false);
                return Ok(());
            }
        };
        let empty_log = || slots::empty_log(&log_path).map_err(io_err("truncate", &log_path));
        if free {
            empty_log()?;
            if len == SLOT_CAPACITY {
                slots.adopt(n, Some(file), true);
                return Ok(());
            }
            // Made by a round that a crash cut short, or by a build with another capacity:
            // made again when needed.
            fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            return ignore_missing(fs::remove_file(&log_path)).map_err(io_err("unlink", &log_path));
        }
        let reason = match format::read_batch(&file, len) {
            Ok(found) => {
                let log = read_log_if_any(&log_path)?;
                let mut index = self.inner.index();
                // Messages a batch file holds were copied out of this slot (copyout.rs).
                let copied = |id: &QueueId| index.get(id).is_some_and(|loc| loc.batch.slot.is_none());
                let copied: BTreeSet<QueueId> =
                    found.iter().map(|f| &f.envelope.id).filter(|id| copied(id)).cloned().collect();
                match found.iter().find(|f| !copied.contains(&f.envelope.id) && index.is_taken(&f.envelope.id)) {
                    None => {
                        let has_log = log.is_some();
                        let log = log.unwrap_or_default();
                        let live: Vec<_> = found
                            .iter()
                            .filter(|f| !log.done.contains(&f.envelope.id) && !copied.contains(&f.envelope.id))
                            .map(|f| (f.envelope.id.clone(), f.extent))
                            .collect();
                        if live.is_empty() {
                            drop(index);
                            tracing::info!(path = %path.display(), "spool: freeing slot whose messages are all done");
                            slots::zero_first_line(&file).map_err(io_err("write", &path))?;
                            empty_log()?;
                            slots.adopt(n, Some(file), true);
                            return Ok(());
                        }
                        // Named after its first live message, not its first message: that one may
                        // have been copied out and name the batch file that holds it now, and two
                        // live batches must not share a name (the index counts by name).
                        let name = live[0].0.clone();
                        let batch = Arc::new(BatchFile::in_slot(name, slots.paths(n), n, found.len(), true));
                        batch.has_log.store(has_log, Ordering::Release);
                        index.add_batch(batch, live);
                        drop(index);
                        slots.adopt(n, Some(file), false);
                        return Ok(());
                    }
                    Some(dup) => format!("message {} is also queued in another file", dup.envelope.id),
                }
            }
            Err(DecodeError::Corrupt(reason)) => reason,
            Err(e) => {
                tracing::error!(error = %decode_err(e, &path), "spool: leaving unreadable slot in place");
                slots.adopt(n, None, false);
                return Ok(());
            }
        };
        tracing::error!(path = %path.display(), %reason, "spool: moving corrupt slot aside");
        drop(file);
        self.move_aside_as(&format!("slot-{n}"), &path, &log_path)
    }

    /// Moves a batch file and its status log to `corrupt/` without
    /// replacing anything already there.
    fn move_aside(&self, name: &QueueId) -> Result<(), SpoolError> {
        let queue = &self.inner.queue;
        let (path, log_path) = (queue.join(format!("{name}.{MSG_EXT}")), queue.join(format!("{name}.{STATUS_EXT}")));
        self.move_aside_as(name.as_str(), &path, &log_path)
    }

    /// Moves `path` and `log_path` to `corrupt/STEM.msg` and `corrupt/STEM.status` (or the
    /// first free `STEM.N.…`), skipping either if it does not exist.
    fn move_aside_as(&self, stem: &str, path: &Path, log_path: &Path) -> Result<(), SpoolError> {
        let corrupt = self.inner.root.join(CORRUPT_DIR);
        for (from, ext) in [(path, MSG_EXT), (log_path, STATUS_EXT)] {
            let to = free_name(&corrupt, stem, ext).map_err(io_err("stat", &corrupt))?;
            match fs::rename(from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("rename", from)(e)),
            }
        }
        Ok(())
    }
}

/// Decodes a whole batch file and its status log (`None`: there is none).
fn scan_batch(path: &Path, log_path: &Path, name: &QueueId) -> Result<(Vec<Found>, Option<StatusLog>), SpoolError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let found = format::read_batch(&file, len).map_err(|e| decode_err(e, path))?;
    // A batch is named after its first message: this catches misplaced files.
    if found[0].envelope.id != *name {
        // Also what a crash leaves when a round's reused file got its new name but not yet
        // its new bytes (docs/spool-format.md, "What a crash at each step leaves behind").
        let reason = format!(
            "first message is {}, not the file's name (a misplaced file, or a reused file whose new \
             contents a crash cut short: its messages were never acknowledged under this name)",
            found[0].envelope.id
        );
        return Err(SpoolError::Corrupt { path: path.to_owned(), reason });
    }
    let log = read_log_if_any(log_path)?;
    Ok((found, log))
}

/// The body of the message at `loc` in its open batch `file`.
fn body_of(file: File, loc: &Loc) -> Body {
    let src = Source::File { file, start: loc.extent.body_off, _batch: Arc::clone(&loc.batch) };
    Body { src, pos: 0, len: loc.extent.body_len }
}

/// Opens the batch file holding `id`.
fn open_batch(loc: &Loc, id: &QueueId) -> Result<File, SpoolError> {
    match File::open(&loc.batch.path) {
        Ok(file) => Ok(file),
        // Removed meanwhile.
        Err(e) if e.kind() == ErrorKind::NotFound => Err(SpoolError::NotFound(id.clone())),
        Err(e) => Err(io_err("open", &loc.batch.path)(e)),
    }
}

/// The status log of a batch; a missing log is an empty one, and a batch known to have none
/// is not looked for.
fn batch_log(batch: &BatchFile) -> Result<StatusLog, SpoolError> {
    if !batch.may_have_log() {
        return Ok(StatusLog::default());
    }
    Ok(read_log_if_any(batch.log_path())?.unwrap_or_default())
}

/// Reads a status log, or `None` if there is none.
pub(crate) fn read_log_if_any(path: &Path) -> Result<Option<StatusLog>, SpoolError> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let log = StatusLog::parse(&data).map_err(|e| decode_err(e, path))?;
    let report = &log.report;
    if report.bad_header || report.bad_lines > 0 {
        // Ignoring records risks a duplicate delivery, not a loss.
        tracing::warn!(path = %path.display(), ?report, "spool: ignored status records");
    } else if report.torn_tail {
        tracing::info!(path = %path.display(), "spool: ignored torn last status record");
    }
    Ok(Some(log))
}

/// Reads one message's envelope at `extent` of `src` (its batch file, or its record line
/// kept in memory) and applies its log.
fn read_message<R: ReadAt + ?Sized>(
    src: &R,
    id: &QueueId,
    extent: &Extent,
    loc: &Loc,
    log: &StatusLog,
) -> Result<QueuedMessage, SpoolError> {
    let path = &loc.batch.path;
    let envelope = format::read_envelope(src, extent).map_err(|e| decode_err(e, path))?;
    if envelope.id != *id {
        let reason = format!("envelope of {id} names id {}", envelope.id);
        return Err(SpoolError::Corrupt { path: path.clone(), reason });
    }
    let (states, out_of_range) = log.states(id, envelope.recipients.len(), loc.batch.messages == 1);
    if out_of_range > 0 {
        tracing::warn!(path = %loc.batch.log_path().display(), queue_id = %id, out_of_range, "spool: ignored status records");
    }
    Ok(QueuedMessage { envelope, states, size: loc.extent.body_len, held: log.is_held(id) })
}

/// `dir/NAME.ext`, or `dir/NAME.N.ext` for the first free N.
fn free_name(dir: &Path, name: &str, ext: &str) -> io::Result<PathBuf> {
    let mut path = dir.join(format!("{name}.{ext}"));
    let mut n = 1u64;
    while path.try_exists()? {
        path = dir.join(format!("{name}.{n}.{ext}"));
        n += 1;
    }
    Ok(path)
}

pub(crate) fn decode_err(e: DecodeError, path: &Path) -> SpoolError {
    match e {
        DecodeError::Io(e) => io_err("read", path)(e),
        DecodeError::Corrupt(reason) => SpoolError::Corrupt { path: path.to_owned(), reason },
        DecodeError::Version(version) => SpoolError::UnsupportedVersion { path: path.to_owned(), version },
    }
}
