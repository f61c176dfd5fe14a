//! Encoding and decoding of batch files (see docs/spool-format.md).
//!
//! Pure functions over bytes and positional readers; the file handling is
//! elsewhere. A commit round writes version 3 (a sealed batch: version 2's layout plus a
//! CRC-32 of the records in the header, so that a batch renamed into `queue/` before its
//! fsync and cut short by a crash is told apart from a committed one); a spilled message is
//! a version-2 batch of one (fsynced before its rename, it needs no seal). Version 1 files
//! (one message each, written by older builds) are still read.

use std::io::{self, BufRead, BufReader, Read};

use crate::{Envelope, QueueId};

/// First word of a batch file.
const MAGIC: &str = "DAKIYA-SPOOL";
/// Start of the first line of a version-2 file (a spilled message's, as this code writes
/// it); the number of messages in the file follows.
const V2_PREFIX: &[u8] = b"DAKIYA-SPOOL 2 ";
/// Start of the first line of a sealed batch file (version 3); the count and the checksum
/// follow.
const V3_PREFIX: &[u8] = b"DAKIYA-SPOOL 3 ";
/// Start of the first line of a batch written in place into a slot (version 4); the count,
/// the checksum and the length of the records follow (docs/spool-slots.md).
const V4_PREFIX: &[u8] = b"DAKIYA-SPOOL 4 ";
/// The message count is written as this many decimal digits.
const COUNT_DIGITS: usize = 8;
/// The CRC-32 of a sealed batch is written as this many lowercase hex digits.
const CRC_DIGITS: usize = 8;
/// Length of the first line of a version-2 file.
pub(crate) const BATCH_HEADER_LEN: usize = V2_PREFIX.len() + COUNT_DIGITS + 1;
/// Length of the first line of a sealed (version-3) file: prefix, count, space, CRC, `\n`.
pub(crate) const SEALED_HEADER_LEN: usize = V3_PREFIX.len() + COUNT_DIGITS + 1 + CRC_DIGITS + 1;
/// Length of the first line of a slot's batch (version 4): a sealed header whose `\n` gives
/// way to a space and the length of the records.
pub(crate) const SLOT_HEADER_LEN: usize = SEALED_HEADER_LEN + LEN_DIGITS + 1;
/// Lengths in record lines are written as this many decimal digits, so the
/// body length of a message streamed to disk can be filled in place.
const LEN_DIGITS: usize = 20;
/// Marks the start of a record; catches a length that points anywhere else.
const RECORD_MARK: &[u8] = b"M ";
/// Byte offset of the envelope length within a record line.
const ENV_LEN_AT: usize = RECORD_MARK.len() + QueueId::LEN + 1;
/// Byte offset of the body length within a record line.
const BODY_LEN_AT: usize = ENV_LEN_AT + LEN_DIGITS + 1;
/// Length of the fixed part of a record line, up to the envelope JSON.
pub(crate) const RECORD_PREFIX: usize = BODY_LEN_AT + LEN_DIGITS + 1;
/// Byte offset of the body length of the only message of a file written by
/// a spilled writer (batch header, then its record).
pub(crate) const SPILLED_BODY_LEN_AT: u64 = (BATCH_HEADER_LEN + BODY_LEN_AT) as u64;
/// Refuse envelopes longer than this (a corrupt file, not a message).
const MAX_ENVELOPE: u64 = 64 << 20;
/// Length of a version-1 first line: magic, `1`, 20 size digits, `\n`.
const V1_HEADER_LEN: usize = MAGIC.len() + 3 + LEN_DIGITS + 1;
/// Bytes read to find a file's version and header fields: the longest first line.
const FIRST_READ: usize = if V1_HEADER_LEN > SLOT_HEADER_LEN { V1_HEADER_LEN } else { SLOT_HEADER_LEN };

/// Why a spool file could not be decoded.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Reading failed.
    Io(io::Error),
    /// The file is not a valid spool file.
    Corrupt(String),
    /// A spool file written by another format version.
    Version(String),
}

