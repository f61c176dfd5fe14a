//! Status records through the public API, on a real file system: holding and
//! releasing messages, and recipient states with failure details and notice
//! flags, across restarts and torn writes.

use std::fs;
use std::path::Path;

use dakiya_spool::{
    BodyType, Enhanced, Envelope, FailureDetail, QueueId, RcptState, Recipient, Spool, SpoolError, SpoolOptions,
};

/// Opens a spool that writes every round into a new batch file, so that a message's log is
/// `queue/NAME.status` (slots have their tests in tests/slots.rs).
fn classic(dir: &Path) -> Result<Spool, SpoolError> {
    Spool::open_with(dir, SpoolOptions::with_slots(0))
}

fn commit(spool: &Spool, rcpts: usize) -> QueueId {
    let envelope = Envelope {
        id: spool.new_id(),
        received_at: 1_700_000_000,
        sender: "sender@example.org".into(),
        client_ip: "192.0.2.7".into(),
        helo: "client.example.org".into(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        prepend: None,
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("user{i}@example.com"),
                original: format!("user{i}@example.com"),
                orcpt: None,
                notify: None,
                mailbox: None,
            })
            .collect(),
    };
    let mut writer = spool.writer(envelope).unwrap();
    writer.write(b"Subject: x\r\n\r\nx\r\n").unwrap();
    writer.commit().unwrap()
}

fn log_path(dir: &Path, id: &QueueId) -> std::path::PathBuf {
    dir.join(format!("queue/{id}.status"))
}

fn held(spool: &Spool, id: &QueueId) -> bool {
    let loaded = spool.load(id).unwrap();
    let listed = spool.list().unwrap().into_iter().find(|m| m.envelope.id == *id).unwrap();
    assert_eq!(loaded, listed, "load and list agree");
    loaded.held
}

#[test]
fn hold_and_release_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 1);
    let other = commit(&spool, 1);
    assert!(!held(&spool, &id));
    spool.set_held(&id, true).unwrap();
    assert!(held(&spool, &id));
    assert!(!held(&spool, &other), "a hold names one message");
    drop(spool);

    let spool = classic(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    let flags: Vec<_> = recovered.iter().map(|m| (m.envelope.id.clone(), m.held)).collect();
    assert_eq!(flags, vec![(id.clone(), true), (other.clone(), false)]);
    spool.set_held(&id, false).unwrap();
    assert!(!held(&spool, &id));
    drop(spool);

    let spool = classic(dir.path()).unwrap();
    assert!(spool.recover().unwrap().iter().all(|m| !m.held));
    spool.set_held(&id, true).unwrap();
    spool.set_held(&id, true).unwrap();
    assert!(held(&spool, &id), "holding twice is still held");
    let text = fs::read_to_string(log_path(dir.path(), &id)).unwrap();
    let expected = format!(
        "DAKIYA-STATUS 2\n{{\"id\":\"{id}\",\"state\":\"held\"}}\n{{\"id\":\"{id}\",\"state\":\"released\"}}\n\
         {{\"id\":\"{id}\",\"state\":\"held\"}}\n{{\"id\":\"{id}\",\"state\":\"held\"}}\n"
    );
    assert_eq!(text, expected);
}

#[test]
fn holds_and_recipient_records_do_not_disturb_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 2);
    let failed = RcptState::Failed { at: 5, error: "550 5.1.1 no such user".into(), detail: None, notified: false };
    spool.record(&id, 0, &failed).unwrap();
    spool.set_held(&id, true).unwrap();
    spool.record(&id, 1, &RcptState::Delivered { at: 6 }).unwrap();
    let expect = |spool: &Spool, held: bool| {
        let m = spool.load(&id).unwrap();
        assert_eq!((m.held, m.states), (held, vec![failed.clone(), RcptState::Delivered { at: 6 }]));
    };
    expect(&spool, true);
    spool.set_held(&id, false).unwrap();
    expect(&spool, false);
    spool.set_held(&id, true).unwrap();
    drop(spool);
    let spool = classic(dir.path()).unwrap();
    expect(&spool, true);
}

#[test]
fn removing_a_held_message_removes_it_and_its_hold() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 1);
    spool.set_held(&id, true).unwrap();
    spool.remove(&id).unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::NotFound(_))));
    assert!(matches!(spool.set_held(&id, false), Err(SpoolError::NotFound(_))));
    assert!(!log_path(dir.path(), &id).exists());
    drop(spool);
    assert!(classic(dir.path()).unwrap().recover().unwrap().is_empty());
}

#[test]
fn holding_an_unknown_message_is_not_found_and_leaves_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id: QueueId = "0000000000000001".parse().unwrap();
    for held in [true, false] {
        let err = spool.set_held(&id, held).unwrap_err();
        assert!(matches!(err, SpoolError::NotFound(ref i) if *i == id), "{err}");
    }
    assert_eq!(fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);
}

