//! The order of a round's phases, with steps that record what is asked of them.

use super::*;

type Log = Arc<Mutex<Vec<String>>>;

/// A step that logs each phase, and panics in the phase named `panic_in`.
struct Recording {
    n: usize,
    log: Log,
    panic_in: Option<&'static str>,
}

impl Recording {
    fn note(&self, phase: &'static str) {
        self.log.lock().unwrap().push(format!("{phase} {}", self.n));
        assert_ne!(self.panic_in, Some(phase), "step {} panics in {phase}", self.n);
    }
}

impl StagedStep for Recording {
    fn fsync(&mut self) {
        self.note("fsync");
    }

    fn link(&mut self, _: &mut CopyBuffers) {
        self.note("link");
    }

    fn staged(&self) -> Vec<(&Arc<Maildir>, &Staged)> {
        Vec::new()
    }

    fn complete(self: Box<Self>, _: &dyn Fn(&Arc<Maildir>) -> Option<String>) {
        self.note("complete");
    }
}

fn request(n: usize, log: &Log, panic_in: Option<&'static str>) -> Request {
    let id: QueueId = format!("06B15C91CD0D88{n:02X}").parse().unwrap();
    let log = log.clone();
    let prepare: Prepare = Box::new(move |_| {
        log.lock().unwrap().push(format!("write {n}"));
        Some(Box::new(Recording { n, log, panic_in }) as Box<dyn StagedStep>)
    });
    Request { id, prepare }
}

