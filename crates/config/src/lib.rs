//! dakiya's configuration: TOML text in, a validated and frozen [`Config`] out, plus recipient
//! routing ([`Config::resolve`]).
//!
//! Everything is checked at load time — syntax, unknown keys, types, addresses, mailbox names,
//! catch-alls, alias loops — and every failure is a [`ConfigError`] naming the file, the key
//! and the line. Defaults live in one place: the `Default` impls below and
//! [`Config::EMBEDDED_DEFAULT`]. [`Config::to_toml`] prints the effective configuration, which
//! is itself valid input.
//!
//! The file format is documented key by key in `dakiya.example.toml` at the workspace root.
#![forbid(unsafe_code)]

mod build;
mod emit;
mod error;
mod locate;
mod mail;
mod names;
mod raw;
mod resolve;
mod units;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, RcptError};
pub use names::is_valid_mailbox_name;
pub use resolve::Target;

/// The validated configuration. Build it with [`Config::parse`], [`Config::from_file`] or
/// [`Config::embedded_default`]; it is not meant to be changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from: the file path, or `"<embedded default>"`.
    pub source: String,
    /// Our name in the greeting and EHLO reply; a valid domain name. Default `"localhost"`.
    pub hostname: String,
    /// Root of the spool and the mailboxes. Relative paths are relative to the working
    /// directory. Default `"./dakiya-data"`.
    pub data_dir: PathBuf,
    /// Where to listen; at least one, no address twice.
    pub listeners: Vec<Listener>,
    /// The local domains, keyed by lowercase name.
    pub domains: BTreeMap<String, Domain>,
    /// Aliases, keyed by lowercase address in a local domain; targets are addresses, local or
    /// remote, with lowercase domains. Loops are refused at load time.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Separates a tag from the user (`user+tag@dom` delivers as `user@dom`). Default `'+'`;
    /// `""` in TOML turns it off.
    pub recipient_delimiter: Option<char>,
    /// Size and count limits.
    pub limits: Limits,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// Queue and delivery settings.
    pub delivery: Delivery,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Address and port to bind; port 0 picks a free port (tests).
    pub address: SocketAddr,
    /// What the port is for.
    pub role: Role,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Mail exchange (port 25): accepts mail for local domains from anyone, no authentication.
    Mx,
}

impl Role {
    /// The name used in TOML (`"mx"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mx => "mx",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One local domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domain {
    /// Its mailboxes: lowercase local parts, each a valid
    /// [mailbox name](is_valid_mailbox_name).
    pub mailboxes: BTreeSet<String>,
    /// Lowercase full address (in this domain, naming a mailbox) that receives mail for unknown
    /// local parts.
    pub catch_all: Option<String>,
    /// Every local part that is a valid mailbox name is a mailbox of its own, created on first
    /// delivery.
    pub any_mailbox: bool,
}

/// Size and count limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (announced as EHLO SIZE, RFC 1870). Default 35 MiB.
    pub max_message_size: u64,
    /// Most recipients per message. Default 100, the minimum RFC 5321 §4.5.3.1.8 requires a
    /// server to accept; lower values are allowed but not conformant.
    pub max_recipients: usize,
    /// Erroneous commands before the connection is closed. Default 10.
    pub max_errors: u32,
    /// Concurrent connections in all. Default 1000.
    pub max_connections: usize,
    /// Concurrent connections from one IP address. Default 50.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_connections: 1000,
            max_connections_per_ip: 50,
        }
    }
}

/// Network timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for the next command. Default 5 minutes (RFC 5321 §4.5.3.2.7).
    pub command: Duration,
    /// Each read while receiving DATA or BDAT content. Default 3 minutes (cf. RFC 5321
    /// §4.5.3.2.5 and §4.5.3.2.6).
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
        }
    }
}

/// Queue and delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Delays between delivery attempts; the last one repeats until `max_age`. Never empty.
    /// Default 1m, 5m, 15m, 30m, 1h, 2h, 4h.
    pub retry_schedule: Vec<Duration>,
    /// How long a message may stay queued before it bounces. Default 5 days.
    pub max_age: Duration,
    /// Local (mailbox) deliveries running at once. Default 4.
    pub local_concurrency: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        let minutes = [1, 5, 15, 30, 60, 120, 240];
        Delivery {
            retry_schedule: minutes
                .iter()
                .map(|m| Duration::from_secs(m * 60))
                .collect(),
            max_age: Duration::from_secs(5 * 24 * 3600),
            local_concurrency: 4,
        }
    }
}

impl Config {
    /// The configuration used when none is given: listen on 127.0.0.1:2525 as MX, hostname
    /// `localhost`, domain `localhost` where every local part is a mailbox, data in
    /// `./dakiya-data`.
    pub const EMBEDDED_DEFAULT: &'static str = include_str!("default.toml");

    /// The source name of [`Config::embedded_default`].
    const EMBEDDED_SOURCE: &'static str = "<embedded default>";

    /// Parses [`Config::EMBEDDED_DEFAULT`]. It cannot fail: a unit test parses it.
    pub fn embedded_default() -> Config {
        Config::parse(Self::EMBEDDED_DEFAULT, Self::EMBEDDED_SOURCE)
            .expect("the embedded default configuration is valid (unit-tested)")
    }

    /// Reads and parses a configuration file. A file that cannot be read is a [`ConfigError`]
    /// too (without line or key).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: source.clone(),
            line: None,
            key: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(&text, &source)
    }

    /// Parses and validates TOML `text`; `source` names it in errors and in
    /// [`Config::source`].
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        build::build(text, source)
    }

    /// The effective configuration as TOML, every default filled in. [`Config::parse`] reads
    /// it back to an equal `Config`.
    pub fn to_toml(&self) -> String {
        emit::to_toml(self)
    }
}
