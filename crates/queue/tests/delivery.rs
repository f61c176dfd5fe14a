//! Real delivery runs without the server: a spool in a temporary directory, real Maildirs,
//! a loopback SMTP sink, and the clock set by the test.

mod common;

use common::{Env, MESSAGE, T0, closed_port, delivery_status, sink};
use dakiya_control::ControlOp;
use dakiya_queue::{RunOutcome, run};
use dakiya_spool::{Notify, RcptState};
use std::time::{Duration, Instant};

const HOUR: u64 = 3600;
const DELIVERY: &str = "retry_schedule = [\"1m\", \"5m\"]\nmax_age = \"1d\"\ndelay_notice = \"4h\"";

#[tokio::test]
async fn local_recipients_are_delivered_into_their_maildirs_and_the_message_leaves() {
    let env = Env::new(closed_port(), DELIVERY);
    let id = env.commit("carol@elsewhere.test", &[("alice@example.test", None), ("bob@example.test", None)], MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out, RunOutcome { id: id.clone(), retry_at: None, notices: vec![] });
    for name in ["alice", "bob"] {
        let copies = env.mailbox(name);
        assert_eq!(copies.len(), 1, "{name}");
        // Maildir files end lines in LF.
        let expected_top = format!("Return-Path: <carol@elsewhere.test>\nDelivered-To: {name}@example.test\n");
        assert!(copies[0].starts_with(&expected_top), "{}", copies[0]);
        assert!(copies[0].ends_with(&MESSAGE.replace("\r\n", "\n")), "{}", copies[0]);
    }
    assert!(!env.queued(&id), "delivered: removed from the spool");
}

#[tokio::test]
async fn a_looping_message_bounces_with_5_4_6_into_the_senders_maildir() {
    let env = Env::new(closed_port(), DELIVERY);
    let looping = format!("{}{MESSAGE}", "Received: from somewhere\r\n".repeat(101));
    let id = env.commit("alice@example.test", &[("bob@example.test", None)], &looping);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, None);
    assert_eq!(out.notices.len(), 1, "one failure notice");
    assert!(env.mailbox("bob").is_empty(), "never delivered");
    assert!(!env.queued(&id), "failed and the sender told: removed");
    // The notice is a queued message like any other, from <>, delivered by its own run.
    let notice = env.spool.load(&out.notices[0]).unwrap();
    assert_eq!(notice.envelope.sender, "");
    assert_eq!(notice.envelope.recipients[0].notify, Some(Notify::NEVER), "NOTIFY=NEVER on a notice");
    let out = run(env.ctx.clone(), out.notices[0].clone(), false).await;
    assert_eq!((out.retry_at, out.notices.len()), (None, 0));
    let bounces = env.mailbox("alice");
    assert_eq!(bounces.len(), 1);
    assert!(bounces[0].starts_with("Return-Path: <>\n"), "{}", bounces[0]);
    let status = delivery_status(&bounces[0]);
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.4.6"), "{status}");
    assert!(status.contains("Final-Recipient: rfc822; bob@example.test"), "{status}");
}

