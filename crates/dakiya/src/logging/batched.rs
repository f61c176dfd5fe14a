//! The log's lines gathered in memory and written out together, by a thread of their own,
//! at most [`DELAY`] after the first of them (docs/performance.md 7.19).
//!
//! Why: every line written straight to stderr is one `write(2)`, made by the thread that
//! logs, in the middle of a session or a delivery run; under load that was about four system
//! calls per message and about 5 % of the server's CPU. Gathered, a busy second costs a
//! hundred writes, made off the sessions' threads.
//!
//! What it costs, and the bounds:
//! - A line reaches stderr up to [`DELAY`] late. The order of lines is kept (one buffer, and
//!   one writer of it at a time).
//! - Memory: the buffer is written out at once by the thread that logs when it passes
//!   [`HIGH_WATER`]; a flood of lines (or a stderr that does not take them: a stalled
//!   journal) then blocks the threads that log, as writing straight to stderr did, instead
//!   of growing the buffer. Nothing is dropped.
//! - A process killed by SIGKILL, or by the kernel's OOM killer, loses what it logged in its
//!   last [`DELAY`]. A normal stop writes everything out ([`flush`] at the end of
//!   `dakiya serve`), and so does a panic (the panic hook flushes before it prints).
//! - Idle costs nothing: the thread sleeps until a line comes into an empty buffer (one
//!   wake-up per busy spell, not per line).
//!
//! Hand-written rather than `tracing-appender`'s non-blocking writer: that one sends each
//! line through a channel to its worker, which writes each line on its own (one system call
//! per line still, plus a wake-up) and, when its channel is full, drops lines or blocks;
//! what is wanted here is fewer system calls, and never a lost line.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a line may wait in memory before it is written.
pub(crate) const DELAY: Duration = Duration::from_millis(10);
/// A buffer this full is written out at once by the thread that fills it.
pub(crate) const HIGH_WATER: usize = 256 * 1024;

/// The gathered lines and where they go.
pub(crate) struct Batched {
    /// Lines not yet written.
    pending: Mutex<Pending>,
    /// The writer thread waits here for a line to come into an empty buffer.
    arrived: Condvar,
    /// Where the lines go. Whoever writes takes this lock first, then the buffer, so batches
    /// reach it in the order they were gathered.
    out: Mutex<Box<dyn Write + Send>>,
}

struct Pending {
    buf: Vec<u8>,
    /// Whether the writer thread sleeps waiting for a line (then the first line wakes it).
    idle: bool,
    /// Whether a writer thread runs; without one every line is written at once.
    thread: bool,
}

impl Batched {
    /// Lines gathered for `out`, written by a thread started here (named `log-writer`). If no
    /// thread can start, every line is written at once, as without this.
    pub(crate) fn start(out: Box<dyn Write + Send>) -> Arc<Batched> {
        let batched = Arc::new(Batched {
            pending: Mutex::new(Pending { buf: Vec::new(), idle: false, thread: true }),
            arrived: Condvar::new(),
            out: Mutex::new(out),
        });
        let this = Arc::clone(&batched);
        if std::thread::Builder::new().name("log-writer".into()).spawn(move || this.serve()).is_err() {
            lock(&batched.pending).thread = false;
        }
        batched
    }

    /// Adds one line (or several whole ones).
    pub(crate) fn push(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        if !pending.thread {
            drop(pending);
            return self.write_out(Some(line));
        }
        pending.buf.extend_from_slice(line);
        if pending.buf.len() >= HIGH_WATER {
            drop(pending);
            return self.write_out(None);
        }
        if pending.idle {
            pending.idle = false;
            self.arrived.notify_one();
        }
    }

    /// Writes out every line gathered so far (and `extra` after them), and flushes `out`.
    pub(crate) fn write_out(&self, extra: Option<&[u8]>) {
        self.write_locked(&mut lock(&self.out), extra);
    }

    /// As [`Self::write_out`], unless another thread is writing (a panic while writing must
    /// not wait for itself): then that thread writes these lines too.
    pub(crate) fn try_write_out(&self) {
        if let Ok(mut out) = self.out.try_lock() {
            self.write_locked(&mut out, None);
        }
    }

    /// [`Self::write_out`] with `out` locked.
    fn write_locked(&self, out: &mut Box<dyn Write + Send>, extra: Option<&[u8]>) {
        // Taken out, so the emptied buffer's allocation is dropped: a flood does not keep its
        // memory, and lines logged meanwhile gather in a new one.
        let buf = std::mem::take(&mut lock(&self.pending).buf);
        write_ignoring_errors(&mut **out, &buf);
        if let Some(extra) = extra {
            write_ignoring_errors(&mut **out, extra);
        }
        let _ = out.flush();
    }

    /// The writer thread: sleeps until a line comes, lets more gather for [`DELAY`], writes
    /// them all in one call.
    fn serve(&self) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.buf.is_empty() {
                pending.idle = true;
                pending = self.arrived.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(DELAY);
            self.write_out(None);
        }
    }
}

/// A log line that cannot be written has nowhere to be reported; as with `eprintln!` to a
/// closed stderr, it is lost and the server goes on.
fn write_ignoring_errors(out: &mut dyn Write, bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = out.write_all(bytes);
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A writer of lines into a [`Batched`]: what the formatting layer writes each line to.
pub(crate) struct Handle(pub(crate) Arc<Batched>);

impl Write for Handle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A shared output that records each write it got.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().len()
        }
        /// Waits (at most 10 s) until `n` lines have been written.
        fn wait_lines(&self, n: usize) -> String {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let text = self.text();
                if text.lines().count() >= n || Instant::now() > end {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_order_per_thread_in_fewer_writes() {
        let out = Out::default();
        let batched = Batched::start(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let batched = Arc::clone(&batched);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        Handle(Arc::clone(&batched)).write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = out.wait_lines(2000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2000, "every line written once");
        for t in 0..4 {
            let mine: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let expected: Vec<String> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "a thread's lines keep their order");
        }
        assert!(out.writes() < 2000, "gathered: {} writes for 2000 lines", out.writes());
    }

    #[test]
    fn a_lone_line_is_written_without_a_flush_from_outside() {
        let out = Out::default();
        let batched = Batched::start(Box::new(out.clone()));
        batched.push(b"one\n");
        assert_eq!(out.wait_lines(1), "one\n");
        // The thread sleeps again, and the next line wakes it again.
        std::thread::sleep(DELAY * 3);
        batched.push(b"two\n");
        assert_eq!(out.wait_lines(2), "one\ntwo\n");
    }

    #[test]
    fn the_buffer_never_grows_past_its_high_water_mark() {
        let out = Out::default();
        let batched = Batched::start(Box::new(out.clone()));
        let mut line = vec![b'x'; 999];
        line.push(b'\n');
        let lines = 3 * HIGH_WATER / line.len();
        for _ in 0..lines {
            batched.push(&line);
            assert!(lock(&batched.pending).buf.len() < HIGH_WATER, "written out at the mark");
        }
        batched.write_out(None);
        assert_eq!(out.text().len(), lines * line.len(), "nothing dropped");
    }

    #[test]
    fn write_out_writes_everything_gathered_at_once() {
        let out = Out::default();
        let batched = Batched::start(Box::new(out.clone()));
        // Taken before the thread's delay is over: the lines are there right after.
        batched.push(b"a\n");
        batched.push(b"b\n");
        batched.write_out(Some(b"c\n"));
        assert_eq!(out.text(), "a\nb\nc\n");
    }
}
