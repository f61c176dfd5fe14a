//! The connection driver: moves bytes between a socket and the protocol state machine and
//! carries out its decisions (recipient checks, spooling, commits).

use crate::envelope;
use crate::queue::QueueHandle;
use dakiya_config::{Config, RcptError, Target};
use dakiya_proto::address::ForwardPath;
use dakiya_proto::{Enhanced, Event, Reply, Server, ServerConfig};
use dakiya_spool::{MessageWriter, Spool};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What every connection shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub session: Arc<ServerConfig>,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
    pub shutdown: watch::Receiver<bool>,
}

/// Read buffer growth step. Buffers are released while a connection is idle, so an idle
/// session costs only its state machine and socket.
const READ_CHUNK: usize = 16 * 1024;

/// Why the driver stopped reading.
enum Wait {
    Data,
    Closed,
    TimedOut,
    Shutdown,
}

/// Serves one connection to its end.
pub async fn handle(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    tracing::info!(peer = %peer, "connection opened");
    let mut server: Server<Vec<Target>> = Server::new(shared.session.clone());
    let mut input: Vec<u8> = Vec::new();
    let mut msg = Message::default();
    let mut shutdown = shared.shutdown.clone();
    let mut accepted = 0u32;
    loop {
        match server.poll(&mut input) {
            Event::NeedInput => {
                if flush(&mut stream, &mut server).await.is_err() {
                    break;
                }
                if input.is_empty() {
                    input = Vec::new();
                }
                let timeout = if server.in_message() {
                    shared.config.timeouts.data
                } else {
                    shared.config.timeouts.command
                };
                match read_more(&stream, &mut input, timeout, &mut shutdown).await {
                    Wait::Data => {}
                    Wait::Closed => break,
                    Wait::TimedOut => {
                        // RFC 5321 §4.5.3.2.7: the server may close an idle session with 421.
                        server.shutdown(Reply::new(
                            421,
                            Enhanced(4, 4, 2),
                            "Timeout, closing connection",
                        ));
                        let _ = flush(&mut stream, &mut server).await;
                        break;
                    }
                    Wait::Shutdown => {
                        server.shutdown(Reply::new(
                            421,
                            Enhanced(4, 3, 2),
                            "Service shutting down, try again later",
                        ));
                        let _ = flush(&mut stream, &mut server).await;
                        break;
                    }
                }
            }
            Event::CheckRecipient => {
                let verdict = match server.pending_recipient() {
                    Some((path, _)) => check_recipient(&shared.config, path),
                    None => Err(Reply::new(451, Enhanced(4, 3, 0), "Internal error")),
                };
                server.recipient_verdict(verdict);
            }
            Event::CheckSender => server.sender_verdict(Ok(())),
            Event::MessageStart => msg.start(&shared, &server, peer),
            Event::Body(bytes) => msg.write(bytes),
            Event::MessageEnd => {
                let result = msg.commit(&shared).await;
                match result {
                    Ok(id) => {
                        accepted += 1;
                        server.message_committed(Ok(&id));
                    }
                    Err(reply) => server.message_committed(Err(reply)),
                }
            }
            Event::MessageAbort => msg.abort(),
            Event::Close => {
                let _ = flush(&mut stream, &mut server).await;
                break;
            }
            _ => break,
        }
    }
    msg.abort();
    let _ = stream.shutdown().await;
    tracing::info!(peer = %peer, messages = accepted, "connection closed");
}

/// Writes pending replies.
async fn flush(stream: &mut TcpStream, server: &mut Server<Vec<Target>>) -> std::io::Result<()> {
    if !server.output().is_empty() {
        stream.write_all(server.output()).await?;
        server.clear_output();
    }
    Ok(())
}

/// Waits for the socket to be readable (holding no buffer meanwhile), then reads.
async fn read_more(
    stream: &TcpStream,
    input: &mut Vec<u8>,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Wait {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.readable()) => match r {
                Err(_) => return Wait::TimedOut,
                Ok(Err(_)) => return Wait::Closed,
                Ok(Ok(())) => {}
            },
            _ = shutdown.changed() => return Wait::Shutdown,
        }
        input.reserve(READ_CHUNK);
        match stream.try_read_buf(input) {
            Ok(0) => return Wait::Closed,
            Ok(_) => return Wait::Data,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Wait::Closed,
        }
    }
}

