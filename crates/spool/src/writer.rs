//! Writing one message: bounded buffering, then the commit protocol.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::commit::{Committer, Payload};
use crate::error::io_err;
use crate::format::{self, BATCH_HEADER_LEN, SPILLED_BODY_LEN_AT};
use crate::inner::Inner;
use crate::{Envelope, QueueId, SpoolError};

/// At most this much of a message is held in memory; beyond it the message
/// streams to a temporary file.
pub(crate) const BUFFER_CAP: usize = 128 * 1024;
/// First allocation of the buffer; it doubles up to [`BUFFER_CAP`].
const BUFFER_START: usize = 8 * 1024;

/// A message being received. Obtain one from [`crate::Spool::writer`],
/// [`write`](MessageWriter::write) the body, optionally read it back with
/// [`content`](MessageWriter::content) and replace the envelope with
/// [`set_envelope`](MessageWriter::set_envelope), then
/// [`commit`](MessageWriter::commit). Dropping it without committing aborts:
/// its temporary file, if any, is removed.
pub struct MessageWriter {
    spool: Arc<Inner>,
    committer: Arc<Committer>,
    id: QueueId,
    /// The message's record line: id, lengths (body length not yet filled
    /// in) and envelope. Once spilled, the temporary file holds the same
    /// bytes right after its batch header.
    head: Vec<u8>,
    /// Body bytes not yet written to the file; never above [`BUFFER_CAP`].
    buf: Vec<u8>,
    /// The temporary file, once the body outgrew the buffer.
    file: Option<File>,
    /// Whether a temporary file exists that Drop must remove.
    tmp_exists: bool,
    /// Body bytes accepted so far.
    len: u64,
    /// Set when a write (or an envelope rewrite) failed: the file content is
    /// unknown.
    failed: bool,
    /// Whether this writer is counted in `Inner::writing` (until it is committed or dropped).
    counted: bool,
}

impl MessageWriter {
    pub(crate) fn new(
        spool: Arc<Inner>,
        committer: Arc<Committer>,
        envelope: Envelope,
    ) -> Result<MessageWriter, SpoolError> {
        let head = format::encode_record_line(&envelope)?;
        spool.writing.fetch_add(1, Ordering::Relaxed);
        Ok(MessageWriter {
            spool,
            committer,
            id: envelope.id.clone(),
            head,
            buf: Vec::new(),
            file: None,
            tmp_exists: false,
            len: 0,
            failed: false,
            counted: true,
        })
    }

    /// The message's queue id.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Whether the body went to a temporary file (then [`content`](Self::content) and
    /// [`set_envelope`](Self::set_envelope) do file I/O; otherwise they only touch memory).
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Body bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no body bytes have been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends body bytes, stored exactly as given. At most 128 KiB of body
    /// is held in memory whatever the message size; beyond that the body
    /// streams to a temporary file (this call then does blocking file I/O).
    pub fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        if self.failed {
            return Err(SpoolError::WriterFailed);
        }
        if self.buf.len() + data.len() <= BUFFER_CAP {
            self.buffer(data);
        } else {
            let result = self.spill(data);
            self.failed = result.is_err();
            result?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Copies `data` into the buffer, growing it without passing the cap.
    fn buffer(&mut self, data: &[u8]) {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            let target = needed.next_power_of_two().clamp(BUFFER_START, BUFFER_CAP);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// Flushes the buffer to the temporary file, then writes or buffers `data`.
    fn spill(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        let path = self.spool.tmp_path(&self.id);
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                // A one-message batch file, so that commit only renames it.
                let mut file = self.create_temp()?;
                file.write_all(&[&format::batch_header(1)[..], &self.head[..]].concat())
                    .map_err(io_err("write", &path))?;
                file
            }
        };
        let file = self.file.insert(file);
        file.write_all(&self.buf).map_err(io_err("write", &path))?;
        self.buf.clear();
        if data.len() >= BUFFER_CAP {
            file.write_all(data).map_err(io_err("write", &path))?;
        } else {
            self.buffer(data);
        }
        Ok(())
    }

