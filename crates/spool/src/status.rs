//! Encoding and decoding of status logs (see docs/spool-format.md).
//!
//! One log per batch file. Each line names the message it is about, so the
//! messages of a batch share one file; a `done` line says a message has
//! left the queue.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::format::DecodeError;
use crate::{QueueId, RcptState};

/// First line of the status logs this code creates.
pub(crate) const STATUS_HEADER: &[u8] = b"DAKIYA-STATUS 2\n";
/// First line of logs written by version-1 builds; still read and appended to.
const STATUS_HEADER_V1: &[u8] = b"DAKIYA-STATUS 1\n";
const STATUS_MAGIC: &[u8] = b"DAKIYA-STATUS ";

/// A recipient's state, as written.
#[derive(Serialize)]
struct RcptRecordRef<'a> {
    id: &'a QueueId,
    rcpt: usize,
    #[serde(flatten)]
    state: &'a RcptState,
}

/// A line as read: a recipient's state, or the end of a message.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Done(DoneRecord),
    Rcpt(RcptRecord),
}

#[derive(Deserialize)]
struct DoneRecord {
    id: QueueId,
    #[allow(dead_code)] // only its value, "done", matters
    state: DoneTag,
}

#[derive(Deserialize)]
enum DoneTag {
    #[serde(rename = "done")]
    Done,
}

#[derive(Deserialize)]
struct RcptRecord {
    /// Absent in version-1 logs, whose file holds one message.
    #[serde(default)]
    id: Option<QueueId>,
    rcpt: usize,
    #[serde(flatten)]
    state: RcptState,
}

/// Encodes one recipient's state as a `\n`-terminated JSON line.
pub(crate) fn encode_record(id: &QueueId, rcpt: usize, state: &RcptState) -> Vec<u8> {
    // Serializing plain data to a Vec cannot fail.
    let mut line = serde_json::to_vec(&RcptRecordRef { id, rcpt, state }).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Encodes the record saying that message `id` is no longer queued.
pub(crate) fn encode_done(id: &QueueId) -> Vec<u8> {
    format!("{{\"id\":\"{id}\",\"state\":\"done\"}}\n").into_bytes()
}

/// What a reader had to skip; the caller logs it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LogReport {
    /// Complete lines that were not valid records (or named no recipient).
    pub bad_lines: usize,
    /// Whether the log ended in a partial line (a write torn by a crash).
    pub torn_tail: bool,
    /// Whether the first line was not a known header (all lines ignored).
    pub bad_header: bool,
}

/// A decoded status log.
#[derive(Debug, Default)]
pub(crate) struct StatusLog {
    /// Messages that have left the queue.
    pub done: HashSet<QueueId>,
    /// Recipient records in file order: `(message, recipient, state)`.
    records: Vec<(Option<QueueId>, usize, RcptState)>,
    /// What was skipped while decoding.
    pub report: LogReport,
}

impl StatusLog {
    /// Decodes a log. A final line without `\n` is a torn write and ignored.
    pub fn parse(data: &[u8]) -> Result<StatusLog, DecodeError> {
        let mut log = StatusLog::default();
        let complete = complete_len(data);
        log.report.torn_tail = complete < data.len();
        let mut lines = data[..complete].split_inclusive(|&b| b == b'\n');
        match lines.next() {
            None => return Ok(log),
            Some(STATUS_HEADER | STATUS_HEADER_V1) => {}
            Some(other) if other.starts_with(STATUS_MAGIC) => {
                let version = String::from_utf8_lossy(&other[STATUS_MAGIC.len()..]);
                return Err(DecodeError::Version(version.trim_end().to_owned()));
            }
            Some(_) => {
                log.report.bad_header = true;
                return Ok(log);
            }
        }
        for line in lines {
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Done(done)) => {
                    log.done.insert(done.id);
                }
                Ok(Line::Rcpt(r)) => log.records.push((r.id, r.rcpt, r.state)),
                Err(_) => log.report.bad_lines += 1,
            }
        }
        Ok(log)
    }

    /// The last state of each of the `rcpts` recipients of message `id`, and
    /// how many records named a recipient out of range. Records without an
    /// id (version-1 logs) apply when the batch holds only one message.
    pub fn states(&self, id: &QueueId, rcpts: usize, only_message: bool) -> (Vec<RcptState>, usize) {
        let mut states = vec![RcptState::Pending; rcpts];
        let mut out_of_range = 0;
        for (record_id, rcpt, state) in &self.records {
            let ours = match record_id {
                Some(record_id) => record_id == id,
                None => only_message,
            };
            match states.get_mut(*rcpt) {
                Some(slot) if ours => *slot = state.clone(),
                None if ours => out_of_range += 1,
                _ => {}
            }
        }
        (states, out_of_range)
    }
}

