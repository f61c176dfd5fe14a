//! Batch files: messages committed in one round share a file, a status log
//! and a fate. Rounds are made deterministic by holding the committer back
//! until every commit has joined.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::*;
use crate::{BodyType, Recipient};

/// A spool that writes every round into a new batch file (no slots): the tests here are about
/// batch files, their names, logs and pool; slots.rs's path has its own tests (tests/slots.rs).
fn classic(dir: &Path) -> Spool {
    Spool::open_with(dir, SpoolOptions::with_slots(0)).unwrap()
}

fn envelope(spool: &Spool, rcpts: usize) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: 1_700_000_000,
        sender: "s@example.org".into(),
        client_ip: "192.0.2.1".into(),
        helo: "h".into(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        prepend: None,
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("u{i}@example.com"),
                original: format!("u{i}@example.com"),
                orcpt: None,
                notify: None,
                mailbox: None,
            })
            .collect(),
    }
}

fn writer(spool: &Spool, rcpts: usize, body: &[u8]) -> MessageWriter {
    let mut writer = spool.writer(envelope(spool, rcpts)).unwrap();
    writer.write(body).unwrap();
    writer
}

/// Commits `writers` from one thread each, all in one round.
fn commit_together(spool: &Spool, writers: Vec<MessageWriter>) -> Vec<QueueId> {
    let committer = &spool.committer;
    committer.pause();
    let n = writers.len();
    thread::scope(|s| {
        let handles: Vec<_> = writers.into_iter().map(|w| s.spawn(move || w.commit())).collect();
        while committer.pending() < n {
            thread::sleep(Duration::from_millis(1));
        }
        committer.resume();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    })
}

fn body(spool: &Spool, id: &QueueId) -> Vec<u8> {
    let mut data = Vec::new();
    spool.body(id).unwrap().read_to_end(&mut data).unwrap();
    data
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn one_round_writes_one_batch_file_named_after_its_first_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("message {i}\r\n").repeat(i + 1).into_bytes()).collect();
    let ids = commit_together(&spool, bodies.iter().map(|b| writer(&spool, 2, b)).collect());
    let files = names(&dir.path().join("queue"));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].strip_suffix(".msg").unwrap();
    assert!(ids.iter().any(|id| id.as_str() == name), "{name} names none of {ids:?}");
    for (id, text) in ids.iter().zip(&bodies) {
        assert_eq!(&body(&spool, id), text);
        assert_eq!(spool.load(id).unwrap().size, text.len() as u64);
    }
    let stats = spool.commit_stats();
    assert_eq!((stats.rounds, stats.messages, stats.files()), (1, 5, 1));
    assert_eq!(stats.batch_sizes[5], 1);
    assert_eq!(spool.dir_sync_stats().0, 1 + 1, "one directory fsync at open, one for the round");
    drop(spool);
    let spool = classic(dir.path());
    let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

#[test]
fn a_batch_disappears_only_after_its_last_message_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..3).map(|i| writer(&spool, 1, &[b'a' + i; 100])).collect());
    let queue = dir.path().join("queue");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(names(&queue).iter().filter(|f| f.ends_with(".msg")).count(), 1, "before removing #{n}");
        spool.remove(id).unwrap();
        assert!(matches!(spool.load(id), Err(SpoolError::NotFound(_))));
        assert!(matches!(spool.remove(id), Err(SpoolError::NotFound(_))));
        for later in &ids[n + 1..] {
            assert_eq!(body(&spool, later).len(), 100, "a removal must not disturb the others");
        }
    }
    assert!(names(&queue).is_empty(), "{:?}", names(&queue));
}