impl From<io::Error> for DecodeError {
    fn from(e: io::Error) -> DecodeError {
        DecodeError::Io(e)
    }
}

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(reason.into())
}

/// A length formatted for a length field: [`LEN_DIGITS`] decimal digits, zero-padded (every
/// `u64` fits). An array, not a `String`: every message writes two of them.
pub(crate) fn len_field(len: u64) -> [u8; LEN_DIGITS] {
    let mut field = [b'0'; LEN_DIGITS];
    let mut rest = len;
    for digit in field.iter_mut().rev() {
        *digit = b"0123456789"[(rest % 10) as usize];
        rest /= 10;
    }
    field
}

/// The first line of a batch file of `count` messages.
pub(crate) fn batch_header(count: usize) -> [u8; BATCH_HEADER_LEN] {
    debug_assert!(count > 0 && count.to_string().len() <= COUNT_DIGITS);
    let mut header = [b'\n'; BATCH_HEADER_LEN];
    header[..V2_PREFIX.len()].copy_from_slice(V2_PREFIX);
    let digits = len_field(count as u64);
    header[V2_PREFIX.len()..BATCH_HEADER_LEN - 1].copy_from_slice(&digits[LEN_DIGITS - COUNT_DIGITS..]);
    header
}

/// The first line of a sealed batch file of `count` messages whose records (every byte after
/// this line) have the CRC-32 (IEEE) `crc`.
pub(crate) fn sealed_header(count: usize, crc: u32) -> [u8; SEALED_HEADER_LEN] {
    debug_assert!(count > 0 && count.to_string().len() <= COUNT_DIGITS);
    let mut header = [b'\n'; SEALED_HEADER_LEN];
    header[..V3_PREFIX.len()].copy_from_slice(V3_PREFIX);
    let count_at = V3_PREFIX.len();
    let digits = len_field(count as u64);
    header[count_at..count_at + COUNT_DIGITS].copy_from_slice(&digits[LEN_DIGITS - COUNT_DIGITS..]);
    header[count_at + COUNT_DIGITS] = b' ';
    let crc_at = count_at + COUNT_DIGITS + 1;
    for (i, digit) in header[crc_at..crc_at + CRC_DIGITS].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(crc >> (4 * (CRC_DIGITS - 1 - i)) & 0xf) as usize];
    }
    header
}

/// The first line of a slot's batch of `count` messages whose records, `len` bytes right after
/// this line, have the CRC-32 `crc`. Bytes after the records are whatever the slot held before
/// (an older batch, zeros): readers stop at `len`.
pub(crate) fn slot_header(count: usize, crc: u32, len: u64) -> [u8; SLOT_HEADER_LEN] {
    let mut header = [b'\n'; SLOT_HEADER_LEN];
    header[..SEALED_HEADER_LEN].copy_from_slice(&sealed_header(count, crc));
    header[..V4_PREFIX.len()].copy_from_slice(V4_PREFIX);
    header[SEALED_HEADER_LEN - 1] = b' ';
    header[SEALED_HEADER_LEN..SLOT_HEADER_LEN - 1].copy_from_slice(&len_field(len));
    header
}

/// The record line of a message: mark, id, envelope length, body length
/// (zero until [`set_body_len`]), the envelope as compact JSON, `\n`.
pub(crate) fn encode_record_line(envelope: &Envelope) -> Result<Vec<u8>, serde_json::Error> {
    /// Room for a usual envelope, so that the line is allocated once.
    const ENVELOPE_GUESS: usize = 512;
    let mut line = Vec::with_capacity(RECORD_PREFIX + ENVELOPE_GUESS);
    line.extend_from_slice(RECORD_MARK);
    line.extend_from_slice(envelope.id.as_str().as_bytes());
    line.push(b' ');
    line.extend_from_slice(&len_field(0));
    line.push(b' ');
    line.extend_from_slice(&len_field(0));
    line.push(b' ');
    debug_assert_eq!(line.len(), RECORD_PREFIX);
    // Serialized in place (no separate JSON buffer), then its length filled in. Compact JSON
    // escapes control characters, so it never contains '\n'.
    serde_json::to_writer(&mut line, envelope)?;
    let json_len = (line.len() - RECORD_PREFIX) as u64;
    line[ENV_LEN_AT..ENV_LEN_AT + LEN_DIGITS].copy_from_slice(&len_field(json_len));
    line.push(b'\n');
    Ok(line)
}

