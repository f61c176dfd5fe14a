//! Spool behaviour through the public API, on a real file system.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use dakiya_spool::{BodyType, Envelope, Notify, QueueId, RcptState, Recipient, Ret, Spool, SpoolError, SpoolOptions};

/// Opens a spool that writes every round into a new batch file (no slots): these tests are
/// about batch files; slots have theirs in tests/slots.rs.
fn classic(dir: &Path) -> Result<Spool, SpoolError> {
    Spool::open_with(dir, SpoolOptions::with_slots(0))
}

fn envelope(spool: &Spool, rcpts: usize) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: 1_700_000_000,
        sender: "sender@example.org".into(),
        client_ip: "192.0.2.7".into(),
        helo: "client.example.org".into(),
        body: BodyType::EightBitMime,
        smtputf8: true,
        require_tls: false,
        dsn_ret: Some(Ret::Hdrs),
        dsn_envid: Some("env-1".into()),
        prepend: None,
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("user{i}@example.com"),
                original: format!("User{i}@Example.com"),
                orcpt: Some(format!("rfc822;User{i}@Example.com")),
                notify: Some(Notify { success: false, failure: true, delay: true }),
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
    let spool = classic(dir.path()).unwrap();
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

    let spool = classic(dir.path()).unwrap();
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
    let spool = classic(dir.path()).unwrap();
    let id = spool.writer(envelope(&spool, 1)).unwrap().commit().unwrap();
    assert_eq!(spool.load(&id).unwrap().size, 0);
    assert!(spool.body(&id).unwrap().is_empty());
    assert_eq!(body(&spool, &id), b"");
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
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
    let spool = classic(&root).unwrap();
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
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 3, b"x");
    assert!(!dir.path().join(format!("queue/{id}.status")).exists());
    let deferred = RcptState::Deferred {
        attempts: 1,
        next_attempt: 1_700_000_600,
        error: "451 4.3.0 try later".into(),
        detail: None,
        delay_notified: false,
    };
    spool.record(&id, 0, &deferred).unwrap();
    spool
        .record(
            &id,
            1,
            &RcptState::Failed { at: 5, error: "550 5.1.1 no such user".into(), detail: None, notified: false },
        )
        .unwrap();
    spool.record(&id, 0, &RcptState::Delivered { at: 9 }).unwrap();
    spool.record(&id, 2, &deferred).unwrap();
    drop(spool);
    let spool = classic(dir.path()).unwrap();
    let states = spool.recover().unwrap().remove(0).states;
    assert_eq!(
        states,
        vec![
            RcptState::Delivered { at: 9 },
            RcptState::Failed { at: 5, error: "550 5.1.1 no such user".into(), detail: None, notified: false },
            deferred,
        ]
    );
}

#[test]
fn torn_status_tail_is_ignored_then_cut_before_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 2, b"x");
    spool.record(&id, 0, &RcptState::Delivered { at: 1 }).unwrap();
    // A crash in the middle of appending a record; a new process opens the spool.
    drop(spool);
    let log = dir.path().join(format!("queue/{id}.status"));
    let mut data = fs::read(&log).unwrap();
    data.extend_from_slice(b"{\"rcpt\":1,\"state\":\"fail");
    fs::write(&log, &data).unwrap();
    let spool = classic(dir.path()).unwrap();
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
    let spool = classic(dir.path()).unwrap();
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
    let spool = classic(dir.path()).unwrap();
    let id: QueueId = "0000000000000001".parse().unwrap();
    let err = spool.record(&id, 0, &RcptState::Pending).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound(ref i) if *i == id), "{err}");
    assert_eq!(count(&dir.path().join("queue")), 0);
}