/// Length of the prefix of `data` that ends with a complete line.
pub(crate) fn complete_len(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> QueueId {
        format!("{n:016X}").parse().unwrap()
    }

    #[test]
    fn record_encoding_is_flat_json_with_the_id() {
        let line =
            encode_record(&id(1), 3, &RcptState::Deferred { attempts: 2, next_attempt: 99, error: "421 busy".into(), detail: None, delay_notified: false });
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"id\":\"0000000000000001\",\"rcpt\":3,\"state\":\"deferred\",\"attempts\":2,\"next_attempt\":99,\
             \"error\":\"421 busy\"}\n"
        );
        assert_eq!(encode_done(&id(2)), b"{\"id\":\"0000000000000002\",\"state\":\"done\"}\n");
    }

    #[test]
    fn records_of_a_batch_are_kept_apart_and_the_last_wins() {
        let mut log = STATUS_HEADER.to_vec();
        log.extend(encode_record(&id(1), 0, &RcptState::Deferred { attempts: 1, next_attempt: 5, error: "x".into(), detail: None, delay_notified: false }));
        log.extend(encode_record(&id(2), 0, &RcptState::Failed { at: 7, error: "550".into(), detail: None, notified: false }));
        log.extend(encode_record(&id(1), 0, &RcptState::Delivered { at: 9 }));
        log.extend(encode_done(&id(3)));
        log.extend(b"not json\n");
        log.extend(encode_record(&id(1), 9, &RcptState::Delivered { at: 9 })); // no such rcpt
        let full = encode_record(&id(1), 1, &RcptState::Delivered { at: 11 });
        log.extend(&full[..full.len() - 3]); // torn by a crash
        let parsed = StatusLog::parse(&log).unwrap();
        assert_eq!(parsed.report, LogReport { bad_lines: 1, torn_tail: true, bad_header: false });
        assert_eq!(parsed.done, HashSet::from([id(3)]));
        let (states, out_of_range) = parsed.states(&id(1), 2, false);
        assert_eq!(states, vec![RcptState::Delivered { at: 9 }, RcptState::Pending]);
        assert_eq!(out_of_range, 1);
        assert_eq!(parsed.states(&id(2), 1, false).0, vec![RcptState::Failed { at: 7, error: "550".into(), detail: None, notified: false }]);
        assert_eq!(parsed.states(&id(3), 1, false), (vec![RcptState::Pending], 0));
    }

    #[test]
    fn version_1_records_apply_to_the_only_message() {
        let log = b"DAKIYA-STATUS 1\n{\"rcpt\":0,\"state\":\"delivered\",\"at\":4}\n";
        let parsed = StatusLog::parse(log).unwrap();
        assert_eq!(parsed.states(&id(1), 1, true).0, vec![RcptState::Delivered { at: 4 }]);
        assert_eq!(parsed.states(&id(1), 1, false).0, vec![RcptState::Pending]);
    }

    #[test]
    fn headers() {
        let torn_header = StatusLog::parse(b"DAKIYA-STA").unwrap();
        assert!(torn_header.report.torn_tail && !torn_header.report.bad_header);
        let bad = StatusLog::parse(b"hello\n{}\n").unwrap();
        assert!(bad.report.bad_header);
        assert!(matches!(StatusLog::parse(b"DAKIYA-STATUS 7\n"), Err(DecodeError::Version(v)) if v == "7"));
    }
}
