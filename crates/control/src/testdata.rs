//! A queued message to build views from, for tests here and in `dakiya` (the `testdata`
//! feature).

use dakiya_spool::{
    BodyType, Enhanced, Envelope, FailureDetail, Notify, QueueId, QueuedMessage, RcptState, Recipient, Ret,
};

/// The queue id of [`sample`].
pub const ID: &str = "0655E5A000000001";

fn id() -> QueueId {
    ID.parse().expect("a valid queue id")
}

/// A message with three recipients: one delivered (to a local mailbox), one deferred after
/// two attempts, one without a status record (pending).
pub fn sample() -> QueuedMessage {
    let rcpt = |address: &str, mailbox: Option<(&str, &str)>| Recipient {
        address: address.into(),
        original: address.to_uppercase(),
        orcpt: None,
        notify: Some(Notify { success: false, failure: true, delay: false }),
        mailbox: mailbox.map(|(d, m)| (d.into(), m.into())),
    };
    QueuedMessage {
        envelope: Envelope {
            id: id(),
            received_at: 1_000,
            sender: "a@remote.test".into(),
            client_ip: "192.0.2.1".into(),
            helo: "client.test".into(),
            body: BodyType::EightBitMime,
            smtputf8: false,
            require_tls: false,
            dsn_ret: Some(Ret::Hdrs),
            dsn_envid: Some("env-1".into()),
            prepend: None,
            recipients: vec![
                rcpt("alice@example.test", Some(("example.test", "alice"))),
                rcpt("bob@elsewhere.test", None),
                rcpt("carol@elsewhere.test", None),
            ],
        },
        states: vec![
            RcptState::Delivered { at: 1_001 },
            RcptState::Deferred {
                attempts: 2,
                next_attempt: 1_900,
                error: "451 4.4.1 connection refused".into(),
                detail: Some(FailureDetail::new(Enhanced(4, 4, 1))),
                delay_notified: false,
            },
        ],
        size: 2048,
        held: false,
    }
}
