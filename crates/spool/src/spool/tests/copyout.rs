//! Copying the live messages of long-busy slots out into batch files (copyout.rs,
//! docs/spool-slots.md, "Slots kept busy by deferred mail").

use std::time::Duration;

use super::slots::{commit, is_free_on_disk, open, slot};
use super::*;

/// `ids` in the order of their records in their batch (a round takes its messages in the
/// order they arrived, which threads committing together do not fix).
fn in_file_order(spool: &Spool, mut ids: Vec<QueueId>) -> Vec<QueueId> {
    ids.sort_by_key(|id| spool.inner.index().get(id).unwrap().extent.env_off);
    ids
}

/// `ids` in id order, as `recover` lists them.
fn sorted(mut ids: Vec<QueueId>) -> Vec<QueueId> {
    ids.sort();
    ids
}

/// Five messages in slot 0, of two recipients each: one delivered to its second recipient,
/// one held, one removed, one deferred.
fn busy_slot(spool: &Spool) -> (Vec<QueueId>, RcptState, RcptState) {
    let writers = (0..5).map(|n| writer(spool, 2, format!("body {n}").as_bytes())).collect();
    let ids = in_file_order(spool, commit_together(spool, writers));
    let delivered = RcptState::Delivered { at: 1_700_000_100 };
    let deferred = RcptState::Deferred {
        attempts: 3,
        next_attempt: 1_700_000_900,
        error: "451 4.3.0 try later".into(),
        detail: None,
        delay_notified: false,
    };
    spool.record(&ids[1], 1, &delivered).unwrap();
    spool.set_held(&ids[2], true).unwrap();
    spool.remove(&ids[3]).unwrap();
    spool.record(&ids[4], 0, &deferred).unwrap();
    (ids, delivered, deferred)
}

/// What `ids` (all queued) look like: ids, bodies, states, holds.
fn look(spool: &Spool, ids: &[&QueueId]) -> Vec<(QueueId, Vec<u8>, Vec<RcptState>, bool)> {
    ids.iter()
        .map(|id| {
            let m = spool.load(id).unwrap();
            ((*id).clone(), body(spool, id), m.states, m.held)
        })
        .collect()
}

#[test]
fn a_long_busy_slot_is_copied_into_a_batch_file_with_its_states_and_freed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let (ids, delivered, deferred) = busy_slot(&spool);
    let live = [&ids[0], &ids[1], &ids[2], &ids[4]];
    let before = look(&spool, &live);
    assert_eq!(before[1].2[1], delivered);
    assert_eq!(before[3].2[0], deferred);
    // Too young: nothing moves.
    assert_eq!(spool.copy_out_slots(Duration::from_secs(3600)).unwrap(), 0);
    assert!(!is_free_on_disk(dir.path(), 0));
    assert_eq!(spool.copy_out_slots(Duration::ZERO).unwrap(), 1);
    // The slot is free, on disk too, and the messages are in a batch file named after the
    // first of them, with a log holding their states.
    assert!(is_free_on_disk(dir.path(), 0));
    let mut expected = vec![format!("{}.msg", ids[0]), format!("{}.status", ids[0]), "slot-0.msg".into()];
    expected.push("slot-0.status".into());
    expected.sort();
    assert_eq!(names(&dir.path().join("queue")), expected);
    assert_eq!(fs::metadata(dir.path().join("queue/slot-0.status")).unwrap().len(), 0, "the slot's log is emptied");
    assert_eq!(look(&spool, &live), before);
    assert!(spool.load(&ids[3]).is_err(), "the removed message stays removed");
    let stats = spool.slot_stats();
    assert_eq!((stats.copied_out, stats.free), (1, 1));
    // The next round takes the freed slot.
    let next = commit(&spool, b"next");
    assert_eq!(body(&spool, &next), b"next");
    assert_eq!(spool.slot_stats().in_place, 1);
    // Records made after the copy go to the batch file's log, and survive reopening.
    spool.record(&ids[0], 0, &delivered).unwrap();
    spool.remove(&ids[2]).unwrap();
    let after: Vec<_> = look(&spool, &[&ids[0], &ids[1], &ids[4]]);
    drop(spool);
    let spool = open(dir.path());
    let recovered: Vec<QueueId> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(recovered, sorted(vec![ids[0].clone(), ids[1].clone(), ids[4].clone(), next.clone()]));
    assert_eq!(look(&spool, &[&ids[0], &ids[1], &ids[4]]), after);
    // Removing them all removes the batch file as any other.
    for id in [&ids[0], &ids[1], &ids[4], &next] {
        spool.remove(id).unwrap();
    }
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-0.status"]);
}

/// A crash after the batch file was made durable but before the slot's zeros reached the
/// disk: both hold the messages. The batch file wins, each message is queued once, with the
/// states recorded after the copy, and the slot is free; nothing goes to `corrupt/`.
#[test]
fn after_a_crash_between_copy_and_free_the_batch_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let (ids, delivered, _) = busy_slot(&spool);
    let slot_bytes = fs::read(slot(dir.path(), 0)).unwrap();
    let log_bytes = fs::read(dir.path().join("queue/slot-0.status")).unwrap();
    assert_eq!(spool.copy_out_slots(Duration::ZERO).unwrap(), 1);
    spool.record(&ids[4], 1, &delivered).unwrap();
    let live = [&ids[0], &ids[1], &ids[2], &ids[4]];
    let expected = look(&spool, &live);
    drop(spool);
    // The slot and its log as they were before the copy.
    fs::write(slot(dir.path(), 0), &slot_bytes).unwrap();
    fs::write(dir.path().join("queue/slot-0.status"), &log_bytes).unwrap();
    let spool = open(dir.path());
    let recovered: Vec<QueueId> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(recovered, sorted(live.iter().map(|id| (*id).clone()).collect()));
    assert_eq!(look(&spool, &live), expected);
    assert!(is_free_on_disk(dir.path(), 0), "the slot is freed at open");
    assert!(fs::read_dir(dir.path().join("corrupt")).unwrap().next().is_none(), "nothing corrupt");
}

