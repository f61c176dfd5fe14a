//! Runs the committed fuzz corpora (fuzz/corpus/*) through the fuzz targets' bodies, so every
//! input the fuzzer found interesting stays a regression test on stable Rust.

fn replay(target: &str, run: fn(&[u8]), at_least: usize) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        run(&data);
        n += 1;
    }
    assert!(n >= at_least, "{target} corpus has only {n} inputs");
}

#[test]
fn session_corpus_replays_cleanly() {
    replay("session", dakiya_proto::fuzz::session, 8);
}

#[test]
fn client_replies_corpus_replays_cleanly() {
    replay("client_replies", dakiya_proto::client::fuzz::replies, 2);
}
