//! Spool behaviour through the public API, on a real file system.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use dakiya_spool::{BodyType, DsnRet, Envelope, Notify, QueueId, RcptState, Recipient, Spool, SpoolError};

fn envelope(spool: &Spool, rcpts: usize) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: 1_700_000_000,
        sender: "sender@example.org".into(),
        client_ip: "192.0.2.7".into(),
        helo: "client.example.org".into(),
        body: BodyType::EightBitMime,
        smtputf8: true,
        dsn_ret: Some(DsnRet::Hdrs),
        dsn_envid: Some("env-1".into()),
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("user{i}@example.com"),
                original: format!("User{i}@Example.com"),
                orcpt: Some(format!("rfc822;User{i}@Example.com")),
                notify: Some(vec![Notify::Failure, Notify::Delay]),
                mailbox: (i % 2 == 0).then(|| ("example.com".into(), format!("user{i}"))),
            })
            .collect(),
    }
}

fn commit(spool: &Spool, rcpts: usize, body: &[u8]) -> QueueId {
    let mut writer = spool.writer(envelope(spool, rcpts)).unwrap();
    writer.write(body).unwrap();
    writer.commit().unwrap()
}

fn body(spool: &Spool, id: &QueueId) -> Vec<u8> {
    let mut data = Vec::new();
    spool.body(id).unwrap().read_to_end(&mut data).unwrap();
    data
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn commit_then_recover_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool, 3);
    let mut writer = spool.writer(env.clone()).unwrap();
    assert_eq!(writer.id(), &env.id);
    for part in [&b"Subject: hi\r\n"[..], b"\r\n", b"body \xff\x00 bytes\r\n"] {
        writer.write(part).unwrap();
    }
    assert_eq!(writer.len(), 30);
    let id = writer.commit().unwrap();
    assert_eq!(id, env.id);
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope, env);
    assert_eq!(recovered[0].states, vec![RcptState::Pending; 3]);
    assert_eq!(recovered[0].size, 30);
    assert_eq!(body(&spool, &id), b"Subject: hi\r\n\r\nbody \xff\x00 bytes\r\n");
    assert_eq!(spool.load(&id).unwrap(), recovered[0]);
    assert_eq!(spool.list().unwrap(), recovered);
}

#[test]
fn empty_body_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.writer(envelope(&spool, 1)).unwrap().commit().unwrap();
    assert_eq!(spool.load(&id).unwrap().size, 0);
    assert!(spool.body(&id).unwrap().is_empty());
    assert_eq!(body(&spool, &id), b"");
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut small = spool.writer(envelope(&spool, 1)).unwrap();
    small.write(b"hello\r\n").unwrap();
    let mut big = spool.writer(envelope(&spool, 1)).unwrap();
    big.write(&vec![b'a'; 1 << 20]).unwrap();
    assert_eq!(count(&dir.path().join("tmp")), 1, "big message spilled");
    drop(small);
    drop(big);
    assert_eq!(count(&dir.path().join("tmp")), 0);
    assert_eq!(count(&dir.path().join("queue")), 0);
    assert!(spool.recover().unwrap().is_empty());
}

