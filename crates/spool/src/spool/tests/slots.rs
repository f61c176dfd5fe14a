//! Slots: a round's batch written in place into a file whose name and blocks are durable
//! (slots.rs, docs/spool-slots.md).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::*;
use crate::format::SLOT_HEADER_LEN;
use crate::slots::SLOT_CAPACITY;

pub(super) fn open(dir: &Path) -> Spool {
    Spool::open(dir).unwrap()
}

pub(super) fn slot(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("queue/slot-{n}.msg"))
}

pub(super) fn slot_log(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("queue/slot-{n}.status"))
}

/// The first line of slot `n` is zeros: it holds no batch.
pub(super) fn is_free_on_disk(dir: &Path, n: u32) -> bool {
    let bytes = fs::read(slot(dir, n)).unwrap();
    bytes[..SLOT_HEADER_LEN].iter().all(|&b| b == 0)
}

pub(super) fn commit(spool: &Spool, body: &[u8]) -> QueueId {
    writer(spool, 1, body).commit().unwrap()
}

#[test]
fn a_round_makes_a_slot_once_and_then_rewrites_it_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let first = commit(&spool, b"one");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg"]);
    let meta = fs::metadata(slot(dir.path(), 0)).unwrap();
    assert_eq!(meta.len(), SLOT_CAPACITY);
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(body(&spool, &first), b"one");
    spool.remove(&first).unwrap();
    assert!(is_free_on_disk(dir.path(), 0));
    let rounds_before = spool.inner.queue_sync.mark();
    for n in 0..20 {
        let id = commit(&spool, format!("message {n}").as_bytes());
        assert_eq!(body(&spool, &id), format!("message {n}").as_bytes());
        spool.remove(&id).unwrap();
    }
    // One file, the same inode, its length unchanged; no `queue/` fsync was needed.
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg"]);
    let after = fs::metadata(slot(dir.path(), 0)).unwrap();
    assert_eq!((after.ino(), after.len()), (meta.ino(), SLOT_CAPACITY));
    assert_eq!(spool.inner.queue_sync.mark(), rounds_before, "a rewrite in place fsynced queue/");
    let stats = spool.slot_stats();
    assert_eq!((stats.slots, stats.made, stats.in_place, stats.free), (1, 1, 20, 1));
}

#[test]
fn a_busy_slot_is_not_rewritten_and_the_next_round_takes_another() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = commit(&spool, b"a");
    let b = commit(&spool, b"b");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-1.msg"]);
    spool.remove(&a).unwrap();
    let c = commit(&spool, b"c");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-1.msg"]);
    assert_eq!((body(&spool, &b), body(&spool, &c)), (b"b".to_vec(), b"c".to_vec()));
    assert!(spool.load(&a).is_err());
}

#[test]
fn a_round_of_many_messages_shares_one_slot_and_survives_reopen_with_states_and_holds() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let writers = (0..5).map(|n| writer(&spool, 2, format!("body {n}").as_bytes())).collect();
    let ids = commit_together(&spool, writers);
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg"]);
    let delivered = RcptState::Delivered { at: 1_700_000_100 };
    spool.record(&ids[1], 1, &delivered).unwrap();
    spool.set_held(&ids[2], true).unwrap();
    spool.remove(&ids[3]).unwrap();
    drop(spool);
    let spool = open(dir.path());
    let recovered = spool.recover().unwrap();
    let got: Vec<_> = recovered.iter().map(|m| m.envelope.id.clone()).collect();
    assert_eq!(got, [ids[0].clone(), ids[1].clone(), ids[2].clone(), ids[4].clone()]);
    assert_eq!(recovered[1].states[1], delivered);
    assert!(recovered[2].held && !recovered[0].held);
    for n in [0, 1, 2, 4] {
        assert_eq!(body(&spool, &ids[n]), format!("body {n}").as_bytes());
    }
    // The slot stays busy until its last message goes; then it is free, on disk too.
    for n in [0, 1, 2] {
        spool.remove(&ids[n]).unwrap();
        assert!(!is_free_on_disk(dir.path(), 0));
    }
    spool.remove(&ids[4]).unwrap();
    assert!(is_free_on_disk(dir.path(), 0));
    assert_eq!(fs::metadata(slot_log(dir.path(), 0)).unwrap().len(), 0, "the log is emptied");
    drop(spool);
    let spool = open(dir.path());
    assert!(spool.recover().unwrap().is_empty());
    assert_eq!(spool.slot_stats().free, 1);
}

