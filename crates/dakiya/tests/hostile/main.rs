//! Hostile-client tests (issue #9): the real server against clients that misbehave on purpose.

#[path = "../common/mod.rs"]
mod common;

mod memory;
