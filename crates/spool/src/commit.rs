//! Group commit of messages into batch files.
//!
//! Concurrent [`crate::MessageWriter::commit`] calls are coalesced: the first
//! caller that finds no round being written leads; it takes every pending
//! message and writes the small ones into a free slot, in place (write at
//! offset 0 → `fdatasync`, nothing else: slots.rs), or, if they do not fit or
//! no slot is free, into one sealed batch file (a free file from the pool →
//! rename to `queue/NAME.msg` → write → fsync); it renames the spilled ones
//! (already fsynced by their writers) in the same round, then runs one
//! group-committed fsync of `queue/` if it named any file. Callers
//! arriving while a round runs wait for the next round, which one of them
//! leads as soon as the current one has finished.
//!
//! An async caller does not wait in a thread: [`Committer::submit`] queues its message with
//! a callback, and the spool's committer thread leads the rounds that hold such messages.
//! That thread is woken once per round (not once per message), and the callbacks are called
//! once the round is durable: an async task awaits a channel instead of borrowing a
//! blocking-pool thread per message just to sleep in it (docs/performance.md, section 7).
//!
//! One round at a time, on purpose: overlapping the next round's file
//! fsync with this round's directory fsync was measured (20 threads × 5 KB)
//! to be no faster on our disks, and it halves the batch size, i.e. doubles
//! the inodes allocated per message.
//!
//! Under load the committer thread starts a round no sooner than [`COMMIT_PACE`] after the
//! previous one ended, if other messages are still arriving (a writer is open): the sessions
//! that round answered are then back with their next message, and one round carries them
//! with the others instead of splitting them across two. A round after a quiet spell, or
//! when nothing else is arriving (a lone session), starts at once, and a blocking
//! [`Committer::commit`] caller that leads its own round is never held (docs/performance.md
//! 7.17). A writer held open on purpose (a client trickling its DATA) makes the rounds wait
//! at most the pace each: a bounded latency, not a stall.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::error::io_err;
use crate::format::{self, BATCH_HEADER_LEN, Extent, SEALED_HEADER_LEN, SLOT_HEADER_LEN};
use crate::index::BatchFile;
use crate::inner::Inner;
use crate::recent::Committed;
use crate::slots::{self, Claim, SLOT_CAPACITY};
use crate::{QueueId, SpoolError};

/// A round's small messages go into one batch file up to these limits, then
/// into another: a batch file stays on disk until its last message is done.
const BATCH_MAX_MESSAGES: usize = 512;
const BATCH_MAX_BYTES: usize = 8 << 20;
/// Batch sizes above this are counted in the last bucket of
/// [`CommitStats::batch_sizes`].
const SIZE_BUCKETS: usize = 64;
/// The committer thread exits after this long without a message to commit (the next
/// [`Committer::submit`] starts it again). Short in unit tests, which check that the thread
/// exits and comes back.
const IDLE_EXIT: Duration = if cfg!(test) { Duration::from_millis(200) } else { Duration::from_secs(10) };
/// Under load (messages arriving), the committer thread starts a round no sooner than this
/// after the previous one ended (docs/performance.md 7.17: journal commits per message −14 %,
/// device cache flushes −9 %, msgs/s the same). Longer in unit tests, so that "right after"
/// is certain on a loaded machine.
pub(crate) const COMMIT_PACE: Duration = if cfg!(test) { Duration::from_millis(100) } else { Duration::from_millis(1) };

/// How commits were grouped into batch files (for metrics and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Commit rounds run; each ends with one `fdatasync` of the slot it rewrote, or with one
    /// fsync of `queue/` for all the files it named.
    pub rounds: u64,
    /// Rounds the committer thread held back because the previous one had just ended while
    /// other messages were arriving (`COMMIT_PACE`).
    pub paced: u64,
    /// Messages committed successfully.
    pub messages: u64,
    /// `batch_sizes[n]` is the number of files committed holding `n`
    /// messages (a spilled message is a file of one); the last entry also
    /// counts every larger file.
    pub batch_sizes: Vec<u64>,
}

