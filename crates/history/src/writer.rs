//! [`History`]: the handle the event sites call, and the one writer thread behind it.
//!
//! Recording never waits and, in the common case, makes no system call: a record is pushed
//! onto a bounded list under a mutex that is held for the push only. The writer thread is not
//! woken per record. It sleeps until the first record after an idle spell, then collects for
//! [`TICK`] and writes everything that arrived with one `write()` to the day's file (one
//! futex wake, one write per tick however many records; before, every record could wake the
//! writer and cost a write). It is woken early only when the list passes [`HIGH_WATER`], by
//! [`History::flush`], and when the last handle goes. When the list is full ([`CAPACITY`]) a
//! record is dropped and counted (with a warning at most once a minute). No fsync per event:
//! the history is a diagnostic aid, not the queue's durability promise (the spool is), so the
//! last events before a crash may be lost. A file is fsynced when the day rotates. A clean
//! shutdown loses nothing: [`History::flush`] and the drop of the last handle wait (at most
//! [`FINAL_WAIT`]) until everything recorded is written.

use crate::event::{Event, Record};
use crate::files;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Records waiting for the writer, at most; more are dropped.
const CAPACITY: usize = 8192;
/// Waiting records that wake the writer before its tick is over.
const HIGH_WATER: usize = CAPACITY / 2;
/// How long the writer collects records before it writes them: the most a record waits
/// before `dakiya trace` can see it (plus the write).
pub const TICK: Duration = Duration::from_millis(100);
/// How often the writer looks for expired files even when idle.
const EXPIRY_CHECK: Duration = Duration::from_secs(3600);
/// At most one warning about dropped records per this interval.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How long the drop of the last handle waits for the writer's last write.
const FINAL_WAIT: Duration = Duration::from_secs(5);

/// Where the server records message events; cheap to clone. [`History::disabled`] records
/// nothing.
#[derive(Clone, Default)]
pub struct History {
    inner: Option<Arc<Inner>>,
}

/// The handles' side: its drop (the last handle gone) closes the history.
struct Inner {
    shared: Arc<Shared>,
}

/// What the handles and the writer share.
struct Shared {
    state: Mutex<State>,
    /// The writer waits here: for the first record after an idle spell, or for its tick.
    wake: Condvar,
    /// [`History::flush`] and the last drop wait here for the writer's progress.
    progress: Condvar,
    dropped: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
    /// Batches the writer has written (each one `write()` per day in it).
    batches: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Records waiting for the writer, oldest first.
    records: Vec<Record>,
    /// Records accepted so far (waiting or written).
    accepted: u64,
    /// Records the writer has handled so far (written, or lost to a write error).
    handled: u64,
    /// The writer waits with no records: the next record wakes it.
    idle: bool,
    /// Write now, without waiting for the tick (flush, high water).
    urgent: bool,
    /// The last handle is gone: write what is left and stop.
    closed: bool,
    /// The writer has stopped.
    finished: bool,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() { "History(on)" } else { "History(off)" })
    }
}

impl History {
    /// A history that records nothing (`[history] enabled = false`, tests).
    pub fn disabled() -> History {
        History { inner: None }
    }

    /// Starts the writer thread for directory `dir` (created if missing), keeping `days` days
    /// of files; expired files are removed now and then at least hourly.
    pub fn start(dir: PathBuf, days: u32) -> std::io::Result<History> {
        std::fs::create_dir_all(&dir)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            dropped: AtomicU64::new(0),
            last_warning: Mutex::new(None),
            batches: AtomicU64::new(0),
        });
        let theirs = shared.clone();
        let writer = Writer { dir, days, file: None, line: Vec::new() };
        std::thread::Builder::new().name("history".into()).spawn(move || writer.run(&theirs))?;
        Ok(History { inner: Some(Arc::new(Inner { shared })) })
    }

    /// Records `event` of message `id` now. Never blocks; wakes the writer only when it was
    /// idle or the waiting records pass [`HIGH_WATER`].
    pub fn record(&self, id: &str, event: Event) {
        let Some(inner) = &self.inner else { return };
        let record = Record { t: now(), id: id.to_string(), event };
        let shared = &inner.shared;
        let mut s = shared.lock();
        if s.records.len() >= CAPACITY {
            drop(s);
            return shared.dropped_one();
        }
        s.records.push(record);
        s.accepted += 1;
        let wake = if s.idle {
            s.idle = false;
            true
        } else if s.records.len() >= HIGH_WATER && !s.urgent {
            s.urgent = true;
            true
        } else {
            false
        };
        drop(s);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Writes everything recorded so far now, and waits until it is written or `timeout`
    /// has passed; `true` when it was written (or there was nothing to write). For a clean
    /// shutdown, and for readers that must see the latest events at once.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(inner) = &self.inner else { return true };
        inner.shared.wait_written(true, timeout)
    }

    /// Batches written so far.
    #[cfg(test)]
    fn batches(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.shared.batches.load(Ordering::Relaxed))
    }

    /// Records dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.shared.dropped.load(Ordering::Relaxed))
    }
}

