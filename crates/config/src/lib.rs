//! dakiya's configuration: TOML text in, a validated and frozen [`Config`] out, plus recipient
//! routing ([`Config::resolve`], [`Config::resolve_with`]) and the submission policy questions
//! that depend only on the configuration ([`Config::is_trusted`], [`Config::may_send_as`]).
//!
//! Everything is checked at load time — syntax, unknown keys, types, addresses, mailbox names,
//! catch-alls, alias loops — and every failure is a [`ConfigError`] naming the file, the key
//! and the line. Defaults live in one place: the `Default` impls below, [`Auth::defaults`],
//! [`Outbound::defaults`] and [`Config::EMBEDDED_DEFAULT`]. [`Config::to_toml`] prints the
//! effective configuration, which is itself valid input.
//!
//! The file format is documented key by key in `dakiya.example.toml` at the workspace root.
#![forbid(unsafe_code)]

mod access;
mod acme;
mod build;
mod client;
mod emit;
mod endpoint;
mod error;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod greylist;
mod history;
mod listener;
mod locate;
mod log;
mod mail;
mod milter;
mod names;
mod outbound;
mod privilege;
mod ratelimit;
mod raw;
mod resolve;
mod screen;
mod sender;
mod units;
mod value;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use client::{Client, DmarcPolicy, Dns, MAX_MTA_STS_AGE, MtaSts, MtaStsMode};
/// The next-hop vocabulary, defined once in `dakiya_proto::next_hop`: a route's or relay
/// host's [`HostPort`] (here its host is always a lowercase name without trailing dot or an IP
/// address in canonical form), the TLS mode towards it ([`OutboundTls`], `"none"`,
/// `"opportunistic"`, `"require"`, `"verify"`) and the address families to use
/// ([`IpPreference`], `"ipv6_first"`, `"ipv4_first"`, `"ipv4_only"`, `"ipv6_only"`).
pub use dakiya_proto::next_hop::{HostPort, IpPreference, TlsMode as OutboundTls};
pub use endpoint::{AuthBackend, DEFAULT_DOVECOT_AUTH_SOCKET, DEFAULT_LMTP_SOCKET, DeliveryMethod, Endpoint};
pub use error::{ConfigError, RcptError};
pub use greylist::{Exempt, Greylist};
pub use history::History;
pub use log::{Log, LogFormat, Timestamps};
pub use milter::{DefaultAction, Milter, MilterAddress};
pub use names::{is_valid_domain, is_valid_mailbox_name};
pub use privilege::{AccountName, Privileges, is_valid_account_name};
pub use ratelimit::{RateLimits, RateSpec};
pub use resolve::Target;
pub use screen::{CodeRange, HeloChecks, Screen, ScreenAction, Zone};
pub use units::parse_duration;

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
    /// The TLS certificate for STARTTLS and implicit TLS.
    pub tls: Tls,
    /// SMTP AUTH (RFC 4954): the user store and the limits on failed attempts.
    pub auth: Auth,
    /// Clients in these networks may relay without AUTH (the older alternative to AUTH); see
    /// [`Config::is_trusted`]. A bare address in the file is a host route (/32 or /128); host
    /// bits are never set. Default empty.
    pub trusted_networks: Vec<IpNet>,
    /// Extra MAIL FROM addresses per authenticated user, beyond those
    /// [`Config::may_send_as`] allows anyway: keyed by the user's address, the values are
    /// addresses (exact) or `@domain` (every address of that domain). All lowercase.
    pub send_as: BTreeMap<String, Vec<String>>,
    /// Outbound delivery to other mail servers, `[outbound]`.
    pub outbound: Outbound,
    /// The server's log, `[log]`.
    pub log: Log,
    /// The message history `dakiya trace` reads, `[history]`.
    pub history: History,
    /// Connection screening, `[screen]` (docs/screening.md); `None` when the section is absent.
    pub screen: Option<Screen>,
    /// Greylisting on `mx` listeners, `[greylist]`.
    pub greylist: Greylist,
    /// Named rate-limit profiles, `[rate_limits.NAME]`, for listeners to refer to.
    pub rate_limits: BTreeMap<String, RateLimits>,
    /// `user`, `group`, `allow_root`: the account the server runs as after binding its
    /// listeners when started as root (docs/hosting.md).
    pub privileges: Privileges,
    /// What clients and DNS records are told about this server, `[client]`.
    pub client: Client,
    /// The MTA-STS policy served on `http`/`https` listeners, `[mta_sts]`.
    pub mta_sts: MtaSts,
    /// Choices in the records `dakiya dns` prints, `[dns]`.
    pub dns: Dns,
    /// Content filters, `[[milter]]` (docs/milter.md).
    pub milters: Vec<Milter>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Address and port to bind; port 0 picks a free port (tests).
    pub address: SocketAddr,
    /// What the port is for.
    pub role: Role,
    /// Message authentication of inbound mail on this listener (mx role only).
    pub checks: Checks,
    /// Whether `[screen]` applies here (`screen`). Default true on `mx`, false on the
    /// submission roles (their clients authenticate).
    pub screen: bool,
    /// How long the server waits before its greeting; a client that speaks first is refused
    /// (`greet_delay`, docs/screening.md). Default zero: no wait.
    pub greet_delay: Duration,
    /// Whether this listener greylists (`greylist`): `[greylist] enabled` on `mx`, never on
    /// the submission roles.
    pub greylist: bool,
    /// The profile this listener names (`rate_limits = "NAME"`), if any.
    pub rate_limits_name: Option<String>,
    /// The rate limits in force: the named profile, or [`RateLimits::defaults`] for the role.
    pub rate_limits: RateLimits,
    /// The `[[milter]]` names asked about this listener's mail, in order (`milters`).
    pub milters: Vec<String>,
}

