//! [`Lmtp`]: local delivery to an LMTP server (RFC 2033, e.g. Dovecot's `lmtp` service) over
//! a unix or TCP socket, driving the same sans-IO client as outbound SMTP in its LMTP mode.
//! Each accepted recipient gets its own reply after the content; connections are kept and
//! reused for the next message.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use dakiya_proto::Enhanced;
use dakiya_proto::client::{
    Client, ClientConfig, ClientEvent, Failure, FailureKind, Job, Outcome, Phase, RecipientOutcome,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

use crate::body::Stuffed;
use tokio::time::{Instant, timeout, timeout_at};

/// How much is read from the socket at a time (replies are bounded by the client's parser).
const READ_CHUNK: usize = 8 * 1024;
/// Where the LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    /// A unix socket, e.g. `/run/dovecot/lmtp`.
    Unix(PathBuf),
    /// A TCP `host:port`, e.g. `127.0.0.1:24`.
    Inet(String),
}

impl std::fmt::Display for LmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LmtpTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            LmtpTarget::Inet(a) => write!(f, "inet:{a}"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open LMTP session.
struct Session {
    client: Client,
    io: Box<dyn Io>,
    input: Vec<u8>,
}

/// An LMTP server and the sessions kept open to it. `Send + Sync`: share one.
pub struct Lmtp {
    target: LmtpTarget,
    helo_name: String,
    connect_timeout: Duration,
    permits: Semaphore,
    idle: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Lmtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lmtp").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Lmtp {
    /// Delivers to `target`, greeting with `helo_name`, at most `max_sessions` at once.
    pub fn new(
        target: LmtpTarget,
        helo_name: impl Into<String>,
        connect_timeout: Duration,
        max_sessions: usize,
    ) -> Lmtp {
        Lmtp {
            target,
            helo_name: helo_name.into(),
            connect_timeout,
            permits: Semaphore::new(max_sessions.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The server, for logs (`unix:/run/dovecot/lmtp`).
    pub fn target(&self) -> &LmtpTarget {
        &self.target
    }

    /// Sends `message` (dot-stuffed on the way) for `job`'s recipients; returns each
    /// recipient's result in the job's order. A recipient is `Delivered` only on its own
    /// 2xx reply after the content (RFC 2033 §4.2).
    pub async fn deliver(&self, job: &Job, message: &[u8]) -> Vec<RecipientOutcome> {
        let n = job.recipients.len();
        let Ok(_permit) = self.permits.acquire().await else {
            return vec![RecipientOutcome::Temporary(self.unreachable("shutting down")); n];
        };
        let kept = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if let Some(mut session) = kept
            && session.client.next_job(job.clone()).is_ok()
        {
            let outcome = self.run(&mut session, message).await;
            // A kept session that the server closed meanwhile (its idle timeout) fails before
            // the message was named: try once on a new one.
            if !stale(&outcome) {
                return self.settle(session, outcome, n);
            }
        }
        let mut session = match self.connect(job.clone()).await {
            Ok(session) => session,
            Err(reason) => return vec![RecipientOutcome::Temporary(self.unreachable(&reason)); n],
        };
        let outcome = self.run(&mut session, message).await;
        self.settle(session, outcome, n)
    }

    /// Keeps the session if it can take another job; spreads a whole-job outcome over the
    /// recipients.
    fn settle(&self, session: Session, outcome: Outcome, n: usize) -> Vec<RecipientOutcome> {
        if session.client.is_reusable() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(session);
        }
        match outcome {
            Outcome::Recipients(all) => all,
            Outcome::Temporary(f) => vec![RecipientOutcome::Temporary(f); n],
            // A refused greeting or LHLO is about the server, not the message (RFC 5321 §5.1
            // reasoning): the mail waits until the local delivery agent works again.
            Outcome::Permanent(f) if f.phase.is_session_setup() => vec![RecipientOutcome::Temporary(f); n],
            Outcome::Permanent(f) => vec![RecipientOutcome::Permanent(f); n],
            other => {
                let f = self.unreachable(&format!("unexpected result {other:?}"));
                vec![RecipientOutcome::Temporary(f); n]
            }
        }
    }

    /// RFC 3463 X.4.1 "no answer from host": the server could not be reached; temporary.
    fn unreachable(&self, reason: &str) -> Failure {
        Failure {
            phase: Phase::Greeting,
            kind: FailureKind::Connection,
            status: Enhanced(4, 4, 1),
            reply: None,
            reason: format!("LMTP {}: {reason}", self.target),
        }
    }

    async fn connect(&self, job: Job) -> Result<Session, String> {
        let io: Box<dyn Io> = match &self.target {
            LmtpTarget::Unix(path) => match timeout(self.connect_timeout, UnixStream::connect(path)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("connection timed out".into()),
            },
            LmtpTarget::Inet(addr) => match timeout(self.connect_timeout, TcpStream::connect(addr.as_str())).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("connection timed out".into()),
            },
        };
        let client = Client::new(ClientConfig::lmtp(self.helo_name.clone()), job);
        Ok(Session { client, io, input: Vec::new() })
    }

    /// Runs the dialog until the job is over; every read bounded by the phase's timeout.
    async fn run(&self, s: &mut Session, message: &[u8]) -> Outcome {
        let mut deadline = None;
        loop {
            let event = s.client.poll(&mut s.input);
            if !matches!(event, ClientEvent::NeedInput) {
                deadline = None;
            }
            match event {
                ClientEvent::Write(bytes) => {
                    let bytes = bytes.to_vec();
                    write(s, &bytes, s.client.phase().timeout()).await;
                }
                ClientEvent::NeedInput => {
                    let phase = s.client.phase();
                    let at = *deadline.get_or_insert_with(|| Instant::now() + phase.timeout());
                    read(s, at).await;
                }
                ClientEvent::SendBody => send_body(s, message).await,
                ClientEvent::Done(outcome) => return outcome,
                ClientEvent::Closed => return Outcome::Temporary(self.unreachable("session closed early")),
                _ => s.client.connection_lost("unexpected state of the LMTP client"),
            }
        }
    }
}

/// A failure of a reused session before the message was named: its connection had gone.
fn stale(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Temporary(f) if f.kind == FailureKind::Connection && matches!(f.phase, Phase::Rset | Phase::Mail))
}

async fn write(s: &mut Session, bytes: &[u8], limit: Duration) {
    match timeout(limit, s.io.write_all(bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => s.client.connection_lost(&format!("write error: {e}")),
        Err(_) => s.client.connection_lost("timed out writing to the LMTP server"),
    }
}

async fn read(s: &mut Session, deadline: Instant) {
    let mut buf = [0u8; READ_CHUNK];
    match timeout_at(deadline, s.io.read(&mut buf)).await {
        Ok(Ok(0)) => s.client.connection_lost("connection closed by the LMTP server"),
        Ok(Ok(n)) => s.input.extend_from_slice(&buf[..n]),
        Ok(Err(e)) => s.client.connection_lost(&format!("read error: {e}")),
        Err(_) => s.client.connection_lost("no reply in time from the LMTP server"),
    }
}

/// Streams the content through the dot-stuffer, a chunk at a time (RFC 5321 §4.5.2).
async fn send_body(s: &mut Session, message: &[u8]) {
    let limit = Phase::DataBlock.timeout();
    let mut body = Stuffed::new(message);
    while let Some(out) = body.next_chunk() {
        match timeout(limit, s.io.write_all(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return s.client.connection_lost(&format!("write error in the message content: {e}")),
            Err(_) => return s.client.connection_lost("timed out writing the message content"),
        }
    }
    s.client.body_sent();
}
