//! The spool's files are unchanged by the move of NOTIFY, RET, BODY and enhanced status codes
//! to `dakiya_proto` (with `dakiya_spool::codec` spelling them): the literal lines and files
//! below were written by the spool as it was before (its own `Notify`, `DsnRet`, `BodyType`
//! enums and a `String` status), and are read the same and written again byte for byte.

use std::fs;
use std::path::Path;

use dakiya_spool::{
    BodyType, Enhanced, Envelope, FailureDetail, Notify, QueueId, RcptState, Recipient, Ret, Spool, SpoolOptions, codec,
};

/// Envelope lines written by the spool before this change.
const ENVELOPE_FULL: &str = r#"{"id":"0655E5A00A3F2C11","received_at":1700000000,"sender":"sender@example.org","client_ip":"192.0.2.7","helo":"client.example.org","body":"eight_bit_mime","smtputf8":true,"dsn_ret":"hdrs","dsn_envid":"env-1","recipients":[{"address":"user0@example.com","original":"User0@Example.com","orcpt":"rfc822;User0@Example.com","notify":null,"mailbox":["example.com","user0"]},{"address":"user1@example.com","original":"User1@Example.com","orcpt":null,"notify":[],"mailbox":null},{"address":"user2@example.com","original":"User2@Example.com","orcpt":null,"notify":["success","failure","delay"],"mailbox":["example.com","user2"]},{"address":"user3@example.com","original":"User3@Example.com","orcpt":null,"notify":["failure","delay"],"mailbox":null},{"address":"user4@example.com","original":"User4@Example.com","orcpt":null,"notify":["success"],"mailbox":["example.com","user4"]}],"prepend":"Authentication-Results: x; none\r\n"}"#;
const ENVELOPE_SEVEN_BIT_FULL: &str = r#"{"id":"0655E5A00A3F2C11","received_at":1700000000,"sender":"sender@example.org","client_ip":"192.0.2.7","helo":"client.example.org","body":"seven_bit","smtputf8":false,"dsn_ret":"full","dsn_envid":null,"recipients":[{"address":"user1@example.com","original":"User1@Example.com","orcpt":null,"notify":["delay"],"mailbox":null}]}"#;
const ENVELOPE_NO_RET: &str = r#"{"id":"0655E5A00A3F2C11","received_at":1700000000,"sender":"sender@example.org","client_ip":"192.0.2.7","helo":"client.example.org","body":"seven_bit","smtputf8":false,"dsn_ret":null,"dsn_envid":null,"recipients":[]}"#;

/// The batch file the spool wrote for `full_envelope()` with the body `x`.
const BATCH_FILE: &str = "DAKIYA-SPOOL 2 00000001\nM 0655E5A00A3F2C11 00000000000000000921 00000000000000000001 {\"id\":\"0655E5A00A3F2C11\",\"received_at\":1700000000,\"sender\":\"sender@example.org\",\"client_ip\":\"192.0.2.7\",\"helo\":\"client.example.org\",\"body\":\"eight_bit_mime\",\"smtputf8\":true,\"dsn_ret\":\"hdrs\",\"dsn_envid\":\"env-1\",\"recipients\":[{\"address\":\"user0@example.com\",\"original\":\"User0@Example.com\",\"orcpt\":\"rfc822;User0@Example.com\",\"notify\":null,\"mailbox\":[\"example.com\",\"user0\"]},{\"address\":\"user1@example.com\",\"original\":\"User1@Example.com\",\"orcpt\":null,\"notify\":[],\"mailbox\":null},{\"address\":\"user2@example.com\",\"original\":\"User2@Example.com\",\"orcpt\":null,\"notify\":[\"success\",\"failure\",\"delay\"],\"mailbox\":[\"example.com\",\"user2\"]},{\"address\":\"user3@example.com\",\"original\":\"User3@Example.com\",\"orcpt\":null,\"notify\":[\"failure\",\"delay\"],\"mailbox\":null},{\"address\":\"user4@example.com\",\"original\":\"User4@Example.com\",\"orcpt\":null,\"notify\":[\"success\"],\"mailbox\":[\"example.com\",\"user4\"]}],\"prepend\":\"Authentication-Results: x; none\\r\\n\"}\nx";

