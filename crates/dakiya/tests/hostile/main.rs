//! Hostile clients against the real server over loopback sockets: each test reproduces an
//! attack from issue #9 and fails on a server without the defence. One module per topic.

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod auth;
mod deadlines;
mod logs;
mod memory;
mod shutdown;
