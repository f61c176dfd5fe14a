#![no_main]
//! Fuzzes a whole POP3 server session: arbitrary client bytes, arbitrary read boundaries.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_pop3::fuzz::session(data);
});
