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
