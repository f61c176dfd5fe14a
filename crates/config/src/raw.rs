//! The configuration file exactly as written: every key optional unless a listener needs it,
//! every value spanned so that validation can name its line. Unknown keys are refused here.
//!
//! Counts are read as `i64` (TOML's integer type) so that validation, not serde, reports
//! negative and zero values with one consistent message.

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
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
    /// `user`, `group`, `allow_root`: the account to run as (privilege.rs).
    pub user: Option<SStr>,
    pub group: Option<SStr>,
    pub allow_root: Option<bool>,
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
    #[serde(default)]
    pub outbound: RawOutbound,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub history: RawHistory,
    /// `[screen]`: connection screening (DNS lists, client and HELO checks); absent = none.
    pub screen: Option<RawScreen>,
    #[serde(default)]
    pub greylist: RawGreylist,
    #[serde(default)]
    pub rate_limits: BTreeMap<SStr, RawRateLimits>,
    #[serde(default)]
    pub client: RawClient,
    #[serde(default)]
    pub mta_sts: RawMtaSts,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub milter: Vec<RawMilter>,
}

/// The raw `[greylist]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGreylist {
    pub enabled: Option<bool>,
    pub min_delay: Option<SValue>,
    pub window: Option<SValue>,
    pub pass_days: Option<Spanned<i64>>,
    pub auto_allow_after: Option<Spanned<i64>>,
    pub max_entries: Option<Spanned<i64>>,
    #[serde(default)]
    pub exempt: Vec<SStr>,
}

/// The raw `[rate_limits.NAME]` table. Keys not given are off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimits {
    pub connections_per_network: Option<SStr>,
    pub messages_per_network: Option<SStr>,
    pub messages_per_user: Option<SStr>,
    pub recipients_per_user: Option<SStr>,
    pub messages_per_sender_domain: Option<SStr>,
    pub max_entries: Option<Spanned<i64>>,
}

/// One `[[listen]]` entry. The message authentication switches are optional here so that
/// their defaults stay in [`Checks::defaults`](crate::Checks::defaults), and spanned so that
/// one set on a submission listener can be reported at its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub address: SStr,
    pub role: SStr,
    pub verify: Option<Spanned<bool>>,
    pub dmarc_reject: Option<Spanned<bool>>,
    pub dmarc_quarantine: Option<Spanned<bool>>,
    pub spf_reject: Option<Spanned<bool>>,
    /// Whether `[screen]` applies to this listener (default: on `mx` only).
    pub screen: Option<bool>,
    /// How long to wait before the greeting (default 0: no wait).
    pub greet_delay: Option<SValue>,
    pub greylist: Option<Spanned<bool>>,
    pub rate_limits: Option<SStr>,
    /// The `[[milter]]` names asked about this listener's mail, in order.
    pub milters: Option<Spanned<Vec<SStr>>>,
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
    pub quota: Option<SValue>,
    #[serde(default)]
    pub mailbox_quota: BTreeMap<SStr, SValue>,
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
    pub max_connections_per_network: Option<Spanned<i64>>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub command: Option<SValue>,
    pub data: Option<SValue>,
    pub data_min_rate: Option<SValue>,
    pub write: Option<SValue>,
    pub shutdown_grace: Option<SValue>,
}

/// `[delivery]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    pub retry_schedule: Option<Spanned<Vec<SValue>>>,
    pub max_age: Option<SValue>,
    pub local_concurrency: Option<Spanned<i64>>,
    pub spool_slots: Option<Spanned<i64>>,
    pub delay_notice: Option<SValue>,
    pub method: Option<SStr>,
    pub lmtp: Option<SStr>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Option<SStr>,
    pub key: Option<SStr>,
    pub check_interval: Option<SValue>,
    pub acme: Option<Spanned<RawAcme>>,
}

/// `[tls.acme]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub directory: Option<SStr>,
    pub contact: Option<SStr>,
    pub names: Option<Spanned<Vec<SStr>>>,
    pub ca_file: Option<SStr>,
    pub renew_before: Option<SValue>,
    pub check_interval: Option<SValue>,
    pub challenge: Option<SStr>,
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
    pub max_concurrent_checks: Option<Spanned<i64>>,
    pub check_queue_timeout: Option<SValue>,
    pub backend: Option<SStr>,
    pub socket: Option<SStr>,
}

