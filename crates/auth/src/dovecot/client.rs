//! [`DovecotAuth`]: the tokio driver of [`proto`](super::proto) — connections to Dovecot's
//! auth socket, a timeout on every exchange, and a reconnect when a kept connection broke.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

use crate::Service;

use super::proto::{self, Handshake, LineReader, ProtoError, Request, Verdict};

/// Where Dovecot's auth server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DovecotTarget {
    /// A unix socket, e.g. `/run/dovecot/auth-client`.
    Unix(PathBuf),
    /// A TCP `host:port` (Dovecot's `inet_listener` in `service auth`).
    Inet(String),
}

/// Why Dovecot gave no verdict. The client gets `454 4.7.0`, never an accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DovecotError {
    /// Connecting, reading or writing failed, or the server closed the connection.
    #[error("dovecot auth {target}: {source}")]
    Io {
        /// The socket, as configured.
        target: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer within the timeout.
    #[error("dovecot auth {0}: no answer within the timeout")]
    Timeout(String),
    /// The server said something this client does not understand.
    #[error("dovecot auth {target}: {error}")]
    Protocol {
        /// The socket, as configured.
        target: String,
        /// What was wrong.
        error: ProtoError,
    },
    /// The passdb could not be asked (`FAIL ... temp`).
    #[error("dovecot auth {0}: temporary failure of the passdb")]
    TempFail(String),
}

/// One Dovecot auth server, shared by every connection of the server.
///
/// Up to `max_connections` checks run at once, each on its own connection (Dovecot delays
/// failures by `auth_failure_delay`, so one connection would let a password guesser hold up
/// everybody). Idle connections are kept and reused; a kept connection that turns out
/// broken is replaced by a fresh one once, then the check fails.
#[derive(Debug)]
pub struct DovecotAuth {
    target: DovecotTarget,
    timeout: Duration,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
    next_id: AtomicU32,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

#[derive(Debug)]
struct Conn {
    stream: Box<dyn Stream>,
    reader: LineReader,
}

impl DovecotAuth {
    /// A client of the auth server at `target`; `timeout` bounds connecting plus each
    /// check (it must exceed Dovecot's `auth_failure_delay`, 2 s by default).
    pub fn new(target: DovecotTarget, timeout: Duration, max_connections: usize) -> DovecotAuth {
        let permits = Semaphore::new(max_connections.max(1));
        DovecotAuth { target, timeout, permits, idle: Mutex::new(Vec::new()), next_id: AtomicU32::new(1) }
    }

    fn name(&self) -> String {
        match &self.target {
            DovecotTarget::Unix(p) => format!("unix:{}", p.display()),
            DovecotTarget::Inet(a) => format!("inet:{a}"),
        }
    }

    /// Asks Dovecot whether `password` is right for `user` logging in to `service` (sent as
    /// `service=`, so Dovecot's per-service passdb rules apply). `Ok(false)` for a refusal
    /// (Dovecot's `FAIL`), `Err` when there is no verdict.
    pub async fn check(
        &self,
        service: Service,
        user: &str,
        password: &str,
        remote: IpAddr,
        secured: bool,
    ) -> Result<bool, DovecotError> {
        let permit = tokio::time::timeout(self.timeout, self.permits.acquire()).await;
        let Ok(Ok(_permit)) = permit else { return Err(DovecotError::Timeout(self.name())) };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req = Request { id, user, password, service: service.as_str(), remote: Some(remote), secured };
        let Some(line) = proto::auth_line(&req) else { return Ok(false) };
        let kept = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let result = match kept {
            Some(conn) => match self.ask(conn, &line, id).await {
                Ok(done) => Ok(done),
                // The kept connection may have been closed by Dovecot meanwhile (a restart, its
                // idle timeout): try once on a new one. A slow answer is not retried.
                Err(DovecotError::Io { .. }) => self.ask_fresh(&line, id).await,
                Err(e) => Err(e),
            },
            None => self.ask_fresh(&line, id).await,
        };
        let (conn, verdict) = result?;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        match verdict {
            Verdict::Accepted => Ok(true),
            Verdict::Rejected => Ok(false),
            Verdict::TempFail => Err(DovecotError::TempFail(self.name())),
        }
    }

    async fn ask_fresh(&self, line: &str, id: u32) -> Result<(Conn, Verdict), DovecotError> {
        let conn = self.within(self.connect()).await?;
        self.ask(conn, line, id).await
    }

    async fn ask(&self, mut conn: Conn, line: &str, id: u32) -> Result<(Conn, Verdict), DovecotError> {
        let verdict = self.within(self.exchange(&mut conn, line, id)).await?;
        Ok((conn, verdict))
    }

    async fn within<T>(&self, fut: impl Future<Output = Result<T, DovecotError>>) -> Result<T, DovecotError> {
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| DovecotError::Timeout(self.name()))?
    }

    async fn connect(&self) -> Result<Conn, DovecotError> {
        let stream: Box<dyn Stream> = match &self.target {
            DovecotTarget::Unix(path) => Box::new(UnixStream::connect(path).await.map_err(|e| self.io(e))?),
            DovecotTarget::Inet(addr) => Box::new(TcpStream::connect(addr.as_str()).await.map_err(|e| self.io(e))?),
        };
        let mut conn = Conn { stream, reader: LineReader::default() };
        conn.stream.write_all(proto::hello(std::process::id()).as_bytes()).await.map_err(|e| self.io(e))?;
        let mut handshake = Handshake::default();
        loop {
            let line = self.read_line(&mut conn).await?;
            if handshake.feed(&line).map_err(|e| self.proto(e))? {
                return Ok(conn);
            }
        }
    }

    async fn exchange(&self, conn: &mut Conn, line: &str, id: u32) -> Result<Verdict, DovecotError> {
        conn.stream.write_all(line.as_bytes()).await.map_err(|e| self.io(e))?;
        loop {
            let reply = self.read_line(conn).await?;
            if let Some(verdict) = proto::reply(&reply, id).map_err(|e| self.proto(e))? {
                return Ok(verdict);
            }
        }
    }

    async fn read_line(&self, conn: &mut Conn) -> Result<String, DovecotError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(line) = conn.reader.next_line().map_err(|e| self.proto(e))? {
                return Ok(line);
            }
            let n = conn.stream.read(&mut buf).await.map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            conn.reader.push(&buf[..n]);
        }
    }

    fn io(&self, source: std::io::Error) -> DovecotError {
        DovecotError::Io { target: self.name(), source }
    }

    fn proto(&self, error: ProtoError) -> DovecotError {
        DovecotError::Protocol { target: self.name(), error }
    }
}
