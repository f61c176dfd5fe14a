//! Finished batch files and status logs are reused, not unlinked and
//! created again; the status log stays open between appends.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use super::*;

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
    let spool = classic(dir.path());
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
    let spool = classic(dir.path());
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
    let spool = classic(dir.path());
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
    let spool = classic(dir.path());
    let id = commit_together(&spool, vec![writer(&spool, 1, &[b'L'; 50_000])]).remove(0);
    spool.remove(&id).unwrap();
    spool.inner.sync_queue_dir().unwrap();
    let ids = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"short")).collect());
    assert_eq!(spool.pool_stats(), (1, 1));
    drop(spool);
    // The rewritten file must decode on its own (no stale tail).
    let spool = classic(dir.path());
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
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..5).map(|_| writer(&spool, 1, b"x")).collect());
    for id in &ids[..3] {
        spool.remove(id).unwrap();
    }
    assert_eq!(spool.inner.open_logs.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(spool);
    let spool = classic(dir.path());
    let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(listed, ids[3..].to_vec());
}

/// A crash while appending a done record, cut at every byte of it: the
/// records before it hold, the message is queued again (delivered twice at
/// worst, never lost), and the next append lands on a line of its own.
#[test]
fn a_done_record_torn_at_any_byte_is_ignored_and_cut_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
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
        let spool = classic(dir.path());
        let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
        let expect = if cut == full.len() { vec![ids[0].clone(), ids[2].clone()] } else { ids.clone() };
        assert_eq!(listed, expect, "cut at {cut} of {}", full.len());
        assert_eq!(spool.load(&ids[0]).unwrap().states, vec![RcptState::Pending, RcptState::Delivered { at: 7 }]);
        // The next append (through a freshly opened log) after the torn tail.
        spool.remove(&ids[2]).unwrap();
        drop(spool);
        let spool = classic(dir.path());
        let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
        let expect = if cut == full.len() { vec![ids[0].clone()] } else { vec![ids[0].clone(), ids[1].clone()] };
        assert_eq!(listed, expect, "after the next append, cut at {cut}");
        let text = fs::read(&log).unwrap();
        assert_eq!(crate::status::StatusLog::parse(&text).unwrap().report, Default::default(), "cut at {cut}");
    }
}

/// The inode numbers of the files in `dir/SUB`.
fn inodes_in(dir: &Path, sub: &str) -> HashSet<u64> {
    let entries = fs::read_dir(dir.join(sub)).unwrap();
    entries.map(|e| e.unwrap().metadata().unwrap().ino()).collect()
}

/// Commits `n` messages four per round, none removed yet; returns their ids
/// and the inodes of the batch files made.
fn burst(spool: &Spool, n: usize) -> (Vec<QueueId>, HashSet<u64>) {
    let ids: Vec<_> = (0..n / 4)
        .flat_map(|_| commit_together(spool, (0..4).map(|_| writer(spool, 1, &[b'b'; 5120])).collect()))
        .collect();
    (ids, inodes_in(spool.path(), "queue"))
}

/// A burst, as a server sees it when it accepts faster than it delivers:
/// 2,000 messages committed before any is removed, then all removed, then
/// 2,000 more. The first burst has to make its files; draining it must
/// unlink none of them (the pool keeps thousands), and the second burst
/// makes no new inode at all.
#[test]
fn a_burst_is_drained_into_the_pool_and_the_next_burst_creates_no_inode() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let (ids, first) = burst(&spool, 2000);
    assert_eq!(first.len(), 500, "one batch file per round");
    for id in &ids {
        spool.remove(id).unwrap();
    }
    assert!(names(&dir.path().join("queue")).is_empty());
    let counts = spool.inner.pool.counts();
    assert_eq!(counts.unlinked, 0, "{counts:?}");
    assert_eq!(counts.recycled, 1000, "500 batch files and 500 status logs: {counts:?}");
    let pooled = inodes_in(dir.path(), "tmp");
    assert_eq!(pooled.len(), 1000);
    assert!(first.is_subset(&pooled));
    // The second burst, and its drain, run entirely on the pool's inodes.
    // Only the first round makes a file: the drain's removals wait for a
    // fsync of queue/ (the first round's) before their files are reused.
    let (ids, second) = burst(&spool, 2000);
    assert_eq!(second.difference(&pooled).count(), 1, "batch files not from the pool");
    let listed: Vec<_> = spool.list().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(listed.len(), 2000);
    assert_eq!(body(&spool, &ids[1999]), vec![b'b'; 5120]);
    for id in &ids {
        spool.remove(id).unwrap();
    }
    let now = inodes_in(dir.path(), "tmp");
    assert!(pooled.is_subset(&now), "no inode deleted by the second burst");
    assert_eq!(now.len(), pooled.len() + 1, "and one created");
    assert_eq!(spool.inner.pool.counts().unlinked, 0);
    let (_, bytes) = spool.inner.pool.size();
    assert!(bytes <= crate::pool::POOL_MAX_BYTES, "{bytes}");
}

