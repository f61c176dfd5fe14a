use super::*;
use dakiya_spool::{BodyType, Envelope, FailureDetail, Recipient};

const RECEIVED: u64 = 1_000_000;
const HOUR: u64 = 3600;
const DELAY_NOTICE: Option<Duration> = Some(Duration::from_secs(4 * HOUR));

/// A NOTIFY keyword, to write the tables below as lists.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Word {
    Success,
    Failure,
    Delay,
}

/// NOTIFY= with the keywords `words` (empty: NEVER).
fn notify(words: &[Word]) -> dakiya_spool::Notify {
    dakiya_spool::Notify {
        success: words.contains(&Word::Success),
        failure: words.contains(&Word::Failure),
        delay: words.contains(&Word::Delay),
    }
}

fn message(sender: &str, notifies: &[Option<Vec<Word>>]) -> QueuedMessage {
    let recipients = notifies
        .iter()
        .enumerate()
        .map(|(i, n)| Recipient {
            address: format!("r{i}@example.net"),
            original: format!("r{i}@example.net"),
            orcpt: None,
            notify: n.as_deref().map(notify),
            mailbox: None,
        })
        .collect();
    let envelope = Envelope {
        id: "00000000000000AA".parse().unwrap(),
        received_at: RECEIVED,
        sender: sender.into(),
        client_ip: "192.0.2.9".into(),
        helo: "client.example".into(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        recipients,
        prepend: None,
    };
    let states = vec![RcptState::Pending; notifies.len()];
    QueuedMessage { envelope, states, size: 10, held: false }
}

fn failed(notified: bool) -> RcptState {
    let detail = FailureDetail::new(dakiya_spool::Enhanced(5, 1, 1));
    RcptState::Failed { at: RECEIVED, error: "550".into(), detail: Some(detail), notified }
}

fn deferred(delay_notified: bool) -> RcptState {
    RcptState::Deferred {
        attempts: 3,
        next_attempt: RECEIVED + 9 * HOUR,
        error: "421".into(),
        detail: None,
        delay_notified,
    }
}

fn plan(m: &QueuedMessage, states: Vec<RcptState>, delivered: &[(usize, Action)], now: u64) -> Plan {
    let changed = vec![true; states.len()];
    Plan::new(m, states, changed, delivered, now, DELAY_NOTICE)
}

fn kinds(p: &Plan) -> Vec<Kind> {
    p.notices().iter().map(|n| n.kind).collect()
}

#[test]
fn notify_combinations_by_kind() {
    use Word::{Delay, Failure, Success};
    // (NOTIFY=, notice for a failure, a delay, a success)
    let table: &[(Option<&[Word]>, [bool; 3])] = &[
        (None, [true, true, false]),
        (Some(&[]), [false, false, false]),
        (Some(&[Failure]), [true, false, false]),
        (Some(&[Delay]), [false, true, false]),
        (Some(&[Success]), [false, false, true]),
        (Some(&[Success, Failure]), [true, false, true]),
        (Some(&[Failure, Delay]), [true, true, false]),
        (Some(&[Success, Failure, Delay]), [true, true, true]),
    ];
    let late = RECEIVED + 5 * HOUR;
    for (notify, [on_failure, on_delay, on_success]) in table {
        let m = message("alice@example.org", &[notify.map(<[Word]>::to_vec)]);
        let f = plan(&m, vec![failed(false)], &[], late);
        assert_eq!(!f.notices().is_empty(), *on_failure, "failure, NOTIFY={notify:?}");
        let d = plan(&m, vec![deferred(false)], &[], late);
        assert_eq!(!d.notices().is_empty(), *on_delay, "delay, NOTIFY={notify:?}");
        let s = plan(&m, vec![RcptState::Delivered { at: late }], &[(0, Action::Delivered)], late);
        assert_eq!(!s.notices().is_empty(), *on_success, "success, NOTIFY={notify:?}");
        // Whether a notice is wanted or not, the recipient is marked as dealt with.
        assert_eq!(f.settle(), Settlement::Remove, "NOTIFY={notify:?}");
        assert!(matches!(d.states()[0], RcptState::Deferred { delay_notified: true, .. }));
    }
}

#[test]
fn one_notice_per_kind_listing_its_recipients() {
    let m = message("alice@example.org", &[None, None, None, Some(vec![Word::Success])]);
    let states = vec![failed(false), deferred(false), failed(false), RcptState::Delivered { at: 1 }];
    let p = plan(&m, states, &[(3, Action::Relayed)], RECEIVED + 5 * HOUR);
    assert_eq!(
        p.notices(),
        &[
            Notice { kind: Kind::Failure, recipients: vec![(0, Action::Failed), (2, Action::Failed)] },
            Notice { kind: Kind::Delay, recipients: vec![(1, Action::Delayed)] },
            Notice { kind: Kind::Success, recipients: vec![(3, Action::Relayed)] },
        ]
    );
}

#[test]
fn the_null_sender_is_never_notified_but_its_recipients_are_settled() {
    let everything = Some(vec![Word::Success, Word::Failure, Word::Delay]);
    let m = message("", &[everything.clone(), everything.clone(), everything]);
    let states = vec![failed(false), deferred(false), RcptState::Delivered { at: 1 }];
    let p = plan(&m, states, &[(2, Action::Delivered)], RECEIVED + 5 * HOUR);
    assert!(p.notices().is_empty());
    assert_eq!(p.states()[0], failed(true), "failed and needing no notice");
    assert!(matches!(p.states()[1], RcptState::Deferred { delay_notified: true, .. }));
}

#[test]
fn delay_notice_threshold_and_only_once() {
    let m = message("alice@example.org", &[None]);
    let before = plan(&m, vec![deferred(false)], &[], RECEIVED + 4 * HOUR - 1);
    assert!(before.notices().is_empty(), "one second before the threshold");
    assert_eq!(before.states()[0], deferred(false));
    let at = plan(&m, vec![deferred(false)], &[], RECEIVED + 4 * HOUR);
    assert_eq!(kinds(&at), vec![Kind::Delay], "exactly at the threshold");
    let again = plan(&m, vec![deferred(true)], &[], RECEIVED + 8 * HOUR);
    assert!(again.notices().is_empty(), "once per recipient");
    let off = Plan::new(&m, vec![deferred(false)], vec![true], &[], RECEIVED + 99 * HOUR, None);
    assert!(off.notices().is_empty(), "delay notices turned off");
}

#[test]
fn a_notice_already_sent_is_not_sent_again() {
    let m = message("alice@example.org", &[None]);
    let p = plan(&m, vec![failed(true)], &[], RECEIVED + 5 * HOUR);
    assert!(p.notices().is_empty());
}

#[test]
fn a_failed_notice_is_tried_again_except_success() {
    let m = message("alice@example.org", &[None, None, Some(vec![Word::Success])]);
    let states = vec![failed(false), deferred(false), RcptState::Delivered { at: 1 }];
    let mut p = plan(&m, states, &[(2, Action::Delivered)], RECEIVED + 5 * HOUR);
    let notices = p.notices().to_vec();
    for n in &notices {
        p.notice_failed(n);
    }
    assert_eq!(p.states()[0], failed(false));
    assert_eq!(p.states()[1], deferred(false));
    let Settlement::Keep { records, next_due } = p.settle() else { panic!("stays queued") };
    assert_eq!(records.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(next_due, Some(RECEIVED + 5 * HOUR + 60), "the failure notice again in a minute");
}

#[test]
fn a_failed_success_notice_still_lets_the_message_go() {
    let m = message("alice@example.org", &[Some(vec![Word::Success])]);
    let mut p = plan(&m, vec![RcptState::Delivered { at: 1 }], &[(0, Action::Delivered)], RECEIVED);
    let notice = p.notices()[0].clone();
    p.notice_failed(&notice);
    assert_eq!(p.settle(), Settlement::Remove);
}

#[test]
fn only_changed_recipients_are_recorded() {
    let m = message("alice@example.org", &[None, None, None]);
    let states = vec![RcptState::Delivered { at: 1 }, deferred(false), RcptState::Pending];
    let p = Plan::new(&m, states, vec![true, false, false], &[], RECEIVED + 60, DELAY_NOTICE);
    let Settlement::Keep { records, next_due } = p.settle() else { panic!() };
    assert_eq!(records, vec![(0, RcptState::Delivered { at: 1 })]);
    assert_eq!(next_due, Some(0), "a pending recipient is due at once");
    let flagged = Plan::new(&m, vec![failed(false), deferred(false)], vec![false, false], &[], RECEIVED, None);
    let Settlement::Keep { records, .. } = flagged.settle() else { panic!() };
    assert_eq!(records, vec![(0, failed(true))], "a flag set by the planner is a change");
}

#[test]
fn delivered_and_notified_failures_leave_the_spool() {
    let m = message("alice@example.org", &[None, None]);
    let p = plan(&m, vec![RcptState::Delivered { at: 1 }, failed(true)], &[], RECEIVED);
    assert_eq!(p.settle(), Settlement::Remove);
    let p = plan(&m, vec![RcptState::Delivered { at: 1 }, deferred(true)], &[], RECEIVED);
    assert_eq!(
        p.settle(),
        Settlement::Keep {
            records: vec![(0, RcptState::Delivered { at: 1 }), (1, deferred(true))],
            next_due: Some(RECEIVED + 9 * HOUR)
        }
    );
}
