#![no_main]
//! Fuzzes the configuration loader: arbitrary bytes as a TOML configuration file.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dakiya_config::fuzz::config(data);
});