impl CommitStats {
    /// Files committed (batch files and spilled messages).
    pub fn files(&self) -> u64 {
        self.batch_sizes.iter().sum()
    }
}

/// A message ready to join a round.
pub(crate) enum Payload {
    /// Held in memory: its record line (body length filled in) and body.
    Small { line: Vec<u8>, body: Vec<u8> },
    /// Complete and fsynced in `tmp/ID` as a one-message batch file.
    Spilled { line_len: u64, body_len: u64 },
}

struct Job {
    ticket: u64,
    id: QueueId,
    payload: Payload,
    waiter: Waiter,
}

type Outcome = Result<(), SpoolError>;

/// Called with a submitted message's outcome, on the thread that led its round.
pub(crate) type Callback = Box<dyn FnOnce(Outcome) + Send>;

/// Who is told of a job's outcome.
enum Waiter {
    /// A caller of [`Committer::commit`], parked until its outcome is ready or it is to lead.
    Thread(Thread),
    /// A [`Committer::submit`]: called with the outcome; the committer thread leads.
    Callback(Callback),
    /// Taken out by the round's leader, which tells it.
    Taken,
}

struct State {
    pending: Vec<Job>,
    next_ticket: u64,
    /// Tickets below this have been taken by a leader.
    taken_below: u64,
    /// Whether a round is running (at most one at a time).
    running: bool,
    /// Outcomes not yet collected by their callers.
    results: HashMap<u64, Outcome>,
    stats: CommitStats,
    /// Whether the committer thread exists, and whether it waits for work on `work`.
    thread_alive: bool,
    thread_idle: bool,
}

/// The shared state of the commit rounds of one spool.
///
/// Waiting callers park; a leader wakes exactly the members of its round
/// and the first caller waiting for the next round (who then leads it),
/// not everyone: with many sessions most waiters belong to the next round.
pub(crate) struct Committer {
    state: Mutex<State>,
    /// The committer thread waits here while idle.
    work: Condvar,
}

/// A file of a round that has been renamed into `queue/` (or written into a slot).
struct Renamed {
    batch: Arc<BatchFile>,
    /// Whether its name is new: durable only once the round's `queue/` fsync returns (false
    /// for a batch written into an existing slot, durable once its fdatasync returned).
    new_name: bool,
    members: Vec<(u64, QueueId, Extent)>,
    /// The members' bytes as written, in order (none for a spilled message), for recent.rs.
    bytes: Vec<Committed>,
}

impl Committer {
    pub fn new() -> Committer {
        let stats = CommitStats { batch_sizes: vec![0; SIZE_BUCKETS + 1], ..CommitStats::default() };
        let state = State {
            pending: Vec::new(),
            next_ticket: 0,
            taken_below: 0,
            running: false,
            results: HashMap::new(),
            stats,
            thread_alive: false,
            thread_idle: false,
        };
        Committer { state: Mutex::new(state), work: Condvar::new() }
    }

    pub fn stats(&self) -> CommitStats {
        self.lock().stats.clone()
    }

    /// Commits one message (its id already reserved in the index) and
    /// returns once it is durable and indexed, or why not.
    pub fn commit(&self, inner: &Inner, id: QueueId, payload: Payload) -> Outcome {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push(Job { ticket, id, payload, waiter: Waiter::Thread(thread::current()) });
        loop {
            if let Some(outcome) = state.results.remove(&ticket) {
                return outcome;
            }
            if !state.running && ticket >= state.taken_below {
                // Nothing being written and my message not yet taken: I lead.
                let jobs = std::mem::take(&mut state.pending);
                state.taken_below = state.next_ticket;
                state.running = true;
                drop(state);
                let (outcome, told) = self.lead(inner, Some(ticket), jobs);
                tell(told);
                return outcome.unwrap_or(Err(SpoolError::WriterFailed));
            }
            // A stale or early unpark only makes this check again.
            drop(state);
            thread::park();
            state = self.lock();
        }
    }

