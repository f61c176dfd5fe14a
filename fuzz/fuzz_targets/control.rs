#![no_main]
//! Fuzzes the control socket's wire format: arbitrary bytes as a request line (the server's
//! side) and as a response line (`dakiya queue`'s side), with round trips of what parses.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_control::fuzz::control(data);
});