#[test]
fn directories_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data/spool");
    let spool = Spool::open(&root).unwrap();
    for sub in ["", "tmp", "queue", "corrupt"] {
        let mode = fs::metadata(root.join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
    let id = commit(&spool, 1, b"x");
    let file = dir.path().join(format!("data/spool/queue/{id}.msg"));
    assert_eq!(fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn status_log_last_record_wins_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, 3, b"x");
    assert!(!dir.path().join(format!("queue/{id}.status")).exists());
    let deferred =
        RcptState::Deferred { attempts: 1, next_attempt: 1_700_000_600, error: "451 4.3.0 try later".into() };
    spool.record(&id, 0, &deferred).unwrap();
    spool.record(&id, 1, &RcptState::Failed { at: 5, error: "550 5.1.1 no such user".into() }).unwrap();
    spool.record(&id, 0, &RcptState::Delivered { at: 9 }).unwrap();
    spool.record(&id, 2, &deferred).unwrap();
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    let states = spool.recover().unwrap().remove(0).states;
    assert_eq!(
        states,
        vec![
            RcptState::Delivered { at: 9 },
            RcptState::Failed { at: 5, error: "550 5.1.1 no such user".into() },
            deferred,
        ]
    );
}

#[test]
fn torn_status_tail_is_ignored_then_cut_before_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, 2, b"x");
    spool.record(&id, 0, &RcptState::Delivered { at: 1 }).unwrap();
    // A crash in the middle of appending a record.
    let log = dir.path().join(format!("queue/{id}.status"));
    let mut data = fs::read(&log).unwrap();
    data.extend_from_slice(b"{\"rcpt\":1,\"state\":\"fail");
    fs::write(&log, &data).unwrap();
    let states = spool.load(&id).unwrap().states;
    assert_eq!(states, vec![RcptState::Delivered { at: 1 }, RcptState::Pending]);

    spool.record(&id, 1, &RcptState::Delivered { at: 2 }).unwrap();
    let states = spool.load(&id).unwrap().states;
    assert_eq!(states, vec![RcptState::Delivered { at: 1 }, RcptState::Delivered { at: 2 }]);
    assert!(!String::from_utf8(fs::read(&log).unwrap()).unwrap().contains("fail"));
}

#[test]
fn torn_status_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, 1, b"x");
    let log = dir.path().join(format!("queue/{id}.status"));
    fs::write(&log, b"DAKIYA-STA").unwrap();
    assert_eq!(spool.load(&id).unwrap().states, vec![RcptState::Pending]);
    spool.record(&id, 0, &RcptState::Delivered { at: 3 }).unwrap();
    assert_eq!(spool.load(&id).unwrap().states, vec![RcptState::Delivered { at: 3 }]);
}

#[test]
fn record_for_unknown_message_is_not_found_and_leaves_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id: QueueId = "0000000000000001".parse().unwrap();
    let err = spool.record(&id, 0, &RcptState::Pending).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound(ref i) if *i == id), "{err}");
    assert_eq!(count(&dir.path().join("queue")), 0);
}

#[test]
fn remove_deletes_message_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, 1, b"x");
    let keep = commit(&spool, 1, b"y");
    spool.record(&id, 0, &RcptState::Delivered { at: 1 }).unwrap();
    spool.remove(&id).unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::NotFound(_))));
    assert!(matches!(spool.body(&id), Err(SpoolError::NotFound(_))));
    assert!(matches!(spool.remove(&id), Err(SpoolError::NotFound(_))));
    let left: Vec<_> = spool.list().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(left, vec![keep]);
    assert_eq!(count(&dir.path().join("queue")), 1);
}

#[test]
fn corrupt_files_are_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let good = commit(&spool, 1, b"good");
    let truncated = commit(&spool, 1, b"this body will lose its tail");
    spool.record(&truncated, 0, &RcptState::Pending).unwrap();
    let queue = dir.path().join("queue");
    let garbage_id = "0000000000000ABC";
    fs::write(queue.join(format!("{garbage_id}.msg")), b"From: nobody\r\n\r\ngarbage").unwrap();
    let truncated_path = queue.join(format!("{truncated}.msg"));
    let mut bytes = fs::read(&truncated_path).unwrap();
    bytes.truncate(bytes.len() - 5);
    fs::write(&truncated_path, &bytes).unwrap();
    fs::write(queue.join("README"), b"not ours").unwrap();

    // A read-only listing skips them but leaves them alone.
    assert_eq!(spool.list().unwrap().len(), 1);
    assert!(truncated_path.exists());
    assert!(matches!(spool.load(&truncated), Err(SpoolError::Corrupt { .. })));

    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope.id, good);
    let corrupt = dir.path().join("corrupt");
    assert_eq!(fs::read(corrupt.join(format!("{garbage_id}.msg"))).unwrap(), b"From: nobody\r\n\r\ngarbage");
    assert_eq!(fs::read(corrupt.join(format!("{truncated}.msg"))).unwrap(), bytes);
    assert!(corrupt.join(format!("{truncated}.status")).exists());
    assert!(!truncated_path.exists());
    assert!(queue.join("README").exists(), "unknown files are left alone");

    // The same name going corrupt again does not replace the first copy.
    fs::write(queue.join(format!("{garbage_id}.msg")), b"second").unwrap();
    spool.recover().unwrap();
    assert_eq!(fs::read(corrupt.join(format!("{garbage_id}.1.msg"))).unwrap(), b"second");
    assert!(corrupt.join(format!("{garbage_id}.msg")).exists());
}

