//! Encoding and decoding of the spool files (see docs/spool-format.md).
//!
//! Pure functions over bytes and readers; the file handling is elsewhere.

use std::io::{self, BufRead, Read};

use serde::{Deserialize, Serialize};

use crate::{Envelope, RcptState};

/// First word of a message file.
const MSG_MAGIC: &str = "DAKIYA-SPOOL";
/// The message file version this code writes and reads.
const MSG_VERSION: &str = "1";
/// The body size is written as this many decimal digits, so it can be filled
/// in place after streaming the body.
const SIZE_DIGITS: usize = 20;
/// Byte offset of the size digits in the first line (`"DAKIYA-SPOOL 1 "`).
pub(crate) const SIZE_OFFSET: u64 = (MSG_MAGIC.len() + 1 + MSG_VERSION.len() + 1) as u64;
/// Length of the first line including its `\n`.
const HEADER_LEN: usize = SIZE_OFFSET as usize + SIZE_DIGITS + 1;
/// Refuse envelope lines longer than this (a corrupt file, not a message).
const MAX_ENVELOPE_LINE: u64 = 64 << 20;

/// First line of a status log.
pub(crate) const STATUS_HEADER: &[u8] = b"DAKIYA-STATUS 1\n";
const STATUS_MAGIC: &[u8] = b"DAKIYA-STATUS ";

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

/// The body size formatted for the size field.
pub(crate) fn size_field(size: u64) -> String {
    format!("{size:0SIZE_DIGITS$}")
}

/// The start of a message file: the version line (with a zero size, filled in
/// at commit) and the envelope as one JSON line.
pub(crate) fn encode_head(envelope: &Envelope) -> Result<Vec<u8>, serde_json::Error> {
    let mut head = format!("{MSG_MAGIC} {MSG_VERSION} {}\n", size_field(0)).into_bytes();
    debug_assert_eq!(head.len(), HEADER_LEN);
    // Compact JSON escapes control characters, so it never contains '\n'.
    serde_json::to_writer(&mut head, envelope)?;
    head.push(b'\n');
    Ok(head)
}

/// Writes `size` into a head produced by [`encode_head`].
pub(crate) fn set_head_size(head: &mut [u8], size: u64) {
    let at = SIZE_OFFSET as usize;
    head[at..at + SIZE_DIGITS].copy_from_slice(size_field(size).as_bytes());
}

/// What precedes the body in a message file.
#[derive(Debug)]
pub(crate) struct Head {
    pub envelope: Envelope,
    /// Byte offset of the body.
    pub body_offset: u64,
    /// Body size announced by the version line.
    pub size: u64,
}

/// Reads the version line and the envelope, leaving `reader` at the body.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> Result<Head, DecodeError> {
    let mut line = Vec::with_capacity(HEADER_LEN);
    reader.by_ref().take(HEADER_LEN as u64 + 64).read_until(b'\n', &mut line)?;
    let size = parse_version_line(&line)?;
    let mut json = Vec::new();
    reader.by_ref().take(MAX_ENVELOPE_LINE).read_until(b'\n', &mut json)?;
    if json.pop() != Some(b'\n') {
        return Err(DecodeError::Corrupt("envelope line is not terminated".into()));
    }
    let envelope = serde_json::from_slice(&json).map_err(|e| DecodeError::Corrupt(format!("envelope: {e}")))?;
    Ok(Head { envelope, body_offset: (line.len() + json.len() + 1) as u64, size })
}

fn parse_version_line(line: &[u8]) -> Result<u64, DecodeError> {
    let text = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_suffix('\n'))
        .ok_or_else(|| DecodeError::Corrupt("bad version line".into()))?;
    let mut words = text.split(' ');
    if words.next() != Some(MSG_MAGIC) {
        return Err(DecodeError::Corrupt("not a dakiya spool file".into()));
    }
    let version = words.next().unwrap_or("");
    if version != MSG_VERSION {
        return Err(DecodeError::Version(version.to_owned()));
    }
    let digits = words.next().unwrap_or("");
    if digits.len() != SIZE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::Corrupt("bad size field".into()));
    }
    if words.next().is_some() {
        return Err(DecodeError::Corrupt("trailing data in version line".into()));
    }
    digits.parse().map_err(|_| DecodeError::Corrupt("size out of range".into()))
}

/// One line of a status log.
#[derive(Serialize, Deserialize)]
struct Record {
    rcpt: usize,
    #[serde(flatten)]
    state: RcptState,
}

/// Encodes one status record as a `\n`-terminated JSON line.
pub(crate) fn encode_record(rcpt: usize, state: &RcptState) -> Vec<u8> {
    let record = Record { rcpt, state: state.clone() };
    // Serializing plain data to a Vec cannot fail.
    let mut line = serde_json::to_vec(&record).unwrap_or_default();
    line.push(b'\n');
    line
}

/// What [`apply_status_log`] had to skip; the caller logs it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LogReport {
    /// Complete lines that were not valid records (or named no recipient).
    pub bad_lines: usize,
    /// Whether the log ended in a partial line (a write torn by a crash).
    pub torn_tail: bool,
    /// Whether the first line was not the expected header (all lines ignored).
    pub bad_header: bool,
}

