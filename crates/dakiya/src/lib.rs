//! dakiya: a mail transfer agent. This library holds the effects — sockets, files, the
//! async runtime — around the sans-IO protocol crate. The `dakiya` binary runs it with
//! [`run`]; tests start it in-process with [`Server::start`].
#![forbid(unsafe_code)]

mod acme;
mod admission;
mod authbackend;
mod bind;
mod conn;
mod control;
mod envelope;
mod greylisting;
mod health;
mod http;
mod inproc;
mod listen;
mod live;
mod logging;
mod measure;
mod milter;
mod msgauth;
mod policy;
mod pop3;
mod privdrop;
mod queuestats;
mod ratelimits;
mod receive;
mod reload;
mod screen;
mod setup;
mod shared;
mod status;
mod storage;
mod stream;
mod summary;
mod termtext;
mod tls;
mod tlsreport;

// The subcommands of the binary other than `serve`: not an API of the library.
#[doc(hidden)]
pub mod checkconfig;
#[doc(hidden)]
pub mod dkimcli;
#[doc(hidden)]
pub mod dnscli;
#[doc(hidden)]
pub mod queuecli;
#[doc(hidden)]
pub mod reloadcli;
#[doc(hidden)]
pub mod setupcli;
#[doc(hidden)]
pub mod statuscli;
#[doc(hidden)]
pub mod tracecli;
#[doc(hidden)]
pub mod usercli;

/// What a reload applied (also the `dakiya reload` answer).
pub use dakiya_control::ReloadSummary;
pub use inproc::{Listener, Server};
pub use listen::{StartError, run};
#[doc(hidden)]
pub use logging::flush as flush_logging;
pub use logging::init as init_logging;
pub use reload::ReloadError;
