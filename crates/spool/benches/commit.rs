//! Commit throughput: N threads each committing 5 KB messages, as SMTP
//! sessions do through `spawn_blocking`. Run with
//! `cargo bench -p dakiya-spool --bench commit`.
//! Environment: `BENCH_DIR` (default: a temp dir), `BENCH_THREADS` (default
//! "1,20"), `BENCH_SECS` (default 5), `BENCH_SIZE` (default 5120).
//!
//! For calibration it first runs a raw baseline on the same disk: each
//! thread doing create + write + fsync + rename + its own directory fsync,
//! with no spool code at all. Disk speed varies a lot on shared machines;
//! compare the two figures from one run.
//!
//! It also prints the process CPU per commit, and how commits were grouped:
//! directory fsyncs, batch files written and the distribution of messages
//! per batch file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dakiya_spool::Spool;

mod common;
use common::{env_or, envelope};

/// Runs `work(thread, n)` in `threads` threads for `secs` seconds; returns
/// (messages per second, total, worst latency).
fn drive<F>(threads: usize, secs: u64, work: F) -> (f64, u64, Duration)
where
    F: Fn(usize, u64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (work, stop) = (Arc::clone(&work), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0u64;
                let mut worst = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    work(t, n);
                    worst = worst.max(began.elapsed());
                    n += 1;
                }
                (n, worst)
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total: u64 = results.iter().map(|r| r.0).sum();
    let worst = results.iter().map(|r| r.1).max().unwrap_or_default();
    (total as f64 / start.elapsed().as_secs_f64(), total, worst)
}

/// The bare durable-write sequence, no group commit, no spool code.
fn raw(dir: &Path, threads: usize, secs: u64, size: usize) {
    let (tmp, queue) = (dir.join("tmp"), dir.join("queue"));
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&queue).unwrap();
    let body = vec![b'x'; size];
    let (rate, total, worst) = drive(threads, secs, move |t, n| {
        let name = format!("{t}-{n}");
        let path: PathBuf = tmp.join(&name);
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).unwrap();
        file.write_all(&body).unwrap();
        file.sync_all().unwrap();
        fs::rename(&path, queue.join(&name)).unwrap();
        File::open(&queue).unwrap().sync_all().unwrap();
    });
    println!(
        "raw   threads={threads:>2} size={size} msgs={total} msgs/s={rate:.0} worst={:.1}ms",
        worst.as_secs_f64() * 1000.0
    );
}

fn run(spool: &Arc<Spool>, threads: usize, secs: u64, size: usize) {
    let body = vec![b'x'; size];
    let (_, syncs0) = spool.dir_sync_stats();
    let stats0 = spool.commit_stats();
    let cpu0 = cpu_ticks();
    let shared = Arc::clone(spool);
    let (rate, total, worst) = drive(threads, secs, move |_, _| {
        let mut writer = shared.writer(envelope(&shared)).unwrap();
        // 1 KiB writes, like a DATA reader handing over lines.
        for part in body.chunks(1024) {
            writer.write(part).unwrap();
        }
        writer.commit().unwrap();
    });
    let (_, syncs) = spool.dir_sync_stats();
    let stats = spool.commit_stats();
    // Ticks are 10 ms; per message in microseconds.
    let cpu_us = cpu_ticks().zip(cpu0).map_or(0.0, |(b, a)| (b - a) as f64 * 10_000.0 / total.max(1) as f64);
    let files = stats.files() - stats0.files();
    println!(
        "spool threads={threads:>2} size={size} msgs={total} msgs/s={rate:.0} worst={:.1}ms cpu={cpu_us:.0}us/msg \
         dir_fsyncs={} (1 per {:.1} commits) batch_files={files} ({:.1} msgs per file)",
        worst.as_secs_f64() * 1000.0,
        syncs - syncs0,
        total as f64 / (syncs - syncs0).max(1) as f64,
        (stats.messages - stats0.messages) as f64 / files.max(1) as f64,
    );
    let sizes: Vec<u64> = stats.batch_sizes.iter().zip(&stats0.batch_sizes).map(|(a, b)| a - b).collect();
    println!("      messages per batch file: {}", distribution(&sizes));
}

/// User + system CPU of this process in clock ticks (USER_HZ, 100 per
/// second on Linux), from /proc/self/stat.
fn cpu_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (in parentheses): utime is the 12th field, stime the 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// `n:count` for every batch size seen, and the median; the last size is
/// "that many or more".
fn distribution(sizes: &[u64]) -> String {
    let files: u64 = sizes.iter().sum();
    let mut seen = 0;
    let median = sizes.iter().position(|&n| {
        seen += n;
        seen * 2 >= files
    });
    let last = sizes.len() - 1;
    let shown: Vec<String> = sizes
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(size, n)| format!("{size}{}:{n}", if size == last { "+" } else { "" }))
        .collect();
    format!("{}  (median {})", shown.join(" "), median.unwrap_or(0))
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let temp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).expect("temp dir");
    let threads: String = env_or("BENCH_THREADS", "1,20".to_owned());
    let secs = env_or("BENCH_SECS", 5);
    let size = env_or("BENCH_SIZE", 5120);
    for t in threads.split(',').filter_map(|t| t.trim().parse().ok()) {
        raw(&temp.path().join(format!("raw-{t}")), t, secs, size);
        let dir = temp.path().join(format!("spool-{t}"));
        let spool = Arc::new(Spool::open(&dir).expect("open spool"));
        run(&spool, t, secs, size);
    }
}