/// The status log the spool wrote for `states()` recorded for recipients 0, 1, 2, 3, 4, 0.
const STATUS_LOG: &str = r#"DAKIYA-STATUS 2
{"id":"0655E5A00A3F2C11","rcpt":0,"state":"pending"}
{"id":"0655E5A00A3F2C11","rcpt":1,"state":"delivered","at":1700000700}
{"id":"0655E5A00A3F2C11","rcpt":2,"state":"deferred","attempts":3,"next_attempt":1700014400,"error":"451 4.4.1 timeout","detail":{"status":"4.4.1","remote_mta":"mx.example.com [192.0.2.1]"},"delay_notified":true}
{"id":"0655E5A00A3F2C11","rcpt":3,"state":"failed","at":1700003000,"error":"550 5.1.1 no such user","detail":{"status":"5.1.10","remote_mta":"mx.example.net [2001:db8::1]","diagnostic":"smtp; 550 5.1.1 <bob@example.net>: no such user"},"notified":true}
{"id":"0655E5A00A3F2C11","rcpt":4,"state":"failed","at":1700003001,"error":"gave up","detail":{"status":"4.4.7"}}
{"id":"0655E5A00A3F2C11","rcpt":0,"state":"deferred","attempts":1,"next_attempt":5,"error":"x"}
"#;

const ID: &str = "0655E5A00A3F2C11";

fn rcpt(i: usize, notify: Option<Notify>) -> Recipient {
    Recipient {
        address: format!("user{i}@example.com"),
        original: format!("User{i}@Example.com"),
        orcpt: (i == 0).then(|| format!("rfc822;User{i}@Example.com")),
        notify,
        mailbox: i.is_multiple_of(2).then(|| ("example.com".into(), format!("user{i}"))),
    }
}

fn notify(success: bool, failure: bool, delay: bool) -> Option<Notify> {
    Some(Notify { success, failure, delay })
}

fn full_envelope() -> Envelope {
    Envelope {
        id: ID.parse().unwrap(),
        received_at: 1_700_000_000,
        sender: "sender@example.org".into(),
        client_ip: "192.0.2.7".into(),
        helo: "client.example.org".into(),
        body: BodyType::EightBitMime,
        smtputf8: true,
        require_tls: false,
        dsn_ret: Some(Ret::Hdrs),
        dsn_envid: Some("env-1".into()),
        recipients: vec![
            rcpt(0, None),
            rcpt(1, Some(Notify::NEVER)),
            rcpt(2, notify(true, true, true)),
            rcpt(3, notify(false, true, true)),
            rcpt(4, notify(true, false, false)),
        ],
        prepend: Some("Authentication-Results: x; none\r\n".into()),
    }
}

fn states() -> Vec<RcptState> {
    vec![
        RcptState::Pending,
        RcptState::Delivered { at: 1_700_000_700 },
        RcptState::Deferred {
            attempts: 3,
            next_attempt: 1_700_014_400,
            error: "451 4.4.1 timeout".into(),
            detail: Some(FailureDetail {
                status: Enhanced(4, 4, 1),
                remote_mta: Some("mx.example.com [192.0.2.1]".into()),
                diagnostic: None,
            }),
            delay_notified: true,
        },
        RcptState::Failed {
            at: 1_700_003_000,
            error: "550 5.1.1 no such user".into(),
            detail: Some(FailureDetail {
                status: Enhanced(5, 1, 10),
                remote_mta: Some("mx.example.net [2001:db8::1]".into()),
                diagnostic: Some("smtp; 550 5.1.1 <bob@example.net>: no such user".into()),
            }),
            notified: true,
        },
        RcptState::Failed {
            at: 1_700_003_001,
            error: "gave up".into(),
            detail: Some(FailureDetail::new(Enhanced(4, 4, 7))),
            notified: false,
        },
        RcptState::Deferred { attempts: 1, next_attempt: 5, error: "x".into(), detail: None, delay_notified: false },
    ]
}

/// A spool holding the literal batch file and status log `log`.
fn spool_with(dir: &Path, log: &str) -> Spool {
    drop(Spool::open(dir).unwrap());
    fs::write(dir.join(format!("queue/{ID}.msg")), BATCH_FILE).unwrap();
    fs::write(dir.join(format!("queue/{ID}.status")), log).unwrap();
    Spool::open(dir).unwrap()
}

