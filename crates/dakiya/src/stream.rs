//! The connection's byte stream: plain TCP, or TLS over TCP (after STARTTLS or from the
//! start on implicit-TLS listeners).

use crate::admission::Activity;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// Read buffer growth step. A plain connection holds no buffer while it waits, so an idle
/// session costs only its state machine and socket.
const READ_CHUNK: usize = 16 * 1024;

/// The read buffer of a TLS session waiting for a command (a command line is at most 512
/// octets, RFC 5321 §4.5.3.1.4; longer AUTH lines take a few reads).
const TLS_COMMAND_CHUNK: usize = 1024;

/// Why the driver stopped reading.
pub enum Wait {
    Data,
    Closed,
    /// The read deadline passed.
    TimedOut,
    /// The server is shutting down (reported once).
    Shutdown,
    /// Admission asked this session to make room for a new client.
    Evicted,
}

/// What may interrupt a session while it waits for its client: shutdown, or admission
/// asking it to make room.
pub struct Interrupt {
    shutdown: watch::Receiver<bool>,
    seen_shutdown: bool,
    activity: Arc<Activity>,
}

impl Interrupt {
    pub fn new(shutdown: watch::Receiver<bool>, activity: Arc<Activity>) -> Interrupt {
        Interrupt { shutdown, seen_shutdown: false, activity }
    }

    /// True once shutdown has been signalled (whether or not [`Wait::Shutdown`] was seen).
    pub fn shutting_down(&self) -> bool {
        self.seen_shutdown || *self.shutdown.borrow()
    }

    /// Resolves with [`Wait::Shutdown`] (once) or [`Wait::Evicted`].
    async fn next(&mut self) -> Wait {
        tokio::select! {
            // Err: the sender is gone, which also means shutdown.
            _ = self.shutdown.wait_for(|&v| v), if !self.seen_shutdown => {
                self.seen_shutdown = true;
                Wait::Shutdown
            }
            _ = self.activity.evicted() => Wait::Evicted,
        }
    }
}

/// Plain or TLS; `Gone` only transiently while upgrading.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// TLS parameters of an established session, for logs and the Received: header.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

impl Stream {
    /// Writes all of `data`, or fails with `TimedOut` if that takes past `deadline` (a client
    /// that does not read must not hold the session).
    pub async fn write_all(&mut self, data: &[u8], deadline: Instant) -> std::io::Result<()> {
        match tokio::time::timeout_at(deadline, self.write_all_now(data)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn write_all_now(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the connection (TLS: sends close_notify), giving up after `deadline`.
    pub async fn shutdown(&mut self, deadline: Instant) {
        let close = async {
            let _ = match self {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
                Stream::Gone => Ok(()),
            };
        };
        let _ = tokio::time::timeout_at(deadline, close).await;
    }

    /// Reads more input, waiting at most until `deadline`, or until interrupted.
    /// `bulk`: message content is expected (a larger read buffer pays off).
    pub async fn read_more(
        &mut self,
        input: &mut Vec<u8>,
        deadline: Instant,
        bulk: bool,
        interrupt: &mut Interrupt,
    ) -> Wait {
        loop {
            let ready = match self {
                // Wait for readability without holding a buffer, then read what is there.
                Stream::Plain(s) => tokio::select! {
                    r = tokio::time::timeout_at(deadline, s.readable()) => match r {
                        Err(_) => return Wait::TimedOut,
                        Ok(Err(_)) => return Wait::Closed,
                        Ok(Ok(())) => {
                            input.reserve(READ_CHUNK);
                            match s.try_read_buf(input) {
                                Ok(0) => return Wait::Closed,
                                Ok(_) => true,
                                // A stale readiness: give the empty buffer back before
                                // waiting again, or an idle session keeps READ_CHUNK.
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    if input.is_empty() {
                                        *input = Vec::new();
                                    }
                                    false
                                }
                                Err(_) => return Wait::Closed,
                            }
                        }
                    },
                    w = interrupt.next() => return w,
                },
                Stream::Tls(s) => {
                    // A TLS read cannot wait for readiness without a buffer: an idle session
                    // waiting for a command holds a small one, message content a large one.
                    input.reserve(if bulk { READ_CHUNK } else { TLS_COMMAND_CHUNK });
                    tokio::select! {
                        r = tokio::time::timeout_at(deadline, s.read_buf(input)) => match r {
                            Err(_) => return Wait::TimedOut,
                            Ok(Ok(0)) | Ok(Err(_)) => return Wait::Closed,
                            Ok(Ok(_)) => true,
                        },
                        w = interrupt.next() => return w,
                    }
                }
                Stream::Gone => return Wait::Closed,
            };
            if ready {
                return Wait::Data;
            }
        }
    }

    /// Runs the server side of a TLS handshake over the plain stream (STARTTLS, RFC 3207).
    pub async fn upgrade(
        &mut self,
        acceptor: tokio_rustls::TlsAcceptor,
        timeout: Duration,
        activity: &Activity,
    ) -> Result<TlsInfo, String> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Gone) else {
            return Err("not a plain connection".into());
        };
        let tls = accept(acceptor, tcp, timeout, activity).await?;
        let info = describe(&tls);
        *self = Stream::Tls(Box::new(tls));
        Ok(info)
    }
}

/// A TLS handshake with a deadline, abandoned if admission asks the session to make room.
/// The handshake's state is large and rarely alive, so it is boxed: an idle session's task
/// stays small (docs/hardening.md, "Memory").
pub async fn accept(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
    activity: &Activity,
) -> Result<TlsStream<TcpStream>, String> {
    let handshake = Box::pin(tokio::time::timeout(timeout, acceptor.accept(tcp)));
    tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("TLS handshake timed out".into()),
        },
        _ = activity.evicted() => Err("closed to make room for a new client".into()),
    }
}

pub fn describe(tls: &TlsStream<TcpStream>) -> TlsInfo {
    let (version, cipher) = crate::tls::describe(tls.get_ref().1).unwrap_or_default();
    TlsInfo { version, cipher }
}
