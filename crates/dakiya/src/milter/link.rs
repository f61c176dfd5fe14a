//! One connection to one milter: connect, negotiate, send a stage, wait for its answer —
//! every wait with a deadline, every packet read under a size cap (docs/milter.md).

use dakiya_config::{Milter, MilterAddress};
use dakiya_milter::negotiate::{self, Negotiated, Stage};
use dakiya_milter::packet::{self, Command};
use dakiya_milter::reply::Action;
use dakiya_milter::{Conversation, Next, ProtocolError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

/// A byte stream to a milter: TCP or a Unix socket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// Why a milter could not be asked; the connection is closed and `default_action` applies.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("closed the connection")]
    Closed,
    #[error("{0}")]
    Packet(#[from] packet::DecodeError),
    #[error("{0}")]
    Negotiation(#[from] negotiate::NegotiationError),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

/// An open, negotiated connection.
pub struct Link {
    io: Box<dyn Io>,
    /// What is sent and what the answers mean (crates/milter).
    pub conv: Conversation,
    buf: Vec<u8>,
    /// Body replacement chunks may be as large as a message.
    body_cap: usize,
}

impl Link {
    /// Connects and negotiates within `connect_timeout`.
    pub async fn open(m: &Milter, body_cap: usize) -> Result<Link, LinkError> {
        let deadline = Instant::now() + m.connect_timeout;
        let io: Box<dyn Io> = match &m.address {
            MilterAddress::Inet(a) => {
                let tcp = timeout_at(deadline, tokio::net::TcpStream::connect(a))
                    .await
                    .map_err(|_| LinkError::Timeout)?
                    .map_err(LinkError::Connect)?;
                // Stages the milter does not answer (its NR_* flags: header fields, often)
                // go out as small writes back to back; with Nagle's algorithm each would wait
                // for the ACK of the one before, which the milter delays (up to 40 ms on
                // Linux) because it has nothing to send back.
                tcp.set_nodelay(true).map_err(LinkError::Connect)?;
                Box::new(tcp)
            }
            MilterAddress::Unix(p) => Box::new(
                timeout_at(deadline, tokio::net::UnixStream::connect(p))
                    .await
                    .map_err(|_| LinkError::Timeout)?
                    .map_err(LinkError::Connect)?,
            ),
        };
        let placeholder = Negotiated { version: negotiate::VERSION, actions: 0, protocol: 0 };
        let mut link = Link { io, conv: Conversation::new(placeholder, body_cap), buf: Vec::new(), body_cap };
        let optneg = Command::OptNeg {
            version: negotiate::VERSION,
            actions: negotiate::actions::OFFERED,
            protocol: negotiate::protocol::OFFERED,
        };
        link.write(&optneg.encode(), deadline).await?;
        let p = link.read_packet(deadline).await?;
        link.conv = Conversation::new(Negotiated::from_reply(&p)?, body_cap);
        Ok(link)
    }

    /// Writes a packet (or several, concatenated) before `deadline`.
    pub async fn write(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), LinkError> {
        match timeout_at(deadline, self.io.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// Reads one whole packet before `deadline`.
    async fn read_packet(&mut self, deadline: Instant) -> Result<packet::Packet, LinkError> {
        loop {
            if let Some(p) = packet::decode(&mut self.buf, self.body_cap)? {
                return Ok(p);
            }
            // Read no further than the packet in progress: the cap was checked on its header.
            let want = packet::wanted(&self.buf).min(64 * 1024);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let n = match timeout_at(deadline, self.io.read(&mut self.buf[start..])).await {
                Ok(r) => r?,
                Err(_) => {
                    self.buf.truncate(start);
                    return Err(LinkError::Timeout);
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(LinkError::Closed);
            }
        }
    }

    /// Sends a stage (macros first); waits for its action unless the milter does not
    /// answer it. `None`: the stage was not sent, or is not answered.
    pub async fn ask(
        &mut self,
        stage: Stage,
        macros: &[(String, String)],
        command: &Command<'_>,
        step: Duration,
        limit: Duration,
    ) -> Result<Option<Action>, LinkError> {
        let Some(out) = self.conv.send(stage, macros, command) else { return Ok(None) };
        self.write(&out.bytes, Instant::now() + step).await?;
        if !out.answered {
            return Ok(None);
        }
        self.action(step, Instant::now() + limit).await.map(Some)
    }

    /// Waits for the action: each packet within `step` of the last (progress and edits
    /// count), the whole answer before `limit`.
    async fn action(&mut self, step: Duration, limit: Instant) -> Result<Action, LinkError> {
        loop {
            let p = self.read_packet((Instant::now() + step).min(limit)).await?;
            match self.conv.receive(p)? {
                Next::Wait { .. } => continue,
                Next::Done(a) => return Ok(a),
            }
        }
    }
}