/// Past its bound in bytes a file enters the pool cut to length 0: it keeps
/// its inode, not its blocks. Rewritten from there, it reads back whole.
#[test]
fn the_pool_keeps_bytes_up_to_its_bound_and_empty_files_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.inner.pool.set_limits(1000, 100_000);
    let (ids, _) = burst(&spool, 200);
    for id in &ids {
        spool.remove(id).unwrap();
    }
    let counts = spool.inner.pool.counts();
    assert_eq!((counts.recycled, counts.unlinked), (100, 0), "{counts:?}");
    // 50 batch files of ~20 KB (at most 4 fit) and 50 small status logs.
    assert!(counts.truncated >= 46, "{counts:?}");
    let on_disk: u64 = names(&dir.path().join("tmp"))
        .iter()
        .map(|n| fs::metadata(dir.path().join("tmp").join(n)).unwrap().len())
        .sum();
    let (files, bytes) = spool.inner.pool.size();
    assert_eq!((files, bytes), (100, on_disk));
    assert!(on_disk <= 100_000, "{on_disk}");
    // Truncated files are rewritten as batches like any other.
    let pooled = inodes_in(dir.path(), "tmp");
    let (ids, again) = burst(&spool, 200);
    assert_eq!(again.difference(&pooled).count(), 1, "batch files not from the pool (the first round's)");
    spool.remove(&ids[0]).unwrap();
    drop(spool);
    let spool = classic(dir.path());
    let listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(listed, ids[1..].to_vec());
    assert!(spool.inner.index().corrupt().is_empty());
    for id in &ids[1..] {
        assert_eq!(body(&spool, id), vec![b'b'; 5120]);
    }
}

/// A restarted server (or one that crashed) finds the last process's free
/// files in `tmp/` and reuses them; unfinished temporaries are deleted as
/// before, and the queue reads back unchanged.
#[test]
fn free_files_left_in_tmp_by_a_crash_are_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let kept = commit_together(&spool, (0..2).map(|_| writer(&spool, 1, b"x")).collect());
    let (gone, _) = burst(&spool, 40);
    for id in &gone {
        spool.remove(id).unwrap();
    }
    let pooled = inodes_in(dir.path(), "tmp");
    assert_eq!(pooled.len(), 20);
    let unfinished = writer(&spool, 1, &vec![b'u'; 200_000]); // spilled to tmp/
    drop(spool);
    drop(unfinished);
    fs::write(dir.path().join("tmp/0123456789ABCDEF.batch"), b"half a batch").unwrap();
    let spool = classic(dir.path());
    assert_eq!(inodes_in(dir.path(), "tmp"), pooled, "the pool kept, the rest deleted");
    assert_eq!(spool.inner.pool.size().0, 20);
    let mut listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    listed.sort();
    let mut expect = kept.clone();
    expect.sort();
    assert_eq!(listed, expect);
    // The open's fsync of queue/ came after they were adopted: usable now.
    let (ids, made) = burst(&spool, 40);
    assert_eq!(made.len(), 11);
    let new: Vec<_> = made.iter().filter(|i| !pooled.contains(i)).collect();
    assert_eq!(new.len(), 1, "all but the kept batch's inode come from the pool: {new:?}");
    // Fresh names do not collide with the adopted ones.
    for id in ids.iter().chain(&kept) {
        spool.remove(id).unwrap();
    }
    let (files, _) = spool.inner.pool.size();
    assert_eq!(names(&dir.path().join("tmp")).len(), files);
    assert!(names(&dir.path().join("queue")).is_empty());
}