    /// Queues one message (its id already reserved in the index) without waiting:
    /// `done` is called with its outcome once the round holding it is durable and indexed,
    /// or has failed. The committer thread (started if need be) leads that round, unless a
    /// caller of [`Self::commit`] leads it first. No blocking I/O here.
    pub fn submit(self: &Arc<Self>, inner: &Arc<Inner>, id: QueueId, payload: Payload, done: Callback) {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push(Job { ticket, id, payload, waiter: Waiter::Callback(done) });
        if !state.thread_alive {
            let (committer, weak) = (Arc::clone(self), Arc::downgrade(inner));
            let spawned = thread::Builder::new().name("spool-commit".into()).spawn(move || committer.serve(&weak));
            if let Err(e) = spawned {
                let Some(Job { waiter: Waiter::Callback(done), .. }) = state.pending.pop() else { unreachable!() };
                drop(state);
                return done(Err(SpoolError::Io {
                    op: "start committer thread",
                    path: inner.queue.clone(),
                    source: e,
                }));
            }
            state.thread_alive = true;
        } else if !state.running {
            self.kick(&state);
        }
        // While a round runs, its leader wakes the next one's at its end.
    }

    /// The committer thread: leads a round whenever messages wait and none runs; exits after
    /// [`IDLE_EXIT`] without work. It holds the spool's state only while leading.
    fn serve(&self, inner: &Weak<Inner>) {
        let mut state = self.lock();
        // When the last round this thread led ended, and whether the next one is held back.
        let (mut last_end, mut holding): (Option<Instant>, bool) = (None, false);
        loop {
            if !state.running && !state.pending.is_empty() {
                let pace = last_end.and_then(|end| (end + COMMIT_PACE).checked_duration_since(Instant::now()));
                // Held only while other messages are arriving: a lone session's next message
                // (nothing else to gather) goes at once.
                if let Some(wait) = pace.filter(|_| holding || arriving(inner)) {
                    if !holding {
                        state.stats.paced += 1;
                        holding = true;
                    }
                    // Not idle while it waits: a submit does not wake it (no system call per
                    // message); the round starts when the pace is over.
                    state = self.work.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
                    continue;
                }
                holding = false;
                let jobs = std::mem::take(&mut state.pending);
                state.taken_below = state.next_ticket;
                state.running = true;
                drop(state);
                // Holds the spool only while leading, not while telling: a caller told may close
                // the spool and open it again at once.
                match inner.upgrade() {
                    Some(strong) => {
                        let (_, told) = self.lead(&strong, None, jobs);
                        drop(strong);
                        // Before the callbacks: a session told now may send its next message.
                        last_end = Some(Instant::now());
                        tell(told);
                    }
                    // Cannot happen: a queued job's writer holds the spool. Fail them all.
                    None => self.abandon(jobs),
                }
                state = self.lock();
                continue;
            }
            state.thread_idle = true;
            let (next, timeout) = self.work.wait_timeout(state, IDLE_EXIT).unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.thread_idle = false;
            if timeout.timed_out() && state.pending.is_empty() {
                state.thread_alive = false;
                return;
            }
        }
    }

    /// Wakes the committer thread if it waits (a `notify_one` is a system call: none when
    /// the thread is awake, for it looks for work before it waits again).
    fn kick(&self, state: &State) {
        if state.thread_idle {
            self.work.notify_one();
        }
    }

    /// Fails `jobs` without a round (the spool is gone).
    fn abandon(&self, jobs: Vec<Job>) {
        let mut state = self.lock();
        state.running = false;
        let mut told: Told = Vec::new();
        let mut parked = Vec::new();
        for job in jobs {
            match job.waiter {
                Waiter::Callback(done) => told.push((done, Err(SpoolError::WriterFailed))),
                Waiter::Thread(waiter) => {
                    state.results.insert(job.ticket, Err(SpoolError::WriterFailed));
                    parked.push(waiter);
                }
                Waiter::Taken => {}
            }
        }
        parked.extend(self.wake_next(&state));
        // Callbacks and unparks without the lock, as after a round.
        drop(state);
        parked.iter().for_each(Thread::unpark);
        tell(told);
    }

