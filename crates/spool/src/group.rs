//! Group commit of directory fsyncs.
//!
//! Making a rename durable needs an fsync of the directory that holds the new
//! entry. One directory fsync persists *every* entry changed before it
//! started, so concurrent committers can share one: each committer, after its
//! rename has returned, waits for a sync that **started after** that point.
//! At most one sync runs at a time; committers arriving while it runs form
//! the next round, and one of them runs the next sync for all of them.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use crate::latency::{Latencies, LatencyStats};

/// Something that can be made durable as a whole, such as a directory.
pub trait SyncTarget {
    /// Flushes every change made before the call to stable storage.
    fn sync(&self) -> io::Result<()>;
}

impl SyncTarget for std::fs::File {
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}

/// The outcome of one round, shared by all its members. `io::Error` is not
/// `Clone`, so followers get a copy of the kind and message.
type RoundResult = Result<(), (io::ErrorKind, String)>;

#[derive(Default)]
struct Round {
    result: OnceLock<RoundResult>,
}

struct State {
    /// The round that has not started yet; new callers join it.
    pending: Arc<Round>,
    /// Whether a sync is running now.
    in_progress: bool,
    /// Calls to [`GroupSync::sync`] so far (for tests and metrics).
    calls: u64,
    /// Syncs started so far (for tests and metrics).
    rounds: u64,
    /// The number (1 = the first started) of the latest sync that succeeded.
    last_ok: u64,
    /// Callers waiting on the condvar: a round with none ends without a wake-up call
    /// (a `notify_all` is a futex system call even when nobody waits).
    waiters: usize,
}

/// Coalesces concurrent "make my change durable" requests into few syncs.
///
/// Guarantee: [`GroupSync::sync`] returns `Ok` only after a call of
/// [`SyncTarget::sync`] that started after `sync` was entered has succeeded,
/// so a change (e.g. a rename) completed before calling `sync` is durable.
/// If that round's sync fails, every member of the round gets the error.
pub struct GroupSync<T> {
    target: T,
    state: Mutex<State>,
    wake: Condvar,
    /// How long each sync took.
    latency: Latencies,
}

impl<T: SyncTarget> GroupSync<T> {
    /// Wraps `target`.
    pub fn new(target: T) -> GroupSync<T> {
        GroupSync {
            target,
            state: Mutex::new(State {
                pending: Arc::default(),
                in_progress: false,
                calls: 0,
                rounds: 0,
                last_ok: 0,
                waiters: 0,
            }),
            wake: Condvar::new(),
            latency: Latencies::default(),
        }
    }

    /// Blocks until a sync that started after this call has completed, and
    /// returns its result. Call it after the change to persist has returned.
    pub fn sync(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.calls += 1;
        let mine = Arc::clone(&state.pending);
        loop {
            if let Some(result) = mine.result.get() {
                return result.clone().map_err(|(kind, msg)| io::Error::new(kind, msg));
            }
            if !state.in_progress {
                // No result and nothing running: my round has not started,
                // so it is still the pending one, and I lead it.
                return self.lead(state);
            }
            state.waiters += 1;
            state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiters -= 1;
        }
    }