/// Writes the body length into a line produced by [`encode_record_line`].
pub(crate) fn set_body_len(line: &mut [u8], len: u64) {
    line[BODY_LEN_AT..BODY_LEN_AT + LEN_DIGITS].copy_from_slice(&len_field(len));
}

/// Where one message lies in a batch file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Byte offset of the envelope JSON.
    pub env_off: u64,
    /// Length of the envelope JSON, without its `\n`.
    pub env_len: u64,
    /// Byte offset of the body.
    pub body_off: u64,
    /// Length of the body.
    pub body_len: u64,
}

impl Extent {
    /// The extent of a record line of `line_len` bytes starting at `at`.
    pub fn of_record(at: u64, line_len: u64, body_len: u64) -> Extent {
        let env_off = at + RECORD_PREFIX as u64;
        let env_len = line_len - RECORD_PREFIX as u64 - 1;
        Extent { env_off, env_len, body_off: env_off + env_len + 1, body_len }
    }
}

/// One message found in a batch file.
#[derive(Debug)]
pub(crate) struct Found {
    pub envelope: Envelope,
    pub extent: Extent,
}

/// Positional reads, so that a batch can be decoded without reading bodies.
pub(crate) trait ReadAt {
    /// Reads into `buf` from byte offset `at`; may return fewer bytes, and 0
    /// at end of file.
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize>;

    /// Fills `buf` from byte offset `at`; `UnexpectedEof` at end of file.
    fn read_exact_at(&self, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, at) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, at)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        let rest = usize::try_from(at).ok().and_then(|at| self.get(at..)).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// Decodes every message of a batch file of `len` bytes, checking that the
/// records exactly tile the file. Bodies are not read.
pub(crate) fn read_batch<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<Vec<Found>, DecodeError> {
    let mut first = [0u8; FIRST_READ];
    let got = first.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    src.read_exact_at(&mut first[..got], 0)?;
    match version(&first[..got])? {
        1 => read_v1(src, len).map(|found| vec![found]),
        2 => read_records(src, BATCH_HEADER_LEN as u64, len, message_count(&first[..got])?),
        v => {
            let (start, count, crc, len) = if v == 3 {
                let (count, crc) = sealed_fields(&first[..got])?;
                (SEALED_HEADER_LEN as u64, count, crc, len)
            } else {
                // Version 4: the records end where the header says, inside the slot.
                let (count, crc) = sealed_fields(&first[..got])?;
                let records = slot_len(&first[..got])?;
                let end = (SLOT_HEADER_LEN as u64).checked_add(records).filter(|&end| end <= len);
                let end =
                    end.ok_or_else(|| corrupt(format!("records of {records} bytes run past the slot ({len} bytes)")))?;
                (SLOT_HEADER_LEN as u64, count, crc, end)
            };
            let found = read_records(src, start, len, count)?;
            // The records have the right shape; the seal says whether every byte is the one
            // written (a batch renamed before its fsync may hold old or missing pages).
            let actual = crc_of(src, start, len)?;
            if actual != crc {
                return Err(corrupt(format!(
                    "checksum mismatch (header {crc:08x}, records {actual:08x}): a commit round cut \
                     short by a crash leaves this (its messages were never acknowledged), or the \
                     file was damaged"
                )));
            }
            Ok(found)
        }
    }
}

/// The message count from a version-2 first line.
fn message_count(start: &[u8]) -> Result<usize, DecodeError> {
    let line = start.get(..BATCH_HEADER_LEN).and_then(|l| l.strip_suffix(b"\n"));
    let digits = line.and_then(|l| l.strip_prefix(V2_PREFIX)).filter(|d| d.iter().all(u8::is_ascii_digit));
    let count = digits.and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
    count.filter(|&n| n > 0).ok_or_else(|| corrupt("bad version line"))
}