#[test]
fn recovery_skips_removed_messages_and_deletes_fully_done_batches() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..4).map(|i| writer(&spool, 1, format!("body {i}").as_bytes())).collect());
    spool.remove(&ids[1]).unwrap();
    spool.remove(&ids[3]).unwrap();
    let name = names(&dir.path().join("queue"))[0].strip_suffix(".msg").unwrap().to_owned();
    let log = dir.path().join(format!("queue/{name}.status"));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 3, "header and two done records: {text}");
    drop(spool);

    let spool = classic(dir.path());
    let recovered: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(recovered, vec![ids[0].clone(), ids[2].clone()]);
    assert_eq!(body(&spool, &ids[2]), b"body 2");
    assert!(matches!(spool.load(&ids[1]), Err(SpoolError::NotFound(_))));
    spool.remove(&ids[0]).unwrap();
    drop(spool);

    // A crash after the last done record but before the unlink.
    let mut log_data = fs::read(&log).unwrap();
    log_data.extend(status::encode_done(&ids[2]));
    fs::write(&log, log_data).unwrap();
    let spool = classic(dir.path());
    assert!(spool.recover().unwrap().is_empty());
    assert!(names(&dir.path().join("queue")).is_empty());
}

#[test]
fn status_records_of_one_batch_stay_with_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..3).map(|_| writer(&spool, 2, b"x")).collect());
    let failed = RcptState::Failed { at: 5, error: "550 5.1.1 no".into(), detail: None, notified: false };
    spool.record(&ids[0], 1, &RcptState::Delivered { at: 1 }).unwrap();
    spool.record(&ids[1], 0, &failed).unwrap();
    spool.record(&ids[1], 1, &RcptState::Delivered { at: 2 }).unwrap();
    spool.remove(&ids[2]).unwrap();
    spool.record(&ids[0], 1, &RcptState::Delivered { at: 3 }).unwrap();
    let expect = |spool: &Spool| {
        assert_eq!(spool.load(&ids[0]).unwrap().states, vec![RcptState::Pending, RcptState::Delivered { at: 3 }]);
        assert_eq!(spool.load(&ids[1]).unwrap().states, vec![failed.clone(), RcptState::Delivered { at: 2 }]);
    };
    expect(&spool);
    assert_eq!(names(&dir.path().join("queue")).len(), 2, "one batch file, one status log");
    drop(spool);
    let spool = classic(dir.path());
    expect(&spool);
    let states: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.states).collect();
    assert_eq!(states.len(), 2);
}

#[test]
fn concurrent_records_to_one_log_share_fdatasyncs_and_all_land() {
    const THREADS: usize = 8;
    const EACH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..THREADS).map(|_| writer(&spool, 1, b"x")).collect());
    thread::scope(|s| {
        for id in &ids {
            let spool = &spool;
            s.spawn(move || {
                for at in 1..=EACH {
                    spool.record(id, 0, &RcptState::Delivered { at }).unwrap();
                }
            });
        }
    });
    for id in &ids {
        assert_eq!(spool.load(id).unwrap().states, vec![RcptState::Delivered { at: EACH }]);
    }
    let batch = spool.inner.index().get(&ids[0]).unwrap().batch;
    let (calls, syncs) = batch.log_sync.stats();
    assert_eq!(calls, THREADS as u64 * EACH);
    assert!(syncs <= calls, "{syncs} fdatasyncs for {calls} records");
}

#[test]
fn a_spilled_message_joins_the_round_as_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let writers = vec![writer(&spool, 1, b"small one"), writer(&spool, 1, &big), writer(&spool, 1, b"small two")];
    assert_eq!(names(&dir.path().join("tmp")).len(), 1, "the big one spilled");
    let ids = commit_together(&spool, writers);
    assert_eq!(names(&dir.path().join("queue")).len(), 2, "one batch of two, the spilled message");
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(body(&spool, &ids[1]), big);
    let stats = spool.commit_stats();
    assert_eq!((stats.rounds, stats.batch_sizes[1], stats.batch_sizes[2]), (1, 1, 1));
    drop(spool);
    let spool = classic(dir.path());
    let sizes: Vec<_> = spool.recover().unwrap().iter().map(|m| m.size).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 9 + 9 + big.len() as u64);
    assert_eq!(body(&spool, &ids[0]), b"small one");
    assert_eq!(body(&spool, &ids[1]), big);
    assert_eq!(body(&spool, &ids[2]), b"small two");
}

