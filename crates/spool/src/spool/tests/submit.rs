//! `MessageWriter::commit_then`: messages handed to the committer thread, which leads
//! their rounds and tells each caller once its round is durable.

use std::sync::mpsc;

use super::*;

type Told = (QueueId, Result<QueueId, SpoolError>, u64, Vec<String>);

/// Submits `w`; its callback sends the result, the queue-directory fsyncs done by then and
/// the files then in `queue/`.
fn submit(spool: &Spool, dir: &Path, w: MessageWriter, tx: &mpsc::Sender<Told>) {
    let (tx, probe, queue, id) = (tx.clone(), spool.clone(), dir.join("queue"), w.id().clone());
    w.commit_then(move |result| {
        let syncs = probe.dir_sync_stats().1;
        // The test may reopen the spool as soon as it is told.
        drop(probe);
        let _ = tx.send((id, result, syncs, names(&queue)));
    });
}

#[test]
fn submitters_are_told_only_once_their_round_is_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let syncs_at_open = spool.dir_sync_stats().1;
    let (tx, rx) = mpsc::channel();
    spool.committer.pause();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("message {i}\r\n").into_bytes()).collect();
    for b in &bodies {
        submit(&spool, dir.path(), writer(&spool, 1, b), &tx);
    }
    assert_eq!(spool.committer.pending(), 5);
    thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "told before any round ran");
    assert!(names(&dir.path().join("queue")).is_empty());
    spool.committer.resume();
    let mut told: Vec<Told> = (0..5).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    told.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, result, syncs, files) in &told {
        assert_eq!(result.as_ref().unwrap(), id);
        assert!(*syncs > syncs_at_open, "told before the fsync of queue/");
        assert_eq!(files.len(), 1, "told before the batch file was in queue/: {files:?}");
    }
    let stats = spool.commit_stats();
    assert_eq!((stats.rounds, stats.messages, stats.files()), (1, 5, 1), "one round, led by the committer thread");
    drop(spool);
    let spool = classic(dir.path());
    let mut found: Vec<Vec<u8>> = told.iter().map(|(id, ..)| body(&spool, id)).collect();
    found.sort();
    assert_eq!(found, bodies);
}

#[test]
fn a_failed_round_reaches_every_submitter_and_gives_the_ids_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let (tx, rx) = mpsc::channel();
    // Root ignores permissions: make the batch file impossible to create instead.
    let tmp = dir.path().join(TMP_DIR);
    fs::rename(&tmp, dir.path().join("tmp.away")).unwrap();
    fs::write(&tmp, b"not a directory").unwrap();
    let envs: Vec<Envelope> = (0..3).map(|_| envelope(&spool, 1)).collect();
    spool.committer.pause();
    for env in &envs {
        let mut w = spool.writer(env.clone()).unwrap();
        w.write(b"body").unwrap();
        submit(&spool, dir.path(), w, &tx);
    }
    spool.committer.resume();
    for _ in &envs {
        let (_, result, ..) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(result, Err(SpoolError::Io { op: "create", .. })), "{result:?}");
    }
    fs::remove_file(&tmp).unwrap();
    fs::rename(dir.path().join("tmp.away"), &tmp).unwrap();
    // The ids are free again: the same envelopes commit now.
    for env in &envs {
        let mut w = spool.writer(env.clone()).unwrap();
        w.write(b"again").unwrap();
        submit(&spool, dir.path(), w, &tx);
        let (id, result, ..) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(result.unwrap(), id);
        assert_eq!(body(&spool, &id), b"again");
    }
}

