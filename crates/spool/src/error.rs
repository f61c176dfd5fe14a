//! The spool's error type.

use std::io;
use std::path::PathBuf;

use crate::QueueId;

/// An error from the spool. Every variant means the operation did not happen
/// (or, for a commit, that the message must not be acknowledged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"fsync"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No committed message has this id.
    #[error("queued message {0} not found")]
    NotFound(QueueId),
    /// A spool file could not be decoded.
    #[error("{}: corrupt spool file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A spool file was written by a format version this build cannot read.
    #[error("{}: unsupported spool format version {version:?}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: String,
    },
    /// Another process (or another `Spool` in this process) has the spool open.
    #[error("{}: spool is in use by another process", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A committed message already has this id (the clock went backwards);
    /// the message was not committed and the client should retry.
    #[error("queue id {0} is already in use")]
    IdInUse(QueueId),
    /// A previous `write` failed; the message cannot be committed.
    #[error("message writer failed earlier; message abandoned")]
    WriterFailed,
    /// [`MessageWriter::set_envelope`](crate::MessageWriter::set_envelope)
    /// was given an envelope with another id; nothing was changed.
    #[error("envelope of {envelope} given to the writer of message {writer}")]
    EnvelopeIdMismatch {
        /// The writer's queue id.
        writer: QueueId,
        /// The id in the envelope given.
        envelope: QueueId,
    },
    /// The envelope could not be encoded.
    #[error("encoding envelope: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Attaches an operation and a path to an `io::Error`.
pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SpoolError {
    move |source| SpoolError::Io { op, path: path.into(), source }
}

impl SpoolError {
    /// Whether the file system is out of space or the spool's owner out of quota (ENOSPC,
    /// EDQUOT): a condition that passes when space is freed, which the SMTP server reports
    /// as "mail system full" rather than as a general local error.
    pub fn is_full(&self) -> bool {
        match self {
            SpoolError::Io { source, .. } => is_full(source),
            _ => false,
        }
    }

    /// A copy for another member of a commit round that failed as a whole
    /// (`io::Error` is not `Clone`: kind and message are kept).
    pub(crate) fn duplicate(&self) -> SpoolError {
        match self {
            SpoolError::Io { op, path, source } => {
                SpoolError::Io { op, path: path.clone(), source: io::Error::new(source.kind(), source.to_string()) }
            }
            SpoolError::NotFound(id) => SpoolError::NotFound(id.clone()),
            SpoolError::IdInUse(id) => SpoolError::IdInUse(id.clone()),
            SpoolError::Corrupt { path, reason } => SpoolError::Corrupt { path: path.clone(), reason: reason.clone() },
            other => SpoolError::Io { op: "commit", path: PathBuf::new(), source: io::Error::other(other.to_string()) },
        }
    }
}

/// ENOSPC or EDQUOT, by kind (kept through [`SpoolError::duplicate`] and group commit, which
/// pass errors on as kind and text).
fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(source: io::Error) -> SpoolError {
        SpoolError::Io { op: "write", path: PathBuf::from("/spool/tmp/x"), source }
    }

    #[test]
    fn out_of_space_and_out_of_quota_are_full() {
        // ENOSPC and EDQUOT as the kernel reports them (Linux numbers).
        assert!(io(io::Error::from_raw_os_error(28)).is_full());
        assert!(io(io::Error::from_raw_os_error(122)).is_full());
        assert!(io(io::ErrorKind::StorageFull.into()).is_full());
        // A copy for another member of a commit round is still full.
        assert!(io(io::Error::from_raw_os_error(28)).duplicate().is_full());
    }

    #[test]
    fn other_failures_are_not_full() {
        assert!(!io(io::Error::from_raw_os_error(5)).is_full(), "EIO");
        assert!(!io(io::ErrorKind::PermissionDenied.into()).is_full());
        assert!(!SpoolError::WriterFailed.is_full());
    }
}
