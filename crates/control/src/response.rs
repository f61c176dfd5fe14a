//! Responses: what the server answers, as one JSON line (docs/queue-cli.md).

use crate::stats::QueueStats;
use crate::status::ServerStatus;
use dakiya_spool::{BodyType, FailureDetail, Notify, QueueId, Ret};
use serde::{Deserialize, Serialize};

/// The one response line. `ok` says whether the request was carried out; the other fields
/// belong to particular commands and are left out when not used.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Response {
    /// The request was carried out.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The server's clock (unix seconds) when it answered `list`, `show` or `stats`; ages and
    /// next attempts are relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<u64>,
    /// `list`: every queued message, in queue id order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
    /// `show`: the message, with `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageView>,
    /// `retry`, `hold`, `release`, `delete`: how many messages the request affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<usize>,
    /// `stats`: the queue by destination domain, age and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<QueueStats>,
    /// `reload`: what the reload changed, when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadSummary>,
    /// `status`: the server at a glance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServerStatus>,
}

/// What a configuration reload applied (`dakiya reload`): the listeners it started and
/// stopped, and the size of the configuration now in force.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The configuration file read.
    pub file: String,
    /// Listeners started, as `ADDRESS ROLE` (the bound address).
    pub listeners_added: Vec<String>,
    /// Listeners stopped (their open sessions finish), as `ADDRESS ROLE`.
    pub listeners_removed: Vec<String>,
    /// Local domains now.
    pub domains: usize,
    /// Mailboxes in all local domains now.
    pub mailboxes: usize,
    /// Aliases now.
    pub aliases: usize,
}

impl Response {
    /// A refusal with this text.
    pub fn error(text: impl Into<String>) -> Response {
        Response { ok: false, error: Some(text.into()), ..Response::default() }
    }

    /// The response as one JSON line, without the line feed (what the server sends).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"ok":false,"error":"internal error"}"#.into())
    }

    /// Parses one response line (without its line feed). Never does I/O.
    pub fn parse(line: &[u8]) -> Result<Response, ResponseError> {
        serde_json::from_slice(line).map_err(|e| ResponseError(e.to_string()))
    }
}

/// A response line that is not a [`Response`]; the text is serde's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResponseError(pub String);

/// One queued message as `list` and `show` report it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageView {
    /// The queue id.
    pub id: QueueId,
    /// When the message was accepted (unix seconds).
    pub received_at: u64,
    /// Seconds since `received_at`.
    pub age: u64,
    /// The reverse-path without angle brackets; `""` is the null sender `<>`.
    pub sender: String,
    /// Body size in bytes.
    pub size: u64,
    /// Held by the operator: not delivered until released.
    pub held: bool,
    /// Every recipient, in RCPT order.
    pub recipients: Vec<RcptView>,
    /// `show` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<MessageDetail>,
}

/// What `show` adds to a message: the rest of the envelope and the header section.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageDetail {
    /// The client's address.
    pub client_ip: String,
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// `BODY=`, spelled as in the spool (`dakiya_spool::codec`).
    #[serde(with = "dakiya_spool::codec::body_type")]
    pub body: BodyType,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// DSN `RET=`, spelled as in the spool.
    #[serde(default, with = "dakiya_spool::codec::ret")]
    pub dsn_ret: Option<Ret>,
    /// DSN `ENVID=`.
    pub dsn_envid: Option<String>,
    /// The header section (lines joined with `\n`, invalid UTF-8 replaced).
    pub headers: String,
    /// No blank line was found in the first [`MAX_HEADERS`](crate::MAX_HEADERS) bytes.
    pub headers_truncated: bool,
}

/// A recipient's delivery state, by name.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    /// Not tried yet.
    Pending,
    /// Tried, will be tried again.
    Deferred,
    /// Delivered.
    Delivered,
    /// Failed for good.
    Failed,
}

/// One recipient as `list` and `show` report it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RcptView {
    /// The address delivered to.
    pub address: String,
    /// Where delivery stands.
    pub state: StateName,
    /// Deferred: attempts made so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Deferred: when the next attempt is due (unix seconds). Pending recipients are due now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
    /// Delivered or failed: when (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// Deferred or failed: the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `show` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RcptDetail>,
}

