//! Runs the committed fuzz corpus (fuzz/corpus/header_filter) through the fuzz target's body,
//! so every input the fuzzer found interesting stays a regression test on stable Rust.

#[test]
fn header_filter_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/header_filter");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        dakiya_mailauth::fuzz::header_filter(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 10, "header_filter corpus has only {n} inputs");
}
