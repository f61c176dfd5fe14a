//! Recovery time: how long `Spool::open` + `recover()` take for a queue of N messages, the
//! work a restart does before the server accepts mail. Run with
//! `cargo bench -p dakiya-spool --bench recover`.
//! Environment: `BENCH_DIR` (default /tmp), `BENCH_MSGS` (default 50000), `BENCH_SIZE`
//! (default 5120), `BENCH_THREADS` (committing threads, default 20: batch files of about
//! the size a loaded server writes).
//!
//! It opens the spool twice: first right after the messages were committed (the files in the
//! page cache), then after `echo 3 > /proc/sys/vm/drop_caches` when it may (root): from the
//! disk, as after a reboot. Since format version 3 recovery reads every byte of a sealed
//! batch once to check its CRC (docs/spool-format.md), where version 2 read the record lines.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use dakiya_spool::Spool;

mod common;
use common::{env_or, envelope};

fn open_and_recover(dir: &std::path::Path, what: &str, msgs: u64, bytes: u64) {
    let began = Instant::now();
    let spool = Spool::open(dir).expect("open spool");
    let recovered = spool.recover().expect("recover");
    let secs = began.elapsed().as_secs_f64();
    assert_eq!(recovered.len() as u64, msgs, "every message recovered");
    println!(
        "{what:<12} msgs={msgs} MB={:.0} open+recover={secs:.3}s ({:.0} msgs/s, {:.0} MB/s)",
        bytes as f64 / 1e6,
        msgs as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

fn main() {
    let temp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).expect("temp dir");
    let (msgs, size, threads): (u64, usize, u64) =
        (env_or("BENCH_MSGS", 50_000), env_or("BENCH_SIZE", 5120), env_or("BENCH_THREADS", 20));
    let dir = temp.path().join("spool");
    let spool = Arc::new(Spool::open(&dir).expect("open spool"));
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (spool, next) = (Arc::clone(&spool), Arc::clone(&next));
            thread::spawn(move || {
                let body = vec![b'x'; size];
                while next.fetch_add(1, Ordering::Relaxed) < msgs {
                    let mut writer = spool.writer(envelope(&spool)).unwrap();
                    writer.write(&body).unwrap();
                    writer.commit().unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let files = spool.commit_stats().files();
    drop(spool);
    let bytes: u64 = fs::read_dir(dir.join("queue")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!("committed {msgs} messages of {size} bytes into {files} batch files");
    open_and_recover(&dir, "cached", msgs, bytes);
    if fs::write("/proc/sys/vm/drop_caches", "3").is_ok() {
        open_and_recover(&dir, "from disk", msgs, bytes);
    } else {
        println!("from disk    skipped (dropping the page cache needs root)");
    }
}
