//! What the spool's benchmarks share: their settings from the environment and the envelope of
//! every message they commit.

use dakiya_spool::{BodyType, Envelope, Recipient, Spool};

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A one-recipient envelope with a fresh id of `spool`.
pub fn envelope(spool: &Spool) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: 1_700_000_000,
        sender: "sender@example.org".into(),
        client_ip: "192.0.2.1".into(),
        helo: "client.example.org".into(),
        body: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        dsn_ret: None,
        dsn_envid: None,
        prepend: None,
        recipients: vec![Recipient {
            address: "user@example.com".into(),
            original: "user@example.com".into(),
            orcpt: None,
            notify: None,
            mailbox: Some(("example.com".into(), "user".into())),
        }],
    }
}