#[test]
fn remove_deletes_message_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
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
    let spool = classic(dir.path()).unwrap();
    let good = commit(&spool, 1, b"good");
    let truncated = commit(&spool, 1, b"this body will lose its tail");
    spool.record(&truncated, 0, &RcptState::Pending).unwrap();
    drop(spool);
    // Damage done while the spool is closed: the index is read at open.
    let queue = dir.path().join("queue");
    let garbage_id = "0000000000000ABC";
    fs::write(queue.join(format!("{garbage_id}.msg")), b"From: nobody\r\n\r\ngarbage").unwrap();
    let truncated_path = queue.join(format!("{truncated}.msg"));
    let mut bytes = fs::read(&truncated_path).unwrap();
    bytes.truncate(bytes.len() - 5);
    fs::write(&truncated_path, &bytes).unwrap();
    fs::write(queue.join("README"), b"not ours").unwrap();

    // A read-only listing skips them but leaves them alone.
    let spool = classic(dir.path()).unwrap();
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
    assert!(matches!(spool.load(&truncated), Err(SpoolError::Corrupt { .. })));

    // The same name going corrupt again does not replace the first copy.
    drop(spool);
    fs::write(queue.join(format!("{garbage_id}.msg")), b"second").unwrap();
    classic(dir.path()).unwrap().recover().unwrap();
    assert_eq!(fs::read(corrupt.join(format!("{garbage_id}.1.msg"))).unwrap(), b"second");
    assert!(corrupt.join(format!("{garbage_id}.msg")).exists());
}

#[test]
fn a_truncated_batch_is_moved_aside_and_the_others_still_recover() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(classic(dir.path()).unwrap());
    let committed = commit_from_threads(&spool, 10, 20);
    drop(spool);
    let queue = dir.path().join("queue");
    let batches = batch_files(&queue);
    assert!(batches.len() >= 2, "{} batch files", batches.len());
    // Truncate the batch holding the most messages, at a record boundary
    // (the message count in its header catches that) or anywhere else.
    let (victim, members) = batches.iter().max_by_key(|(_, ids)| ids.len()).unwrap();
    let path = queue.join(format!("{victim}.msg"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();

    let spool = classic(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), committed.len() - members.len());
    for m in &recovered {
        let text = &committed.iter().find(|(id, _)| *id == m.envelope.id).unwrap().1;
        assert_eq!(body(&spool, &m.envelope.id), text.as_bytes());
    }
    assert_eq!(fs::read(dir.path().join(format!("corrupt/{victim}.msg"))).unwrap(), &bytes[..bytes.len() - 7]);
    assert!(!path.exists());
}

/// A commit round renames its batch into `queue/` before writing and fsyncing it (one journal
/// commit per round), so a crash before the round's fsyncs return can leave `queue/NAME.msg`
/// with pages not yet written: zeros, or the old contents of a reused file. No client got a
/// 250 for it; recovery must not deliver it, and must not lose the batches that were
/// committed. Each case below is such a file, with every record still well formed.
#[test]
fn a_batch_cut_short_between_its_rename_and_fsync_is_moved_aside_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let body_text = b"Subject: torn\r\n\r\nsixty-four bytes of a body that a crash may leave half written\r\n";
    let (old, torn, zeroed, kept) = (
        commit(&spool, 1, body_text),
        commit(&spool, 1, body_text),
        commit(&spool, 2, body_text),
        commit(&spool, 1, b"kept"),
    );
    drop(spool);
    let queue = dir.path().join("queue");
    let path = |id: &QueueId| queue.join(format!("{id}.msg"));
    let bytes = |id: &QueueId| fs::read(path(id)).unwrap();
    let at_body = |file: &[u8]| file.windows(body_text.len()).position(|w| w == body_text).unwrap();
    // A page of the body still holds what the reused file held before.
    let mut file = bytes(&torn);
    let at = at_body(&file);
    file[at + 20..at + 40].copy_from_slice(&[b'x'; 20]);
    fs::write(path(&torn), &file).unwrap();
    // A page of the body never written (a hole reads as zeros).
    let mut file = bytes(&zeroed);
    let at = at_body(&file);
    file[at + 40..].fill(0);
    fs::write(path(&zeroed), &file).unwrap();
    // A reused file whose new bytes never reached the disk: a whole old batch under the new
    // name (its first record names another message).
    let stale: QueueId = "0FFFFFFFFFFFFFF0".parse().unwrap();
    fs::write(path(&stale), bytes(&old)).unwrap();

    let spool = classic(dir.path()).unwrap();
    let mut ids: Vec<QueueId> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    ids.sort();
    assert_eq!(ids, [old.clone(), kept.clone()]);
    assert_eq!(body(&spool, &kept), b"kept");
    for id in [&torn, &zeroed, &stale] {
        assert!(!path(id).exists(), "{id}");
        assert!(dir.path().join(format!("corrupt/{id}.msg")).exists(), "{id}");
    }
    assert!(
        matches!(spool.load(&torn), Err(SpoolError::Corrupt { reason, .. }) if reason.contains("checksum mismatch"))
    );
    assert!(
        matches!(spool.load(&stale), Err(SpoolError::Corrupt { reason, .. }) if reason.contains("not the file's name"))
    );
}

