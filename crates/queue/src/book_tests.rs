use super::*;

const NOW: u64 = 1_000_000;

fn id(n: u64) -> QueueId {
    format!("{n:016X}").parse().unwrap()
}

fn deferred(next_attempt: u64) -> RcptState {
    RcptState::Deferred { attempts: 1, next_attempt, error: "421".into(), detail: None, delay_notified: false }
}

fn start(id: QueueId, force: bool) -> Option<Start> {
    Some(Start { id, force })
}

/// A book with message 1 ready, 2 due at NOW + 100, 3 running, 4 held.
fn book() -> Book {
    let due = [deferred(NOW + 100)];
    let mut b = Book::recover([(id(1), false, &[][..]), (id(2), false, &due[..]), (id(3), false, &[][..])], NOW);
    b.hold(&id(4));
    b.ready.retain(|m| *m != id(3));
    b.ready.push_front(id(3));
    assert_eq!(b.start_next(), start(id(3), false));
    b
}

#[test]
fn crash_repeat_rules_on_recovery() {
    let failed_untold = [RcptState::Failed { at: 1, error: "550".into(), detail: None, notified: false }];
    let pending = [RcptState::Delivered { at: 1 }, RcptState::Pending];
    let later = [deferred(NOW + 300), deferred(NOW + 200)];
    let past = [deferred(NOW - 5)];
    let all_final = [RcptState::Delivered { at: 1 }];
    let held = [RcptState::Pending];
    let mut b = Book::recover(
        [
            (id(1), false, &failed_untold[..]),
            (id(2), false, &pending[..]),
            (id(3), false, &later[..]),
            (id(4), false, &past[..]),
            (id(5), false, &all_final[..]),
            (id(6), true, &held[..]),
        ],
        NOW,
    );
    assert_eq!(b.counts(), Counts { ready: 3, scheduled: 2, held: 1, running: 0 });
    // The failed recipient's notice is due in a minute; the pending one at once.
    assert_eq!(b.next_due(), Some(NOW + 60));
    b.promote_due(NOW + 60);
    let order: Vec<QueueId> = std::iter::from_fn(|| b.start_next().map(|s| s.id)).collect();
    assert_eq!(order, vec![id(2), id(4), id(5), id(1)], "held stays held");
    assert_eq!(b.next_due(), Some(NOW + 200), "the earliest deferred recipient");
    assert!(b.is_held(&id(6)));
}

#[test]
fn due_index_edges() {
    let mut b = Book::recover([(id(1), false, &[deferred(NOW + 10)][..])], NOW);
    b.promote_due(NOW + 9);
    assert!(!b.has_ready(), "one second before");
    b.promote_due(NOW + 10);
    assert_eq!(b.start_next(), start(id(1), false), "exactly at next_attempt");
    b.finished(id(1), Some(NOW + 70), vec![id(9)]);
    assert_eq!(b.start_next(), start(id(9), false), "a notice is ready at once");
    assert_eq!(b.next_due(), Some(NOW + 70));
    b.finished(id(9), None, vec![]);
    assert_eq!(b.counts(), Counts { ready: 0, scheduled: 1, held: 0, running: 0 });
}

#[test]
fn retry_on_ready_due_running_and_held() {
    let mut b = book();
    assert_eq!(b.retry(&id(1), true), Ok(1));
    assert_eq!(b.retry(&id(2), true), Ok(1));
    assert_eq!(b.next_due(), None, "unscheduled");
    assert_eq!(b.retry(&id(3), true), Ok(1));
    assert_eq!(b.retry(&id(4), true), Err(format!("message {} is held; release it first", id(4))));
    assert_eq!(b.retry(&id(5), false), Err(format!("no message {} in the queue", id(5))));
    let order: Vec<Start> = std::iter::from_fn(|| b.start_next()).collect();
    // 1 was ready already and is queued once more: the second entry finds it running.
    assert_eq!(order, vec![Start { id: id(1), force: true }, Start { id: id(2), force: true }]);
    b.finished(id(3), Some(NOW + 500), vec![]);
    assert_eq!(b.start_next(), start(id(3), true), "a running message runs again, forced");
    b.finished(id(1), Some(NOW + 100), vec![]);
    assert_eq!(b.start_next(), start(id(1), true), "its second ready entry was remembered");
}

#[test]
fn retry_all_forces_scheduled_and_running() {
    let mut b = book();
    assert_eq!(b.retry_all(), 2, "2 scheduled and 3 running; not the ready 1 nor the held 4");
    assert_eq!(b.start_next(), start(id(1), false));
    assert_eq!(b.start_next(), start(id(2), true));
    assert_eq!(b.start_next(), None);
    b.finished(id(3), None, vec![]);
    assert_eq!(b.start_next(), start(id(3), true));
}

#[test]
fn hold_on_ready_due_and_running() {
    let mut b = book();
    b.hold(&id(1));
    b.hold(&id(2));
    b.hold(&id(3));
    assert_eq!(b.start_next(), None, "a held ready message is skipped");
    assert_eq!(b.next_due(), None, "a held message is not scheduled");
    b.finished(id(3), Some(NOW + 10), vec![]);
    b.promote_due(u64::MAX);
    assert_eq!(b.start_next(), None, "a run ending after the hold does not reschedule");
    assert_eq!(b.counts(), Counts { ready: 0, scheduled: 0, held: 4, running: 0 });
}

#[test]
fn release_makes_a_held_message_ready_and_forced() {
    let mut b = book();
    assert!(b.is_held(&id(4)));
    b.release(&id(4));
    assert!(!b.is_held(&id(4)));
    assert_eq!(b.start_next(), start(id(1), false));
    assert_eq!(b.start_next(), start(id(4), true));
}

#[test]
fn delete_on_ready_due_running_and_held() {
    let mut b = book();
    for n in 1..=4 {
        b.delete(&id(n));
    }
    assert_eq!(b.next_due(), None);
    assert!(!b.is_held(&id(4)));
    b.finished(id(3), Some(NOW), vec![]);
    // A deleted ready message still starts a run, which finds nothing in the spool.
    assert_eq!(b.start_next(), start(id(1), false));
    assert_eq!(b.start_next(), None, "the deleted running message is not rescheduled");
}

#[test]
fn rescheduling_replaces_the_earlier_time() {
    let mut b = Book::default();
    b.enqueue(id(1));
    assert_eq!(b.start_next(), start(id(1), false));
    b.finished(id(1), Some(NOW + 100), vec![]);
    b.enqueue(id(1));
    assert_eq!(b.start_next(), start(id(1), false), "started early: unscheduled");
    b.finished(id(1), Some(NOW + 50), vec![]);
    assert_eq!(b.counts().scheduled, 1);
    assert_eq!(b.next_due(), Some(NOW + 50));
}

#[test]
fn oldest_looks_at_every_place_a_message_can_be() {
    assert_eq!(Book::default().oldest(), None);
    assert_eq!(book().oldest(), Some(&id(1)), "ready");
    let due = [deferred(NOW + 100)];
    assert_eq!(Book::recover([(id(5), false, &due[..])], NOW).oldest(), Some(&id(5)), "due");
    let mut running = Book::recover([(id(7), false, &[][..])], NOW);
    assert_eq!(running.start_next(), start(id(7), false));
    assert_eq!(running.oldest(), Some(&id(7)), "running");
    let mut held = Book::default();
    held.hold(&id(6));
    assert_eq!(held.oldest(), Some(&id(6)), "held");
}