    /// Runs one round for `jobs` and returns the leader's own outcome (`mine`, if the
    /// leader is a caller of [`Self::commit`]) and the callbacks to call ([`tell`]). Every
    /// parked member is woken to collect its outcome.
    fn lead(&self, inner: &Inner, mine: Option<u64>, mut jobs: Vec<Job>) -> (Option<Outcome>, Told) {
        let mut parked: Vec<(u64, Thread)> = Vec::new();
        let mut callbacks: Vec<(u64, Callback)> = Vec::new();
        for job in &mut jobs {
            // The payload stays for the round; the waiter is taken out of the job.
            match std::mem::replace(&mut job.waiter, Waiter::Taken) {
                Waiter::Thread(t) => parked.push((job.ticket, t)),
                Waiter::Callback(done) => callbacks.push((job.ticket, done)),
                Waiter::Taken => {}
            }
        }
        let tickets: Vec<u64> = jobs.iter().map(|job| job.ticket).collect();
        let mut outcomes: Vec<(u64, Outcome)> = Vec::with_capacity(jobs.len());
        // A panic must not leave `running` set, nor callers waiting forever.
        let sizes = catch_unwind(AssertUnwindSafe(|| run_round(inner, jobs, &mut outcomes)));
        let sizes = sizes.unwrap_or_else(|_| {
            let err = || SpoolError::Io { op: "commit", path: inner.queue.clone(), source: io::Error::other("panic") };
            outcomes = tickets.iter().map(|t| (*t, Err(err()))).collect();
            Vec::new()
        });
        let mut state = self.lock();
        state.running = false;
        state.stats.rounds += 1;
        for n in sizes {
            state.stats.messages += n as u64;
            state.stats.batch_sizes[n.min(SIZE_BUCKETS)] += 1;
        }
        state.results.extend(outcomes);
        let outcome = mine.map(|mine| state.results.remove(&mine).unwrap_or(Err(SpoolError::WriterFailed)));
        let told: Told = callbacks
            .into_iter()
            .map(|(ticket, done)| (done, state.results.remove(&ticket).unwrap_or(Err(SpoolError::WriterFailed))))
            .collect();
        // The next round's leader; if someone else started it meanwhile, it just waits again.
        let next = self.wake_next(&state);
        drop(state);
        for (ticket, waiter) in parked {
            if Some(ticket) != mine {
                waiter.unpark();
            }
        }
        next.into_iter().for_each(|t| t.unpark());
        (outcome, told)
    }