/// What `show` adds to a recipient.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RcptDetail {
    /// The RCPT TO address as the client gave it.
    pub original: String,
    /// DSN `ORCPT=`.
    pub orcpt: Option<String>,
    /// `None`: NOTIFY not given; [`Notify::NEVER`], written `[]`: NOTIFY=NEVER. Spelled as
    /// in the spool.
    #[serde(default, with = "dakiya_spool::codec::notify")]
    pub notify: Option<Notify>,
    /// `domain/mailbox` for local delivery; `None` for remote delivery.
    pub mailbox: Option<String>,
    /// The DSN fields of the last failure.
    pub failure: Option<FailureDetail>,
    /// Deferred: a delay DSN was sent. Failed: the sender was told.
    pub notified: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_spool::Enhanced;

    #[test]
    fn error_response_is_one_small_line() {
        let line = Response::error("no message X in the queue").encode();
        assert_eq!(line, r#"{"ok":false,"error":"no message X in the queue"}"#);
        assert_eq!(Response::parse(line.as_bytes()), Ok(Response::error("no message X in the queue")));
    }

    #[test]
    fn a_full_response_round_trips() {
        let rcpt = RcptView {
            address: "bob@elsewhere.test".into(),
            state: StateName::Deferred,
            attempts: Some(2),
            next_attempt: Some(1_900),
            at: None,
            error: Some("451 4.4.1 connection refused".into()),
            detail: Some(RcptDetail {
                original: "BOB@ELSEWHERE.TEST".into(),
                orcpt: None,
                notify: Some(Notify { success: false, failure: true, delay: true }),
                mailbox: None,
                failure: Some(FailureDetail::new(Enhanced(4, 4, 1))),
                notified: false,
            }),
        };
        let message = MessageView {
            id: "0655E5A000000001".parse().unwrap(),
            received_at: 1_000,
            age: 200,
            sender: String::new(),
            size: 2048,
            held: true,
            recipients: vec![rcpt],
            detail: Some(MessageDetail {
                client_ip: "192.0.2.1".into(),
                helo: "client.test".into(),
                body: BodyType::EightBitMime,
                smtputf8: false,
                dsn_ret: Some(Ret::Hdrs),
                dsn_envid: None,
                headers: "Subject: \u{1b}[31m\n".into(),
                headers_truncated: false,
            }),
        };
        let response = Response { ok: true, now: Some(1_200), message: Some(message), ..Response::default() };
        let line = response.encode();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(Response::parse(line.as_bytes()), Ok(response));
    }

    /// A `show` response as the server wrote it before NOTIFY, RET, BODY and the status code
    /// became `dakiya_proto`'s types: the same values encode to the same line.
    const SHOW_LINE: &str = r#"{"ok":true,"now":1200,"message":{"id":"0655E5A000000001","received_at":1000,"age":200,"sender":"","size":2048,"held":true,"recipients":[{"address":"bob@elsewhere.test","state":"deferred","attempts":2,"next_attempt":1900,"error":"451 4.4.1 connection refused","detail":{"original":"BOB@ELSEWHERE.TEST","orcpt":null,"notify":["failure","delay"],"mailbox":null,"failure":{"status":"4.4.1","remote_mta":"mx.elsewhere.test [192.0.2.9]","diagnostic":"smtp; 451 4.4.1 refused"},"notified":false}},{"address":"carol@elsewhere.test","state":"failed","at":1950,"error":"550 5.1.1 no","detail":{"original":"carol@elsewhere.test","orcpt":"rfc822;carol@elsewhere.test","notify":[],"mailbox":"elsewhere.test/carol","failure":{"status":"5.1.10"},"notified":true}},{"address":"dave@x.test","state":"pending","detail":{"original":"dave@x.test","orcpt":null,"notify":null,"mailbox":null,"failure":null,"notified":false}}],"detail":{"client_ip":"192.0.2.1","helo":"client.test","body":"eight_bit_mime","smtputf8":false,"dsn_ret":"hdrs","dsn_envid":null,"headers":"Subject: \u001b[31m\n","headers_truncated":false}}}"#;

    #[test]
    fn the_show_line_is_unchanged() {
        let detail =
            |original: &str, orcpt: Option<&str>, notify, mailbox: Option<&str>, failure, notified| RcptDetail {
                original: original.into(),
                orcpt: orcpt.map(Into::into),
                notify,
                mailbox: mailbox.map(Into::into),
                failure,
                notified,
            };
        let bob = RcptView {
            address: "bob@elsewhere.test".into(),
            state: StateName::Deferred,
            attempts: Some(2),
            next_attempt: Some(1_900),
            at: None,
            error: Some("451 4.4.1 connection refused".into()),
            detail: Some(detail(
                "BOB@ELSEWHERE.TEST",
                None,
                Some(Notify { success: false, failure: true, delay: true }),
                None,
                Some(FailureDetail {
                    status: Enhanced(4, 4, 1),
                    remote_mta: Some("mx.elsewhere.test [192.0.2.9]".into()),
                    diagnostic: Some("smtp; 451 4.4.1 refused".into()),
                }),
                false,
            )),
        };
        let carol = RcptView {
            address: "carol@elsewhere.test".into(),
            state: StateName::Failed,
            attempts: None,
            next_attempt: None,
            at: Some(1_950),
            error: Some("550 5.1.1 no".into()),
            detail: Some(detail(
                "carol@elsewhere.test",
                Some("rfc822;carol@elsewhere.test"),
                Some(Notify::NEVER),
                Some("elsewhere.test/carol"),
                Some(FailureDetail::new(Enhanced(5, 1, 10))),
                true,
            )),
        };
        let dave = RcptView {
            address: "dave@x.test".into(),
            state: StateName::Pending,
            attempts: None,
            next_attempt: None,
            at: None,
            error: None,
            detail: Some(detail("dave@x.test", None, None, None, None, false)),
        };
        let message = MessageView {
            id: "0655E5A000000001".parse().unwrap(),
            received_at: 1_000,
            age: 200,
            sender: String::new(),
            size: 2048,
            held: true,
            recipients: vec![bob, carol, dave],
            detail: Some(MessageDetail {
                client_ip: "192.0.2.1".into(),
                helo: "client.test".into(),
                body: BodyType::EightBitMime,
                smtputf8: false,
                dsn_ret: Some(Ret::Hdrs),
                dsn_envid: None,
                headers: "Subject: \u{1b}[31m\n".into(),
                headers_truncated: false,
            }),
        };
        let response = Response { ok: true, now: Some(1_200), message: Some(message), ..Response::default() };
        assert_eq!(response.encode(), SHOW_LINE);
        assert_eq!(Response::parse(SHOW_LINE.as_bytes()), Ok(response.clone()));
        // The other BODY and RET values, as written before.
        let mut other = response.message.unwrap().detail.unwrap();
        other.body = BodyType::SevenBit;
        other.dsn_ret = Some(Ret::Full);
        let line = r#"{"client_ip":"192.0.2.1","helo":"client.test","body":"seven_bit","smtputf8":false,"dsn_ret":"full","dsn_envid":null,"headers":"Subject: \u001b[31m\n","headers_truncated":false}"#;
        assert_eq!(serde_json::to_string(&other).unwrap(), line);
        other.body = BodyType::EightBitMime;
        other.dsn_ret = None;
        let line = r#"{"client_ip":"192.0.2.1","helo":"client.test","body":"eight_bit_mime","smtputf8":false,"dsn_ret":null,"dsn_envid":null,"headers":"Subject: \u001b[31m\n","headers_truncated":false}"#;
        assert_eq!(serde_json::to_string(&other).unwrap(), line);
    }

    /// A `stats` response as documented in docs/queue-cli.md.
    const STATS_LINE: &str = r#"{"ok":true,"now":1200,"stats":{"buckets":[300,600,1200,2400,4800,9600,19200,38400,76800],"total":{"messages":3,"ages":[2,0,1,0,0,0,0,0,0,0],"recipients":3,"pending":1,"deferred":1,"held":1},"domains":[{"domain":"remote.test","local":false,"messages":2,"ages":[1,0,1,0,0,0,0,0,0,0],"recipients":2,"pending":0,"deferred":1,"held":1},{"domain":"example.test","local":true,"messages":1,"ages":[1,0,0,0,0,0,0,0,0,0],"recipients":1,"pending":1,"deferred":0,"held":0}],"more_domains":0}}"#;

    #[test]
    fn the_stats_line_round_trips() {
        use crate::queue_stats;
        use dakiya_spool::RcptState;
        let sample = crate::testdata::sample;
        // alice (local) pending, bob and carol delivered; 200 s old.
        let mut fresh = sample();
        fresh.states = vec![RcptState::Pending, RcptState::Delivered { at: 1_100 }, RcptState::Delivered { at: 1_100 }];
        // alice delivered, bob@remote.test deferred but held; 700 s old.
        let mut held = sample();
        held.envelope.id = "0655E5A000000002".parse().unwrap();
        held.envelope.received_at = 500;
        held.envelope.recipients[1].address = "bob@Remote.TEST".into();
        held.envelope.recipients.truncate(2);
        held.held = true;
        // dan@remote.test deferred; 100 s old.
        let mut other = sample();
        other.envelope.id = "0655E5A000000003".parse().unwrap();
        other.envelope.received_at = 1_100;
        other.envelope.recipients = vec![other.envelope.recipients[1].clone()];
        other.envelope.recipients[0].address = "dan@remote.test".into();
        other.states.remove(0);
        let stats = queue_stats([&fresh, &held, &other], 1_200, Some(20));
        let response = Response { ok: true, now: Some(1_200), stats: Some(stats), ..Response::default() };
        assert_eq!(response.encode(), STATS_LINE);
        assert_eq!(Response::parse(STATS_LINE.as_bytes()), Ok(response));
    }

    #[test]
    fn unreadable_responses_are_errors() {
        for line in [&b""[..], b"{", b"[]", b"{\"ok\":1}", b"{\"ok\":true,\"now\":-1}", b"\xff"] {
            assert!(Response::parse(line).is_err(), "{line:?}");
        }
        // Fields a newer server may add are ignored.
        assert_eq!(Response::parse(br#"{"ok":true,"later":1}"#), Ok(Response { ok: true, ..Response::default() }));
    }
}
