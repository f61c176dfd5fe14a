//! Finished batch files and status logs are reused, not unlinked and
//! created again; the status log stays open between appends.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::pool::POOL_MAX;

/// The inode number of `queue/NAME.EXT`.
fn ino(dir: &Path, name: &QueueId, ext: &str) -> u64 {
    fs::metadata(dir.join(format!("queue/{name}.{ext}"))).unwrap().ino()
}

/// The name of the one batch file in `queue/`.
fn only_batch(dir: &Path) -> QueueId {
    let files: Vec<_> = names(&dir.join("queue")).into_iter().filter(|n| n.ends_with(".msg")).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].strip_suffix(".msg").unwrap().parse().unwrap()
}

/// 1,000 messages, committed two per round and delivered (removed) at once:
/// 500 batch files and 500 status logs that used to be 1,000 new inodes.
#[test]
fn a_thousand_messages_create_a_bounded_number_of_inodes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut inodes = HashSet::new();
    for _ in 0..500 {
        let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, &[b'm'; 5120])).collect());
        let name = only_batch(dir.path());
        inodes.insert(ino(dir.path(), &name, "msg"));
        spool.remove(&ids[0]).unwrap();
        inodes.insert(ino(dir.path(), &name, "status"));
        spool.remove(&ids[1]).unwrap();
        assert!(names(&dir.path().join("queue")).is_empty());
    }
    let (recycled, reused) = spool.pool_stats();
    assert_eq!(recycled, 1000, "every finished batch file and log went to the pool");
    assert!(reused >= 996, "{reused} of 1000 files reused");
    // Both files of a batch wait for the next round's directory fsync: at
    // most two batches' worth of files are ever made.
    assert!(inodes.len() <= 4, "{} distinct inodes for 1,000 messages", inodes.len());
    assert!(names(&dir.path().join("tmp")).len() <= 4, "{:?}", names(&dir.path().join("tmp")));
}

#[test]
fn a_free_file_is_reused_only_after_a_directory_fsync_that_started_later() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit_together(&spool, vec![writer(&spool, 1, b"x")]).remove(0);
    spool.remove(&id).unwrap();
    let inner = &spool.inner;
    assert_eq!(spool.pool_stats(), (1, 0));
    assert!(inner.pool.take(&inner.queue_sync).is_none(), "its removal from queue/ is not durable yet");
    inner.sync_queue_dir().unwrap();
    let free = inner.pool.take(&inner.queue_sync).expect("durably gone from queue/");
    assert!(free.starts_with(dir.path().join("tmp")), "{}", free.display());
}

#[test]
fn a_batch_being_read_is_unlinked_not_reused_and_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit_together(&spool, vec![writer(&spool, 1, &[b'a'; 3000])]).remove(0);
    let mut reader = spool.body(&id).unwrap();
    spool.remove(&id).unwrap();
    assert_eq!(spool.pool_stats(), (0, 0), "a reader holds the batch");
    // More rounds, which would rewrite a pooled file.
    for _ in 0..3 {
        let other = commit_together(&spool, vec![writer(&spool, 1, &[b'b'; 3000])]).remove(0);
        spool.remove(&other).unwrap();
    }
    let mut data = Vec::new();
    reader.read_to_end(&mut data).unwrap();
    assert_eq!(data, vec![b'a'; 3000]);
}

#[test]
fn a_reused_longer_file_is_cut_to_the_new_batch() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit_together(&spool, vec![writer(&spool, 1, &[b'L'; 50_000])]).remove(0);
    spool.remove(&id).unwrap();
    spool.inner.sync_queue_dir().unwrap();
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"short")).collect());
    assert_eq!(spool.pool_stats(), (1, 1));
    drop(spool);
    // The rewritten file must decode on its own (no stale tail).
    let spool = Spool::open(dir.path()).unwrap();
    let mut listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    listed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(listed, ids);
    assert!(spool.inner.index().corrupt().is_empty());
    assert_eq!(body(&spool, &ids[1]), b"short");
}

#[test]
fn done_records_through_the_open_log_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let ids = commit_together(&spool, (0..5).map(|_| writer(&spool, 1, b"x")).collect());
    for id in &ids[..3] {
        spool.remove(id).unwrap();
    }
    assert_eq!(spool.inner.open_logs.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(listed, ids[3..].to_vec());
}

/// A crash while appending a done record, cut at every byte of it: the
/// records before it hold, the message is queued again (delivered twice at
/// worst, never lost), and the next append lands on a line of its own.
#[test]
fn a_done_record_torn_at_any_byte_is_ignored_and_cut_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let ids = commit_together(&spool, (0..3).map(|_| writer(&spool, 2, b"x")).collect());
    spool.record(&ids[0], 1, &RcptState::Delivered { at: 7 }).unwrap();
    let before = fs::read(dir.path().join(format!("queue/{}.status", only_batch(dir.path())))).unwrap();
    spool.remove(&ids[1]).unwrap();
    drop(spool);
    let log = dir.path().join(format!("queue/{}.status", only_batch(dir.path())));
    let full = fs::read(&log).unwrap();
    assert_eq!(&full[..before.len()], &before[..]);
    for cut in before.len()..=full.len() {
        fs::write(&log, &full[..cut]).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
        let expect = if cut == full.len() { vec![ids[0].clone(), ids[2].clone()] } else { ids.clone() };
        assert_eq!(listed, expect, "cut at {cut} of {}", full.len());
        assert_eq!(spool.load(&ids[0]).unwrap().states, vec![RcptState::Pending, RcptState::Delivered { at: 7 }]);
        // The next append (through a freshly opened log) after the torn tail.
        spool.remove(&ids[2]).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
        let expect = if cut == full.len() { vec![ids[0].clone()] } else { vec![ids[0].clone(), ids[1].clone()] };
        assert_eq!(listed, expect, "after the next append, cut at {cut}");
        let text = fs::read(&log).unwrap();
        assert_eq!(crate::status::StatusLog::parse(&text).unwrap().report, Default::default(), "cut at {cut}");
    }
}

#[test]
fn free_files_left_in_tmp_by_a_crash_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"x")).collect());
    let gone = commit_together(&spool, vec![writer(&spool, 1, b"y")]).remove(0);
    spool.remove(&gone).unwrap();
    assert_eq!(names(&dir.path().join("tmp")).len(), 1);
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    assert!(names(&dir.path().join("tmp")).is_empty());
    let mut listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    listed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(listed, ids);
}

#[test]
fn the_pool_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    // One batch file per message: a round each.
    let ids: Vec<_> = (0..POOL_MAX + 10).map(|_| writer(&spool, 1, b"x").commit().unwrap()).collect();
    for id in &ids {
        spool.remove(id).unwrap();
    }
    assert_eq!(spool.pool_stats().0, POOL_MAX as u64);
    assert_eq!(names(&dir.path().join("tmp")).len(), POOL_MAX);
}