impl Drop for Inner {
    /// The last handle is gone: the writer writes what is left and stops; this waits for
    /// that (at most [`FINAL_WAIT`]), so a clean shutdown loses no record.
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.closed = true;
        drop(s);
        self.shared.wake.notify_one();
        self.shared.wait_written(false, FINAL_WAIT);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the writer has handled every record accepted before the call (or has
    /// stopped), at most `timeout`; with `urgent`, wakes it first.
    fn wait_written(&self, urgent: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        let target = s.accepted;
        if urgent && s.handled < target {
            s.urgent = true;
            self.wake.notify_one();
        }
        while s.handled < target && !s.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.progress.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        s.handled >= target
    }

    fn dropped_one(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(dropped = total, "message history is behind; events dropped");
        }
    }

    /// Waits for the writer's next batch (the first record after an idle spell, then a
    /// [`TICK`] to collect more; or a wake-up) and swaps it into `batch` (empty on entry).
    /// `true` when the history is closed and `batch` holds the last records.
    fn next_batch(&self, batch: &mut Vec<Record>) -> bool {
        let mut s = self.lock();
        if s.records.is_empty() && !s.closed && !s.urgent {
            s.idle = true;
            s = self.wake.wait_timeout(s, EXPIRY_CHECK).unwrap_or_else(|e| e.into_inner()).0;
            s.idle = false;
        }
        if !s.records.is_empty() {
            let deadline = Instant::now() + TICK;
            while !s.closed && !s.urgent {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self.wake.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        s.urgent = false;
        std::mem::swap(&mut s.records, batch);
        s.closed
    }

    /// The writer has handled `n` more records (and, with `finished`, stopped).
    fn handled(&self, n: usize, finished: bool) {
        if n > 0 {
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.lock();
        s.handled += n as u64;
        s.finished |= finished;
        drop(s);
        self.progress.notify_all();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct Writer {
    dir: PathBuf,
    days: u32,
    /// The open file and its day.
    file: Option<(u64, File)>,
    /// The batch's lines, reused from batch to batch.
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, shared: &Shared) {
        self.expire(now());
        let mut last_check = Instant::now();
        let mut batch = Vec::new();
        loop {
            let closed = shared.next_batch(&mut batch);
            if !batch.is_empty()
                && let Err(e) = self.write(&batch)
            {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot write the message history");
                self.file = None;
            }
            let n = batch.len();
            batch.clear();
            if closed {
                return shared.handled(n, true);
            }
            shared.handled(n, false);
            if last_check.elapsed() >= EXPIRY_CHECK {
                last_check = Instant::now();
                self.expire(now());
            }
        }
    }

    /// Appends `batch` to the day's file (each day's records with one `write()`).
    fn write(&mut self, batch: &[Record]) -> std::io::Result<()> {
        self.line.clear();
        for r in batch {
            let day = files::day_of(r.t);
            if self.file.as_ref().is_none_or(|(d, _)| *d != day) {
                self.write_out()?;
                self.rotate(day)?;
            }
            r.write_line(&mut self.line);
        }
        self.write_out()
    }

    /// Writes the collected lines to the open file.
    fn write_out(&mut self) -> std::io::Result<()> {
        if let Some((_, f)) = self.file.as_mut()
            && !self.line.is_empty()
        {
            f.write_all(&self.line)?;
        }
        self.line.clear();
        Ok(())
    }

    /// Closes the current file (fsynced) and opens the one for `day`.
    fn rotate(&mut self, day: u64) -> std::io::Result<()> {
        let rotated = self.file.is_some();
        if let Some((_, f)) = self.file.take() {
            f.sync_all()?;
        }
        let path = self.dir.join(files::file_name(day));
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        self.file = Some((day, f));
        if rotated {
            self.expire(day * 86_400);
        }
        Ok(())
    }

    fn expire(&self, now: u64) {
        if let Err(e) = remove_expired(&self.dir, now, self.days) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove old message history files");
        }
    }
}

/// Removes the history files in `dir` that have expired at `now` with `days` kept.
pub(crate) fn remove_expired(dir: &Path, now: u64, days: u32) -> std::io::Result<Vec<String>> {
    let names: Vec<String> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let old: Vec<String> =
        files::expired(names.iter().map(String::as_str), now, days).into_iter().map(String::from).collect();
    for name in &old {
        std::fs::remove_file(dir.join(name))?;
        tracing::info!(file = %name, "removed expired message history");
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Final;

    #[test]
    fn records_reach_the_days_file_and_old_files_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("history");
        std::fs::create_dir_all(&dir).unwrap();
        for old in ["2001-01-01.jsonl", "2001-01-02.jsonl"] {
            std::fs::write(dir.join(old), b"{}\n").unwrap();
        }
        std::fs::write(dir.join("keep.txt"), b"not ours").unwrap();
        let h = History::start(dir.clone(), 7).unwrap();
        for i in 0..100 {
            h.record(&format!("{i:016X}"), Event::Done { state: Final::Delivered });
        }
        let today = dir.join(files::file_name(files::day_of(now())));
        let deadline = Instant::now() + Duration::from_secs(10);
        let lines = loop {
            let n = std::fs::read_to_string(&today).unwrap_or_default().lines().count();
            if n == 100 || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(lines, 100);
        assert_eq!(h.dropped(), 0);
        assert!(!dir.join("2001-01-01.jsonl").exists() && !dir.join("2001-01-02.jsonl").exists());
        assert!(dir.join("keep.txt").exists());
    }

    #[test]
    fn a_disabled_history_records_nothing() {
        let h = History::disabled();
        h.record("X", Event::Done { state: Final::Deleted });
        assert_eq!(h.dropped(), 0);
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap_or_default().lines().count()
    }

    fn today(dir: &Path) -> PathBuf {
        dir.join(files::file_name(files::day_of(now())))
    }

    #[test]
    fn the_last_handle_gone_means_every_record_written() {
        let tmp = tempfile::tempdir().unwrap();
        let h = History::start(tmp.path().to_path_buf(), 7).unwrap();
        let other = h.clone();
        for i in 0..1000 {
            h.record(&format!("{i:016X}"), Event::Done { state: Final::Delivered });
        }
        drop(h);
        other.record("LAST", Event::Done { state: Final::Deleted });
        // The writer collects for a tick; the drop of the last handle writes at once and waits.
        drop(other);
        let text = std::fs::read_to_string(today(tmp.path())).unwrap();
        assert_eq!(text.lines().count(), 1001);
        assert!(text.lines().last().unwrap().contains("\"LAST\""));
    }

    #[test]
    fn flush_writes_what_was_recorded_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let h = History::start(tmp.path().to_path_buf(), 7).unwrap();
        assert!(h.flush(Duration::from_secs(10)), "nothing to write");
        for i in 0..3 {
            h.record(&format!("{i:016X}"), Event::Operator { action: "hold".into() });
        }
        assert!(h.flush(Duration::from_secs(10)));
        assert_eq!(lines(&today(tmp.path())), 3);
        assert!(History::disabled().flush(Duration::ZERO));
    }

    #[test]
    fn records_made_together_are_written_together() {
        let tmp = tempfile::tempdir().unwrap();
        let h = History::start(tmp.path().to_path_buf(), 7).unwrap();
        // Three events per message, as a delivered message makes: the first wakes the idle
        // writer, which then collects for a tick instead of being woken for each.
        for i in 0..300 {
            h.record(&format!("{:016X}", i / 3), Event::Done { state: Final::Delivered });
        }
        assert!(h.flush(Duration::from_secs(10)));
        assert_eq!(lines(&today(tmp.path())), 300);
        // One batch, or a few if this thread was descheduled for a tick; not one per record.
        assert!(h.batches() <= 10, "{} batches for 300 records", h.batches());
    }

    #[test]
    fn a_batch_across_midnight_goes_to_both_days() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Writer { dir: tmp.path().to_path_buf(), days: 7, file: None, line: Vec::new() };
        let midnight = files::day_of_name("2026-12-07.jsonl").unwrap() * 86_400;
        let at = |t: u64, id: &str| Record { t, id: id.into(), event: Event::Done { state: Final::Delivered } };
        w.write(&[at(midnight - 2, "A"), at(midnight - 1, "B"), at(midnight, "C")]).unwrap();
        w.write(&[at(midnight + 1, "D")]).unwrap();
        let day = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
        let ids = |text: String| text.lines().map(|l| Record::from_line(l.as_bytes()).unwrap().id).collect::<Vec<_>>();
        assert_eq!(ids(day("2026-12-06.jsonl")), ["A", "B"]);
        assert_eq!(ids(day("2026-12-07.jsonl")), ["C", "D"]);
    }

    #[test]
    fn remove_expired_keeps_the_kept_days() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["2026-11-30.jsonl", "2026-12-01.jsonl", "2026-12-07.jsonl"] {
            std::fs::write(tmp.path().join(name), b"").unwrap();
        }
        let now = files::day_of_name("2026-12-07.jsonl").unwrap() * 86_400 + 10;
        assert_eq!(remove_expired(tmp.path(), now, 7).unwrap(), ["2026-11-30.jsonl"]);
        assert!(tmp.path().join("2026-12-01.jsonl").exists());
    }
}
