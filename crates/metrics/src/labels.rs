//! The closed sets label values come from.

/// Why the server refused a command, for `dakiya_smtp_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// MAIL (or RCPT, DATA) before AUTH where AUTH is required (RFC 6409 §4.3), or before
    /// STARTTLS where TLS is required (530 5.7.0).
    AuthRequired,
    /// MAIL from an address the authenticated user does not own.
    SenderNotOwned,
    /// MAIL refused because SPF failed (`spf_reject`).
    Spf,
    /// RCPT to a domain that is not ours, from a client that may not relay.
    RelayDenied,
    /// RCPT to a local address with no mailbox.
    UnknownUser,
    /// RCPT refused by other policy (an alias loop).
    RecipientPolicy,
    /// RCPT beyond `limits.max_recipients`.
    TooManyRecipients,
    /// The message (declared or sent) is larger than `limits.max_message_size`.
    Size,
    /// DMARC failed under `p=reject`.
    Dmarc,
    /// DMARC could not be evaluated (a DNS temporary error): deferred.
    DmarcTemporary,
    /// The message could not be stored (a spool error): deferred.
    LocalError,
    /// Refused instead of the greeting: the client's DNS list score reached the threshold
    /// (`[screen] action = "reject-at-connect"`, RFC 5782).
    Dnsbl,
    /// RCPT refused because the client is on DNS lists (`action = "reject-at-rcpt"`).
    DnsblRcpt,
    /// The client spoke before the greeting (`greet_delay`).
    EarlyTalker,
    /// The client pipelined where PIPELINING was not offered (RFC 2920 §3.1).
    Pipelining,
    /// RCPT refused: no forward-confirmed reverse DNS name (`require_fcrdns`, RFC 7372).
    Fcrdns,
    /// MAIL refused for the HELO name (`helo_checks`).
    Helo,
    /// RCPT deferred by greylisting (RFC 6647).
    Greylisted,
    /// The connection refused by `connections_per_network` (421 instead of the greeting).
    RateLimitedConnect,
    /// MAIL refused by a message rate limit (per network, user or sender domain).
    RateLimited,
    /// RCPT refused by `recipients_per_user`.
    RateLimitedRcpt,
    /// MAIL refused by a milter (its verdict at connect, HELO or MAIL, or its failure).
    MilterMail,
    /// RCPT refused by a milter (or its failure).
    MilterRcpt,
    /// The message refused at its end by a milter (or its failure).
    MilterData,
}