#[test]
fn unknown_format_version_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("queue")).unwrap();
    let path = dir.path().join("queue/00000000000000FF.msg");
    fs::write(&path, b"DAKIYA-SPOOL 5 whatever\n").unwrap();
    let spool = classic(dir.path()).unwrap();
    assert!(spool.recover().unwrap().is_empty());
    assert!(path.exists());
    let id = "00000000000000FF".parse().unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::UnsupportedVersion { .. })));
    // Its name is not given to a new message.
    let mut writer = spool.writer(Envelope { id, ..envelope(&spool, 1) }).unwrap();
    writer.write(b"x").unwrap();
    assert!(matches!(writer.commit(), Err(SpoolError::IdInUse(_))));
    assert_eq!(fs::read(&path).unwrap(), b"DAKIYA-SPOOL 5 whatever\n");
}

#[test]
fn version_1_files_and_logs_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let env = envelope(&spool, 2);
    drop(spool);
    let mut file = format!("DAKIYA-SPOOL 1 {:020}\n", 5).into_bytes();
    file.extend(serde_json::to_vec(&env).unwrap());
    file.extend(b"\nhello");
    let queue = dir.path().join("queue");
    fs::write(queue.join(format!("{}.msg", env.id)), &file).unwrap();
    let log = queue.join(format!("{}.status", env.id));
    fs::write(&log, b"DAKIYA-STATUS 1\n{\"rcpt\":1,\"state\":\"delivered\",\"at\":7}\n").unwrap();

    let spool = classic(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope, env);
    assert_eq!(recovered[0].states, vec![RcptState::Pending, RcptState::Delivered { at: 7 }]);
    assert_eq!(body(&spool, &env.id), b"hello");
    spool.record(&env.id, 0, &RcptState::Delivered { at: 8 }).unwrap();
    let states = spool.load(&env.id).unwrap().states;
    assert_eq!(states, vec![RcptState::Delivered { at: 8 }, RcptState::Delivered { at: 7 }]);
    // A hold appended to a version-1 log applies too, across a restart.
    spool.set_held(&env.id, true).unwrap();
    drop(spool);
    let spool = classic(dir.path()).unwrap();
    let message = spool.load(&env.id).unwrap();
    assert!(message.held);
    assert_eq!(message.states, vec![RcptState::Delivered { at: 8 }, RcptState::Delivered { at: 7 }]);
    spool.remove(&env.id).unwrap();
    assert_eq!(count(&queue), 0);
}

#[test]
fn open_removes_unfinished_messages_and_orphan_logs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let id = commit(&spool, 1, b"x");
    drop(spool);
    fs::write(dir.path().join("tmp/0000000000000001"), b"half a message").unwrap();
    // A crash between link and unlink leaves a second name in tmp/.
    fs::hard_link(dir.path().join(format!("queue/{id}.msg")), dir.path().join(format!("tmp/{id}"))).unwrap();
    fs::write(dir.path().join("queue/0000000000000002.status"), b"DAKIYA-STATUS 1\n").unwrap();
    let spool = classic(dir.path()).unwrap();
    assert_eq!(count(&dir.path().join("tmp")), 0);
    assert!(!dir.path().join("queue/0000000000000002.status").exists());
    assert_eq!(spool.recover().unwrap().len(), 1);
    assert_eq!(body(&spool, &id), b"x");
}

#[test]
fn spool_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
    let clone = spool.clone();
    drop(spool);
    assert!(matches!(classic(dir.path()), Err(SpoolError::Locked { .. })));
    drop(clone);
    classic(dir.path()).unwrap();
}

