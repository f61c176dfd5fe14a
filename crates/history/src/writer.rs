//! [`History`]: the handle the event sites call, and the one writer thread behind it.
//!
//! Recording never waits: a record goes into a bounded channel with `try_send`; when the
//! channel is full the record is dropped and counted (with a warning at most once a minute).
//! The writer thread takes whatever is waiting, appends it to the day's file through a
//! buffer and flushes once the channel is empty: no fsync per event. The history is a
//! diagnostic aid, not the queue's durability promise (the spool is): the last events before
//! a crash may be lost. A file is fsynced when the day rotates.

use crate::event::{Event, Record};
use crate::files;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records waiting for the writer, at most.
const CHANNEL: usize = 8192;
/// How often the writer looks for expired files even when idle.
const EXPIRY_CHECK: Duration = Duration::from_secs(3600);
/// At most one warning about dropped records per this interval.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where the server records message events; cheap to clone. [`History::disabled`] records
/// nothing.
#[derive(Clone, Default)]
pub struct History {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: SyncSender<Record>,
    dropped: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
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
        let (tx, rx) = sync_channel(CHANNEL);
        std::thread::Builder::new().name("history".into()).spawn(move || Writer { dir, days, file: None }.run(rx))?;
        Ok(History { inner: Some(Arc::new(Inner { tx, dropped: AtomicU64::new(0), last_warning: Mutex::new(None) })) })
    }

    /// Records `event` of message `id` now. Never blocks.
    pub fn record(&self, id: &str, event: Event) {
        let Some(inner) = &self.inner else { return };
        let record = Record { t: now(), id: id.to_string(), event };
        match inner.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => inner.dropped_one(),
            // The writer is gone (it failed to write; it said so): nothing to do.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }
}

impl Inner {
    fn dropped_one(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(dropped = total, "message history is behind; events dropped");
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct Writer {
    dir: PathBuf,
    days: u32,
    /// The open file and its day.
    file: Option<(u64, BufWriter<File>)>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Record>) {
        self.expire(now());
        let mut last_check = Instant::now();
        loop {
            match rx.recv_timeout(EXPIRY_CHECK) {
                Ok(first) => {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(CHANNEL));
                    if let Err(e) = self.write(&batch) {
                        tracing::error!(dir = %self.dir.display(), error = %e, "cannot write the message history");
                        self.file = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_check.elapsed() >= EXPIRY_CHECK {
                last_check = Instant::now();
                self.expire(now());
            }
        }
        if let Some((_, mut f)) = self.file.take() {
            let _ = f.flush();
        }
    }

    fn write(&mut self, batch: &[Record]) -> std::io::Result<()> {
        for r in batch {
            let day = files::day_of(r.t);
            if self.file.as_ref().is_none_or(|(d, _)| *d != day) {
                self.rotate(day)?;
            }
            if let Some((_, f)) = self.file.as_mut() {
                f.write_all(&r.to_line())?;
            }
        }
        match self.file.as_mut() {
            Some((_, f)) => f.flush(),
            None => Ok(()),
        }
    }

    /// Closes the current file (fsynced) and opens the one for `day`.
    fn rotate(&mut self, day: u64) -> std::io::Result<()> {
        let rotated = self.file.is_some();
        if let Some((_, mut f)) = self.file.take() {
            f.flush()?;
            f.get_ref().sync_all()?;
        }
        let path = self.dir.join(files::file_name(day));
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        self.file = Some((day, BufWriter::new(f)));
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