/// A free file with a second link (a repaired file system could leave its
/// old queue name) is not adopted, and the other link keeps its bytes.
#[test]
fn a_free_file_linked_elsewhere_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let id = commit_together(&spool, vec![writer(&spool, 1, b"old contents")]).remove(0);
    spool.remove(&id).unwrap();
    drop(spool);
    let free = names(&dir.path().join("tmp"));
    assert_eq!(free.len(), 1);
    let other = dir.path().join("elsewhere");
    fs::hard_link(dir.path().join("tmp").join(&free[0]), &other).unwrap();
    let before = fs::read(&other).unwrap();
    let spool = classic(dir.path());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(spool.inner.pool.size().0, 0);
    commit_together(&spool, vec![writer(&spool, 1, b"new")]);
    assert_eq!(fs::read(&other).unwrap(), before);
}

#[test]
fn the_pool_is_bounded_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    spool.inner.pool.set_limits(20, u64::MAX);
    // One batch file per message: a round each.
    let ids: Vec<_> = (0..30).map(|_| writer(&spool, 1, b"x").commit().unwrap()).collect();
    for id in &ids {
        spool.remove(id).unwrap();
    }
    assert_eq!(spool.pool_stats().0, 20);
    assert_eq!(spool.inner.pool.counts().unlinked, 10);
    assert_eq!(names(&dir.path().join("tmp")).len(), 20);
    const { assert!(crate::pool::POOL_MAX_FILES >= 4096, "thousands: a burst's backlog") };
}

/// A file adopted at open waits, like any free file, for a `queue/` fsync
/// that started after it joined: `open` runs one, so `adopt` must mark it
/// before. Names made afterwards do not reuse its number.
#[test]
fn an_adopted_free_file_is_taken_only_after_a_later_queue_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let inner = &spool.inner;
    fs::write(dir.path().join("tmp/free-900"), b"a previous process's batch").unwrap();
    assert!(inner.pool.adopt(900, &inner.queue_sync).unwrap());
    assert!(inner.pool.take(&inner.queue_sync).is_none(), "no fsync of queue/ since it joined");
    inner.sync_queue_dir().unwrap();
    let free = inner.pool.take(&inner.queue_sync).expect("adopted, then covered");
    assert_eq!(free, dir.path().join("tmp/free-900"));
    fs::remove_file(free).unwrap();
    let id = commit_together(&spool, vec![writer(&spool, 1, b"x")]).remove(0);
    spool.remove(&id).unwrap();
    let pooled = names(&dir.path().join("tmp"));
    assert!(!pooled.is_empty());
    for name in &pooled {
        let n: u64 = name.strip_prefix("free-").unwrap().parse().unwrap();
        assert!(n > 900, "{name}");
    }
}

/// The crash between rewriting a free file as a new batch (or status log)
/// and renaming it into `queue/` leaves `tmp/free-N` holding a complete,
/// valid batch. It must not come back as messages: `open` reads only
/// `queue/`, and adopts the file as free. Names that only look like the
/// pool's (`free-007`, `free-x`) are deleted as any temporary.
#[test]
fn a_free_file_holding_a_whole_batch_is_never_read_as_messages() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let ids = commit_together(&spool, (0..3).map(|_| writer(&spool, 2, b"queued")).collect());
    spool.record(&ids[0], 0, &RcptState::Delivered { at: 1 }).unwrap();
    drop(spool);
    let (queue, tmp) = (dir.path().join("queue"), dir.path().join("tmp"));
    for (k, name) in names(&queue).iter().enumerate() {
        fs::copy(queue.join(name), tmp.join(format!("free-{}", 50 + k))).unwrap();
    }
    fs::write(tmp.join("free-007"), b"x").unwrap();
    fs::write(tmp.join("free-x"), b"x").unwrap();
    let adopted = names(&tmp).into_iter().filter(|n| !n.contains("007") && n != "free-x").count();
    let spool = classic(dir.path());
    let mut listed: Vec<_> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    listed.sort();
    let mut expect = ids.clone();
    expect.sort();
    assert_eq!(listed, expect, "each message once, from queue/ only");
    assert!(spool.inner.index().corrupt().is_empty());
    assert_eq!(spool.inner.pool.size().0, adopted);
    let left = names(&tmp);
    assert!(!left.iter().any(|n| n == "free-007" || n == "free-x"), "{left:?}");
    assert_eq!(left.len(), adopted);
}