fn phases(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Every copy of the round is written before any is fsynced, every one fsynced before any
/// is linked into `new/` (one journal commit for the files), and every one linked before the
/// round's commit and the completions. The fsyncs run at once on several threads, so only
/// their set is fixed, not their order; the steps come back from them in the round's order.
#[test]
fn each_phase_runs_for_every_step_before_the_next_phase_starts() {
    let n = 2 * FSYNC_THREADS + 3;
    let log = Log::default();
    run_round(
        (0..n).map(|i| request(i, &log, None)).collect(),
        &mut CopyBuffers::default(),
        &fsyncs::Fsyncs::new(FSYNC_THREADS),
    );
    let log = phases(&log);
    let in_order = |phase: &str| (0..n).map(|i| format!("{phase} {i}")).collect::<Vec<_>>();
    assert_eq!(log[..n], in_order("write"));
    let mut fsynced = log[n..2 * n].to_vec();
    fsynced.sort_by_key(|l| l[6..].parse::<usize>().unwrap());
    assert_eq!(fsynced, in_order("fsync"));
    assert_eq!(log[2 * n..3 * n], in_order("link"));
    assert_eq!(log[3 * n..], in_order("complete"));
}

/// The copies' fsyncs of a round are in flight together (so that they share one journal
/// commit and its cache flush), not one after another: each step's fsync waits until all of
/// them have started, up to the pool's threads plus the round's own.
#[test]
fn a_rounds_fsyncs_are_in_flight_at_the_same_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    struct Meeting {
        started: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        of: usize,
    }
    impl StagedStep for Meeting {
        fn fsync(&mut self) {
            let now = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let until = Instant::now() + Duration::from_secs(5);
            while self.started.load(Ordering::SeqCst) < self.of && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        fn link(&mut self, _: &mut CopyBuffers) {}
        fn staged(&self) -> Vec<(&Arc<Maildir>, &Staged)> {
            Vec::new()
        }
        fn complete(self: Box<Self>, _: &dyn Fn(&Arc<Maildir>) -> Option<String>) {}
    }
    let of = FSYNC_THREADS + 1;
    let (started, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let round = (0..of)
        .map(|n| {
            let step = Meeting { started: started.clone(), most: most.clone(), of };
            let id: QueueId = format!("06B15C91CD0D88{n:02X}").parse().unwrap();
            Request { id, prepare: Box::new(move |_| Some(Box::new(step) as Box<dyn StagedStep>)) }
        })
        .collect();
    let took = Instant::now();
    run_round(round, &mut CopyBuffers::default(), &fsyncs::Fsyncs::new(FSYNC_THREADS));
    assert_eq!(most.load(Ordering::SeqCst), of, "the fsyncs did not all run at once");
    assert!(took.elapsed() < Duration::from_secs(5), "the fsyncs waited for each other");
}

/// A step that panics in a phase goes no further (its result is never sent, so its message
/// is run again); the others finish.
#[test]
fn a_step_panicking_in_a_phase_is_dropped_and_the_round_goes_on() {
    for phase in ["fsync", "link"] {
        let log = Log::default();
        let round = vec![request(0, &log, None), request(1, &log, Some(phase)), request(2, &log, None)];
        run_round(round, &mut CopyBuffers::default(), &fsyncs::Fsyncs::new(FSYNC_THREADS));
        let log = phases(&log);
        assert!(log.contains(&format!("{phase} 1")), "{log:?}");
        assert!(
            !log.iter().any(|l| l.ends_with(" 1") && l.starts_with(if phase == "fsync" { "link" } else { "complete" })),
            "{log:?}"
        );
        assert!(!log.contains(&"complete 1".to_string()), "{log:?}");
        assert!(log.contains(&"complete 0".to_string()) && log.contains(&"complete 2".to_string()), "{log:?}");
    }
}

/// With several permits, a second round still waits for the first to end (its steps join
/// the next round) instead of running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_run_one_at_a_time_whatever_the_permits() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rounds = Arc::new(Rounds::default());
    let limit = Arc::new(Semaphore::new(4));
    let (active, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut runs = Vec::new();
    for n in 0..12u32 {
        let (reply, done) = oneshot::channel();
        let (active, most) = (active.clone(), most.clone());
        let prepare: Prepare = Box::new(move |_| {
            most.fetch_max(active.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            // Long enough for the other runs to ask for their steps meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(20));
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = reply.send(n);
            None
        });
        let (rounds, limit) = (rounds.clone(), limit.clone());
        let id: QueueId = format!("06B15C91CD0D88{n:02X}").parse().unwrap();
        runs.push(tokio::spawn(async move { local_step(&rounds, &limit, &id, prepare, done, |_, _| {}).await }));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    for (n, run) in runs.into_iter().enumerate() {
        assert_eq!(run.await.unwrap(), Some(n as u32));
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two rounds ran at once");
}

/// A local step that only answers `n`; the future checks the answer and returns when it came.
fn timed_step(rounds: &Arc<Rounds>, limit: &Arc<Semaphore>, n: usize) -> impl Future<Output = Instant> + use<> {
    let (rounds, limit) = (rounds.clone(), limit.clone());
    let (reply, done) = oneshot::channel();
    let prepare: Prepare = Box::new(move |_| {
        let _ = reply.send(n);
        None
    });
    let id: QueueId = format!("06B15C91CD0D88{n:02X}").parse().unwrap();
    async move {
        assert_eq!(local_step(&rounds, &limit, &id, prepare, done, |_, _| {}).await, Some(n));
        Instant::now()
    }
}

/// Under load a round waits for the pace, so the steps that arrive meanwhile make one round
/// instead of one each; a step that arrives after a quiet spell starts at once. (Paused
/// time: the instants are the runtime's clock, not the machine's.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn under_load_rounds_wait_for_the_pace_and_a_lone_step_does_not() {
    let rounds = Arc::new(Rounds::default());
    let limit = Arc::new(Semaphore::new(4));
    let step = |n| timed_step(&rounds, &limit, n);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let quiet = Instant::now();
    let first = step(0).await;
    assert!(first - quiet < ROUND_PACE, "a lone step after a quiet spell waited for the pace");
    // Five more, 2 ms apart, right after: they wait for the pace and go as one round.
    let mut runs = Vec::new();
    for n in 1..=5 {
        runs.push(tokio::spawn(step(n)));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let mut ends = Vec::new();
    for run in runs {
        ends.push(run.await.unwrap());
    }
    assert!(ends[0] >= first + ROUND_PACE - std::time::Duration::from_millis(1), "{:?}", ends[0] - first);
    assert!(ends.iter().all(|&e| e == ends[0]), "the steps went in several rounds: {ends:?}");
}

/// A round's worth of waiting steps does not wait for the pace.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_round_starts_without_waiting_for_the_pace() {
    let rounds = Arc::new(Rounds::default());
    let limit = Arc::new(Semaphore::new(4));
    let mut runs = Vec::new();
    // One step to start the pace, then a whole round more at once.
    for n in 0..=MAX_ROUND {
        runs.push(tokio::spawn(timed_step(&rounds, &limit, n)));
        if n == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let start = Instant::now();
    for run in runs {
        let end = run.await.unwrap();
        assert!(end - start < ROUND_PACE / 2, "a full round waited {:?}", end - start);
    }
}

/// The pool gives the items back in their order, less those its work drops, whether its work
/// runs on its threads, panics there, or (no threads) runs on the caller's thread alone.
#[test]
fn the_pool_gives_the_items_back_in_order() {
    for threads in [0, 1, 4, FSYNC_THREADS] {
        let pool = fsyncs::Fsyncs::new(threads);
        let kept = pool.all_at_once((0..100).collect(), |n: usize| (!n.is_multiple_of(3)).then_some(n));
        assert_eq!(kept, (0..100).filter(|n: &usize| !n.is_multiple_of(3)).collect::<Vec<_>>(), "{threads} threads");
        let kept = pool.all_at_once(vec![1, 2, 3, 4, 5], |n: usize| {
            assert_ne!(n, 3, "work that does not catch its panic");
            Some(n)
        });
        assert_eq!(kept, [1, 2, 4, 5], "{threads} threads");
        assert_eq!(pool.all_at_once(vec![7], Some), [7]);
        assert!(pool.all_at_once(Vec::<usize>::new(), Some).is_empty());
    }
}
