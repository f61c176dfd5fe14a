//! The input of a notice: what happened to which recipients of one message.
//!
//! These types mirror the spool's envelope (`dakiya_spool::Envelope`,
//! `Recipient`, `RcptState`) without depending on it: the queue manager maps
//! one into the other, so this crate builds whatever the spool looks like.
//! The vocabulary (NOTIFY, RET, enhanced status codes) is `dakiya_proto`'s,
//! shared with the spool.

use std::io::Read;

pub use dakiya_proto::Enhanced;

/// A point in time with its UTC offset, as it is written into the notice.
pub type Time = chrono::DateTime<chrono::FixedOffset>;

/// The largest original message returned whole (`RET=FULL`): 10 MiB. A larger
/// one is returned as headers only, and the text part says so. A notice can
/// be relayed back through MTAs whose size limits we do not know; a bounce
/// that bounces for its size helps nobody.
pub const DEFAULT_RETURN_LIMIT: usize = 10 * 1024 * 1024;

/// Which notice to build. Decides the subject, the opening text and how much
/// of the original message is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Delivery failed permanently (or the message expired): a bounce.
    Failure,
    /// Delivery is delayed; we keep trying.
    Delay,
    /// Delivered (or relayed to a system that will not report), on request.
    Success,
}

/// DSN `RET=` (RFC 3461 §4.3), how much of the original a failure notice returns, and
/// `NOTIFY=` (RFC 3461 §4.1), which notices a recipient wants: the SMTP server's types.
pub use dakiya_proto::params::{Notify, Ret};

/// The `Action` of one recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Could not be delivered and will not be retried.
    Failed,
    /// Not yet delivered; still being retried.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not issue notifications.
    Relayed,
    /// Delivered to an alias or list that was expanded into several addresses.
    Expanded,
}

impl Action {
    /// The keyword written in the `Action` field.
    pub fn keyword(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// What happened to one recipient: one per-recipient group of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReport {
    /// The address we tried to deliver to (after any rewriting).
    pub final_recipient: String,
    /// The DSN `ORCPT=` parameter as `addr-type;address`, the address already
    /// xtext-decoded (e.g. `rfc822;user@example.org`), if the client gave one.
    pub original_recipient: Option<String>,
    /// The outcome.
    pub action: Action,
    /// The enhanced status code `class.subject.detail` (RFC 3463), e.g.
    /// `Enhanced(5, 1, 1)`. The class must be 2, 4 or 5.
    pub status: Enhanced,
    /// The host name of the remote MTA that gave the answer, if any.
    pub remote_mta: Option<String>,
    /// The diagnostic as `type; text`, e.g. `smtp; 550 5.1.1 no such user`.
    /// Without a type, `smtp` is assumed. Taken from remote servers, so it is
    /// untrusted: control characters and line breaks are removed.
    pub diagnostic: Option<String>,
    /// When delivery was last attempted.
    pub last_attempt: Option<Time>,
    /// For a delayed recipient: when we will stop trying.
    pub will_retry_until: Option<Time>,
}

/// Everything needed to build the notice for one message. See [`crate::build_dsn`].
pub struct DsnInput<'a> {
    /// Which notice to build.
    pub kind: Kind,
    /// Our host name: `Reporting-MTA`, and the right side of the notice's `Message-ID`.
    pub reporting_mta: &'a str,
    /// The notice's `From` address, usually `MAILER-DAEMON@` our host name.
    pub from: &'a str,
    /// The original envelope sender: the notice's `To`. Never empty — a message
    /// from the null reverse-path `<>` must not be notified (RFC 5321 §4.5.5).
    pub original_sender: &'a str,
    /// Our queue id of the original message; shown in the report and used in
    /// the notice's `Message-ID`.
    pub queue_id: &'a str,
    /// When we accepted the original message.
    pub arrival_date: Time,
    /// Now: the notice's `Date`.
    pub now: Time,
    /// DSN `ENVID=` (RFC 3461 §4.4), xtext-decoded, if the client gave one.
    pub envid: Option<&'a str>,
    /// DSN `RET=`, if the client gave one. Absent, a failure notice returns
    /// headers only; delay and success notices always do.
    pub ret: Option<Ret>,
    /// The original message as spooled (header section, blank line, body).
    pub original: &'a mut dyn Read,
    /// The largest original returned whole; [`DEFAULT_RETURN_LIMIT`] unless
    /// configured otherwise.
    pub return_limit: usize,
    /// The recipients to report on, in envelope order. At least one.
    pub recipients: &'a [RcptReport],
}