fn id() -> QueueId {
    ID.parse().unwrap()
}

#[test]
fn envelopes_written_before_read_the_same_and_are_written_the_same() {
    let seven_bit = Envelope {
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: Some(Ret::Full),
        dsn_envid: None,
        recipients: vec![rcpt(1, notify(false, false, true))],
        prepend: None,
        ..full_envelope()
    };
    let no_ret = Envelope { dsn_ret: None, recipients: vec![], ..seven_bit.clone() };
    for (line, envelope) in
        [(ENVELOPE_FULL, full_envelope()), (ENVELOPE_SEVEN_BIT_FULL, seven_bit), (ENVELOPE_NO_RET, no_ret)]
    {
        assert_eq!(serde_json::from_str::<Envelope>(line).unwrap(), envelope, "{line}");
        assert_eq!(serde_json::to_string(&envelope).unwrap(), line);
    }
}

#[test]
fn notify_lists_read_in_any_order_and_unknown_words_stay_errors() {
    let line = ENVELOPE_SEVEN_BIT_FULL.replace(r#"["delay"]"#, r#"["delay","failure","failure"]"#);
    let envelope: Envelope = serde_json::from_str(&line).unwrap();
    assert_eq!(envelope.recipients[0].notify, notify(false, true, true));
    assert!(serde_json::to_string(&envelope).unwrap().contains(r#""notify":["failure","delay"]"#));
    for bad in [r#"["never"]"#, r#"["DELAY"]"#, r#""delay""#] {
        let line = ENVELOPE_SEVEN_BIT_FULL.replace(r#"["delay"]"#, bad);
        assert!(serde_json::from_str::<Envelope>(&line).is_err(), "{bad}");
    }
    for bad in [r#""body":"8bitmime""#, r#""body":null"#] {
        let line = ENVELOPE_SEVEN_BIT_FULL.replace(r#""body":"seven_bit""#, bad);
        assert!(serde_json::from_str::<Envelope>(&line).is_err(), "{bad}");
    }
    let line = ENVELOPE_SEVEN_BIT_FULL.replace(r#""dsn_ret":"full""#, r#""dsn_ret":"FULL""#);
    assert!(serde_json::from_str::<Envelope>(&line).is_err());
    // A missing dsn_ret (older envelopes) is none, as before.
    let line = ENVELOPE_NO_RET.replace(r#""dsn_ret":null,"#, "");
    assert_eq!(serde_json::from_str::<Envelope>(&line).unwrap().dsn_ret, None);
}

#[test]
fn a_batch_file_and_status_log_written_before_are_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_with(dir.path(), STATUS_LOG);
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope, full_envelope());
    let mut expected = states()[..5].to_vec();
    expected[0] = states()[5].clone();
    assert_eq!(recovered[0].states, expected);
    assert_eq!(spool.load(&id()).unwrap().states, expected);
}

#[test]
fn the_same_message_and_states_are_written_byte_for_byte_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open_with(dir.path(), SpoolOptions::with_slots(0)).unwrap();
    let mut writer = spool.writer(full_envelope()).unwrap();
    writer.write(b"x").unwrap();
    assert_eq!(writer.commit().unwrap(), id());
    for (i, state) in states().iter().enumerate() {
        spool.record(&id(), i % 5, state).unwrap();
    }
    // Since format version 3 a round's batch file is sealed: the records, byte for byte as
    // before, after a header holding their CRC-32 instead of version 2's.
    let written = fs::read_to_string(dir.path().join(format!("queue/{ID}.msg"))).unwrap();
    let records = &BATCH_FILE["DAKIYA-SPOOL 2 00000001\n".len()..];
    let (header, rest) = written.split_at("DAKIYA-SPOOL 3 00000001 01234567\n".len());
    assert_eq!(rest, records);
    assert_eq!(header, format!("DAKIYA-SPOOL 3 00000001 {:08x}\n", crc32fast::hash(records.as_bytes())));
    assert_eq!(fs::read_to_string(dir.path().join(format!("queue/{ID}.status"))).unwrap(), STATUS_LOG);
}

/// A batch written into a slot (format version 4, docs/spool-slots.md) holds the same records
/// after a header that also gives their length, then the slot's zeros; its status log is the
/// same.
#[test]
fn a_slot_holds_the_same_records_and_its_log_the_same_lines() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut writer = spool.writer(full_envelope()).unwrap();
    writer.write(b"x").unwrap();
    assert_eq!(writer.commit().unwrap(), id());
    for (i, state) in states().iter().enumerate() {
        spool.record(&id(), i % 5, state).unwrap();
    }
    let written = fs::read(dir.path().join("queue/slot-0.msg")).unwrap();
    assert_eq!(written.len(), 256 << 10);
    let records = &BATCH_FILE["DAKIYA-SPOOL 2 00000001\n".len()..];
    let header = format!("DAKIYA-SPOOL 4 00000001 {:08x} {:020}\n", crc32fast::hash(records.as_bytes()), records.len());
    let (head, rest) = written.split_at(header.len());
    assert_eq!(String::from_utf8_lossy(head), header);
    assert_eq!(String::from_utf8_lossy(&rest[..records.len()]), records);
    assert!(rest[records.len()..].iter().all(|&b| b == 0));
    assert_eq!(fs::read_to_string(dir.path().join("queue/slot-0.status")).unwrap(), STATUS_LOG);
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    let mut expected = states()[..5].to_vec();
    expected[0] = states()[5].clone();
    assert_eq!(spool.load(&id()).unwrap().states, expected);
}

/// Decided in `codec`: a status that is not an enhanced status code (a hand-edited file) is
/// read as X.0.0 of the state's class, keeping the rest of the record, so the recipient's
/// state is never lost (a skipped record would bring back its previous state).
#[test]
fn an_unreadable_status_code_reads_as_other_status_of_the_state_class() {
    let log = STATUS_LOG
        .replace(r#""status":"4.4.1""#, r#""status":"later, maybe""#)
        .replace(r#""status":"5.1.10""#, r#""status":"5.1""#)
        .replace(r#""status":"4.4.7""#, r#""status":"""#);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_with(dir.path(), &log);
    let states = spool.load(&id()).unwrap().states;
    let detail = |s: &RcptState| match s {
        RcptState::Deferred { detail, .. } | RcptState::Failed { detail, .. } => detail.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(detail(&states[2]).status, Enhanced(4, 0, 0));
    assert_eq!(detail(&states[2]).remote_mta.as_deref(), Some("mx.example.com [192.0.2.1]"));
    assert!(matches!(states[2], RcptState::Deferred { attempts: 3, delay_notified: true, .. }));
    assert_eq!(detail(&states[3]).status, Enhanced(5, 0, 0));
    assert!(detail(&states[3]).diagnostic.is_some());
    assert!(matches!(states[3], RcptState::Failed { notified: true, .. }));
    assert_eq!(detail(&states[4]).status, Enhanced(5, 0, 0));
    // A failure detail on its own (as the control socket carries it) is read strictly.
    let bad: Result<FailureDetail, _> = serde_json::from_str(r#"{"status":"5.1"}"#);
    assert!(bad.is_err());
}

#[test]
fn the_codec_spells_each_value_as_before() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct All {
        #[serde(with = "codec::notify")]
        notify: Option<Notify>,
        #[serde(with = "codec::body_type")]
        body: BodyType,
        #[serde(with = "codec::ret")]
        ret: Option<Ret>,
        #[serde(with = "codec::enhanced")]
        status: Enhanced,
    }
    let cases = [
        (r#"{"notify":null,"body":"seven_bit","ret":null,"status":"2.0.0"}"#, None, BodyType::SevenBit, None),
        (
            r#"{"notify":[],"body":"eight_bit_mime","ret":"full","status":"2.0.0"}"#,
            Some(Notify::NEVER),
            BodyType::EightBitMime,
            Some(Ret::Full),
        ),
        (
            r#"{"notify":["success","delay"],"body":"seven_bit","ret":"hdrs","status":"2.0.0"}"#,
            notify(true, false, true),
            BodyType::SevenBit,
            Some(Ret::Hdrs),
        ),
    ];
    for (json, notify, body, ret) in cases {
        let all = All { notify, body, ret, status: Enhanced(2, 0, 0) };
        assert_eq!(serde_json::to_string(&all).unwrap(), json);
        assert_eq!(serde_json::from_str::<All>(json).unwrap(), all);
    }
}
