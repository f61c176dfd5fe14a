//! Why a message could not be stored, and what the client hears about it.

use crate::logging::Repeated;
use dakiya_proto::{Enhanced, Reply};
use dakiya_spool::SpoolError;
use std::fmt;

/// A message that cannot be stored or prepared for storing.
#[derive(Debug)]
pub enum Failure {
    /// The spool refused (a full disk, an I/O error).
    Spool(SpoolError),
    /// The blocking task doing the work failed or was cancelled.
    Task(tokio::task::JoinError),
    /// The end of DATA came without a message being received (cannot happen).
    NoMessage,
}

impl From<SpoolError> for Failure {
    fn from(e: SpoolError) -> Failure {
        Failure::Spool(e)
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Failure {
        Failure::Task(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Spool(e) => e.fmt(f),
            Failure::Task(e) => e.fmt(f),
            Failure::NoMessage => f.write_str("no message in progress"),
        }
    }
}

impl Failure {
    /// Out of space or quota.
    pub fn is_full(&self) -> bool {
        matches!(self, Failure::Spool(e) if e.is_full())
    }

    /// The reply refusing the message: `452 4.3.1` when the file system is full, else 451
    /// 4.3.0 with `text`. Both are transient, so the client keeps the message and retries.
    pub fn reply(&self, text: &str) -> Reply {
        if self.is_full() {
            // RFC 3463 §3.4: X.3.1 "Mail system full"; RFC 5321 §4.2.3: 452 "Requested action
            // not taken: insufficient system storage".
            Reply::new(452, Enhanced(4, 3, 1), "Insufficient system storage, try again later")
        } else {
            // RFC 3463 §3.4: X.3.0 "Other or undefined mail system status"; RFC 5321 §4.2.3:
            // 451 "Requested action aborted: local error in processing".
            Reply::new(451, Enhanced(4, 3, 0), text)
        }
    }

    /// Logs the failure as a line of kind `kind` (rate-limited: a full disk fails every
    /// message) and returns [`Failure::reply`].
    pub fn refuse(&self, kind: &Repeated, text: &str) -> Reply {
        if matches!(self, Failure::Task(e) if e.is_cancelled()) {
            // Shutting down: the runtime cancelled the task; nothing failed.
            tracing::debug!(error = %self, "{}", kind.what());
        } else if kind.admit() {
            tracing::error!(error = %self, full = self.is_full(), "{}", kind.what());
        }
        self.reply(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::path::PathBuf;

    fn spool(e: io::Error) -> Failure {
        Failure::Spool(SpoolError::Io { op: "write", path: PathBuf::from("tmp/x.new"), source: e })
    }

    #[test]
    fn a_task_cancelled_by_shutdown_is_not_logged_as_an_error() {
        use crate::logging::Repeated;
        static KIND: Repeated = Repeated::new("cannot store message", tracing::Level::ERROR);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let cancelled = rt.block_on(async {
            let task = tokio::spawn(std::future::pending::<()>());
            task.abort();
            task.await.unwrap_err()
        });
        let log = crate::logging::capture(|| {
            let reply = Failure::Task(cancelled).refuse(&KIND, "Temporary local problem");
            assert_eq!(reply.to_wire(), "451 4.3.0 Temporary local problem\r\n");
            Failure::NoMessage.refuse(&KIND, "x");
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].starts_with("DEBUG cannot store message"), "{log}");
        assert!(lines[1].starts_with("ERROR cannot store message"), "{log}");
    }

    #[test]
    fn a_full_disk_is_452_4_3_1() {
        for errno in [28, 122] {
            let reply = spool(io::Error::from_raw_os_error(errno)).reply("Temporary local problem");
            assert_eq!(reply.to_wire(), "452 4.3.1 Insufficient system storage, try again later\r\n");
        }
    }

    #[test]
    fn other_storage_failures_stay_451_4_3_0() {
        let reply = spool(io::Error::from_raw_os_error(5)).reply("Temporary local problem");
        assert_eq!(reply.to_wire(), "451 4.3.0 Temporary local problem\r\n");
        assert_eq!(Failure::NoMessage.reply("x").to_wire(), "451 4.3.0 x\r\n");
        assert_eq!(Failure::Spool(SpoolError::WriterFailed).reply("x").to_wire(), "451 4.3.0 x\r\n");
    }
}
