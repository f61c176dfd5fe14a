//! The first delivery run of a message just committed reads it from memory (recent.rs), and
//! loads do not look for a status log a batch is known not to have.

use std::io::Read;

use super::*;
use crate::QueuedMessage;

fn load_body(spool: &Spool, id: &QueueId) -> (QueuedMessage, Vec<u8>, bool) {
    let (message, mut body) = spool.load_with_body(id).unwrap();
    assert_eq!(body.in_memory().is_some(), body.is_in_memory());
    if let Some(bytes) = body.in_memory() {
        assert_eq!(bytes.len() as u64, body.len());
    }
    let mut data = Vec::new();
    body.read_to_end(&mut data).unwrap();
    // Read twice, as a run with several copies does.
    body.rewind();
    let mut again = Vec::new();
    body.read_to_end(&mut again).unwrap();
    assert_eq!(data, again);
    (message, data, body.is_in_memory())
}

fn only_batch(dir: &Path) -> std::path::PathBuf {
    let queue = dir.join("queue");
    let msg: Vec<_> = names(&queue).into_iter().filter(|n| n.ends_with(".msg")).collect();
    assert_eq!(msg.len(), 1, "{msg:?}");
    queue.join(&msg[0])
}

#[test]
fn the_first_load_after_commit_reads_nothing_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| format!("body {i}\r\n").repeat(100 + i).into_bytes()).collect();
    let writers = bodies.iter().map(|b| writer(&spool, 2, b)).collect();
    let ids = commit_together(&spool, writers);
    // Wipe the batch file (same length): only bytes kept in memory can still give the messages.
    let batch = only_batch(dir.path());
    let len = fs::metadata(&batch).unwrap().len();
    fs::write(&batch, vec![0u8; len as usize]).unwrap();
    for (id, expected) in ids.iter().zip(&bodies) {
        let (message, data, in_memory) = load_body(&spool, id);
        assert_eq!(&message.envelope.id, id);
        assert_eq!(message.envelope.recipients.len(), 2);
        assert_eq!(message.states, vec![RcptState::Pending; 2]);
        assert_eq!(message.size, expected.len() as u64);
        assert!(!message.held);
        assert_eq!(&data, expected);
        assert!(in_memory);
    }
    // Only the first load is from memory: the next one reads the (wiped) file.
    assert!(matches!(spool.load_with_body(&ids[0]), Err(SpoolError::Corrupt { .. })));
    let stats = spool.recent_stats();
    assert_eq!((stats.kept, stats.hits, stats.misses, stats.evictions), (3, 3, 1, 0));
    assert_eq!(spool.inner.recent.size(), (0, 0));
}

#[test]
fn states_and_holds_recorded_before_the_first_load_are_returned_from_memory_too() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..3).map(|_| writer(&spool, 2, b"x\r\n")).collect());
    spool.record(&ids[0], 1, &RcptState::Delivered { at: 7 }).unwrap();
    spool.set_held(&ids[1], true).unwrap();
    let (first, _, in_memory) = load_body(&spool, &ids[0]);
    assert!(in_memory);
    assert_eq!(first.states, vec![RcptState::Pending, RcptState::Delivered { at: 7 }]);
    assert!(!first.held);
    let (second, _, in_memory) = load_body(&spool, &ids[1]);
    assert!(in_memory);
    assert!(second.held);
    assert_eq!(second.states, vec![RcptState::Pending; 2]);
    // And the same after a restart, from disk.
    drop(spool);
    let spool = classic(dir.path());
    let (first, _, in_memory) = load_body(&spool, &ids[0]);
    assert!(!in_memory);
    assert_eq!(first.states, vec![RcptState::Pending, RcptState::Delivered { at: 7 }]);
    assert!(spool.load(&ids[1]).unwrap().held);
}

#[test]
fn messages_past_the_bound_are_evicted_oldest_first_and_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.inner.recent.set_limits(2, usize::MAX);
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + i as u8; 1000]).collect();
    // One round each, so that the order they were kept in is known.
    let ids: Vec<QueueId> = bodies.iter().map(|b| writer(&spool, 1, b).commit().unwrap()).collect();
    let loaded: Vec<_> = ids.iter().map(|id| load_body(&spool, id)).collect();
    assert_eq!(loaded.iter().map(|l| l.2).collect::<Vec<_>>(), vec![false, true, true]);
    for ((message, data, _), (id, expected)) in loaded.iter().zip(ids.iter().zip(&bodies)) {
        assert_eq!(&message.envelope.id, id);
        assert_eq!(data, expected);
    }
    let stats = spool.recent_stats();
    assert_eq!((stats.kept, stats.hits, stats.misses, stats.evictions), (3, 2, 1, 1));
}

