//! Encoding and decoding of status logs (see docs/spool-format.md).
//!
//! One log per batch file. Each line names the message it is about, so the
//! messages of a batch share one file. A recipient record carries a `rcpt`
//! index; a message record has none: `done` says a message has left the
//! queue, `held` / `released` that an operator held or released it.

use std::collections::{HashMap, HashSet};

use serde::de::IgnoredAny;
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

/// A line as read: a recipient's state, or an event of a whole message.
///
/// At most one variant matches a well-formed line: a recipient record needs
/// `rcpt` and a recipient state (`pending`, `delivered`, `deferred`,
/// `failed`); a message record's state is `done`, `held` or `released`,
/// which no recipient state is called.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Rcpt(RcptRecord),
    Message(MessageRecord),
}

/// `{"id":…,"state":"done"|"held"|"released"}`.
#[derive(Deserialize)]
struct MessageRecord {
    id: QueueId,
    state: MessageEvent,
    /// Never written. A line with both `rcpt` and a message state is
    /// malformed: it is skipped, so that it cannot hold or end a whole
    /// message by mistake.
    #[serde(default)]
    rcpt: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum MessageEvent {
    /// The message has left the queue.
    Done,
    /// The operator held the message.
    Held,
    /// The operator released the message.
    Released,
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
    encode_message_record(id, "done")
}

/// Encodes the record saying that message `id` is held (`true`) or released.
pub(crate) fn encode_hold(id: &QueueId, held: bool) -> Vec<u8> {
    encode_message_record(id, if held { "held" } else { "released" })
}

/// A queue id is 16 hex digits: it needs no JSON escaping.
fn encode_message_record(id: &QueueId, state: &str) -> Vec<u8> {
    format!("{{\"id\":\"{id}\",\"state\":\"{state}\"}}\n").into_bytes()
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
    /// The last hold (`true`) or release (`false`) of each message.
    held: HashMap<QueueId, bool>,
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
                Ok(Line::Rcpt(r)) => log.records.push((r.id, r.rcpt, r.state)),
                Ok(Line::Message(MessageRecord { rcpt: Some(_), .. })) | Err(_) => log.report.bad_lines += 1,
                Ok(Line::Message(MessageRecord { id, state, rcpt: None })) => match state {
                    MessageEvent::Done => {
                        log.done.insert(id);
                    }
                    MessageEvent::Held => {
                        log.held.insert(id, true);
                    }
                    MessageEvent::Released => {
                        log.held.insert(id, false);
                    }
                },
            }
        }
        Ok(log)
    }

    /// Whether message `id` is held: the last hold or release record about
    /// it wins; a message without one is not held.
    pub fn is_held(&self, id: &QueueId) -> bool {
        self.held.get(id).copied().unwrap_or(false)
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
    use crate::{Enhanced, FailureDetail};

    fn id(n: u64) -> QueueId {
        format!("{n:016X}").parse().unwrap()
    }

    #[test]
    fn record_encoding_is_flat_json_with_the_id() {
        let line = encode_record(
            &id(1),
            3,
            &RcptState::Deferred {
                attempts: 2,
                next_attempt: 99,
                error: "421 busy".into(),
                detail: None,
                delay_notified: false,
            },
        );
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
        log.extend(encode_record(
            &id(1),
            0,
            &RcptState::Deferred {
                attempts: 1,
                next_attempt: 5,
                error: "x".into(),
                detail: None,
                delay_notified: false,
            },
        ));
        log.extend(encode_record(
            &id(2),
            0,
            &RcptState::Failed { at: 7, error: "550".into(), detail: None, notified: false },
        ));
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
        assert_eq!(
            parsed.states(&id(2), 1, false).0,
            vec![RcptState::Failed { at: 7, error: "550".into(), detail: None, notified: false }]
        );
        assert_eq!(parsed.states(&id(3), 1, false), (vec![RcptState::Pending], 0));
    }

    #[test]
    fn version_1_records_apply_to_the_only_message() {
        let log = b"DAKIYA-STATUS 1\n{\"rcpt\":0,\"state\":\"delivered\",\"at\":4}\n";
        let parsed = StatusLog::parse(log).unwrap();
        assert_eq!(parsed.states(&id(1), 1, true).0, vec![RcptState::Delivered { at: 4 }]);
        assert_eq!(parsed.states(&id(1), 1, false).0, vec![RcptState::Pending]);
    }

    fn line(log: &mut Vec<u8>, text: &str) {
        log.extend(text.as_bytes());
        log.push(b'\n');
    }

    #[test]
    fn hold_and_release_encoding() {
        assert_eq!(encode_hold(&id(1), true), b"{\"id\":\"0000000000000001\",\"state\":\"held\"}\n");
        assert_eq!(encode_hold(&id(1), false), b"{\"id\":\"0000000000000001\",\"state\":\"released\"}\n");
    }

    #[test]
    fn the_last_hold_or_release_of_each_message_wins() {
        let mut log = STATUS_HEADER.to_vec();
        log.extend(encode_hold(&id(1), true));
        log.extend(encode_hold(&id(2), true));
        log.extend(encode_record(&id(1), 0, &RcptState::Delivered { at: 3 }));
        log.extend(encode_hold(&id(2), false));
        log.extend(encode_hold(&id(3), false));
        log.extend(encode_done(&id(4)));
        let parsed = StatusLog::parse(&log).unwrap();
        assert_eq!(parsed.report, LogReport::default());
        assert!(parsed.is_held(&id(1)));
        assert!(!parsed.is_held(&id(2)), "released after being held");
        assert!(!parsed.is_held(&id(3)), "released without being held");
        assert!(!parsed.is_held(&id(4)) && !parsed.is_held(&id(5)));
        assert_eq!(parsed.done, HashSet::from([id(4)]), "holds and releases are not done records");
        assert_eq!(parsed.states(&id(1), 1, false).0, vec![RcptState::Delivered { at: 3 }]);
        assert_eq!(parsed.states(&id(2), 1, false).0, vec![RcptState::Pending], "a hold names no recipient");
    }

    #[test]
    fn message_and_recipient_records_are_never_confused() {
        let mut log = STATUS_HEADER.to_vec();
        // Malformed mixtures are skipped: neither a recipient's state nor the
        // whole message's.
        line(&mut log, r#"{"id":"0000000000000001","rcpt":0,"state":"held"}"#);
        line(&mut log, r#"{"id":"0000000000000001","rcpt":0,"state":"done"}"#);
        line(&mut log, r#"{"id":"0000000000000001","rcpt":0,"state":"released"}"#);
        line(&mut log, r#"{"id":"0000000000000002","state":"delivered","at":4}"#);
        line(&mut log, r#"{"rcpt":0,"state":"held"}"#);
        line(&mut log, r#"{"state":"held"}"#);
        line(&mut log, r#"{"id":"not an id","state":"held"}"#);
        line(&mut log, r#"{"id":"0000000000000003","state":"Held"}"#);
        line(&mut log, r#"{"id":"0000000000000003","state":"pending"}"#);
        let parsed = StatusLog::parse(&log).unwrap();
        assert_eq!(parsed.report.bad_lines, 9);
        assert!(parsed.done.is_empty());
        for n in 1..=3 {
            assert!(!parsed.is_held(&id(n)));
            assert_eq!(parsed.states(&id(n), 1, true), (vec![RcptState::Pending], 0));
        }
    }

    #[test]
    fn a_torn_hold_is_ignored() {
        let mut log = STATUS_HEADER.to_vec();
        log.extend(encode_hold(&id(1), true));
        let release = encode_hold(&id(1), false);
        log.extend(&release[..release.len() - 1]); // all but its '\n'
        let parsed = StatusLog::parse(&log).unwrap();
        assert_eq!(parsed.report, LogReport { bad_lines: 0, torn_tail: true, bad_header: false });
        assert!(parsed.is_held(&id(1)));
    }

    #[test]
    fn failure_details_and_notice_flags_are_written_only_when_set() {
        let detail = FailureDetail {
            status: Enhanced(5, 1, 1),
            remote_mta: Some("mx.example.net".into()),
            diagnostic: Some("smtp; 550 5.1.1 no such user".into()),
        };
        let failed = RcptState::Failed { at: 7, error: "550".into(), detail: Some(detail), notified: true };
        assert_eq!(
            String::from_utf8(encode_record(&id(1), 0, &failed)).unwrap(),
            "{\"id\":\"0000000000000001\",\"rcpt\":0,\"state\":\"failed\",\"at\":7,\"error\":\"550\",\"detail\":\
             {\"status\":\"5.1.1\",\"remote_mta\":\"mx.example.net\",\"diagnostic\":\"smtp; 550 5.1.1 no such user\"},\
             \"notified\":true}\n"
        );
        let deferred = RcptState::Deferred {
            attempts: 3,
            next_attempt: 99,
            error: "451".into(),
            detail: Some(FailureDetail::new(Enhanced(4, 4, 1))),
            delay_notified: true,
        };
        assert_eq!(
            String::from_utf8(encode_record(&id(1), 1, &deferred)).unwrap(),
            "{\"id\":\"0000000000000001\",\"rcpt\":1,\"state\":\"deferred\",\"attempts\":3,\"next_attempt\":99,\
             \"error\":\"451\",\"detail\":{\"status\":\"4.4.1\"},\"delay_notified\":true}\n"
        );
        let failed_plain = RcptState::Failed { at: 7, error: "550".into(), detail: None, notified: false };
        assert_eq!(
            String::from_utf8(encode_record(&id(1), 0, &failed_plain)).unwrap(),
            "{\"id\":\"0000000000000001\",\"rcpt\":0,\"state\":\"failed\",\"at\":7,\"error\":\"550\"}\n",
            "the version-2 form of before these fields"
        );
        let mut log = STATUS_HEADER.to_vec();
        for (rcpt, state) in [&failed, &deferred, &failed_plain].into_iter().enumerate() {
            log.extend(encode_record(&id(1), rcpt, state));
        }
        let parsed = StatusLog::parse(&log).unwrap();
        assert_eq!(parsed.states(&id(1), 3, false).0, vec![failed, deferred, failed_plain]);
    }

    /// The examples of docs/spool-format.md, as written there.
    #[test]
    fn documented_examples_parse() {
        let doc = r#"DAKIYA-STATUS 2
{"id":"0655E5A00A3F2C11","rcpt":0,"state":"deferred","attempts":1,"next_attempt":1700000600,"error":"451 4.4.1 timeout"}
{"id":"0655E5A00A3F2C12","rcpt":1,"state":"failed","at":1700000005,"error":"550 5.1.1 no such user"}
{"id":"0655E5A00A3F2C12","state":"done"}
{"id":"0655E5A00A3F2C11","rcpt":0,"state":"delivered","at":1700000700}
{"id":"0655E5A00A3F2C13","state":"held"}
{"id":"0655E5A00A3F2C13","rcpt":0,"state":"deferred","attempts":3,"next_attempt":1700014400,"error":"451 4.4.1 timeout","detail":{"status":"4.4.1","remote_mta":"mx.example.com"},"delay_notified":true}
{"id":"0655E5A00A3F2C13","rcpt":1,"state":"failed","at":1700003000,"error":"550 5.1.1 no such user","detail":{"status":"5.1.1","remote_mta":"mx.example.net","diagnostic":"smtp; 550 5.1.1 <bob@example.net>: no such user"},"notified":true}
{"id":"0655E5A00A3F2C13","state":"released"}
{"id":"0655E5A00A3F2C11","state":"held"}
"#;
        let parsed = StatusLog::parse(doc.as_bytes()).unwrap();
        assert_eq!(parsed.report, LogReport::default());
        let msg = |s: &str| s.parse::<QueueId>().unwrap();
        let (first, second, third) = (msg("0655E5A00A3F2C11"), msg("0655E5A00A3F2C12"), msg("0655E5A00A3F2C13"));
        assert_eq!(parsed.done, HashSet::from([second.clone()]));
        assert!(parsed.is_held(&first) && !parsed.is_held(&second) && !parsed.is_held(&third));
        assert_eq!(parsed.states(&first, 1, false).0, vec![RcptState::Delivered { at: 1_700_000_700 }]);
        let old_form = RcptState::Failed {
            at: 1_700_000_005,
            error: "550 5.1.1 no such user".into(),
            detail: None,
            notified: false,
        };
        assert_eq!(parsed.states(&second, 2, false).0[1], old_form);
        let states = parsed.states(&third, 2, false).0;
        assert!(matches!(&states[0], RcptState::Deferred { attempts: 3, delay_notified: true, detail: Some(d), .. }
            if d.status == Enhanced(4, 4, 1) && d.remote_mta.as_deref() == Some("mx.example.com") && d.diagnostic.is_none()));
        assert!(matches!(&states[1], RcptState::Failed { notified: true, detail: Some(d), .. }
            if d.diagnostic.as_deref() == Some("smtp; 550 5.1.1 <bob@example.net>: no such user")));
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