/// What a crash leaves when the last message's removal did not reach the disk but the done
/// records of the others did, or a batch all done by its records: free at open, nothing
/// delivered again.
#[test]
fn a_slot_whose_messages_are_all_done_in_its_log_is_freed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let ids = commit_together(&spool, (0..3).map(|n| writer(&spool, 1, &[b'0' + n])).collect());
    drop(spool);
    let done: String = ids.iter().map(|id| format!("{{\"id\":\"{id}\",\"state\":\"done\"}}\n")).collect();
    fs::write(slot_log(dir.path(), 0), format!("DAKIYA-STATUS 2\n{done}")).unwrap();
    let spool = open(dir.path());
    assert!(spool.recover().unwrap().is_empty());
    assert!(is_free_on_disk(dir.path(), 0));
    assert_eq!(fs::metadata(slot_log(dir.path(), 0)).unwrap().len(), 0);
    // And it is rewritten in place by the next round.
    let id = commit(&spool, b"next");
    assert_eq!(body(&spool, &id), b"next");
    assert_eq!(spool.slot_stats().in_place, 1);
}

/// A slot cut short while being rewritten (a crash before its fdatasync returned: no client
/// got a 250 for it) or damaged fails its CRC: moved to `corrupt/` with its log, never
/// delivered, never deleted; the other slots recover, and the slot is made again.
#[test]
fn a_torn_slot_goes_to_corrupt_and_the_others_still_recover() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = commit(&spool, b"aaaaaaaa");
    let b = commit(&spool, b"bbbbbbbb");
    spool.set_held(&a, true).unwrap();
    drop(spool);
    let mut bytes = fs::read(slot(dir.path(), 0)).unwrap();
    let at = bytes.windows(8).position(|w| w == b"aaaaaaaa").unwrap();
    bytes[at] = b'A';
    fs::write(slot(dir.path(), 0), &bytes).unwrap();
    let spool = open(dir.path());
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].envelope.id, b);
    assert_eq!(fs::read(dir.path().join("corrupt/slot-0.msg")).unwrap(), bytes);
    assert!(dir.path().join("corrupt/slot-0.status").exists());
    let c = commit(&spool, b"c");
    assert_eq!(body(&spool, &c), b"c");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-1.msg"]);
}

/// A slot of zeros whose length is not the capacity, or an empty one (made by a round a crash
/// cut short), is unlinked at open, and made again when needed.
#[test]
fn a_short_free_slot_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    fs::write(slot(dir.path(), 0), vec![0u8; 4096]).unwrap();
    fs::write(slot_log(dir.path(), 0), b"DAKIYA-STATUS 2\n").unwrap();
    fs::write(slot(dir.path(), 1), b"").unwrap();
    let spool = open(dir.path());
    assert!(names(&dir.path().join("queue")).is_empty());
    assert!(names(&dir.path().join("corrupt")).is_empty());
    let id = commit(&spool, b"x");
    assert_eq!(fs::metadata(slot(dir.path(), 0)).unwrap().len(), SLOT_CAPACITY);
    assert_eq!(body(&spool, &id), b"x");
}