/// `[screen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScreen {
    #[serde(default)]
    pub zone: Vec<RawZone>,
    pub threshold: Option<Spanned<i64>>,
    pub action: Option<SStr>,
    pub timeout: Option<SValue>,
    pub cache_size: Option<Spanned<i64>>,
    pub fcrdns: Option<bool>,
    pub require_fcrdns: Option<bool>,
    pub reject_pipelining: Option<bool>,
    #[serde(default)]
    pub helo_checks: Vec<SStr>,
}

/// One `[[screen.zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    pub name: SStr,
    pub weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub codes: Vec<SStr>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<SStr>,
    pub timestamps: Option<SStr>,
}

/// `[history]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    pub enabled: Option<Spanned<bool>>,
    pub days: Option<Spanned<i64>>,
}

/// `[outbound]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbound {
    pub helo_name: Option<SStr>,
    #[serde(default)]
    pub nameservers: Vec<SStr>,
    pub smtp_port: Option<Spanned<i64>>,
    pub tls: Option<SStr>,
    pub tls_ca_file: Option<SStr>,
    pub dnssec_trust_anchor: Option<SStr>,
    pub ip_preference: Option<SStr>,
    pub concurrency: Option<Spanned<i64>>,
    pub per_destination: Option<Spanned<i64>>,
    pub connect_timeout: Option<SValue>,
    pub idle_timeout: Option<SValue>,
    pub mta_sts_port: Option<Spanned<i64>>,
    pub tls_report_interval: Option<SValue>,
    pub relay_host: Option<RawRelayHost>,
    #[serde(default)]
    pub routes: BTreeMap<SStr, Spanned<RawRoute>>,
}

/// `[outbound.relay_host]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelayHost {
    pub host: SStr,
    pub tls: Option<SStr>,
    pub implicit_tls: Option<Spanned<bool>>,
    pub username: Option<SStr>,
    pub password_file: Option<SStr>,
}

/// One `[outbound.routes]` value, in any of its three forms.
#[derive(Debug)]
pub(crate) enum RawRoute {
    /// `"domain" = "host"`: the whole value's span is the host's.
    One(String),
    /// `"domain" = ["host", ...]`.
    List(Vec<SStr>),
    /// `[outbound.routes."domain"]` with `hosts` and `tls`.
    Table(RawRouteTable),
}

/// The table form of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTable {
    pub hosts: Spanned<Vec<SStr>>,
    pub tls: Option<SStr>,
}

/// Written by hand rather than `#[serde(untagged)]`: an untagged enum buffers its input and
/// so loses the spans of the hosts inside, and with them the line numbers of errors.
impl<'de> Deserialize<'de> for RawRoute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RouteVisitor)
    }
}

struct RouteVisitor;

impl<'de> Visitor<'de> for RouteVisitor {
    type Value = RawRoute;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a host, a list of hosts, or a table with hosts and tls")
    }

    fn visit_str<E: de::Error>(self, host: &str) -> Result<RawRoute, E> {
        Ok(RawRoute::One(host.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRoute, A::Error> {
        let mut hosts = Vec::new();
        while let Some(host) = seq.next_element()? {
            hosts.push(host);
        }
        Ok(RawRoute::List(hosts))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRoute, A::Error> {
        RawRouteTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawRoute::Table)
    }
}

/// `[client]`: what mail clients and DNS records are told about this server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub host: Option<SStr>,
    pub imap_host: Option<SStr>,
    pub imap_port: Option<Spanned<i64>>,
    pub imaps_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub addresses: Vec<SStr>,
}

/// `[mta_sts]`: the MTA-STS policy served on `http`/`https` listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMtaSts {
    pub mode: Option<SStr>,
    pub max_age: Option<SValue>,
    pub mx: Option<Vec<SStr>>,
}

/// `[dns]`: choices in the records `dakiya dns` prints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub dmarc_policy: Option<SStr>,
    pub report_address: Option<SStr>,
}

/// One `[[milter]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMilter {
    pub name: SStr,
    pub address: SStr,
    pub connect_timeout: Option<SValue>,
    pub command_timeout: Option<SValue>,
    pub eom_timeout: Option<SValue>,
    pub default_action: Option<SStr>,
    pub skip_authenticated: Option<bool>,
}