#[tokio::test]
async fn an_unreachable_host_is_deferred_then_a_delay_notice_then_expiry_with_4_4_7() {
    let env = Env::new(closed_port(), DELIVERY);
    let id = env.commit("alice@example.test", &[("dave@remote.test", None)], MESSAGE);
    // First attempt: deferred on the schedule's first delay.
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, Some(T0 + 60));
    let state = &env.spool.load(&id).unwrap().states[0];
    let RcptState::Deferred { attempts: 1, next_attempt, detail, delay_notified: false, .. } = state else {
        panic!("{state:?}")
    };
    assert_eq!(*next_attempt, T0 + 60);
    assert!(detail.as_ref().unwrap().status.class() == 4, "{detail:?}");
    // Not due yet one second before, without force: nothing is attempted.
    env.set_time(T0 + 59);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, Some(T0 + 60));
    assert!(matches!(env.spool.load(&id).unwrap().states[0], RcptState::Deferred { attempts: 1, .. }));
    // Five hours on: past the delay notice threshold; one notice, once.
    env.set_time(T0 + 5 * HOUR);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.notices.len(), 1);
    assert_eq!(out.retry_at, Some(T0 + 5 * HOUR + 300), "second delay of the schedule");
    run(env.ctx.clone(), out.notices[0].clone(), false).await;
    let delayed = env.mailbox("alice");
    assert_eq!(delayed.len(), 1);
    assert!(delivery_status(&delayed[0]).contains("Action: delayed"));
    let again = run(env.ctx.clone(), id.clone(), true).await;
    assert!(again.notices.is_empty(), "no second delay notice");
    assert!(matches!(
        env.spool.load(&id).unwrap().states[0],
        RcptState::Deferred { attempts: 3, delay_notified: true, .. }
    ));
    // Past max_age: fails with 4.4.7 and bounces.
    env.set_time(T0 + 24 * HOUR + 1);
    let out = run(env.ctx.clone(), id.clone(), true).await;
    assert_eq!((out.retry_at, out.notices.len()), (None, 1));
    assert!(!env.queued(&id));
    run(env.ctx.clone(), out.notices[0].clone(), false).await;
    let notices = env.mailbox("alice");
    assert_eq!(notices.len(), 2);
    // Maildir names are not ordered by delivery (the microseconds are not
    // zero-padded), so find the failure notice by its content.
    let statuses: Vec<String> = notices.iter().map(|n| delivery_status(n)).collect();
    assert_eq!(statuses.iter().filter(|s| s.contains("Action: delayed")).count(), 1, "{statuses:?}");
    let failed: Vec<&String> = statuses.iter().filter(|s| s.contains("Action: failed")).collect();
    assert_eq!(failed.len(), 1, "{statuses:?}");
    assert!(failed[0].contains("Status: 4.4.7"), "{}", failed[0]);
}

