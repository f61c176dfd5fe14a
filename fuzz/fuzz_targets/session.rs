#![no_main]
//! Fuzzes a whole server session: arbitrary client bytes, arbitrary read boundaries.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_proto::fuzz::session(data);
});
