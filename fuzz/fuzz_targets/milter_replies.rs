#![no_main]
//! Fuzzes the milter client's decoder: arbitrary milter packets, arbitrary read boundaries,
//! interpreted and applied as message edits.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_milter::fuzz::replies(data);
});