/// A crash before the batch file's rename: only the copies in `tmp/`, or an orphan log in
/// `queue/`, and the slot as it was. Open deletes the leftovers and the slot's messages
/// are queued, with their states.
#[test]
fn after_a_crash_before_the_batch_file_is_named_the_slot_holds_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let (ids, ..) = busy_slot(&spool);
    let live = [&ids[0], &ids[1], &ids[2], &ids[4]];
    let expected = look(&spool, &live);
    let copy = format!("{}.copy", ids[0]);
    drop(spool);
    fs::write(dir.path().join("tmp").join(&copy), b"half a batch").unwrap();
    fs::write(dir.path().join(format!("queue/{}.status", ids[0])), b"DAKIYA-STATUS 2\n").unwrap();
    let spool = open(dir.path());
    assert_eq!(spool.recover().unwrap().len(), 4);
    assert_eq!(look(&spool, &live), expected);
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-0.status"]);
    assert!(!dir.path().join("tmp").join(&copy).exists());
}

/// A record whose caller looked the message up before the copy, and got the batch's lock
/// after it, lands in the batch file's log, not in the slot's (which the copy emptied).
#[test]
fn a_record_racing_the_copy_lands_in_the_batch_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let (ids, delivered, _) = busy_slot(&spool);
    let slot_batch = spool.inner.index().get(&ids[0]).unwrap().batch;
    let (spool2, id) = (spool.clone(), ids[0].clone());
    let recorded = {
        // Hold the slot batch's lock, start a record (it looks the batch up and waits for
        // the lock), then copy out with the lock as the copy would hold it.
        let mut log = slot_batch.lock();
        let waiter = std::thread::spawn(move || spool2.record(&id, 0, &RcptState::Delivered { at: 1_700_000_100 }));
        std::thread::sleep(Duration::from_millis(200));
        let members: Vec<_> = [&ids[0], &ids[1], &ids[2], &ids[4]]
            .iter()
            .map(|id| ((*id).clone(), spool.inner.index().get(id).unwrap().extent))
            .collect();
        spool.copy_out(&slot_batch, members, &mut log).unwrap();
        drop(log);
        waiter
    };
    recorded.join().unwrap().unwrap();
    assert_eq!(spool.load(&ids[0]).unwrap().states[0], delivered);
    drop((spool, slot_batch));
    let spool = open(dir.path());
    assert_eq!(spool.load(&ids[0]).unwrap().states[0], delivered, "the record survives reopening");
}

/// Batch files are not touched, and free slots are no work.
#[test]
fn batch_files_and_free_slots_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let id = commit(&spool, b"classic");
    assert_eq!(spool.copy_out_slots(Duration::ZERO).unwrap(), 0);
    assert_eq!(names(&dir.path().join("queue")), [format!("{id}.msg")]);
    drop(spool);
    let spool = open(dir.path());
    let slotted = commit(&spool, b"slotted");
    spool.remove(&slotted).unwrap();
    assert_eq!(spool.copy_out_slots(Duration::ZERO).unwrap(), 0);
    assert_eq!(spool.slot_stats().copied_out, 0);
    assert_eq!(body(&spool, &id), b"classic");
}

/// A crash that also lost a done record of the slot (removals do not fsync) brings that
/// message back from the slot, beside the batch file that now holds the others under the
/// name of the slot's first message. The two batches must stay apart: removing the batch
/// file's messages must not end the slot's, nor the other way round.
#[test]
fn a_message_brought_back_from_the_slot_does_not_share_the_batch_files_count() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let ids = commit_together(&spool, (0..3).map(|n| writer(&spool, 1, format!("body {n}").as_bytes())).collect());
    let ids = in_file_order(&spool, ids);
    let bodies: Vec<Vec<u8>> = ids.iter().map(|id| body(&spool, id)).collect();
    let slot_bytes = fs::read(slot(dir.path(), 0)).unwrap();
    spool.remove(&ids[1]).unwrap();
    assert_eq!(spool.copy_out_slots(Duration::ZERO).unwrap(), 1);
    assert!(dir.path().join(format!("queue/{}.msg", ids[0])).exists());
    drop(spool);
    // The slot as it was, its log without the done record of the message removed.
    fs::write(slot(dir.path(), 0), &slot_bytes).unwrap();
    fs::write(dir.path().join("queue/slot-0.status"), b"").unwrap();
    let spool = open(dir.path());
    let recovered: Vec<QueueId> = spool.recover().unwrap().into_iter().map(|m| m.envelope.id).collect();
    assert_eq!(recovered, sorted(ids.clone()), "the removed message is back (at-least-once), the others once");
    spool.remove(&ids[0]).unwrap();
    assert_eq!(body(&spool, &ids[2]), bodies[2], "the batch file still holds its other message");
    assert_eq!(body(&spool, &ids[1]), bodies[1]);
    spool.remove(&ids[2]).unwrap();
    assert_eq!(body(&spool, &ids[1]), bodies[1], "the slot still holds its message");
    spool.remove(&ids[1]).unwrap();
    assert!(is_free_on_disk(dir.path(), 0));
    assert_eq!(names(&dir.path().join("queue")), ["slot-0.msg", "slot-0.status"]);
}