/// The message count and the CRC-32 from a version-3 or -4 first line.
fn sealed_fields(start: &[u8]) -> Result<(usize, u32), DecodeError> {
    let bad = || corrupt("bad version line");
    let line = start.get(..SEALED_HEADER_LEN).ok_or_else(bad)?;
    let line = match line.strip_prefix(V4_PREFIX) {
        Some(_) => line.strip_suffix(b" ").ok_or_else(bad)?,
        None => line.strip_suffix(b"\n").ok_or_else(bad)?,
    };
    let fields = line.strip_prefix(V3_PREFIX).or_else(|| line.strip_prefix(V4_PREFIX)).ok_or_else(bad)?;
    let (count, crc) = (&fields[..COUNT_DIGITS], &fields[COUNT_DIGITS + 1..]);
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if fields[COUNT_DIGITS] != b' ' || !count.iter().all(u8::is_ascii_digit) || !crc.iter().all(lower_hex) {
        return Err(bad());
    }
    let text = |digits: &[u8]| std::str::from_utf8(digits).map(str::to_owned).map_err(|_| bad());
    let count = text(count)?.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(bad)?;
    let crc = u32::from_str_radix(&text(crc)?, 16).map_err(|_| bad())?;
    Ok((count, crc))
}

/// The length of the records from a version-4 first line.
fn slot_len(start: &[u8]) -> Result<u64, DecodeError> {
    let bad = || corrupt("bad version line");
    let line = start.get(..SLOT_HEADER_LEN).and_then(|l| l.strip_suffix(b"\n")).ok_or_else(bad)?;
    let digits = &line[SEALED_HEADER_LEN..];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u64>().ok()).ok_or_else(bad)
}

/// The CRC-32 of bytes `from..to` of `src`, read in 64 KiB pieces.
fn crc_of<R: ReadAt + ?Sized>(src: &R, from: u64, to: u64) -> Result<u32, DecodeError> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).unwrap_or(usize::MAX).min(buf.len());
        src.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize())
}

/// The version from the first line: 1, 2, 3, 4, or an error.
fn version(start: &[u8]) -> Result<u8, DecodeError> {
    let Some(rest) = start.strip_prefix(MAGIC.as_bytes()).and_then(|r| r.strip_prefix(b" ")) else {
        return Err(corrupt("not a dakiya spool file"));
    };
    // The version word ends at a space or newline; a file cut short in its
    // first line is corrupt, not of an unknown version.
    let word = rest.iter().position(|&b| b == b' ' || b == b'\n').map(|end| &rest[..end]);
    match word {
        Some(b"1") => Ok(1),
        Some(b"2") => Ok(2),
        Some(b"3") => Ok(3),
        Some(b"4") => Ok(4),
        Some(b"") | None => Err(corrupt("bad version line")),
        Some(other) => Err(DecodeError::Version(String::from_utf8_lossy(other).into_owned())),
    }
}

/// The records of a version-2, -3 or -4 file, from byte `start` (the end of its first line)
/// to `len` (the end of the file, or of a slot's records), which must be exactly `count`.
fn read_records<R: ReadAt + ?Sized>(src: &R, start: u64, len: u64, count: usize) -> Result<Vec<Found>, DecodeError> {
    let mut found = Vec::with_capacity(count.min(1024));
    let mut at = start;
    while at < len {
        if len - at < RECORD_PREFIX as u64 {
            return Err(corrupt(format!("truncated record at byte {at}")));
        }
        let mut prefix = [0u8; RECORD_PREFIX];
        src.read_exact_at(&mut prefix, at)?;
        let (id, env_len, body_len) =
            parse_prefix(&prefix).map_err(|e| corrupt(format!("record at byte {at}: {e}")))?;
        let extent = Extent::of_record(at, RECORD_PREFIX as u64 + env_len + 1, body_len);
        let end = extent.body_off.checked_add(body_len).filter(|&end| end <= len);
        let Some(end) = end else {
            return Err(corrupt(format!("record {id} at byte {at} runs past the end of the file ({len} bytes)")));
        };
        let envelope = read_envelope(src, &extent)?;
        if envelope.id != id {
            return Err(corrupt(format!("record {id} holds the envelope of {}", envelope.id)));
        }
        found.push(Found { envelope, extent });
        at = end;
    }
    if found.len() != count {
        return Err(corrupt(format!("batch holds {} messages, header says {count}", found.len())));
    }
    Ok(found)
}