/// Applies the records of a status log to `states`; the last record for a
/// recipient wins. A final line without `\n` is a torn write and ignored.
pub(crate) fn apply_status_log(data: &[u8], states: &mut [RcptState]) -> Result<LogReport, DecodeError> {
    let mut report = LogReport::default();
    let complete = complete_len(data);
    report.torn_tail = complete < data.len();
    let mut lines = data[..complete].split_inclusive(|&b| b == b'\n');
    match lines.next() {
        None => return Ok(report),
        Some(STATUS_HEADER) => {}
        Some(other) if other.starts_with(STATUS_MAGIC) => {
            let version = String::from_utf8_lossy(&other[STATUS_MAGIC.len()..]);
            return Err(DecodeError::Version(version.trim_end().to_owned()));
        }
        Some(_) => {
            report.bad_header = true;
            return Ok(report);
        }
    }
    for line in lines {
        match serde_json::from_slice::<Record>(line) {
            Ok(record) if record.rcpt < states.len() => states[record.rcpt] = record.state,
            _ => report.bad_lines += 1,
        }
    }
    Ok(report)
}

/// Length of the prefix of `data` that ends with a complete line.
pub(crate) fn complete_len(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Reads a whole (small) status log.
pub(crate) fn read_all(mut reader: impl Read) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    reader.read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyType, Recipient};

    fn envelope(rcpts: usize) -> Envelope {
        Envelope {
            id: "0000000100000002".parse().unwrap(),
            received_at: 1,
            sender: "a@b\n\"x\"".into(),
            client_ip: "127.0.0.1".into(),
            helo: "h".into(),
            body: BodyType::EightBitMime,
            smtputf8: false,
            dsn_ret: None,
            dsn_envid: None,
            recipients: (0..rcpts)
                .map(|i| Recipient {
                    address: format!("r{i}@x"),
                    original: format!("R{i}@x"),
                    orcpt: None,
                    notify: Some(vec![]),
                    mailbox: None,
                })
                .collect(),
        }
    }

    #[test]
    fn head_round_trip() {
        let env = envelope(2);
        let mut head = encode_head(&env).unwrap();
        set_head_size(&mut head, 12345);
        assert!(head.starts_with(b"DAKIYA-SPOOL 1 00000000000000012345\n"));
        assert_eq!(head.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut file = head.clone();
        file.extend_from_slice(b"body");
        let mut reader = &file[..];
        let parsed = read_head(&mut reader).unwrap();
        assert_eq!(parsed.envelope, env);
        assert_eq!(parsed.size, 12345);
        assert_eq!(parsed.body_offset, head.len() as u64);
        assert_eq!(reader, b"body");
    }

    #[test]
    fn head_rejects_garbage_and_foreign_versions() {
        let cases: [(&[u8], bool); 6] = [
            (b"", false),
            (b"From: x\r\n\r\nhello", false),
            (b"DAKIYA-SPOOL 1 123\n{}\n", false),
            (b"DAKIYA-SPOOL 1 00000000000000000000\n{\"id\":\"../x\"}\n", false),
            (b"DAKIYA-SPOOL 1 00000000000000000000\n{\"id\"", false),
            (b"DAKIYA-SPOOL 2 whatever\n", true),
        ];
        for (bytes, is_version) in cases {
            match read_head(&mut &bytes[..]) {
                Err(DecodeError::Version(v)) => assert!(is_version, "{v}"),
                Err(DecodeError::Corrupt(_)) => assert!(!is_version),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn record_encoding_is_flat_json() {
        let line = encode_record(3, &RcptState::Deferred { attempts: 2, next_attempt: 99, error: "421 busy".into() });
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"rcpt\":3,\"state\":\"deferred\",\"attempts\":2,\"next_attempt\":99,\"error\":\"421 busy\"}\n"
        );
    }

    #[test]
    fn status_log_last_record_wins_and_torn_tail_is_ignored() {
        let mut log = STATUS_HEADER.to_vec();
        log.extend(encode_record(0, &RcptState::Deferred { attempts: 1, next_attempt: 5, error: "x".into() }));
        log.extend(encode_record(1, &RcptState::Failed { at: 7, error: "550".into() }));
        log.extend(encode_record(0, &RcptState::Delivered { at: 9 }));
        log.extend(b"not json\n");
        log.extend(encode_record(9, &RcptState::Delivered { at: 9 })); // no such rcpt
        let full = encode_record(1, &RcptState::Delivered { at: 11 });
        log.extend(&full[..full.len() - 3]); // torn by a crash
        let mut states = vec![RcptState::Pending; 3];
        let report = apply_status_log(&log, &mut states).unwrap();
        assert_eq!(
            states,
            vec![RcptState::Delivered { at: 9 }, RcptState::Failed { at: 7, error: "550".into() }, RcptState::Pending,]
        );
        assert_eq!(report, LogReport { bad_lines: 2, torn_tail: true, bad_header: false });
    }

    #[test]
    fn status_log_headers() {
        let mut states = vec![RcptState::Pending];
        let torn_header = apply_status_log(b"DAKIYA-STA", &mut states).unwrap();
        assert!(torn_header.torn_tail && !torn_header.bad_header);
        let bad = apply_status_log(b"hello\n{}\n", &mut states).unwrap();
        assert!(bad.bad_header);
        assert!(matches!(
            apply_status_log(b"DAKIYA-STATUS 7\n", &mut states),
            Err(DecodeError::Version(v)) if v == "7"
        ));
        assert_eq!(states, vec![RcptState::Pending]);
    }
}