    /// Runs the sync for the pending round, outside the lock.
    fn lead(&self, mut state: MutexGuard<'_, State>) -> io::Result<()> {
        let round = std::mem::take(&mut state.pending);
        state.in_progress = true;
        state.rounds += 1;
        let number = state.rounds;
        drop(state);
        // A panicking target must not leave `in_progress` set forever.
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.target.sync()))
            .unwrap_or_else(|_| Err(io::Error::other("sync panicked")));
        self.latency.record(started.elapsed());
        let shared = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err((e.kind(), e.to_string())),
        };
        let mut state = self.lock();
        if shared.is_ok() {
            state.last_ok = state.last_ok.max(number);
        }
        let _ = round.result.set(shared);
        state.in_progress = false;
        // A caller that has not counted itself as waiting yet takes the lock after this and
        // finds the result (or leads) without waiting.
        let waiting = state.waiters > 0;
        drop(state);
        if waiting {
            self.wake.notify_all();
        }
        result
    }

    /// `(calls, syncs)` so far: how well requests were coalesced.
    pub fn stats(&self) -> (u64, u64) {
        let state = self.lock();
        (state.calls, state.rounds)
    }

    /// A mark to take right after a change has returned: [`GroupSync::covers`]
    /// then tells, without waiting, whether the change has become durable.
    pub(crate) fn mark(&self) -> u64 {
        self.lock().rounds
    }

    /// Whether a sync that started after `mark` was taken has succeeded.
    pub(crate) fn covers(&self, mark: u64) -> bool {
        self.lock().last_ok > mark
    }

    /// How long the syncs took so far.
    pub fn latency(&self) -> LatencyStats {
        self.latency.snapshot()
    }

    /// The wrapped target.
    pub fn target(&self) -> &T {
        &self.target
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// A fake directory: "renames" bump `changed`; a sync makes everything
    /// changed before it *started* durable, once it finishes.
    #[derive(Default)]
    struct FakeDir {
        changed: AtomicU64,
        durable: AtomicU64,
        busy: AtomicBool,
        syncs: AtomicU64,
        fail_sync_number: Option<u64>,
        delay: Duration,
    }

    impl FakeDir {
        fn rename(&self) -> u64 {
            self.changed.fetch_add(1, SeqCst) + 1
        }
    }

    impl SyncTarget for FakeDir {
        fn sync(&self) -> io::Result<()> {
            assert!(!self.busy.swap(true, SeqCst), "two syncs overlapped");
            let n = self.syncs.fetch_add(1, SeqCst) + 1;
            let snapshot = self.changed.load(SeqCst);
            thread::sleep(self.delay);
            self.busy.store(false, SeqCst);
            if self.fail_sync_number == Some(n) {
                return Err(io::Error::other("injected failure"));
            }
            self.durable.fetch_max(snapshot, SeqCst);
            Ok(())
        }
    }

    #[test]
    fn every_caller_is_covered_by_a_later_sync_and_syncs_coalesce() {
        const THREADS: u64 = 32;
        const EACH: u64 = 100;
        let group = Arc::new(GroupSync::new(FakeDir { delay: Duration::from_micros(300), ..FakeDir::default() }));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let group = Arc::clone(&group);
                thread::spawn(move || {
                    for _ in 0..EACH {
                        let seq = group.target().rename();
                        group.sync().unwrap();
                        let durable = group.target().durable.load(SeqCst);
                        assert!(durable >= seq, "returned before rename {seq} was durable");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (calls, rounds) = group.stats();
        assert_eq!(calls, THREADS * EACH);
        assert_eq!(rounds, group.target().syncs.load(SeqCst));
        assert!(rounds * 2 < calls, "no coalescing: {rounds} syncs for {calls} calls");
    }

    #[test]
    fn sequential_callers_each_get_their_own_sync() {
        let group = GroupSync::new(FakeDir::default());
        for i in 1..=5 {
            let seq = group.target().rename();
            group.sync().unwrap();
            assert_eq!(group.target().durable.load(SeqCst), seq);
            assert_eq!(group.stats(), (i, i));
        }
    }

    /// A target whose syncs block until the test releases them one by one.
    struct Gate {
        started: mpsc::SyncSender<()>,
        release: Mutex<mpsc::Receiver<io::Result<()>>>,
    }

    impl SyncTarget for Gate {
        fn sync(&self) -> io::Result<()> {
            self.started.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap()
        }
    }

    fn gated() -> (Arc<GroupSync<Gate>>, mpsc::Receiver<()>, mpsc::SyncSender<io::Result<()>>) {
        let (started_tx, started_rx) = mpsc::sync_channel(16);
        let (release_tx, release_rx) = mpsc::sync_channel(16);
        let group = Arc::new(GroupSync::new(Gate { started: started_tx, release: Mutex::new(release_rx) }));
        (group, started_rx, release_tx)
    }

    fn wait_for_calls<T: SyncTarget>(group: &GroupSync<T>, calls: u64) {
        while group.stats().0 < calls {
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn caller_arriving_during_a_sync_waits_for_the_next_one() {
        let (group, started, release) = gated();
        let g = Arc::clone(&group);
        let first = thread::spawn(move || g.sync());
        started.recv().unwrap(); // round 1 is running
        let g = Arc::clone(&group);
        let second = thread::spawn(move || g.sync());
        wait_for_calls(&group, 2);
        release.send(Ok(())).unwrap(); // round 1 done: must not satisfy `second`
        first.join().unwrap().unwrap();
        started.recv().unwrap(); // `second` had to start round 2
        assert_eq!(group.stats(), (2, 2));
        release.send(Ok(())).unwrap();
        second.join().unwrap().unwrap();
    }

    #[test]
    fn a_failed_sync_fails_its_whole_round_only() {
        let (group, started, release) = gated();
        let g = Arc::clone(&group);
        let leader = thread::spawn(move || g.sync());
        started.recv().unwrap();
        let members: Vec<_> = (0..3)
            .map(|_| {
                let g = Arc::clone(&group);
                thread::spawn(move || g.sync())
            })
            .collect();
        wait_for_calls(&group, 4);
        release.send(Ok(())).unwrap();
        leader.join().unwrap().unwrap();
        started.recv().unwrap(); // round 2 holds all three members
        release.send(Err(io::Error::other("disk on fire"))).unwrap();
        for m in members {
            let err = m.join().unwrap().unwrap_err();
            assert!(err.to_string().contains("disk on fire"));
        }
        assert_eq!(group.stats(), (4, 2));
        // The next caller gets a fresh round.
        let g = Arc::clone(&group);
        let later = thread::spawn(move || g.sync());
        started.recv().unwrap();
        release.send(Ok(())).unwrap();
        later.join().unwrap().unwrap();
    }

    #[test]
    fn injected_failure_under_load_reaches_callers_and_others_succeed() {
        let group = Arc::new(GroupSync::new(FakeDir {
            delay: Duration::from_micros(200),
            fail_sync_number: Some(3),
            ..FakeDir::default()
        }));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let group = Arc::clone(&group);
                thread::spawn(move || {
                    let mut failures = 0;
                    for _ in 0..50 {
                        let seq = group.target().rename();
                        match group.sync() {
                            Ok(()) => assert!(group.target().durable.load(SeqCst) >= seq),
                            Err(_) => failures += 1,
                        }
                    }
                    failures
                })
            })
            .collect();
        let failures: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(failures >= 1, "the failed round had at least its leader");
    }

    #[test]
    fn panicking_target_does_not_wedge_the_group() {
        struct Panics(AtomicBool);
        impl SyncTarget for Panics {
            fn sync(&self) -> io::Result<()> {
                if self.0.swap(false, SeqCst) {
                    panic!("boom");
                }
                Ok(())
            }
        }
        let group = GroupSync::new(Panics(AtomicBool::new(true)));
        assert!(group.sync().is_err());
        group.sync().unwrap();
    }
}