#[test]
fn submitters_and_blocking_committers_share_rounds_and_all_finish() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let (tx, rx) = mpsc::channel();
    let blocking: Vec<QueueId> = thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let spool = &spool;
                s.spawn(move || {
                    (0..50)
                        .map(|i| writer(spool, 1, format!("blocking {t} {i}").as_bytes()).commit().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for i in 0..200 {
            submit(&spool, dir.path(), writer(&spool, 1, format!("submitted {i}").as_bytes()), &tx);
        }
        threads.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let submitted: Vec<QueueId> = (0..200)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .map(|(id, r, ..)| r.map(|_| id).unwrap())
        .collect();
    assert_eq!(spool.commit_stats().messages, 400);
    for id in blocking.iter().chain(&submitted) {
        assert!(!body(&spool, id).is_empty());
    }
}

#[test]
fn the_committer_thread_exits_when_idle_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let (tx, rx) = mpsc::channel();
    for round in 0..2 {
        submit(&spool, dir.path(), writer(&spool, 1, b"x"), &tx);
        let (id, result, ..) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(result.unwrap(), id, "round {round}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while spool.committer.thread_alive() {
            assert!(std::time::Instant::now() < deadline, "the committer thread stayed after its idle time");
            thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(spool.commit_stats().messages, 2);
}

/// Under load the committer thread starts a round no sooner than `COMMIT_PACE` after the
/// previous one ended while other messages are arriving, so that they share it; with nothing
/// else arriving (a lone session) or after a quiet spell a round is not held.
#[test]
fn a_round_right_after_another_waits_for_the_pace_while_messages_arrive() {
    use crate::commit::COMMIT_PACE;
    use std::time::Instant;
    type Timed = (QueueId, Result<QueueId, SpoolError>, Instant);
    let dir = tempfile::tempdir().unwrap();
    let spool = classic(dir.path());
    let (tx, rx) = mpsc::channel::<Timed>();
    let timed = |w: MessageWriter, tx: &mpsc::Sender<Timed>| {
        let (tx, id) = (tx.clone(), w.id().clone());
        w.commit_then(move |result| {
            let _ = tx.send((id, result, Instant::now()));
        });
    };
    // `first` is committed; its callback (on the committer thread, right after its round)
    // writes and submits one message per body of `then`, as sessions told 250 send their
    // next message. Returns all of them as told, in the order told.
    let chain = |first: MessageWriter, then: Vec<&'static [u8]>| -> Vec<Timed> {
        let (later, first_id, probe) = (tx.clone(), first.id().clone(), spool.clone());
        let n = 1 + then.len();
        first.commit_then(move |result| {
            let told_at = Instant::now();
            then.into_iter().for_each(|body| timed(writer(&probe, 1, body), &later));
            let _ = later.send((first_id, result, told_at));
        });
        let mut told: Vec<Timed> = (0..n).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        told.sort_by_key(|t| t.2);
        for (id, result, _) in &told {
            assert_eq!(result.as_ref().unwrap(), id);
        }
        told
    };

    // Another message still arriving (its writer open): the next round waits for the pace,
    // and the two messages submitted meanwhile share it.
    let arriving = writer(&spool, 1, b"still arriving");
    let told = chain(writer(&spool, 1, b"a"), vec![b"b", b"c"]);
    // The hold is observed through its counter, not through a clock: the two messages
    // submitted meanwhile went in one round, and that round was held once.
    assert_eq!(told.len(), 3);
    let stats = spool.commit_stats();
    assert_eq!((stats.rounds, stats.messages, stats.paced), (2, 3, 1), "the two shared one paced round");
    drop(arriving);

    // Nothing else arriving: a lone session's next message is not held.
    thread::sleep(COMMIT_PACE + Duration::from_millis(50));
    chain(writer(&spool, 1, b"d"), vec![b"e"]);
    assert_eq!(spool.commit_stats().paced, 1, "a lone session's round was held");

    // A quiet spell longer than the pace (shorter than the thread's idle exit): not held,
    // even with a message arriving.
    let arriving = writer(&spool, 1, b"still arriving");
    thread::sleep(COMMIT_PACE + Duration::from_millis(50));
    timed(writer(&spool, 1, b"f"), &tx);
    let (id, result, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(result.unwrap(), id);
    assert_eq!(spool.commit_stats().paced, 1, "a round after a quiet spell was held");
    drop(arriving);
}