#[test]
fn a_torn_release_is_ignored_then_cut_before_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 1);
    spool.set_held(&id, true).unwrap();
    // A crash while appending a release: it was never acknowledged.
    let log = log_path(dir.path(), &id);
    let mut data = fs::read(&log).unwrap();
    data.extend(format!("{{\"id\":\"{id}\",\"state\":\"relea").as_bytes());
    fs::write(&log, &data).unwrap();
    assert!(held(&spool, &id));
    drop(spool);
    let spool = classic(dir.path()).unwrap();
    assert!(spool.recover().unwrap()[0].held);

    spool.set_held(&id, false).unwrap();
    assert!(!held(&spool, &id));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(
        text,
        format!(
            "DAKIYA-STATUS 2\n{{\"id\":\"{id}\",\"state\":\"held\"}}\n{{\"id\":\"{id}\",\"state\":\"released\"}}\n"
        )
    );
}

#[test]
fn failure_details_and_notice_flags_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 4);
    let deferred = RcptState::Deferred {
        attempts: 3,
        next_attempt: 1_700_014_400,
        error: "451 4.4.1 timeout".into(),
        detail: Some(FailureDetail {
            status: Enhanced(4, 4, 1),
            remote_mta: Some("mx.example.com".into()),
            diagnostic: None,
        }),
        delay_notified: true,
    };
    let failed = RcptState::Failed {
        at: 1_700_003_000,
        error: "550 5.1.1 no such user".into(),
        detail: Some(FailureDetail {
            status: Enhanced(5, 1, 1),
            remote_mta: Some("mx.example.net".into()),
            diagnostic: Some("smtp; 550 5.1.1 <user1@example.com>: no such user \"quoted\"".into()),
        }),
        notified: true,
    };
    // Set but empty: a failure that never reached a remote MTA.
    let local = RcptState::Failed {
        at: 1_700_003_001,
        error: "no MX".into(),
        detail: Some(FailureDetail::new(Enhanced(5, 4, 4))),
        notified: false,
    };
    let quiet = RcptState::Deferred {
        attempts: 1,
        next_attempt: 1_700_000_600,
        error: "421".into(),
        detail: None,
        delay_notified: false,
    };
    for (rcpt, state) in [&deferred, &failed, &local, &quiet].into_iter().enumerate() {
        spool.record(&id, rcpt, state).unwrap();
    }
    let expected = vec![deferred, failed, local, quiet];
    assert_eq!(spool.load(&id).unwrap().states, expected);
    drop(spool);
    let spool = classic(dir.path()).unwrap();
    assert_eq!(spool.load(&id).unwrap().states, expected);
    assert_eq!(spool.recover().unwrap()[0].states, expected);

    // Unset fields are not written: the line is the one written before they existed.
    let text = fs::read_to_string(log_path(dir.path(), &id)).unwrap();
    let last = text.lines().last().unwrap();
    let old_form = format!(
        "{{\"id\":\"{id}\",\"rcpt\":3,\"state\":\"deferred\",\"attempts\":1,\"next_attempt\":1700000600,\"error\":\"421\"}}"
    );
    assert_eq!(last, old_form);
}

#[test]
fn records_without_the_new_fields_still_parse() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 3);
    drop(spool);
    // As written before `detail`, `delay_notified` and `notified` existed.
    let old = format!(
        "DAKIYA-STATUS 2\n\
         {{\"id\":\"{id}\",\"rcpt\":0,\"state\":\"deferred\",\"attempts\":2,\"next_attempt\":99,\"error\":\"451 busy\"}}\n\
         {{\"id\":\"{id}\",\"rcpt\":1,\"state\":\"failed\",\"at\":7,\"error\":\"550 no\"}}\n\
         {{\"id\":\"{id}\",\"rcpt\":2,\"state\":\"delivered\",\"at\":8}}\n"
    );
    fs::write(log_path(dir.path(), &id), old).unwrap();
    let spool = classic(dir.path()).unwrap();
    let m = spool.recover().unwrap().remove(0);
    assert!(!m.held);
    assert_eq!(
        m.states,
        vec![
            RcptState::Deferred {
                attempts: 2,
                next_attempt: 99,
                error: "451 busy".into(),
                detail: None,
                delay_notified: false
            },
            RcptState::Failed { at: 7, error: "550 no".into(), detail: None, notified: false },
            RcptState::Delivered { at: 8 },
        ]
    );
    // New records are appended to an old log in the new form.
    spool.set_held(&id, true).unwrap();
    let notified = RcptState::Failed { at: 7, error: "550 no".into(), detail: None, notified: true };
    spool.record(&id, 1, &notified).unwrap();
    drop(spool);
    let m = classic(dir.path()).unwrap().load(&id).unwrap();
    assert!(m.held);
    assert_eq!(m.states[1], notified);
}
