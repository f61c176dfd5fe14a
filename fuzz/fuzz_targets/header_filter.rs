#![no_main]
//! Fuzzes the forged `Authentication-Results` filter: arbitrary messages, arbitrary read
//! boundaries, checked against a plain model of what it promises.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_mailauth::fuzz::header_filter(data);
});