/// What an `mx` listener does with SPF, DKIM, DMARC and ARC (keys of its `[[listen]]`
/// table). Submission listeners never check: their mail is signed instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Verify SPF, DKIM, DMARC and ARC and add an `Authentication-Results:` header
    /// (`verify`). Default true on `mx`, and always false on the submission roles.
    pub verify: bool,
    /// Refuse mail that fails DMARC when the From domain publishes `p=reject`
    /// (`dmarc_reject`, 550 5.7.1). Default true.
    pub dmarc_reject: bool,
    /// Mark mail that fails DMARC under `p=quarantine` (or under `p=reject` when
    /// `dmarc_reject` is off) with `X-Spam-Flag: YES` and `X-Dakiya-Quarantine: dmarc`, for
    /// mail filters (`dmarc_quarantine`). Default true.
    pub dmarc_quarantine: bool,
    /// Refuse MAIL FROM whose SPF result is `fail` (`-all`) with 550 5.7.23 (`spf_reject`).
    /// Default false: SPF breaks on forwarding, DMARC is the better judge.
    pub spf_reject: bool,
}

impl Checks {
    /// The defaults for a listener of `role`.
    pub fn defaults(role: Role) -> Checks {
        Checks { verify: role == Role::Mx, dmarc_reject: true, dmarc_quarantine: true, spf_reject: false }
    }
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Mail exchange (port 25): accepts mail for local domains from anyone, no authentication.
    Mx,
    /// Message submission (port 587, RFC 6409): plain TCP with STARTTLS offered; AUTH is
    /// required before MAIL (RFC 6409 §4.3).
    Submission,
    /// Message submission over implicit TLS (port 465, RFC 8314 §3.3): TLS from the first
    /// byte, then as [`Role::Submission`].
    Submissions,
    /// POP3 (RFC 1939, port 110): plain TCP with STLS offered (RFC 2595); logins only inside
    /// TLS. Serves the Maildirs local delivery writes (docs/pop3.md).
    Pop3,
    /// POP3 over implicit TLS (port 995, RFC 8314 §3.3): TLS from the first byte, then as
    /// [`Role::Pop3`].
    Pop3s,
    /// Not SMTP: HTTP for mail clients and senders: autoconfig, Autodiscover, Apple profiles and
    /// the MTA-STS policy (docs/clients.md).
    Http,
    /// As [`Role::Http`], over TLS with the SMTP certificate.
    Https,
    /// Not SMTP: HTTP for monitoring, `GET /metrics` (Prometheus), `/healthz` and `/readyz`.
    /// Meant for loopback or a private network; it has no authentication.
    Metrics,
}

impl Role {
    /// The name used in TOML (`"mx"`, `"submission"`, `"submissions"`, `"pop3"`, `"pop3s"`,
    /// `"metrics"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
            Role::Pop3 => "pop3",
            Role::Pop3s => "pop3s",
            Role::Metrics => "metrics",
            Role::Http => "http",
            Role::Https => "https",
        }
    }

    /// Whether the connection starts with a TLS handshake (RFC 8314 implicit TLS) rather than
    /// in plain text.
    pub fn implicit_tls(self) -> bool {
        matches!(self, Role::Submissions | Role::Pop3s)
    }

    /// Whether the listener speaks POP3 rather than SMTP.
    pub fn is_pop3(self) -> bool {
        matches!(self, Role::Pop3 | Role::Pop3s)
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
    /// The Maildir++ quota in bytes of each mailbox of the domain (`quota`), unless
    /// `mailbox_quota` names the mailbox. `None`: no limit. docs/dovecot.md, "Quota".
    pub quota: Option<u64>,
    /// Quotas of single mailboxes (lowercase names), overriding `quota`.
    pub mailbox_quota: BTreeMap<String, u64>,
}

