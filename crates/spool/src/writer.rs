//! Writing one message: bounded buffering, then the commit protocol.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;

use crate::commit::Payload;
use crate::error::io_err;
use crate::format::{self, SPILLED_BODY_LEN_AT};
use crate::spool::Inner;
use crate::{Envelope, QueueId, SpoolError};

/// At most this much of a message is held in memory; beyond it the message
/// streams to a temporary file.
pub(crate) const BUFFER_CAP: usize = 128 * 1024;
/// First allocation of the buffer; it doubles up to [`BUFFER_CAP`].
const BUFFER_START: usize = 8 * 1024;

/// A message being received. Obtain one from [`crate::Spool::writer`],
/// [`write`](MessageWriter::write) the body, then
/// [`commit`](MessageWriter::commit). Dropping it without committing aborts:
/// its temporary file, if any, is removed.
pub struct MessageWriter {
    spool: Arc<Inner>,
    id: QueueId,
    /// The message's record line: id, lengths (body length not yet filled
    /// in) and envelope.
    head: Vec<u8>,
    /// Body bytes not yet written to the file; never above [`BUFFER_CAP`].
    buf: Vec<u8>,
    /// The temporary file, once the body outgrew the buffer.
    file: Option<File>,
    /// Whether a temporary file exists that Drop must remove.
    tmp_exists: bool,
    /// Body bytes accepted so far.
    len: u64,
    /// Set when a write failed: the file content is unknown.
    failed: bool,
}

impl MessageWriter {
    pub(crate) fn new(spool: Arc<Inner>, envelope: Envelope) -> Result<MessageWriter, SpoolError> {
        Ok(MessageWriter {
            spool,
            id: envelope.id.clone(),
            head: format::encode_record_line(&envelope)?,
            buf: Vec::new(),
            file: None,
            tmp_exists: false,
            len: 0,
            failed: false,
        })
    }

    /// The message's queue id.
    pub fn id(&self) -> &QueueId {
        &self.id
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
                file.write_all(&[&format::batch_header(1), &self.head[..]].concat()).map_err(io_err("write", &path))?;
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
        if self.failed {
            return Err(SpoolError::WriterFailed);
        }
        // The id names the message in the index and may name its batch file:
        // a repeated id can never replace a queued message.
        self.spool.index().reserve(&self.id)?;
        let spool = Arc::clone(&self.spool);
        let result = self.finish().and_then(|payload| spool.committer.commit(&spool, self.id.clone(), payload));
        match result {
            Ok(()) => {
                // Renamed into queue/.
                self.tmp_exists = false;
                Ok(self.id.clone())
            }
            Err(e) => {
                spool.index().unreserve(&self.id);
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
        file.write_all_at(size.as_bytes(), SPILLED_BODY_LEN_AT).map_err(io_err("write", &path))?;
        file.sync_all().map_err(io_err("fsync", &path))?;
        Ok(Payload::Spilled { line_len: self.head.len() as u64, body_len: self.len })
    }

    fn create_temp(&mut self) -> Result<File, SpoolError> {
        let path = self.spool.tmp_path(&self.id);
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io_err("create", &path))?;
        self.tmp_exists = true;
        Ok(file)
    }

    /// Current capacity of the in-memory buffer (for the memory-bound tests).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        // Aborted, or the commit failed before the rename: discard the file.
        if self.tmp_exists {
            let _ = fs::remove_file(self.spool.tmp_path(&self.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyType, Recipient, Spool};
    use std::io::Read;

    fn envelope(spool: &Spool) -> Envelope {
        Envelope {
            id: spool.new_id(),
            received_at: 0,
            sender: String::new(),
            client_ip: "::1".into(),
            helo: "test".into(),
            body: BodyType::SevenBit,
            smtputf8: false,
            dsn_ret: None,
            dsn_envid: None,
            prepend: None,
            recipients: vec![Recipient {
                address: "a@b".into(),
                original: "a@b".into(),
                orcpt: None,
                notify: None,
                mailbox: None,
            }],
        }
    }

    /// Deterministic, non-repeating-per-chunk content.
    fn chunk(n: u64, out: &mut [u8]) {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in out.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }

    #[test]
    fn big_message_stays_bounded_in_memory_and_reads_back_identical() {
        const CHUNK: usize = 64 * 1024;
        const CHUNKS: u64 = 320; // 20 MiB
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut writer = spool.writer(envelope(&spool)).unwrap();
        let mut data = vec![0u8; CHUNK];
        let mut max_capacity = 0;
        for n in 0..CHUNKS {
            chunk(n, &mut data);
            // Odd split so writes straddle the buffer boundary.
            writer.write(&data[..1000]).unwrap();
            writer.write(&data[1000..]).unwrap();
            max_capacity = max_capacity.max(writer.buffer_capacity());
            assert!(writer.buffer_capacity() <= BUFFER_CAP, "chunk {n}");
        }
        assert!(max_capacity > 0);
        assert_eq!(writer.len(), CHUNKS * CHUNK as u64);
        let id = writer.commit().unwrap();

        let mut body = spool.body(&id).unwrap();
        assert_eq!(body.len(), CHUNKS * CHUNK as u64);
        let mut got = vec![0u8; CHUNK];
        for n in 0..CHUNKS {
            chunk(n, &mut data);
            body.read_exact(&mut got).unwrap();
            assert!(got == data, "chunk {n} differs");
        }
        assert_eq!(body.read(&mut got).unwrap(), 0, "trailing bytes");
        assert_eq!(spool.load(&id).unwrap().size, CHUNKS * CHUNK as u64);
    }

    #[test]
    fn one_huge_write_is_not_copied_into_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut writer = spool.writer(envelope(&spool)).unwrap();
        let data = vec![b'x'; 3 * BUFFER_CAP + 7];
        writer.write(b"head").unwrap();
        writer.write(&data).unwrap();
        assert!(writer.buffer_capacity() <= BUFFER_CAP);
        let id = writer.commit().unwrap();
        let mut body = Vec::new();
        spool.body(&id).unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(&body[..4], b"head");
        assert_eq!(&body[4..], &data[..]);
    }

    #[test]
    fn small_message_never_touches_disk_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut writer = spool.writer(envelope(&spool)).unwrap();
        writer.write(&[b'y'; 5000]).unwrap();
        assert!(writer.file.is_none());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        writer.commit().unwrap();
    }
}
