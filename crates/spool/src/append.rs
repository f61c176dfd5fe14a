//! Appending records to a batch's status log.
//!
//! The first append of a process to a log opens it (or makes it, from a
//! recycled file when the pool has one), cuts a torn last line left by a
//! crash, and keeps the descriptor in the batch's lock: later appends are one
//! `write()` each, without the open, `statx`, last-byte `pread` and close
//! (docs/performance.md, cut 4). At most [`OPEN_LOGS_MAX`] logs stay open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::SpoolError;
use crate::error::io_err;
use crate::index::BatchFile;
use crate::inner::Inner;
use crate::openlog::{OPEN_LOGS_MAX, OpenLog};
use crate::status::{self, STATUS_HEADER};

/// Appends `line` to the batch's status log, making the log (header first)
/// if needed. `log` is the batch's lock, held by the caller.
pub(crate) fn append(
    inner: &Inner,
    batch: &BatchFile,
    log: &mut Option<OpenLog>,
    line: &[u8],
) -> Result<(), SpoolError> {
    let path = batch.log_path();
    if let Some(open) = log {
        // One write(): a crash tears at most this record, which readers ignore.
        let written = (&open.file).write_all(line);
        match written {
            Ok(()) => open.len += line.len() as u64,
            // Maybe a partial line: the next append reopens and cuts it.
            Err(_) => *log = None,
        }
        return written.map_err(io_err("write", path));
    }
    // Marked before the log can appear, so that a reader never skips a log that exists. A
    // log known absent is not looked for (one failing `openat` per batch saved).
    let known_absent = !batch.has_log.swap(true, Ordering::AcqRel);
    let existing = if known_absent { None } else { open_existing(path)? };
    let (file, len) = match existing {
        Some((file, len)) => {
            (&file).write_all(line).map_err(io_err("write", path))?;
            (file, len + line.len() as u64)
        }
        None => create(inner, path, line)?,
    };
    if inner.open_logs.fetch_add(1, Ordering::Relaxed) < OPEN_LOGS_MAX {
        *log = Some(OpenLog { file, len, slot: Arc::clone(&inner.open_logs) });
    } else {
        inner.open_logs.fetch_sub(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Makes the log with its header and first `line`: from a recycled file
/// (written, then renamed into `queue/`, so the name never shows an empty
/// or stale file), else by creating it. Returns it with its length.
fn create(inner: &Inner, path: &Path, line: &[u8]) -> Result<(File, u64), SpoolError> {
    let data = [STATUS_HEADER, line].concat();
    if let Some(free) = inner.pool.take(&inner.queue_sync) {
        let reused = (|| {
            let file = OpenOptions::new().read(true).append(true).open(&free)?;
            file.set_len(0)?;
            (&file).write_all(&data)?;
            fs::rename(&free, path)?;
            Ok::<_, io::Error>(file)
        })();
        match reused {
            Ok(file) => return Ok((file, data.len() as u64)),
            Err(e) => {
                tracing::warn!(path = %free.display(), error = %e, "spool: could not reuse a free file");
                let _ = fs::remove_file(&free);
            }
        }
    }
    let opened = open_status_log(path, true)?;
    let (file, len) = opened.ok_or_else(|| io_err("open", path)(io::ErrorKind::NotFound.into()))?;
    let data = if len == 0 { &data[..] } else { line };
    (&file).write_all(data).map_err(io_err("write", path))?;
    Ok((file, len + data.len() as u64))
}

/// Opens an existing log for appending, with its length, or `None` if there is none.
fn open_existing(path: &Path) -> Result<Option<(File, u64)>, SpoolError> {
    let Some((file, len)) = open_status_log(path, false)? else { return Ok(None) };
    if len == 0 {
        // Only its header was torn away: write it again.
        (&file).write_all(STATUS_HEADER).map_err(io_err("write", path))?;
        return Ok(Some((file, STATUS_HEADER.len() as u64)));
    }
    Ok(Some((file, len)))
}

/// Opens a status log for appending (creating it if `create`), with its
/// length, or `None` if it does not exist. A torn last line (crash
/// mid-append) is cut off first, so the next record starts on a line of its
/// own; a log whose header itself was torn is left empty.
fn open_status_log(path: &Path, create: bool) -> Result<Option<(File, u64)>, SpoolError> {
    let opened = OpenOptions::new().read(true).append(true).create(create).mode(0o600).open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut last = [0u8; 1];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1).map_err(io_err("read", path))?;
    }
    if len == 0 || last[0] == b'\n' {
        return Ok(Some((file, len)));
    }
    let mut data = Vec::new();
    io::Read::read_to_end(&mut &file, &mut data).map_err(io_err("read", path))?;
    let keep = status::complete_len(&data);
    tracing::warn!(path = %path.display(), cut = data.len() - keep, "status log: dropping torn last line");
    file.set_len(keep as u64).map_err(io_err("truncate", path))?;
    Ok(Some((file, keep as u64)))
}
