//! Runs the committed fuzz corpus (fuzz/corpus/pop3_session) through the fuzz target's
//! body, so every input the fuzzer found interesting stays a regression test on stable Rust.

#[test]
fn pop3_session_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pop3_session");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        dakiya_pop3::fuzz::session(&data);
        n += 1;
    }
    assert!(n >= 8, "pop3_session corpus has only {n} inputs");
}
