//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// An error from the user store or password hashing.
///
/// No variant ever holds a password or any part of one, so every error may be logged or
/// printed as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A file system operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved (the users file, its lock or temporary file, or
        /// the directory holding them).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The users file has a line that cannot be read.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The users file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line (never its content: it holds a hash).
        reason: String,
    },
    /// The user name is not an acceptable address; the string says why.
    #[error("invalid user name: {0}")]
    InvalidUser(String),
    /// The password is not acceptable (empty, too long, or holds a NUL).
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// `add` of a user that is already in the store.
    #[error("user {0} already exists")]
    UserExists(String),
    /// `set_password` or `remove` of a user that is not in the store.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// Hashing failed, or a stored hash could not be used.
    #[error("password hash: {0}")]
    Hash(String),
    /// A password check on the [`CheckPool`](crate::CheckPool) did not complete.
    #[error("password check: {0}")]
    Check(#[from] crate::PoolError),
    /// Dovecot's auth server gave no verdict (`[auth] backend = "dovecot"`).
    #[error("{0}")]
    Dovecot(Box<crate::DovecotError>),
}

/// Attaches a path to an `io::Error`.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> AuthError {
    move |source| AuthError::Io { path: path.into(), source }
}