impl Rejection {
    /// Every reason.
    pub const ALL: [Rejection; 24] = [
        Rejection::AuthRequired,
        Rejection::SenderNotOwned,
        Rejection::Spf,
        Rejection::RelayDenied,
        Rejection::UnknownUser,
        Rejection::RecipientPolicy,
        Rejection::TooManyRecipients,
        Rejection::Size,
        Rejection::Dmarc,
        Rejection::DmarcTemporary,
        Rejection::LocalError,
        Rejection::Dnsbl,
        Rejection::DnsblRcpt,
        Rejection::EarlyTalker,
        Rejection::Pipelining,
        Rejection::Fcrdns,
        Rejection::Helo,
        Rejection::Greylisted,
        Rejection::RateLimitedConnect,
        Rejection::RateLimited,
        Rejection::RateLimitedRcpt,
        Rejection::MilterMail,
        Rejection::MilterRcpt,
        Rejection::MilterData,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::AuthRequired => "auth_required",
            Rejection::SenderNotOwned => "sender_not_owned",
            Rejection::Spf => "spf",
            Rejection::RelayDenied => "relay_denied",
            Rejection::UnknownUser => "unknown_user",
            Rejection::RecipientPolicy => "policy",
            Rejection::TooManyRecipients => "too_many_recipients",
            Rejection::Size => "size",
            Rejection::Dmarc => "dmarc",
            Rejection::DmarcTemporary => "dmarc_temporary",
            Rejection::LocalError => "local_error",
            Rejection::Dnsbl | Rejection::DnsblRcpt => "dnsbl",
            Rejection::EarlyTalker => "early_talker",
            Rejection::Pipelining => "pipelining",
            Rejection::Fcrdns => "fcrdns",
            Rejection::Helo => "helo",
            Rejection::Greylisted => "greylisted",
            Rejection::RateLimitedConnect | Rejection::RateLimited | Rejection::RateLimitedRcpt => "rate_limited",
            Rejection::MilterMail | Rejection::MilterRcpt | Rejection::MilterData => "milter",
        }
    }

    /// The `stage` label: the command refused (`connect`: the connection, instead of the
    /// greeting; `command`: whichever command came pipelined).
    pub fn stage(self) -> &'static str {
        match self {
            Rejection::Dnsbl | Rejection::EarlyTalker | Rejection::RateLimitedConnect => "connect",
            Rejection::Pipelining => "command",
            Rejection::AuthRequired
            | Rejection::SenderNotOwned
            | Rejection::Spf
            | Rejection::Helo
            | Rejection::RateLimited
            | Rejection::MilterMail => "mail",
            Rejection::RelayDenied
            | Rejection::UnknownUser
            | Rejection::RecipientPolicy
            | Rejection::TooManyRecipients
            | Rejection::DnsblRcpt
            | Rejection::Fcrdns
            | Rejection::Greylisted
            | Rejection::RateLimitedRcpt
            | Rejection::MilterRcpt => "rcpt",
            Rejection::Size
            | Rejection::Dmarc
            | Rejection::DmarcTemporary
            | Rejection::LocalError
            | Rejection::MilterData => "data",
        }
    }
}

/// What one delivery attempt to one recipient came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Delivered to a mailbox, or relayed to the next hop.
    Delivered,
    /// Failed temporarily; it will be tried again.
    Deferred,
    /// Failed permanently; the sender is notified.
    Bounced,
    /// Failed temporarily once too often (past `delivery.max_age`): given up.
    Expired,
}

impl Delivery {
    /// Every result.
    pub const ALL: [Delivery; 4] = [Delivery::Delivered, Delivery::Deferred, Delivery::Bounced, Delivery::Expired];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Deferred => "deferred",
            Delivery::Bounced => "bounced",
            Delivery::Expired => "expired",
        }
    }
}

/// Where a recipient is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// Into a local Maildir.
    Local,
    /// Over SMTP to another server.
    Remote,
}

impl DeliveryKind {
    /// Both kinds.
    pub const ALL: [DeliveryKind; 2] = [DeliveryKind::Local, DeliveryKind::Remote];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Local => "local",
            DeliveryKind::Remote => "remote",
        }
    }
}

/// Which side of a TLS session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A client connected to us.
    Inbound,
    /// We connected to another server.
    Outbound,
}

impl Direction {
    /// The `direction` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A message authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verification {
    /// SPF of the MAIL FROM identity (RFC 7208).
    Spf,
    /// One DKIM signature (RFC 6376); a message without one counts as `none`.
    Dkim,
    /// DMARC (RFC 7489).
    Dmarc,
    /// The ARC chain (RFC 8617).
    Arc,
}

impl Verification {
    /// The `method` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Spf => "spf",
            Verification::Dkim => "dkim",
            Verification::Dmarc => "dmarc",
            Verification::Arc => "arc",
        }
    }
}

/// A TLS version name as a label value from a closed set.
pub(crate) fn tls_version(version: &str) -> &'static str {
    const KNOWN: [&str; 4] = ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0"];
    KNOWN.iter().find(|k| **k == version).copied().unwrap_or("other")
}

/// A message authentication result (RFC 8601 §2.7 names) as a label value.
pub(crate) fn auth_result(result: &str) -> &'static str {
    const KNOWN: [&str; 8] = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"];
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(result.trim())).copied().unwrap_or("other")
}