/// Decides on one RCPT: ours (with where it goes), or the reply that refuses it.
fn check_recipient(cfg: &Config, path: &ForwardPath) -> Result<Vec<Target>, Reply> {
    let (local, domain) = match path {
        // RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted; it means the
        // postmaster of our host name, or of the first local domain.
        ForwardPath::Postmaster => {
            let domain = if cfg.is_local_domain(&cfg.hostname) {
                cfg.hostname.clone()
            } else {
                cfg.domains.keys().next().cloned().unwrap_or_default()
            };
            ("postmaster".to_string(), domain)
        }
        ForwardPath::Mailbox(m) if m.is_literal() => return Err(relay_denied()),
        ForwardPath::Mailbox(m) => (m.local.clone(), m.domain.clone()),
    };
    cfg.resolve(&local, &domain).map_err(|e| match e {
        RcptError::NotLocal => relay_denied(),
        RcptError::AliasLoop => Reply::new(
            550,
            Enhanced(5, 4, 6),
            "Alias loop detected for this recipient",
        ),
        // Refuse unknown users at RCPT time so we never bounce to forged senders.
        _ => Reply::new(550, Enhanced(5, 1, 1), "No such user here"),
    })
}

fn relay_denied() -> Reply {
    Reply::new(550, Enhanced(5, 7, 1), "Relaying denied")
}

/// The message being received: its spool writer, or why it can no longer be stored.
#[derive(Default)]
struct Message {
    writer: Option<MessageWriter>,
    failed: Option<String>,
    rcpts: usize,
    sender: String,
}

impl Message {
    fn start(&mut self, shared: &Shared, server: &Server<Vec<Target>>, peer: SocketAddr) {
        self.abort();
        let Some(tx) = server.transaction() else {
            return;
        };
        let id = shared.spool.new_id();
        let env = envelope::build(id, tx, server.hello(), peer);
        self.rcpts = env.recipients.len();
        self.sender = env.sender.clone();
        let received =
            envelope::received_header(&shared.config.hostname, &env, tx, server.hello(), peer);
        match shared.spool.writer(env) {
            Ok(mut w) => match w.write(received.as_bytes()) {
                Ok(()) => self.writer = Some(w),
                Err(e) => self.failed = Some(e.to_string()),
            },
            Err(e) => self.failed = Some(e.to_string()),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        // Past the spool's memory buffer, writes go to the file: keep that blocking I/O off
        // the runtime's reactor threads.
        const SPILL: u64 = 128 * 1024;
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let result = if w.len() + bytes.len() as u64 > SPILL {
            tokio::task::block_in_place(|| w.write(bytes))
        } else {
            w.write(bytes)
        };
        if let Err(e) = result {
            self.failed = Some(e.to_string());
            self.writer = None;
        }
    }

    /// Makes the message durable; only then may the caller answer 250.
    async fn commit(&mut self, shared: &Shared) -> Result<String, Reply> {
        let temp_fail = |why: &str| {
            tracing::error!(error = why, "cannot store message");
            Reply::new(
                451,
                Enhanced(4, 3, 0),
                "Temporary local problem storing the message, try again later",
            )
        };
        let Some(writer) = self.writer.take() else {
            let why = self
                .failed
                .take()
                .unwrap_or_else(|| "no message in progress".into());
            return Err(temp_fail(&why));
        };
        let size = writer.len();
        let committed = tokio::task::spawn_blocking(move || writer.commit()).await;
        match committed {
            Ok(Ok(id)) => {
                tracing::info!(queue_id = %id, from = %format_args!("<{}>", self.sender), rcpts = self.rcpts, size, "accepted");
                shared.queue.enqueue(id.clone());
                Ok(id.to_string())
            }
            Ok(Err(e)) => Err(temp_fail(&e.to_string())),
            Err(e) => Err(temp_fail(&e.to_string())),
        }
    }

    fn abort(&mut self) {
        self.writer = None;
        self.failed = None;
    }
}
