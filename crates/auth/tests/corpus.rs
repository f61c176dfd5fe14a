//! Runs the committed fuzz corpus (fuzz/corpus/users_file) through the fuzz target's body, so
//! every input the fuzzer found interesting stays a regression test on stable Rust.

#[test]
fn users_file_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/users_file");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        dakiya_auth::fuzz::users_file(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 10, "users_file corpus has only {n} inputs");
}
