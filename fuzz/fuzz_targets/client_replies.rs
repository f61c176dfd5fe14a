#![no_main]
//! Fuzzes the outbound SMTP client: arbitrary server replies, arbitrary read boundaries.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_proto::client::fuzz::replies(data);
});