    /// Every body byte written so far, in order: what [`commit`](Self::commit)
    /// would store. The whole body is returned in memory, whatever its size.
    /// A spilled message is read back from its temporary file (blocking I/O;
    /// async callers use `spawn_blocking`). Reading changes nothing: the
    /// writer can go on writing afterwards.
    pub fn content(&mut self) -> Result<Vec<u8>, SpoolError> {
        if self.failed {
            return Err(SpoolError::WriterFailed);
        }
        let Some(file) = &self.file else {
            return Ok(self.buf.clone());
        };
        let path = self.spool.tmp_path(&self.id);
        let on_disk = usize::try_from(self.len - self.buf.len() as u64)
            .map_err(|_| io_err("read", &path)(io::ErrorKind::OutOfMemory.into()))?;
        let mut body = Vec::with_capacity(on_disk + self.buf.len());
        body.resize(on_disk, 0);
        // Positional: the file position is where the next write appends.
        file.read_exact_at(&mut body, self.body_at()).map_err(io_err("read", &path))?;
        body.extend_from_slice(&self.buf);
        Ok(body)
    }

    /// Replaces the envelope that [`commit`](Self::commit) will store, e.g.
    /// to add [`Envelope::prepend`] once the body has been checked. The id
    /// must stay the same ([`SpoolError::EnvelopeIdMismatch`] otherwise,
    /// and nothing changes); the encoded envelope may be of any length.
    ///
    /// Cheap for a message still in memory. A spilled message has its record
    /// line at the start of its temporary file, so this costs **one copy of
    /// the body written so far**: a new file `tmp/ID.new` gets the batch
    /// header, the new record line and the body (copied in the kernel where
    /// the file system allows), and is renamed over `tmp/ID`. Blocking I/O;
    /// no fsync (the commit fsyncs the file). If that fails, the writer is
    /// failed ([`SpoolError::WriterFailed`] from then on) and `tmp/ID.new`
    /// is removed; `tmp/ID` is removed when the writer is dropped, as on
    /// any abort.
    pub fn set_envelope(&mut self, envelope: Envelope) -> Result<(), SpoolError> {
        if self.failed {
            return Err(SpoolError::WriterFailed);
        }
        if envelope.id != self.id {
            return Err(SpoolError::EnvelopeIdMismatch { writer: self.id.clone(), envelope: envelope.id });
        }
        let head = format::encode_record_line(&envelope)?;
        if let Some(old) = &self.file {
            let result = self.rewrite_spilled(old, &head);
            self.failed = result.is_err();
            // Its position is at the end: later writes append to the body.
            self.file = Some(result?);
        }
        self.head = head;
        Ok(())
    }

    /// Writes `tmp/ID.new` with the record line `head` and the body in `old`
    /// so far, and renames it over `tmp/ID`.
    fn rewrite_spilled(&self, mut old: &File, head: &[u8]) -> Result<File, SpoolError> {
        let path = self.spool.tmp_path(&self.id);
        let scratch = self.spool.tmp.join(format!("{}.new", self.id));
        let on_disk = self.len - self.buf.len() as u64;
        let mut new = create_file(&scratch)?;
        let result = (|| {
            new.write_all(&[&format::batch_header(1)[..], head].concat()).map_err(io_err("write", &scratch))?;
            old.seek(SeekFrom::Start(self.body_at())).map_err(io_err("seek", &path))?;
            let copied = io::copy(&mut old.take(on_disk), &mut new).map_err(io_err("copy", &path))?;
            if copied != on_disk {
                return Err(io_err("read", &path)(io::ErrorKind::UnexpectedEof.into()));
            }
            // Atomic: tmp/ID is always one whole file, which Drop (or the
            // next open) removes.
            fs::rename(&scratch, &path).map_err(io_err("rename", &scratch))
        })();
        match result {
            Ok(()) => Ok(new),
            Err(e) => {
                let _ = fs::remove_file(&scratch);
                Err(e)
            }
        }
    }

    /// Byte offset of the body in the temporary file.
    fn body_at(&self) -> u64 {
        (BATCH_HEADER_LEN + self.head.len()) as u64
    }

