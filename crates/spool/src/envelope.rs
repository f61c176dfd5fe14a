//! The envelope of a queued message and the per-recipient delivery state.

use dakiya_proto::Enhanced;
use dakiya_proto::params::{BodyType, Notify, Ret};
use serde::{Deserialize, Serialize};

use crate::QueueId;

/// The SMTP envelope of a message and everything the server learned while
/// receiving it. Stored as one JSON line in the message file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The queue id; also names the message's files.
    pub id: QueueId,
    /// When the message was accepted, in unix seconds.
    pub received_at: u64,
    /// The MAIL FROM reverse-path without angle brackets; `""` is the null
    /// reverse-path `<>` (RFC 5321 §4.5.5: bounces must not be bounced).
    pub sender: String,
    /// The client's IP address, as text.
    pub client_ip: String,
    /// The EHLO/HELO argument given by the client.
    pub helo: String,
    /// The declared body type (RFC 6152 `BODY=`).
    #[serde(with = "crate::codec::body_type")]
    pub body: BodyType,
    /// Whether the client asked for SMTPUTF8 (RFC 6531).
    #[serde(default)]
    pub smtputf8: bool,
    /// `REQUIRETLS` was given (RFC 8689 §4.1): relay only over authenticated TLS to next
    /// hops that offer it. Written only when set; older spools lack it (false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
    /// DSN `RET=` (RFC 3461 §4.3).
    #[serde(default, with = "crate::codec::ret")]
    pub dsn_ret: Option<Ret>,
    /// DSN `ENVID=` (RFC 3461 §4.4), as given (xtext-decoded by the caller).
    #[serde(default)]
    pub dsn_envid: Option<String>,
    /// The recipients, in RCPT TO order; status records refer to them by index.
    pub recipients: Vec<Recipient>,
    /// Header fields to put on top of the message when it is delivered or relayed
    /// (`Authentication-Results:`, `DKIM-Signature:`, ARC), each ending in CRLF; decided at
    /// the end of DATA, after the body was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend: Option<String>,
}

/// One accepted recipient.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Recipient {
    /// The final destination address (after any rewriting).
    pub address: String,
    /// The RCPT TO address exactly as the client gave it.
    pub original: String,
    /// DSN `ORCPT=` (RFC 3461 §4.2), if given.
    #[serde(default)]
    pub orcpt: Option<String>,
    /// DSN `NOTIFY=` (RFC 3461 §4.1): `None` = not given, `Some(Notify::NEVER)` = NEVER.
    #[serde(default, with = "crate::codec::notify")]
    pub notify: Option<Notify>,
    /// `(domain, mailbox)` for local delivery; `None` for remote delivery.
    #[serde(default)]
    pub mailbox: Option<(String, String)>,
}

/// The delivery state of one recipient. Recorded in the message's status log;
/// the last record for a recipient wins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RcptState {
    /// Not yet attempted (the state of every recipient without a record).
    Pending,
    /// Delivered at `at` (unix seconds).
    Delivered {
        /// When, in unix seconds.
        at: u64,
    },
    /// Temporarily failed `attempts` times; try again at `next_attempt`.
    Deferred {
        /// Attempts made so far.
        attempts: u32,
        /// When to try next, in unix seconds.
        next_attempt: u64,
        /// The last error, for logs and DSNs.
        error: String,
        /// The DSN fields of the last failure, when known.
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::codec::deferred_detail")]
        detail: Option<FailureDetail>,
        /// A delay notice (DSN, RFC 3464 `Action: delayed`) has been sent for this recipient.
        #[serde(default, skip_serializing_if = "is_false")]
        delay_notified: bool,
    },
    /// Permanently failed at `at` (unix seconds).
    Failed {
        /// When, in unix seconds.
        at: u64,
        /// The error, for logs and DSNs.
        error: String,
        /// The DSN fields of the failure, when known.
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::codec::failed_detail")]
        detail: Option<FailureDetail>,
        /// The sender has been told (a failure DSN was queued), or needs no notice.
        #[serde(default, skip_serializing_if = "is_false")]
        notified: bool,
    },
}

/// What a delivery status notification reports about a failure (RFC 3464 §2.3).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FailureDetail {
    /// The enhanced status code (RFC 3463), written as `"5.1.1"`. In a recipient state an
    /// unreadable one reads as X.0.0 (see `codec`).
    #[serde(with = "crate::codec::enhanced")]
    pub status: Enhanced,
    /// The remote MTA that answered (`Remote-MTA`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_mta: Option<String>,
    /// The remote reply as `smtp; 550 5.1.1 text` (`Diagnostic-Code`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
}

impl FailureDetail {
    /// A detail with only a status: no remote MTA answered, no diagnostic.
    pub fn new(status: Enhanced) -> FailureDetail {
        FailureDetail { status, remote_mta: None, diagnostic: None }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl RcptState {
    /// Whether the state is final (delivered or failed): nothing more to do.
    pub fn is_final(&self) -> bool {
        matches!(self, RcptState::Delivered { .. } | RcptState::Failed { .. })
    }
}

/// A committed message as found in the spool.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedMessage {
    /// The envelope as committed.
    pub envelope: Envelope,
    /// The last recorded state of each recipient, index-aligned with
    /// `envelope.recipients`.
    pub states: Vec<RcptState>,
    /// The size of the body in bytes.
    pub size: u64,
    /// Held by the operator (`dakiya queue hold`): not delivered until released.
    pub held: bool,
}
