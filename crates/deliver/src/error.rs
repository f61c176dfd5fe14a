//! The outcome type shared by delivery agents.

use std::io;

/// Whether a failed delivery may succeed if tried again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Try again later (RFC 5321 4yz): disk full, permissions, any I/O error.
    Temporary,
    /// Retrying cannot help (RFC 5321 5yz): bounce the recipient.
    Permanent,
}

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliverError {
    /// Retry or bounce.
    pub kind: FailureKind,
    /// Human-readable description, including the cause; fit for logs and DSNs.
    message: String,
    /// The I/O error behind it, if any.
    #[source]
    source: Option<io::Error>,
    /// The mailbox is over its quota (RFC 3463 X.2.2).
    full: bool,
}

impl DeliverError {
    /// A temporary failure caused by an I/O error while doing `what`.
    pub fn io(what: impl std::fmt::Display, source: io::Error) -> DeliverError {
        DeliverError {
            kind: FailureKind::Temporary,
            message: format!("{what}: {source}"),
            source: Some(source),
            full: false,
        }
    }

    /// A temporary failure without an underlying I/O error. Takes any
    /// `Display`, so `map_err(DeliverError::temporary)` works on other errors.
    pub fn temporary(message: impl std::fmt::Display) -> DeliverError {
        DeliverError { kind: FailureKind::Temporary, message: message.to_string(), source: None, full: false }
    }

    /// A permanent failure.
    pub fn permanent(message: impl std::fmt::Display) -> DeliverError {
        DeliverError { kind: FailureKind::Permanent, message: message.to_string(), source: None, full: false }
    }

    /// The mailbox is over its quota: temporary (the owner may make room), bounced as
    /// 5.2.2 when the message is too old (RFC 3463 §3.3).
    pub fn mailbox_full(message: impl std::fmt::Display) -> DeliverError {
        DeliverError { full: true, ..DeliverError::temporary(message) }
    }

    /// Whether this is [`mailbox_full`](Self::mailbox_full).
    pub fn is_mailbox_full(&self) -> bool {
        self.full
    }

    /// Whether the delivery should be retried later.
    pub fn is_temporary(&self) -> bool {
        self.kind == FailureKind::Temporary
    }

    /// The I/O error behind the failure, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_temporary_and_keep_their_cause() {
        let e = DeliverError::io("create x", io::Error::from(io::ErrorKind::StorageFull));
        assert!(e.is_temporary());
        assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::StorageFull);
        assert!(e.to_string().starts_with("create x: "));
        assert!(std::error::Error::source(&e).is_some());
        let p = DeliverError::permanent("no such mailbox");
        assert_eq!(p.kind, FailureKind::Permanent);
        assert_eq!(p.to_string(), "no such mailbox");
        let t = DeliverError::temporary(io::Error::other("spool gone"));
        assert!(t.is_temporary() && t.io_error().is_none());
        assert_eq!(t.to_string(), "spool gone");
    }
}
