#![no_main]
//! Fuzzes the users file parser: arbitrary bytes as the file's contents.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_auth::fuzz::users_file(data);
});