impl Domain {
    /// The quota in bytes of `mailbox` (lowercase) in this domain, if it has one.
    pub fn quota_of(&self, mailbox: &str) -> Option<u64> {
        self.mailbox_quota.get(mailbox).copied().or(self.quota)
    }
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
    /// Concurrent connections from one network: an IPv4 /24 or an IPv6 /64 (one host
    /// usually holds a whole /64, RFC 7421). Default 100.
    pub max_connections_per_network: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_connections_per_network: 100,
        }
    }
}

/// Network timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// A whole command line must arrive within this time of the server waiting for it (a
    /// deadline, not an idle timeout: a byte now and then does not extend it). Default 5
    /// minutes (RFC 5321 §4.5.3.2.7).
    pub command: Duration,
    /// Receiving DATA or BDAT content: no read may wait longer than this, and the whole
    /// content must arrive within this time plus its size at `data_min_rate`. Default 3
    /// minutes (cf. RFC 5321 §4.5.3.2.5 and §4.5.3.2.6).
    pub data: Duration,
    /// The slowest average rate, in bytes per second, at which message content may arrive
    /// once `data` has passed. Default 1024.
    pub data_min_rate: u64,
    /// Every write of replies must complete within this time (a client that does not read
    /// is cut). Default 1 minute.
    pub write: Duration,
    /// On shutdown, sessions in the middle of a transaction get this long to finish it;
    /// idle sessions are closed at once. Default 30 seconds.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
            data_min_rate: 1024,
            write: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The most slots `delivery.spool_slots` may ask for: the spool's own bound (`SLOTS_MAX` in
/// crates/spool/src/slots.rs).
pub const SPOOL_SLOTS_MAX: usize = 256;

/// Queue and delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Delays between delivery attempts; the last one repeats until `max_age`. Never empty.
    /// Default 1m, 5m, 15m, 30m, 1h, 2h, 4h.
    pub retry_schedule: Vec<Duration>,
    /// How long a message may stay queued before it bounces. Default 5 days.
    pub max_age: Duration,
    /// Blocking delivery steps running at once (status records, notices, the end of a run).
    /// Maildir copies go in rounds, one round at a time (docs/delivery.md). Default 4.
    pub local_concurrency: usize,
    /// Slots the spool may make: files of 256 KiB whose commit rounds are written in place,
    /// one `fdatasync` and no directory fsync before the 250 (docs/spool-slots.md). 0 to
    /// [`SPOOL_SLOTS_MAX`]; 0 writes every round into a new batch file, as on copy-on-write
    /// file systems (btrfs, ZFS) one may prefer. Default [`SPOOL_SLOTS_MAX`] (at most 64 MiB
    /// of disk, made only as the load needs them).
    pub spool_slots: usize,
    /// Tell the sender when a message is still undelivered this long after it was accepted
    /// (a "delayed" DSN, RFC 3464), once per recipient, while retrying goes on. `None` turns
    /// delay notices off. Default 4 hours.
    pub delay_notice: Option<Duration>,
    /// How local mailboxes get their mail: written into Maildirs (default), or handed to an
    /// LMTP server such as Dovecot's (`method = "lmtp"`, `lmtp = ...`).
    pub method: DeliveryMethod,
}

impl Default for Delivery {
    fn default() -> Self {
        let minutes = [1, 5, 15, 30, 60, 120, 240];
        Delivery {
            retry_schedule: minutes.iter().map(|m| Duration::from_secs(m * 60)).collect(),
            max_age: Duration::from_secs(5 * 24 * 3600),
            local_concurrency: 4,
            spool_slots: SPOOL_SLOTS_MAX,
            delay_notice: Some(Duration::from_secs(4 * 3600)),
            method: DeliveryMethod::Maildir,
        }
    }
}