#[test]
fn a_repeated_id_never_overwrites_a_queued_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path()).unwrap();
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

/// Commits `each` messages from each of `threads` threads at once:
/// `(id, body)` sorted by id.
fn commit_from_threads(spool: &Arc<Spool>, threads: usize, each: usize) -> Vec<(QueueId, String)> {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (spool, start) = (Arc::clone(spool), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                (0..each)
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
    committed
}

/// The batch files in `queue`, each with the ids of its messages, read with
/// nothing but the layout of docs/spool-format.md.
fn batch_files(queue: &Path) -> Vec<(String, Vec<QueueId>)> {
    let mut batches = Vec::new();
    for entry in fs::read_dir(queue).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".msg") else { continue };
        let data = fs::read(queue.join(&name)).unwrap();
        // Version 3 (a round's sealed batch): count and CRC-32 of the records; version 2 (a
        // spilled message): count.
        let header_len = data.iter().position(|&b| b == b'\n').unwrap() + 1;
        let header = std::str::from_utf8(&data[..header_len]).unwrap();
        let count: usize = match header.strip_prefix("DAKIYA-SPOOL 3 ") {
            Some(fields) => {
                let (count, crc) = fields.trim_end().split_once(' ').unwrap();
                assert_eq!(u32::from_str_radix(crc, 16).unwrap(), crc32fast::hash(&data[header_len..]), "{name}");
                count.parse().unwrap()
            }
            None => header.strip_prefix("DAKIYA-SPOOL 2 ").unwrap().trim_end().parse().unwrap(),
        };
        let (mut at, mut ids) = (header_len, Vec::new());
        while at < data.len() {
            let line = std::str::from_utf8(&data[at..at + 61]).unwrap();
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0], "M");
            ids.push(fields[1].parse().unwrap());
            let (env_len, body_len): (usize, usize) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
            at += 61 + env_len + 1 + body_len;
        }
        assert_eq!((at, ids.len()), (data.len(), count), "{name}");
        batches.push((stem.to_owned(), ids));
    }
    batches
}

#[test]
fn concurrent_commits_from_20_threads_are_all_recovered() {
    const THREADS: usize = 20;
    const EACH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(classic(dir.path()).unwrap());
    let (requests_at_open, _) = spool.dir_sync_stats();
    let committed = commit_from_threads(&spool, THREADS, EACH);
    let (requests, fsyncs) = spool.dir_sync_stats();
    let rounds = spool.commit_stats().rounds;
    assert_eq!(requests - requests_at_open, rounds, "one directory fsync request per round");
    assert!(fsyncs >= 1 && rounds <= (THREADS * EACH) as u64);
    drop(spool);

    let spool = classic(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), THREADS * EACH);
    for (message, (id, text)) in recovered.iter().zip(&committed) {
        assert_eq!(&message.envelope.id, id);
        assert_eq!(message.size, text.len() as u64);
        assert_eq!(body(&spool, id), text.as_bytes());
    }
}

#[test]
fn fifty_threads_share_few_batch_files_and_every_message_recovers() {
    const THREADS: usize = 50;
    const EACH: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(classic(dir.path()).unwrap());
    let committed = commit_from_threads(&spool, THREADS, EACH);
    let stats = spool.commit_stats();
    drop(spool);
    let batches = batch_files(&dir.path().join("queue"));
    let messages = THREADS * EACH;
    assert_eq!(batches.iter().map(|(_, ids)| ids.len()).sum::<usize>(), messages);
    assert_eq!(stats.files(), batches.len() as u64);
    assert!(batches.len() * 4 <= messages, "{} batch files for {messages} messages", batches.len());
    for (name, ids) in &batches {
        assert_eq!(name, ids[0].as_str(), "a batch is named after its first message");
    }

    let spool = classic(dir.path()).unwrap();
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), messages);
    for (message, (id, text)) in recovered.iter().zip(&committed) {
        assert_eq!(&message.envelope.id, id);
        assert_eq!(body(&spool, id), text.as_bytes());
    }
}

#[test]
fn concurrent_records_on_one_message_all_land() {
    const THREADS: usize = 8;
    const EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(classic(dir.path()).unwrap());
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
