//! Crash safety: SIGKILL the server in the middle of a load; after a restart every message
//! that got a 250 is delivered.

mod common;
use common::{Client, TestServer, queue_id};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn sigkill_mid_load_loses_nothing_acknowledged() {
    let server = TestServer::spawn("");
    let addr = server.addr;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (acked, stop) = (acked.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let Ok(stream) = std::net::TcpStream::connect(addr) else {
                return;
            };
            drop(stream);
            let mut c = Client::connect(addr, None);
            if !c.cmd("EHLO load.test").starts_with("250") {
                return;
            }
            let body = format!("Subject: load {w}\r\n\r\n{}\r\n", "x".repeat(3000));
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let ok = c.cmd("MAIL FROM:<load@remote.test>").starts_with("250")
                    && c.cmd("RCPT TO:<alice@example.test>").starts_with("250")
                    && c.cmd("DATA").starts_with("354");
                if !ok {
                    return;
                }
                c.send(format!("{body}message {w}-{i}\r\n.\r\n").as_bytes());
                let r = c.reply();
                if !r.starts_with("250") {
                    return; // the server died before answering: not acknowledged
                }
                acked.lock().unwrap().push(queue_id(&r));
            }
        }));
    }
    // Let the load run, then kill -9 while sessions are mid-transaction.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 50, "the load should have been running: {} acked", acked.len());
    // The rounds went into slots, rewritten in place as their messages were delivered
    // (docs/spool-slots.md): the kill hit that path.
    let queue = dir.path().join("data/spool/queue");
    let slots = std::fs::read_dir(&queue).unwrap().filter_map(|e| e.ok());
    assert!(slots.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("slot-")), "no slot in {queue:?}");

    let server = TestServer::start_in(dir, "");
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let delivered: HashSet<String> = server
            .messages("alice")
            .iter()
            .filter_map(|m| {
                m.split(" id ")
                    .nth(1)
                    .map(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap().to_string())
            })
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !delivered.contains(*id)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(missing, 0, "{missing} of {} acknowledged messages lost", acked.len());
}