#[test]
fn unknown_format_version_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let path = dir.path().join("queue/00000000000000FF.msg");
    fs::write(&path, b"DAKIYA-SPOOL 2 whatever\n").unwrap();
    assert!(spool.recover().unwrap().is_empty());
    assert!(path.exists());
    let id = "00000000000000FF".parse().unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::UnsupportedVersion { .. })));
}

#[test]
fn open_removes_unfinished_messages_and_orphan_logs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, 1, b"x");
    drop(spool);
    fs::write(dir.path().join("tmp/0000000000000001"), b"half a message").unwrap();
    // A crash between link and unlink leaves a second name in tmp/.
    fs::hard_link(dir.path().join(format!("queue/{id}.msg")), dir.path().join(format!("tmp/{id}"))).unwrap();
    fs::write(dir.path().join("queue/0000000000000002.status"), b"DAKIYA-STATUS 1\n").unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(count(&dir.path().join("tmp")), 0);
    assert!(!dir.path().join("queue/0000000000000002.status").exists());
    assert_eq!(spool.recover().unwrap().len(), 1);
    assert_eq!(body(&spool, &id), b"x");
}

#[test]
fn spool_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let clone = spool.clone();
    drop(spool);
    assert!(matches!(Spool::open(dir.path()), Err(SpoolError::Locked { .. })));
    drop(clone);
    Spool::open(dir.path()).unwrap();
}

#[test]
fn a_repeated_id_never_overwrites_a_queued_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let env = envelope(&spool, 1);
    let mut first = spool.writer(env.clone()).unwrap();
    first.write(b"first").unwrap();
    first.commit().unwrap();
    let mut second = spool.writer(env.clone()).unwrap();
    second.write(b"second").unwrap();
    let err = second.commit().unwrap_err();
    assert!(matches!(err, SpoolError::IdInUse(ref id) if *id == env.id), "{err}");
    assert_eq!(body(&spool, &env.id), b"first");
    assert_eq!(count(&dir.path().join("tmp")), 0);
    assert_ne!(spool.new_id(), env.id);
}

#[test]
fn concurrent_commits_from_20_threads_are_all_recovered() {
    const THREADS: usize = 20;
    const EACH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let spool = Arc::clone(&spool);
            thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let body = format!("thread {t} message {i}\r\n").repeat(100);
                        (commit(&spool, 1 + i % 3, body.as_bytes()), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut committed: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    committed.sort();
    let (requests, fsyncs) = spool.dir_sync_stats();
    assert_eq!(requests, (THREADS * EACH) as u64, "one dir sync request per commit");
    assert!(fsyncs >= 1 && fsyncs <= requests);
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), THREADS * EACH);
    for (message, (id, text)) in recovered.iter().zip(&committed) {
        assert_eq!(&message.envelope.id, id);
        assert_eq!(message.size, text.len() as u64);
        assert_eq!(body(&spool, id), text.as_bytes());
    }
}

#[test]
fn concurrent_records_on_one_message_all_land() {
    const THREADS: usize = 8;
    const EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let id = commit(&spool, THREADS, b"x");
    let handles: Vec<_> = (0..THREADS)
        .map(|rcpt| {
            let (spool, id) = (Arc::clone(&spool), id.clone());
            thread::spawn(move || {
                for at in 1..=EACH {
                    spool.record(&id, rcpt, &RcptState::Delivered { at }).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let states = spool.load(&id).unwrap().states;
    assert_eq!(states, vec![RcptState::Delivered { at: EACH }; THREADS]);
    let log = fs::read_to_string(dir.path().join(format!("queue/{id}.status"))).unwrap();
    assert_eq!(log.lines().count(), 1 + THREADS * EACH as usize);
    assert_eq!(log.matches("DAKIYA-STATUS").count(), 1);
}