    /// Makes the message durable and queued, and returns its id. Only after
    /// this returns `Ok` may the server answer 250.
    ///
    /// Concurrent commits are grouped: one of the callers writes every
    /// pending message into one batch file, fsyncs it, renames it into
    /// `queue/`, and then one group-committed fsync of `queue/` that started
    /// after the rename covers them all. A message that spilled to disk is
    /// fsynced here and renamed in the same round. On error nothing is
    /// queued (see docs/spool-format.md for the one exception after a failed
    /// directory fsync).
    pub fn commit(mut self) -> Result<QueueId, SpoolError> {
        self.uncount();
        if self.failed {
            return Err(SpoolError::WriterFailed);
        }
        // The id names the message in the index and may name its batch file:
        // a repeated id can never replace a queued message.
        self.spool.index().reserve(&self.id)?;
        let spool = Arc::clone(&self.spool);
        let result = self.finish().and_then(|payload| self.committer.commit(&spool, self.id.clone(), payload));
        self.settle(result)
    }

    /// [`commit`](Self::commit) without waiting for it: `done` is called with the same
    /// result, on the spool's committer thread (or on a thread committing at the same time),
    /// once the round holding the message is durable (its batch file and `queue/` fsynced)
    /// or has failed. For a writer that is not [spilled](Self::is_spilled) this call does no
    /// blocking I/O, so an async task can make it and await `done` (through a channel)
    /// instead of holding a blocking thread; a spilled writer's file is completed and
    /// fsynced here first.
    pub fn commit_then(mut self, done: impl FnOnce(Result<QueueId, SpoolError>) + Send + 'static) {
        self.uncount();
        if self.failed {
            return done(Err(SpoolError::WriterFailed));
        }
        if let Err(e) = self.spool.index().reserve(&self.id) {
            return done(Err(e));
        }
        let payload = match self.finish() {
            Ok(payload) => payload,
            Err(e) => return done(self.settle(Err(e))),
        };
        let (committer, spool, id) = (Arc::clone(&self.committer), Arc::clone(&self.spool), self.id.clone());
        committer.submit(&spool, id, payload, Box::new(move |outcome| done(self.settle(outcome))));
    }

    /// The end of a commit: the id once the message is in `queue/`, else the reserved id
    /// is given back.
    fn settle(mut self, outcome: Result<(), SpoolError>) -> Result<QueueId, SpoolError> {
        match outcome {
            Ok(()) => {
                // Renamed into queue/.
                self.tmp_exists = false;
                Ok(self.id.clone())
            }
            Err(e) => {
                self.spool.index().unreserve(&self.id);
                Err(e)
            }
        }
    }

    /// Fills in the body length and hands over the message. A spilled
    /// message gets the rest of its body written and is fsynced here, in
    /// its own thread.
    fn finish(&mut self) -> Result<Payload, SpoolError> {
        let Some(mut file) = self.file.take() else {
            format::set_body_len(&mut self.head, self.len);
            return Ok(Payload::Small { line: std::mem::take(&mut self.head), body: std::mem::take(&mut self.buf) });
        };
        let path = self.spool.tmp_path(&self.id);
        file.write_all(&self.buf).map_err(io_err("write", &path))?;
        let size = format::len_field(self.len);
        file.write_all_at(&size, SPILLED_BODY_LEN_AT).map_err(io_err("write", &path))?;
        let started = std::time::Instant::now();
        file.sync_all().map_err(io_err("fsync", &path))?;
        self.spool.file_sync.record(started.elapsed());
        Ok(Payload::Spilled { line_len: self.head.len() as u64, body_len: self.len })
    }

    /// No longer a message arriving: it is being committed, or dropped.
    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.spool.writing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn create_temp(&mut self) -> Result<File, SpoolError> {
        let file = create_file(&self.spool.tmp_path(&self.id))?;
        self.tmp_exists = true;
        Ok(file)
    }

    /// Current capacity of the in-memory buffer (for the memory-bound tests).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Creates a new temporary file, readable for [`MessageWriter::content`].
fn create_file(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path).map_err(io_err("create", path))
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        self.uncount();
        // Aborted, or the commit failed before the rename: discard the file.
        if self.tmp_exists {
            let _ = fs::remove_file(self.spool.tmp_path(&self.id));
        }
    }
}

#[cfg(test)]
mod tests;
