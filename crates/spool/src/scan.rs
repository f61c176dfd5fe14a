//! Reading committed messages back: load, list, recover, body.

use std::fs::{self, File};
use std::io::{self, BufReader, ErrorKind, Read, Take};
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::format::{self, DecodeError};
use crate::spool::{CORRUPT_DIR, MSG_EXT, STATUS_EXT};
use crate::{QueueId, QueuedMessage, RcptState, Spool, SpoolError};

/// The body of a queued message, exactly the bytes given to
/// [`crate::MessageWriter::write`].
pub struct Body {
    reader: Take<BufReader<File>>,
    len: u64,
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
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Spool {
    /// A committed message and its recipients' last recorded states.
    pub fn load(&self, id: &QueueId) -> Result<QueuedMessage, SpoolError> {
        self.read_message(id)
    }

    /// The body of a committed message.
    pub fn body(&self, id: &QueueId) -> Result<Body, SpoolError> {
        let path = self.inner.msg_path(id);
        let (head, reader) = self.open_message(id, &path)?;
        Ok(Body { reader: reader.take(head.size), len: head.size })
    }

    /// Every committed message, in id order, for a read-only look (e.g. a
    /// queue listing). Undecodable messages are logged and skipped.
    pub fn list(&self) -> Result<Vec<QueuedMessage>, SpoolError> {
        self.scan(false)
    }

    /// Every committed message with its recipients' last states, in id
    /// order, for the queue manager at startup. A message file that cannot
    /// be decoded is logged and moved (with its status log) to `corrupt/`
    /// for an operator: never deleted. Files of an unknown format version
    /// and files that hit an I/O error are logged and left in place.
    pub fn recover(&self) -> Result<Vec<QueuedMessage>, SpoolError> {
        self.scan(true)
    }

    fn scan(&self, move_corrupt: bool) -> Result<Vec<QueuedMessage>, SpoolError> {
        let mut messages = Vec::new();
        for (id, ext) in self.queue_entries()? {
            if ext != MSG_EXT {
                continue;
            }
            match self.read_message(&id) {
                Ok(message) => messages.push(message),
                // Removed while we were listing.
                Err(SpoolError::NotFound(_)) => {}
                Err(e @ SpoolError::Corrupt { .. }) if move_corrupt => {
                    tracing::error!(error = %e, "spool: moving corrupt message aside");
                    self.move_aside(&id)?;
                }
                Err(e) => tracing::error!(error = %e, "spool: skipping unreadable message"),
            }
        }
        Ok(messages)
    }

    /// Opens a message file and reads up to its body.
    fn open_message(&self, id: &QueueId, path: &Path) -> Result<(format::Head, BufReader<File>), SpoolError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.clone()));
            }
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let file_len = file.metadata().map_err(io_err("stat", path))?.len();
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let head = format::read_head(&mut reader).map_err(|e| decode_err(e, path))?;
        let corrupt = |reason: String| SpoolError::Corrupt { path: path.to_owned(), reason };
        if head.envelope.id != *id {
            return Err(corrupt(format!("envelope names id {}", head.envelope.id)));
        }
        if head.body_offset.checked_add(head.size) != Some(file_len) {
            return Err(corrupt(format!(
                "body is {} bytes, header says {}",
                file_len.saturating_sub(head.body_offset),
                head.size
            )));
        }
        Ok((head, reader))
    }

    fn read_message(&self, id: &QueueId) -> Result<QueuedMessage, SpoolError> {
        let path = self.inner.msg_path(id);
        let (head, _) = self.open_message(id, &path)?;
        let mut states = vec![RcptState::Pending; head.envelope.recipients.len()];
        let status = self.inner.status_path(id);
        match File::open(&status).and_then(format::read_all) {
            Ok(data) => {
                let report = format::apply_status_log(&data, &mut states).map_err(|e| decode_err(e, &status))?;
                if report.bad_header || report.bad_lines > 0 {
                    // Ignoring records risks a duplicate delivery, not a loss.
                    tracing::warn!(path = %status.display(), ?report, "spool: ignored status records");
                } else if report.torn_tail {
                    tracing::info!(path = %status.display(), "spool: ignored torn last status record");
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", status)(e)),
        }
        Ok(QueuedMessage { envelope: head.envelope, states, size: head.size })
    }

    /// Moves a message and its status log to `corrupt/` without replacing
    /// anything already there.
    fn move_aside(&self, id: &QueueId) -> Result<(), SpoolError> {
        let corrupt = self.inner.root.join(CORRUPT_DIR);
        for (from, ext) in [(self.inner.msg_path(id), MSG_EXT), (self.inner.status_path(id), STATUS_EXT)] {
            let to = free_name(&corrupt, id, ext).map_err(io_err("stat", &corrupt))?;
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("rename", from)(e)),
            }
        }
        Ok(())
    }
}

/// `dir/ID.ext`, or `dir/ID.N.ext` for the first free N.
fn free_name(dir: &Path, id: &QueueId, ext: &str) -> io::Result<PathBuf> {
    let mut path = dir.join(format!("{id}.{ext}"));
    let mut n = 1u64;
    while path.try_exists()? {
        path = dir.join(format!("{id}.{n}.{ext}"));
        n += 1;
    }
    Ok(path)
}

fn decode_err(e: DecodeError, path: &Path) -> SpoolError {
    match e {
        DecodeError::Io(e) => io_err("read", path)(e),
        DecodeError::Corrupt(reason) => SpoolError::Corrupt { path: path.to_owned(), reason },
        DecodeError::Version(version) => SpoolError::UnsupportedVersion { path: path.to_owned(), version },
    }
}