/// Outbound delivery, `[outbound]`: how dakiya finds and talks to other mail servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The name we give in EHLO/HELO. Default: `hostname`.
    pub helo_name: String,
    /// The recursive DNS servers to ask for MX/A/AAAA records (`"ip:port"`; a bare IP means
    /// port 53). Empty means the system's (`/etc/resolv.conf`). Default empty.
    pub nameservers: Vec<SocketAddr>,
    /// The port of MX hosts (and of routes that name no port). Default 25.
    pub smtp_port: u16,
    /// TLS towards MX hosts. Default [`OutboundTls::Dane`]: DANE where the MX host
    /// publishes DNSSEC-validated TLSA records (RFC 7672), else the destination's MTA-STS
    /// policy when it publishes one (RFC 8461), else opportunistic. Routes and the relay
    /// host without a mode of their own inherit it, except that `mta-sts` and `dane`
    /// (about MX hosts) become `opportunistic` for them.
    pub tls: OutboundTls,
    /// Extra trust anchors (PEM certificates) for [`OutboundTls::Verify`], besides the
    /// built-in Mozilla roots. Relative paths are relative to the working directory.
    /// Default none.
    pub tls_ca_file: Option<PathBuf>,
    /// The DNSSEC trust anchor for DANE: a file of DNSKEY records in zone-file form.
    /// Default none: the root zone's keys built into the resolver.
    pub dnssec_trust_anchor: Option<PathBuf>,
    /// Which address families to use for next hops, in what order. Default IPv6 first.
    pub ip_preference: IpPreference,
    /// Outbound connections open at once, in all. Default 100.
    pub concurrency: usize,
    /// Outbound connections open at once to one destination domain. Default 10.
    pub per_destination: usize,
    /// How long to wait for a TCP connection. Default 30 seconds.
    pub connect_timeout: Duration,
    /// How long an idle connection is kept for the next message to the same destination.
    /// Default 5 seconds.
    pub idle_timeout: Duration,
    /// The HTTPS port MTA-STS policies are fetched from (RFC 8461 §3.3 says 443; another
    /// port is for tests). Default 443.
    pub mta_sts_port: u16,
    /// How often TLS reports (RFC 8460) are sent: at least a day means one report per
    /// policy domain and UTC day, sent after the day ends; shorter sends the counts so far
    /// every interval (for tests). 0 sends none. Default 1 day.
    pub tls_report_interval: Duration,
    /// A smart host that takes all mail for non-local domains that have no route of their
    /// own, instead of MX lookup. Default none.
    pub relay_host: Option<RelayHost>,
    /// Static routes: mail for these domains (keys lowercase, no trailing dot) goes to the
    /// given hosts instead of their MX. They win over `relay_host`. Default none.
    pub routes: BTreeMap<String, Route>,
}

impl Outbound {
    /// The defaults, with `helo_name` = `hostname`.
    pub fn defaults(hostname: &str) -> Outbound {
        Outbound {
            helo_name: hostname.to_owned(),
            nameservers: Vec::new(),
            smtp_port: 25,
            tls: OutboundTls::Dane,
            tls_ca_file: None,
            dnssec_trust_anchor: None,
            ip_preference: IpPreference::Ipv6First,
            concurrency: 100,
            per_destination: 10,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5),
            mta_sts_port: 443,
            tls_report_interval: Duration::from_secs(86_400),
            relay_host: None,
            routes: BTreeMap::new(),
        }
    }
}

/// `[outbound.relay_host]`: the smart host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHost {
    /// Where it is.
    pub host: HostPort,
    /// TLS towards it. Default [`OutboundTls::Require`] when `username` is set, else
    /// the `[outbound]` `tls`.
    pub tls: OutboundTls,
    /// TLS from the first byte (port 465, RFC 8314) instead of STARTTLS. Default false.
    pub implicit_tls: bool,
    /// AUTH user name; with `password_file`. Default none (no AUTH).
    pub username: Option<String>,
    /// A file holding the AUTH password (its first line; kept out of the configuration so
    /// that the configuration can be shown). Required with `username`.
    pub password_file: Option<PathBuf>,
}

/// `[outbound.routes."domain"]`: a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The hosts to try, in order. At least one.
    pub hosts: Vec<HostPort>,
    /// TLS towards them. Default: the `[outbound]` `tls`.
    pub tls: OutboundTls,
}

/// The TLS certificate, `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain, leaf first. Given together with `key`, or not at all. Relative
    /// paths are relative to the working directory.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes (to pick up a renewed
    /// certificate without a restart). Default 30 seconds.
    pub check_interval: Duration,
    /// `[tls.acme]`: the certificate is ordered from an ACME CA (docs/acme.md).
    pub acme: Option<Acme>,
}

/// `[tls.acme]`: where and for which names the certificate is ordered (docs/acme.md). The
/// issued pair is written to [`Config::self_signed_tls_dir`], the files the server uses when
/// `[tls]` names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The CA's directory URL (https). Default Let's Encrypt production.
    pub directory: String,
    /// The account contact, a `mailto:` URL, if given.
    pub contact: Option<String>,
    /// The names in the certificate. Default: `hostname` and `[client] host`.
    pub names: Vec<String>,
    /// Extra CA certificates (PEM) trusted for the directory's HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Order a new certificate this long before the current one expires. Default 30 days.
    pub renew_before: Duration,
    /// How often the certificate is looked at. Default 12 hours.
    pub check_interval: Duration,
}

