//! Hostile-client tests: the server driven over loopback the way an attacker would, one
//! module per topic. Each test reproduces a weakness and fails on code that has it.

#[path = "../common/mod.rs"]
mod common;

mod logs;