/// `(id, envelope length, body length)` from the fixed part of a record line.
fn parse_prefix(prefix: &[u8; RECORD_PREFIX]) -> Result<(QueueId, u64, u64), String> {
    let spaces = [RECORD_MARK.len() - 1, ENV_LEN_AT - 1, BODY_LEN_AT - 1, RECORD_PREFIX - 1];
    if !prefix.starts_with(RECORD_MARK) || spaces.iter().any(|&i| prefix[i] != b' ') {
        return Err("bad record line".into());
    }
    let text = |range: std::ops::Range<usize>| std::str::from_utf8(&prefix[range]).unwrap_or("");
    let id = text(RECORD_MARK.len()..ENV_LEN_AT - 1).parse::<QueueId>().map_err(|e| e.to_string())?;
    let number = |at: usize| {
        let digits = text(at..at + LEN_DIGITS);
        let valid = digits.len() == LEN_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| digits.parse::<u64>().ok()).flatten().ok_or_else(|| "bad length field".to_owned())
    };
    let env_len = number(ENV_LEN_AT)?;
    if env_len > MAX_ENVELOPE {
        return Err(format!("envelope length {env_len} is too large"));
    }
    Ok((id, env_len, number(BODY_LEN_AT)?))
}

/// Reads and decodes the envelope of one message, checking its `\n`.
pub(crate) fn read_envelope<R: ReadAt + ?Sized>(src: &R, extent: &Extent) -> Result<Envelope, DecodeError> {
    let mut json = vec![0u8; usize::try_from(extent.env_len + 1).map_err(|_| corrupt("envelope too large"))?];
    src.read_exact_at(&mut json, extent.env_off).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("truncated envelope"),
        _ => DecodeError::Io(e),
    })?;
    if json.pop() != Some(b'\n') {
        return Err(corrupt("envelope is not terminated by a newline"));
    }
    serde_json::from_slice(&json).map_err(|e| corrupt(format!("envelope: {e}")))
}

/// A version-1 file: version line with the body size, envelope line, body.
fn read_v1<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<Found, DecodeError> {
    let mut reader = BufReader::with_capacity(8192, AtReader { src, at: 0 });
    let mut line = Vec::with_capacity(V1_HEADER_LEN);
    reader.by_ref().take(V1_HEADER_LEN as u64).read_until(b'\n', &mut line)?;
    let digits = line.strip_prefix(&b"DAKIYA-SPOOL 1 "[..]).and_then(|l| l.strip_suffix(b"\n"));
    let size = digits
        .filter(|d| d.len() == LEN_DIGITS && d.iter().all(u8::is_ascii_digit))
        .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok())
        .ok_or_else(|| corrupt("bad version line"))?;
    let mut json = Vec::new();
    reader.by_ref().take(MAX_ENVELOPE).read_until(b'\n', &mut json)?;
    if json.last() != Some(&b'\n') {
        return Err(corrupt("envelope line is not terminated"));
    }
    let env_off = V1_HEADER_LEN as u64;
    let env_len = json.len() as u64 - 1;
    let extent = Extent { env_off, env_len, body_off: env_off + env_len + 1, body_len: size };
    if extent.body_off.checked_add(size) != Some(len) {
        let body = len.saturating_sub(extent.body_off);
        return Err(corrupt(format!("body is {body} bytes, header says {size}")));
    }
    let envelope = read_envelope(src, &extent)?;
    Ok(Found { envelope, extent })
}

/// A `Read` over a [`ReadAt`], for the line-oriented version-1 header.
struct AtReader<'a, R: ?Sized> {
    src: &'a R,
    at: u64,
}

impl<R: ReadAt + ?Sized> Read for AtReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
