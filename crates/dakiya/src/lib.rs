//! dakiya: a mail transfer agent. This library holds the effects — sockets, files, the
//! async runtime — around the sans-IO protocol crate. The `dakiya` binary runs it with
//! [`run`]; tests start it in-process with [`Server::start`].
#![forbid(unsafe_code)]

mod admission;
mod authbackend;
mod conn;
mod control;
mod envelope;
mod inproc;
mod listen;
mod logging;
mod msgauth;
mod policy;
mod queuestats;
mod receive;
mod setup;
mod shared;
mod storage;
mod stream;
mod summary;
mod termtext;
mod tls;

// The subcommands of the binary other than `serve`: not an API of the library.
#[doc(hidden)]
pub mod checkconfig;
#[doc(hidden)]
pub mod dkimcli;
#[doc(hidden)]
pub mod queuecli;
#[doc(hidden)]
pub mod usercli;

pub use inproc::{Listener, Server};
pub use listen::{StartError, run};
#[doc(hidden)]
pub use logging::init as init_logging;
