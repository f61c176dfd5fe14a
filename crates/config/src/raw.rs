//! The configuration file exactly as written: every key optional unless a listener needs it,
//! every value spanned so that validation can name its line. Unknown keys are refused here.
//!
//! Counts are read as `i64` (TOML's integer type) so that validation, not serde, reports
//! negative and zero values with one consistent message.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A spanned string.
pub(crate) type SStr = Spanned<String>;
/// A spanned value whose type is checked by hand (sizes and durations take two forms).
pub(crate) type SValue = Spanned<toml::Value>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub hostname: Option<SStr>,
    pub data_dir: Option<SStr>,
    pub recipient_delimiter: Option<SStr>,
    #[serde(default)]
    pub listen: Vec<RawListener>,
    #[serde(default)]
    pub domains: BTreeMap<SStr, RawDomain>,
    #[serde(default)]
    pub aliases: BTreeMap<SStr, Spanned<Vec<SStr>>>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub trusted_networks: Vec<SStr>,
    #[serde(default)]
    pub send_as: BTreeMap<SStr, Spanned<Vec<SStr>>>,
}

/// One `[[listen]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub address: SStr,
    pub role: SStr,
}

/// One `[domains."name"]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDomain {
    #[serde(default)]
    pub mailboxes: Vec<SStr>,
    pub catch_all: Option<SStr>,
    #[serde(default)]
    pub any_mailbox: bool,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_message_size: Option<SValue>,
    pub max_recipients: Option<Spanned<i64>>,
    pub max_errors: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_ip: Option<Spanned<i64>>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub command: Option<SValue>,
    pub data: Option<SValue>,
}

/// `[delivery]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    pub retry_schedule: Option<Spanned<Vec<SValue>>>,
    pub max_age: Option<SValue>,
    pub local_concurrency: Option<Spanned<i64>>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Option<SStr>,
    pub key: Option<SStr>,
    pub check_interval: Option<SValue>,
}

/// `[auth]`. Booleans are optional here so that their defaults stay in
/// [`Auth::defaults`](crate::Auth::defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub users_file: Option<SStr>,
    pub plaintext_on_loopback: Option<bool>,
    pub users_are_mailboxes: Option<bool>,
    pub failure_delay: Option<SValue>,
    pub max_failures: Option<Spanned<i64>>,
    pub failure_window: Option<SValue>,
    pub lockout: Option<SValue>,
}