#[test]
fn a_repeated_id_fails_alone_and_the_round_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let env = envelope(&spool, 1);
    let first = commit_together(&spool, vec![spool.writer(env.clone()).unwrap()]);
    let mut again = spool.writer(env.clone()).unwrap();
    again.write(b"again").unwrap();
    assert!(matches!(again.commit(), Err(SpoolError::IdInUse(_))));
    let others = commit_together(&spool, vec![writer(&spool, 1, b"a"), writer(&spool, 1, b"b")]);
    assert_eq!(body(&spool, &first[0]), b"");
    assert_eq!(body(&spool, &others[1]), b"b");
}

#[test]
fn holds_in_a_batch_stay_with_their_message_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..4).map(|_| writer(&spool, 2, b"x")).collect());
    spool.set_held(&ids[0], true).unwrap();
    spool.record(&ids[0], 1, &RcptState::Delivered { at: 1 }).unwrap();
    spool.set_held(&ids[1], true).unwrap();
    spool.set_held(&ids[1], false).unwrap();
    spool.set_held(&ids[2], true).unwrap();
    spool.remove(&ids[2]).unwrap(); // a held message can still be removed
    assert!(matches!(spool.set_held(&ids[2], false), Err(SpoolError::NotFound(_))));
    spool.set_held(&ids[3], true).unwrap();
    spool.set_held(&ids[3], true).unwrap();
    let expect = |spool: &Spool| {
        let listed: Vec<_> = spool.list().unwrap().into_iter().map(|m| (m.envelope.id, m.held, m.states)).collect();
        let pending = vec![RcptState::Pending; 2];
        assert_eq!(
            listed,
            vec![
                (ids[0].clone(), true, vec![RcptState::Pending, RcptState::Delivered { at: 1 }]),
                (ids[1].clone(), false, pending.clone()),
                (ids[3].clone(), true, pending),
            ]
        );
        assert!(matches!(spool.load(&ids[2]), Err(SpoolError::NotFound(_))));
    };
    expect(&spool);
    drop(spool);
    let spool = classic(dir.path());
    expect(&spool);
    assert_eq!(spool.recover().unwrap(), spool.list().unwrap());

    // Releasing the last held messages, then removing everything, leaves nothing behind.
    spool.set_held(&ids[0], false).unwrap();
    spool.set_held(&ids[3], false).unwrap();
    assert!(spool.list().unwrap().iter().all(|m| !m.held));
    for id in [&ids[0], &ids[1], &ids[3]] {
        spool.remove(id).unwrap();
    }
    assert!(names(&dir.path().join("queue")).is_empty());
}

#[test]
fn a_hold_creates_the_log_durably_and_counts_as_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"x")).collect());
    let batch = spool.inner.index().get(&ids[0]).unwrap().batch;
    let log = batch.log_path().to_owned();
    assert!(!log.exists());
    let (dir_syncs, _) = spool.dir_sync_stats();
    spool.set_held(&ids[1], true).unwrap();
    assert_eq!(batch.log_sync.stats().0, 1, "fdatasynced like a recipient record");
    assert_eq!(spool.dir_sync_stats().0, dir_syncs + 1, "the new log's directory entry made durable");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text, format!("DAKIYA-STATUS 2\n{{\"id\":\"{}\",\"state\":\"held\"}}\n", ids[1]));
}

#[test]
fn probe_writable_fails_while_tmp_is_not_a_directory_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.probe_writable().unwrap();
    let tmp = dir.path().join(TMP_DIR);
    assert!(names(&tmp).is_empty(), "the probe file is removed");
    // Root ignores permissions, so make tmp/ unusable by replacing it with a file.
    fs::rename(&tmp, dir.path().join("tmp.away")).unwrap();
    fs::write(&tmp, b"not a directory").unwrap();
    assert!(matches!(spool.probe_writable(), Err(SpoolError::Io { op: "create", .. })));
    fs::remove_file(&tmp).unwrap();
    fs::rename(dir.path().join("tmp.away"), &tmp).unwrap();
    spool.probe_writable().unwrap();
}

mod copyout;
mod recent;
mod recycle;
mod slots;
mod submit;