/// Records about the slot's previous batch never reach the next one: the log is emptied
/// when the slot is freed, and at open for a slot found free.
#[test]
fn the_next_batch_in_a_slot_starts_with_no_states_and_no_hold() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = commit(&spool, b"a");
    spool.set_held(&a, true).unwrap();
    spool.record(&a, 0, &RcptState::Delivered { at: 1 }).unwrap();
    spool.remove(&a).unwrap();
    let b = commit(&spool, b"b");
    let loaded = spool.load(&b).unwrap();
    assert!(!loaded.held);
    assert_eq!(loaded.states, [RcptState::Pending]);
    spool.remove(&b).unwrap();
    drop(spool);
    // A free slot whose log still has lines (the emptying did not reach the disk).
    fs::write(slot_log(dir.path(), 0), format!("DAKIYA-STATUS 2\n{{\"id\":\"{b}\",\"state\":\"held\"}}\n")).unwrap();
    let spool = open(dir.path());
    assert_eq!(fs::metadata(slot_log(dir.path(), 0)).unwrap().len(), 0);
    let c = commit(&spool, b"c");
    spool.record(&c, 0, &RcptState::Delivered { at: 2 }).unwrap();
    drop(spool);
    let spool = open(dir.path());
    let recovered = spool.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!((recovered[0].held, &recovered[0].states[..]), (false, &[RcptState::Delivered { at: 2 }][..]));
}

/// A round larger than a slot, and rounds that find every slot busy with the bound reached,
/// write batch files as before; everything recovers.
#[test]
fn rounds_that_fit_no_slot_write_batch_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open_with(dir.path(), SpoolOptions::with_slots(2)).unwrap();
    let big = vec![b'x'; 100 << 10];
    let large = commit_together(&spool, (0..3).map(|_| writer(&spool, 1, &big)).collect());
    // One batch file, named after whichever message joined the round first.
    let files = names(&dir.path().join("queue"));
    assert_eq!(files.len(), 1);
    assert!(large.iter().any(|id| files[0] == format!("{id}.msg")), "{files:?}");
    let small: Vec<_> = (0..4).map(|n| commit(&spool, &[b'a' + n])).collect();
    let mut expected = vec!["slot-0.msg".to_owned(), "slot-1.msg".to_owned(), files[0].clone()];
    expected.extend([&small[2], &small[3]].map(|id| format!("{id}.msg")));
    expected.sort();
    assert_eq!(names(&dir.path().join("queue")), expected);
    drop(spool);
    let spool = Spool::open_with(dir.path(), SpoolOptions::with_slots(2)).unwrap();
    assert_eq!(spool.recover().unwrap().len(), 7);
    for id in &large {
        assert_eq!(body(&spool, id), big);
    }
    for (n, id) in small.iter().enumerate() {
        assert_eq!(body(&spool, id), [b'a' + n as u8]);
    }
}

/// A reader holding a removed message's body (a delivery still sending it) keeps its slot
/// from being rewritten: the bytes it reads stay the message's.
#[test]
fn a_slot_read_by_a_body_is_not_rewritten_until_the_reader_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = commit(&spool, b"the first message");
    let mut held = spool.body(&a).unwrap();
    assert!(!held.is_in_memory());
    spool.remove(&a).unwrap();
    let b = commit(&spool, b"THE SECOND MESSAGE");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-1.msg"]);
    let mut read = Vec::new();
    held.read_to_end(&mut read).unwrap();
    assert_eq!(read, b"the first message");
    drop(held);
    spool.remove(&b).unwrap();
    let c = commit(&spool, b"c");
    assert_eq!(body(&spool, &c), b"c");
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-1.msg"]);
}

/// A spool written without slots (format version 3 batch files) opens with them: its files
/// are read as before, and new rounds go into slots.
#[test]
fn a_spool_of_batch_files_opens_with_slots() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let old = commit(&spool, b"old");
    drop(spool);
    let spool = open(dir.path());
    let new = commit(&spool, b"new");
    assert_eq!(names(&dir.path().join("queue")), [format!("{old}.msg"), "slot-0.msg".to_owned()]);
    drop(spool);
    let spool = open(dir.path());
    assert_eq!(spool.recover().unwrap().len(), 2);
    assert_eq!((body(&spool, &old), body(&spool, &new)), (b"old".to_vec(), b"new".to_vec()));
}