#[test]
fn the_bytes_bound_holds_across_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.inner.recent.set_limits(1000, 64 << 10);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(writer(&spool, 1, &[b'z'; 8000]).commit().unwrap());
        let (kept, bytes) = spool.inner.recent.size();
        assert!(bytes <= 64 << 10, "{kept} messages, {bytes} bytes");
    }
    let stats = spool.recent_stats();
    assert!(stats.evictions > 0, "{stats:?}");
    // Every message loads, from wherever it is.
    for id in &ids {
        assert_eq!(load_body(&spool, id).1, vec![b'z'; 8000]);
    }
    assert_eq!(spool.inner.recent.size(), (0, 0));
}

#[test]
fn removed_and_spilled_messages_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"y\r\n")).collect());
    spool.remove(&ids[0]).unwrap();
    assert_eq!(spool.inner.recent.size().0, 1);
    assert_eq!(spool.recent_stats().dropped, 1);
    // A spilled message's body never was in memory as a whole.
    let big = vec![b'b'; 600 << 10];
    let spilled = writer(&spool, 1, &big).commit().unwrap();
    let (_, data, in_memory) = load_body(&spool, &spilled);
    assert!(!in_memory);
    assert_eq!(data, big);
    drop(spool);
    // Nothing outlives the spool: a new one reads from disk.
    let spool = classic(dir.path());
    assert!(!load_body(&spool, &ids[1]).2);
}

/// A directory where the batch's status log would be: reading it fails, so a load that
/// looked for the log would fail.
fn block_log(dir: &Path, batch: &Path) {
    let stem = batch.file_stem().unwrap().to_str().unwrap();
    fs::create_dir(dir.join("queue").join(format!("{stem}.status"))).unwrap();
}

#[test]
fn a_batch_known_to_have_no_status_log_is_not_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.inner.recent.set_limits(0, 0);
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"x\r\n")).collect());
    let batch = only_batch(dir.path());
    block_log(dir.path(), &batch);
    // Committed by this process: no log.
    assert!(!load_body(&spool, &ids[0]).2);
    assert_eq!(spool.load(&ids[1]).unwrap().states, vec![RcptState::Pending]);
    assert_eq!(spool.list().unwrap().len(), 2);
    fs::remove_dir(batch.with_extension("status")).unwrap();
    drop(spool);
    // Found at open without a log: the same. Then the first record makes one, which is read.
    let spool = classic(dir.path());
    block_log(dir.path(), &batch);
    assert_eq!(spool.load(&ids[0]).unwrap().states, vec![RcptState::Pending]);
    fs::remove_dir(batch.with_extension("status")).unwrap();
    spool.record(&ids[1], 0, &RcptState::Delivered { at: 9 }).unwrap();
    assert_eq!(spool.load(&ids[1]).unwrap().states, vec![RcptState::Delivered { at: 9 }]);
    // A batch whose log exists at open is read.
    drop(spool);
    let spool = classic(dir.path());
    assert_eq!(spool.load(&ids[1]).unwrap().states, vec![RcptState::Delivered { at: 9 }]);
    assert!(matches!(fs::read(batch.with_extension("status")), Ok(data) if !data.is_empty()));
}

/// Lengths of the free files in `tmp/`, summed.
fn free_bytes(dir: &Path) -> u64 {
    let tmp = dir.join("tmp");
    names(&tmp).iter().filter(|n| n.starts_with("free-")).map(|n| fs::metadata(tmp.join(n)).unwrap().len()).sum()
}

#[test]
fn files_enter_the_pool_with_the_lengths_they_have() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    // A batch with a status log (done records), a spilled message, a batch of one (no log).
    let ids = commit_together(&spool, (0..3).map(|i| writer(&spool, 2, &vec![b'q'; 100 * (i + 1)])).collect());
    let spilled = writer(&spool, 1, &vec![b's'; 200 << 10]).commit().unwrap();
    let single = writer(&spool, 1, b"one\r\n").commit().unwrap();
    spool.record(&ids[1], 0, &RcptState::Delivered { at: 1 }).unwrap();
    for id in ids.iter().chain([&spilled, &single]) {
        spool.remove(id).unwrap();
    }
    let (files, bytes) = spool.inner.pool.size();
    assert_eq!(files, 4, "three batch files and one status log: {:?}", names(&dir.path().join("tmp")));
    assert_eq!(bytes, free_bytes(dir.path()));
    // And for a batch found at open, whose log this process never opened.
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"x\r\n")).collect());
    spool.remove(&ids[0]).unwrap();
    drop(spool);
    let spool = classic(dir.path());
    spool.remove(&ids[1]).unwrap();
    assert_eq!(spool.inner.pool.size().1, free_bytes(dir.path()));
}
