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
    let id: QueueId = format!("06B15C91CD0D88F{n:X}").parse().unwrap();
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
/// round's commit and the completions.
#[test]
fn each_phase_runs_for_every_step_before_the_next_phase_starts() {
    let log = Log::default();
    run_round((0..3).map(|n| request(n, &log, None)).collect(), &mut CopyBuffers::default());
    let expected: Vec<String> = ["write", "fsync", "link", "complete"]
        .iter()
        .flat_map(|phase| (0..3).map(move |n| format!("{phase} {n}")))
        .collect();
    assert_eq!(phases(&log), expected);
}

/// A step that panics in a phase goes no further (its result is never sent, so its message
/// is run again); the others finish.
#[test]
fn a_step_panicking_in_a_phase_is_dropped_and_the_round_goes_on() {
    for phase in ["fsync", "link"] {
        let log = Log::default();
        let round = vec![request(0, &log, None), request(1, &log, Some(phase)), request(2, &log, None)];
        run_round(round, &mut CopyBuffers::default());
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