#[tokio::test]
async fn remote_recipients_are_relayed_to_a_loopback_sink_with_a_relayed_notice_on_request() {
    let (port, messages, commands) = sink();
    let env = Env::new(port, DELIVERY);
    let rcpts = [
        ("dave@remote.test", Some(Notify { success: true, failure: true, delay: false })),
        ("nobody@remote.test", None),
        ("bob@example.test", Some(Notify { success: true, failure: false, delay: false })),
    ];
    let id = env.commit("alice@example.test", &rcpts, MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, None);
    assert!(!env.queued(&id));
    assert_eq!(messages.lock().unwrap().len(), 1);
    assert!(messages.lock().unwrap()[0].contains("Hello there."));
    let commands = commands.lock().unwrap().clone();
    assert!(commands.iter().any(|c| c == "MAIL FROM:<alice@example.test>"), "{commands:?}");
    assert!(!commands.iter().any(|c| c.contains("NOTIFY")), "no DSN offered: no NOTIFY sent: {commands:?}");
    assert_eq!(env.mailbox("bob").len(), 1);
    // A failure notice for nobody@, a success notice for dave@ (relayed) and bob@ (delivered).
    assert_eq!(out.notices.len(), 2);
    for n in &out.notices {
        run(env.ctx.clone(), n.clone(), false).await;
    }
    let notices: Vec<String> = env.mailbox("alice").iter().map(|n| delivery_status(n)).collect();
    assert_eq!(notices.len(), 2);
    let failed = notices.iter().find(|s| s.contains("Action: failed")).expect("a failure notice");
    assert!(failed.contains("Status: 5.1.1") && failed.contains("nobody@remote.test"), "{failed}");
    assert!(failed.contains("Remote-MTA: dns; 127.0.0.1"), "{failed}");
    assert!(failed.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"), "{failed}");
    let success = notices.iter().find(|s| s.contains("Action: relayed")).expect("a success notice");
    assert!(success.contains("dave@remote.test") && success.contains("Action: delivered"), "{success}");
}

#[tokio::test]
async fn the_null_sender_gets_no_notice() {
    let env = Env::new(closed_port(), DELIVERY);
    let looping = format!("{}{MESSAGE}", "Received: x\r\n".repeat(101));
    let id = env.commit("", &[("bob@example.test", None)], &looping);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!((out.retry_at, out.notices.len()), (None, 0));
    assert!(!env.queued(&id));
}

/// Waits up to 20 s for `cond`.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_scheduler_delivers_recovered_and_enqueued_messages_and_obeys_hold_and_release() {
    let env = Env::new(closed_port(), DELIVERY);
    let recovered = env.commit("carol@elsewhere.test", &[("alice@example.test", None)], MESSAGE);
    let held = env.commit("carol@elsewhere.test", &[("bob@example.test", None)], MESSAGE);
    env.spool.set_held(&held, true).unwrap();
    let queue = dakiya_queue::start(env.ctx.clone(), env.spool.recover().unwrap());
    wait_until("the recovered message", || env.mailbox("alice").len() == 1).await;
    // The copy is in `new/` before the round records it done (docs/delivery.md): wait for both.
    wait_until("the recovered message recorded", || !env.queued(&recovered)).await;
    let fresh = env.commit("carol@elsewhere.test", &[("alice@example.test", None)], MESSAGE);
    queue.enqueue(fresh.clone());
    wait_until("the enqueued message", || env.mailbox("alice").len() == 2).await;
    assert!(env.mailbox("bob").is_empty(), "held stays held");
    assert_eq!(
        queue.control(ControlOp::Retry(Some(held.clone()))).await,
        Err(format!("message {held} is held; release it first"))
    );
    assert_eq!(queue.control(ControlOp::Release(held.clone())).await, Ok(1));
    wait_until("the released message", || env.mailbox("bob").len() == 1).await;
    // The copy is in `new/` before its run ends and the scheduler forgets the message.
    let gone = Err(format!("no message {held} in the queue"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.control(ControlOp::Release(held.clone())).await != gone {
        assert!(Instant::now() < deadline, "timed out waiting for the released message to leave the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!env.queued(&held));
    let deferred = env.commit("carol@elsewhere.test", &[("dave@remote.test", None)], MESSAGE);
    queue.enqueue(deferred.clone());
    wait_until("the first attempt", || {
        matches!(env.spool.load(&deferred).map(|m| m.states[0].clone()), Ok(RcptState::Deferred { .. }))
    })
    .await;
    assert_eq!(queue.control(ControlOp::Hold(deferred.clone())).await, Ok(1));
    assert!(env.spool.load(&deferred).unwrap().held);
    assert_eq!(queue.control(ControlOp::Delete(deferred.clone())).await, Ok(1));
    assert!(!env.queued(&deferred));
    assert_eq!(
        queue.control(ControlOp::Delete(deferred.clone())).await,
        Err(format!("no message {deferred} in the queue"))
    );
}

/// Cut 2 of docs/performance.md §6: the local steps of runs waiting at the same time form a
/// round, which fsyncs the Maildir's `new/` once for all its copies; every copy lands and
/// every message is recorded done (it leaves the spool) only after that fsync.
#[tokio::test]
async fn a_round_of_local_deliveries_into_one_maildir_lands_every_copy_with_shared_directory_fsyncs() {
    const N: usize = 12;
    // One permit: while the first round runs, the other runs' steps wait and form the next.
    let env = Env::new(closed_port(), &format!("{DELIVERY}\nlocal_concurrency = 1"));
    let ids: Vec<_> = (0..N)
        .map(|i| env.commit("carol@elsewhere.test", &[("alice@example.test", None)], &format!("Subject: {i}\r\n\r\nx")))
        .collect();
    let runs: Vec<_> = ids.iter().map(|id| tokio::spawn(run(env.ctx.clone(), id.clone(), false))).collect();
    for (id, r) in ids.iter().zip(runs) {
        assert_eq!(r.await.unwrap(), RunOutcome { id: id.clone(), retry_at: None, notices: vec![] });
        assert!(!env.queued(id), "{id} recorded done");
    }
    let copies = env.mailbox("alice");
    assert_eq!(copies.len(), N);
    for i in 0..N {
        assert_eq!(copies.iter().filter(|c| c.contains(&format!("Subject: {i}\n"))).count(), 1, "copy {i}");
    }
    let (requests, fsyncs) = env.ctx.boxes.dir_sync_stats("example.test", "alice").unwrap();
    assert!(fsyncs < N as u64, "{fsyncs} fsyncs of new/ for {N} copies ({requests} requests)");
    // Each copy's file fsynced once, in the round's phase between the writes and the links.
    assert_eq!(env.ctx.boxes.file_sync_count("example.test", "alice"), Some(N as u64));
}