    /// Makes sure the first waiting job gets a leader: its parked caller (returned, to
    /// unpark once the lock is released), or the committer thread (woken now).
    fn wake_next(&self, state: &State) -> Option<Thread> {
        match &state.pending.first()?.waiter {
            Waiter::Thread(t) => Some(t.clone()),
            Waiter::Callback(_) => {
                self.kick(state);
                None
            }
            Waiter::Taken => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
impl Committer {
    /// Holds new rounds back, as if one were being written, so that the
    /// commits that arrive meanwhile all join one round at [`Self::resume`].
    pub fn pause(&self) {
        let mut state = self.lock();
        assert!(!state.running, "a round is running");
        state.running = true;
    }

    pub fn resume(&self) {
        let mut state = self.lock();
        state.running = false;
        let next = self.wake_next(&state);
        drop(state);
        next.into_iter().for_each(|t| t.unpark());
    }

    /// Commits waiting for a round.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether the committer thread runs.
    pub fn thread_alive(&self) -> bool {
        self.lock().thread_alive
    }
}

/// Submitters' callbacks with their outcomes, to call once the leader let go of the spool.
type Told = Vec<(Callback, Outcome)>;

/// Calls the callbacks of a round.
fn tell(told: Told) {
    for (done, outcome) in told {
        call(done, outcome);
    }
}

/// Calls a submitter's callback; a panic in it must not end the committer thread.
fn call(done: Callback, outcome: Outcome) {
    let _ = catch_unwind(AssertUnwindSafe(|| done(outcome)));
}

/// One round: write and rename every file, fsync `queue/` once, index the
/// messages. Every job's outcome goes to `outcomes`; returns the number of
/// messages in each file committed.
fn run_round(inner: &Inner, jobs: Vec<Job>, outcomes: &mut Vec<(u64, Outcome)>) -> Vec<usize> {
    let mut renamed = write_round(inner, jobs, outcomes);
    if renamed.is_empty() {
        return Vec::new();
    }
    // A round whose every batch went into an existing slot has no new name to make durable.
    if renamed.iter().any(|file| file.new_name)
        && let Err(e) = inner.sync_queue_dir()
    {
        let (new, in_place): (Vec<_>, Vec<_>) = renamed.into_iter().partition(|file| file.new_name);
        for file in new {
            // Not known durable, so the clients get a temporary error and
            // send again; take the messages back to avoid duplicates.
            match file.batch.slot {
                Some(n) => inner.slots.discard(n),
                None => {
                    let _ = fs::remove_file(&file.batch.path);
                }
            }
            outcomes.extend(file.members.into_iter().map(|(ticket, ..)| (ticket, Err(e.duplicate()))));
        }
        renamed = in_place;
    }
    let mut index = inner.index();
    let mut sizes = Vec::with_capacity(renamed.len());
    for file in renamed {
        sizes.push(file.members.len());
        // Durable now: the very bytes written serve the messages' first delivery run.
        for ((_, id, _), bytes) in file.members.iter().zip(file.bytes) {
            inner.recent.keep(id.clone(), bytes);
        }
        let members = file.members.into_iter().map(|(ticket, id, extent)| {
            outcomes.push((ticket, Ok(())));
            (id, extent)
        });
        index.add_batch(file.batch, members.collect());
    }
    sizes
}

/// Writes the small messages into batch files (one, unless the round is
/// very large) and renames them and every spilled message into `queue/`.
/// Failures go to `failed`; what was renamed is returned.
fn write_round(inner: &Inner, jobs: Vec<Job>, failed: &mut Vec<(u64, Outcome)>) -> Vec<Renamed> {
    let mut renamed = Vec::new();
    let mut small: Vec<Small> = Vec::new();
    let mut small_bytes = 0;
    for job in jobs {
        match job.payload {
            Payload::Small { line, body } => {
                small_bytes += line.len() + body.len();
                small.push(Small { ticket: job.ticket, id: job.id, line, body });
                if small.len() >= BATCH_MAX_MESSAGES || small_bytes >= BATCH_MAX_BYTES {
                    write_batch(inner, std::mem::take(&mut small), &mut renamed, failed);
                    small_bytes = 0;
                }
            }
            Payload::Spilled { line_len, body_len } => {
                let extent = Extent::of_record(BATCH_HEADER_LEN as u64, line_len, body_len);
                let batch = Arc::new(BatchFile::new(job.id.clone(), &inner.queue, 1, false));
                let tmp = inner.tmp_path(&job.id);
                match fs::rename(&tmp, &batch.path) {
                    Ok(()) => {
                        let members = vec![(job.ticket, job.id, extent)];
                        renamed.push(Renamed { batch, new_name: true, members, bytes: Vec::new() });
                    }
                    Err(e) => failed.push((job.ticket, Err(io_err("rename", tmp)(e)))),
                }
            }
        }
    }
    if !small.is_empty() {
        write_batch(inner, small, &mut renamed, failed);
    }
    renamed
}

/// A message held in memory, in a round.
struct Small {
    ticket: u64,
    id: QueueId,
    line: Vec<u8>,
    body: Vec<u8>,
}

/// Writes one batch file and renames it into `queue/`.
fn write_batch(inner: &Inner, small: Vec<Small>, renamed: &mut Vec<Renamed>, failed: &mut Vec<(u64, Outcome)>) {
    match try_write_batch(inner, &small) {
        Ok((batch, new_name)) => {
            let mut at = if batch.slot.is_some() { SLOT_HEADER_LEN } else { SEALED_HEADER_LEN } as u64;
            let mut bytes = Vec::with_capacity(small.len());
            let members = small.into_iter().map(|m| {
                let extent = Extent::of_record(at, m.line.len() as u64, m.body.len() as u64);
                at = extent.body_off + extent.body_len;
                bytes.push(Committed { line: m.line, body: m.body });
                (m.ticket, m.id, extent)
            });
            let members = members.collect();
            renamed.push(Renamed { batch, new_name, members, bytes });
        }
        Err(e) => failed.extend(small.iter().map(|m| (m.ticket, Err(e.duplicate())))),
    }
}

/// Takes a free file from the pool (or creates `tmp/NAME.batch`), renames it to
/// `queue/NAME.msg`, writes the sealed batch into it and fsyncs it, where NAME is the first
/// message's id (reserved, so no file has that name).
///
/// The rename comes **before** the writes and the fsync, so that the fsync's journal commit
/// carries the new name too, and the round's `queue/` fsync that follows has less left to
/// commit (journal commits per message 0.25 -> 0.175 under `scripts/profile`'s load,
/// docs/performance.md 7.14). Until the round's fsyncs return, a crash may leave
/// `queue/NAME.msg` with missing, partly written or (for a reused file) old bytes: the seal,
/// a CRC-32 of the records in the header (format version 3), makes recovery treat such a
/// file as corrupt (moved aside, never delivered). No client got a 250 for it: the 250
/// waits for both fsyncs.
///
/// Returns the batch and whether its name is new (to be made durable by the round's `queue/`
/// fsync).
fn try_write_batch(inner: &Inner, small: &[Small]) -> Result<(Arc<BatchFile>, bool), SpoolError> {
    let name = small[0].id.clone();
    let mut crc = crc32fast::Hasher::new();
    let mut records = 0;
    for m in small {
        crc.update(&m.line);
        crc.update(&m.body);
        records += (m.line.len() + m.body.len()) as u64;
    }
    let crc = crc.finalize();
    if let Some(claim) = inner.slots.claim(SLOT_HEADER_LEN as u64 + records)
        && let Some(written) = write_slot(inner, small, claim, crc, records)?
    {
        return Ok(written);
    }
    let batch = Arc::new(BatchFile::new(name.clone(), &inner.queue, small.len(), false));
    let len = SEALED_HEADER_LEN as u64 + records;
    let header = format::sealed_header(small.len(), crc);
    let mut slices = Vec::with_capacity(1 + 2 * small.len());
    slices.push(IoSlice::new(&header));
    for m in small {
        slices.extend([IoSlice::new(&m.line), IoSlice::new(&m.body)]);
    }
    let reused = inner.pool.take(&inner.queue_sync);
    let (tmp, file) = match &reused {
        Some(free) => (free.clone(), OpenOptions::new().write(true).open(free)),
        None => {
            let tmp = inner.tmp.join(format!("{name}.batch"));
            let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp);
            (tmp, file)
        }
    };
    let mut file = match file {
        Ok(file) => file,
        Err(e) => {
            // A free file that cannot be opened leaves the pool for good.
            let _ = fs::remove_file(&tmp);
            return Err(io_err("create", &tmp)(e));
        }
    };
    fs::rename(&tmp, &batch.path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", &tmp)(e)
    })?;
    let path = &batch.path;
    let result = (|| {
        write_all_vectored(&mut file, &mut slices).map_err(io_err("write", path))?;
        // A reused file may be longer: cut its old tail (the reader wants
        // the last body to end the file).
        if reused.is_some() {
            file.set_len(len).map_err(io_err("truncate", path))?;
        }
        // One fsync for every message of the batch (bodies and envelopes; on ext4 its journal
        // commit carries the new name too, but only the round's `queue/` fsync guarantees
        // the name on every file system).
        let started = std::time::Instant::now();
        file.sync_all().map_err(io_err("fsync", path))?;
        inner.file_sync.record(started.elapsed());
        Ok(())
    })();
    if result.is_err() {
        // Not durable: take it back out of `queue/`; its clients get a temporary error.
        let _ = fs::remove_file(path);
    }
    result.map(|()| (batch, true))
}

/// Writes a round's batch into a slot (slots.rs): a free one is overwritten at offset 0 and
/// `fdatasync`ed, which on ext4 and XFS needs no journal commit (its name, length and blocks
/// are unchanged); a new one is made with the batch, then zeros up to its capacity, and
/// fsynced (its name is made durable by the round's `queue/` fsync). Returns the batch and
/// whether its name is new, or `None` if the slot could not be made (the round writes a
/// batch file instead).
///
/// Until the fdatasync returns, a crash may leave the slot with the old batch (all done: a
/// slot is only reused once its messages are), with zeros, or with a mix of old and new
/// bytes, which the CRC-32 in the first line tells apart (docs/spool-slots.md, "Recovery").
fn write_slot(
    inner: &Inner,
    small: &[Small],
    claim: Claim,
    crc: u32,
    records: u64,
) -> Result<Option<(Arc<BatchFile>, bool)>, SpoolError> {
    let header = format::slot_header(small.len(), crc, records);
    let mut slices = Vec::with_capacity(2 + 2 * small.len());
    slices.push(IoSlice::new(&header));
    for m in small {
        slices.extend([IoSlice::new(&m.line), IoSlice::new(&m.body)]);
    }
    let name = small[0].id.clone();
    match claim {
        Claim::Free(n, file) => {
            let batch = Arc::new(BatchFile::in_slot(name, inner.slots.paths(n), n, small.len(), false));
            let path = &batch.path;
            let result = (|| {
                let mut writer = &*file;
                writer.seek(SeekFrom::Start(0)).map_err(io_err("seek", path))?;
                write_all_vectored(&mut writer, &mut slices).map_err(io_err("write", path))?;
                let started = Instant::now();
                file.sync_data().map_err(io_err("fdatasync", path))?;
                inner.file_sync.record(started.elapsed());
                Ok(())
            })();
            match result {
                Ok(()) => {
                    inner.slots.wrote_in_place();
                    Ok(Some((batch, false)))
                }
                Err(e) => {
                    // Its clients get a temporary error: make sure the batch is not read back.
                    let zeroed = slots::zero_first_line(&file).is_ok();
                    inner.slots.spoiled(n, zeroed);
                    Err(e)
                }
            }
        }
        Claim::New(n) => {
            let path = inner.slots.path(n);
            let opened = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path);
            let file = match opened {
                Ok(file) => file,
                Err(e) => {
                    let foreign = e.kind() == io::ErrorKind::AlreadyExists;
                    tracing::warn!(path = %path.display(), error = %e, "spool: could not make a slot");
                    inner.slots.unmake(n, foreign);
                    return Ok(None);
                }
            };
            let used = SLOT_HEADER_LEN as u64 + records;
            // Zeros, not a hole: the slot's blocks are allocated and written once, here.
            let zeros = vec![0u8; usize::try_from(SLOT_CAPACITY - used).unwrap_or(0)];
            slices.push(IoSlice::new(&zeros));
            let result = (|| {
                write_all_vectored(&mut &file, &mut slices)?;
                let started = Instant::now();
                file.sync_all()?;
                inner.file_sync.record(started.elapsed());
                Ok::<_, io::Error>(())
            })();
            match result {
                Ok(()) => {
                    inner.slots.made(n, Arc::new(file));
                    Ok(Some((Arc::new(BatchFile::in_slot(name, inner.slots.paths(n), n, small.len(), false)), true)))
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "spool: could not make a slot");
                    let _ = fs::remove_file(&path);
                    inner.slots.unmake(n, false);
                    Ok(None)
                }
            }
        }
    }
}

/// Whether a message is being received into the spool now (a writer open, not yet
/// committed).
fn arriving(inner: &Weak<Inner>) -> bool {
    inner.upgrade().is_some_and(|inner| inner.writing.load(std::sync::atomic::Ordering::Relaxed) > 0)
}

/// Writes every slice, in as few system calls as the kernel allows.
fn write_all_vectored(file: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