impl Acme {
    /// Let's Encrypt's production directory, the default.
    pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
    /// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
    pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
}

impl Default for Tls {
    fn default() -> Self {
        Tls { cert: None, key: None, check_interval: Duration::from_secs(30), acme: None }
    }
}

impl Tls {
    /// The certificate and key files, if configured; `None` means the server uses a
    /// self-signed certificate in [`Config::self_signed_tls_dir`].
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// SMTP AUTH settings, `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The user store. Default `data_dir/users`; this is the effective path. Relative paths
    /// are relative to the working directory.
    pub users_file: PathBuf,
    /// Allow AUTH without TLS from 127.0.0.0/8 and ::1, for development. Default false:
    /// credentials only travel encrypted (RFC 4954 §4, RFC 8314 §3).
    pub plaintext_on_loopback: bool,
    /// A user whose address is in a local domain is also a mailbox there (see
    /// [`Config::resolve_with`]). Default true.
    pub users_are_mailboxes: bool,
    /// Wait before answering a failed attempt, to slow down password guessing. Default 1
    /// second.
    pub failure_delay: Duration,
    /// Failed attempts within `failure_window` that lock the client out, at least 1.
    /// Default 5.
    pub max_failures: u32,
    /// The window in which failures are counted. Default 10 minutes.
    pub failure_window: Duration,
    /// How long a locked-out client is refused. Default 15 minutes.
    pub lockout: Duration,
    /// Password checks that may run at the same moment (each holds argon2's 19 MiB while it
    /// runs), 1 to [`Auth::MAX_CONCURRENT_CHECKS`]. Default: the number of CPUs, at most 4.
    pub max_concurrent_checks: usize,
    /// How long an attempt waits for a free check before the client gets `454 4.7.0`, at
    /// most [`Auth::MAX_CHECK_QUEUE_TIMEOUT`]. Default 5 seconds.
    pub check_queue_timeout: Duration,
    /// Who checks passwords: the users file (default) or Dovecot's auth server
    /// (`backend = "dovecot"`, `socket = ...`). The throttle applies either way.
    pub backend: AuthBackend,
}

impl Auth {
    /// The name of the default user store inside `data_dir`.
    const USERS_FILE: &'static str = "users";

    /// The largest `max_concurrent_checks`: 256 checks hold about 5 GiB, and checks are
    /// CPU-bound, so more than there are cores only costs memory.
    pub const MAX_CONCURRENT_CHECKS: usize = 256;

    /// The longest `check_queue_timeout`: a client still waiting after a minute is better
    /// told to come back.
    pub const MAX_CHECK_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default `max_concurrent_checks`: one per CPU, at most 4 (4 × 19 MiB of argon2
    /// memory), at least 1.
    pub fn default_concurrent_checks() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
    }

    /// The defaults, with the user store at `data_dir/users`. (No `Default` impl: the user
    /// store's place depends on `data_dir`.)
    pub fn defaults(data_dir: &Path) -> Auth {
        Auth {
            users_file: data_dir.join(Self::USERS_FILE),
            plaintext_on_loopback: false,
            users_are_mailboxes: true,
            failure_delay: Duration::from_secs(1),
            max_failures: 5,
            failure_window: Duration::from_secs(10 * 60),
            lockout: Duration::from_secs(15 * 60),
            max_concurrent_checks: Self::default_concurrent_checks(),
            check_queue_timeout: Duration::from_secs(5),
            backend: AuthBackend::File,
        }
    }
}

impl Config {
    /// The Maildir++ quota in bytes of `mailbox` in `domain` (both lowercase), if any.
    pub fn quota_of(&self, domain: &str, mailbox: &str) -> Option<u64> {
        self.domains.get(domain)?.quota_of(mailbox)
    }

    /// The default `data_dir`.
    pub(crate) const DEFAULT_DATA_DIR: &'static str = "./dakiya-data";

    /// The configuration used when none is given: listen on 127.0.0.1 port 2525 as MX, 2587 as
    /// submission and 2465 as submissions (self-signed certificate), hostname `localhost`,
    /// domain `localhost` where every local part is a mailbox, data in `./dakiya-data`.
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

    /// Where the server keeps its self-signed certificate when `[tls]` names no files:
    /// `data_dir/tls`.
    pub fn self_signed_tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
}
