//! Runs the committed fuzz corpus (fuzz/corpus/milter_replies) through the fuzz target's
//! body, so every input the fuzzer found interesting stays a regression test on stable Rust.

#[test]
fn milter_replies_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/milter_replies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        dakiya_milter::fuzz::replies(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 6, "only {n} inputs");
}
