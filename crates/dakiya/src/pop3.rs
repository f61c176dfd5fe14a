//! The POP3 connection driver (listener roles `pop3` and `pop3s`): moves bytes between a
//! socket and the `dakiya_pop3` state machine and carries out its decisions — logins, the
//! maildrop, sending messages, deletions at QUIT. Design and Dovecot compatibility:
//! docs/pop3.md.

mod login;
mod maildrop;

use crate::admission::{Activity, Ticket};
use crate::shared::Shared;
use crate::stream::{Interrupt, Stream, Wait};
use crate::summary::Ending;
use dakiya_config::Role;
use dakiya_metrics::Direction;
use dakiya_pop3::reply::Code;
use dakiya_pop3::{ContentEncoder, Event, OpenFailure, Policy, Server, ServerConfig};
use maildrop::{Maildrop, Message, OpenError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a connection may take, and the write deadline of a final reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 1939 §3: an autologout timer, if any, must be at least 10 minutes. The command
/// deadline is `timeouts.command` or this, whichever is longer.
const MIN_AUTOLOGOUT: Duration = Duration::from_secs(600);
/// RETR and TOP read a message of at most this size whole, in one blocking call, and send
/// the complete answer in one write; a bigger one is read and sent in chunks.
const WHOLE_CAP: u64 = 1024 * 1024;
/// The chunk size for a message bigger than [`WHOLE_CAP`].
const CHUNK: usize = 256 * 1024;
/// Answers to pipelined commands are gathered up to this many bytes before a write.
const FLUSH_AT: usize = 256 * 1024;
/// The output and read buffers keep at most this much capacity between messages.
const KEEP_CAPACITY: usize = 256 * 1024;

/// The first reply to a client refused at admission (RFC 2449 §8: `[SYS/TEMP]`).
pub const TOO_MANY: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

/// Serves one POP3 connection to its end; `ticket` is its place among the open connections.
pub async fn handle(tcp: TcpStream, peer: SocketAddr, role: Role, shared: Arc<Shared>, ticket: Ticket) {
    tracing::info!(peer = %peer, role = %role.as_str(), "connection opened");
    let loopback = peer.ip().to_canonical().is_loopback();
    // Read once: the session keeps its policy and limits for its life (docs/reload.md).
    let live = shared.live.get();
    let policy = Policy {
        stls: role == Role::Pop3,
        implicit_tls: role.implicit_tls(),
        login_without_tls: live.config.auth.plaintext_on_loopback && loopback,
    };
    let activity = ticket.activity.clone();
    let mut stream = if policy.implicit_tls {
        match crate::stream::accept(live.tls.acceptor(), tcp, HANDSHAKE_TIMEOUT, &activity).await {
            Ok(tls) => {
                let info = crate::stream::describe(&tls);
                tracing::info!(peer = %peer, version = %info.version, cipher = %info.cipher, "TLS established");
                shared.metrics.tls(Direction::Inbound, &info.version);
                Stream::Tls(Box::new(tls))
            }
            Err(e) => {
                tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
                shared.counters.ended(Ending::Protocol);
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    let cfg =
        Arc::new(ServerConfig { hostname: live.config.hostname.clone(), max_errors: live.config.limits.max_errors });
    let mut server = Server::new(cfg, policy);
    let interrupt = Interrupt::new(shared.shutdown.clone(), activity.clone());
    let mut session = Session {
        stream: &mut stream,
        shared: &shared,
        peer,
        interrupt,
        activity,
        maildrop: None,
        out: Vec::new(),
        content: Vec::new(),
    };
    let ending = session.run(&mut server).await;
    let user = server.user().map(str::to_string);
    // The lock goes before the connection does: a client reconnecting at once finds it free.
    session.maildrop = None;
    stream.shutdown(Instant::now() + CLOSE_TIMEOUT).await;
    shared.counters.ended(ending);
    let user = dakiya_proto::logtext::Esc(user.as_deref().unwrap_or("-"));
    tracing::info!(peer = %peer, user = %user, ending = %ending.as_str(), "connection closed");
    drop(ticket);
}

struct Session<'a> {
    stream: &'a mut Stream,
    shared: &'a Shared,
    peer: SocketAddr,
    interrupt: Interrupt,
    activity: Arc<Activity>,
    maildrop: Option<Maildrop>,
    /// Replies not yet written: the state machine's output followed by message content, so
    /// that a RETR's `+OK`, content and `.` (and those of pipelined commands) go out in one
    /// write. Bounded by [`FLUSH_AT`] plus one message of at most [`WHOLE_CAP`] (encoded).
    out: Vec<u8>,
    /// The raw content of the message being sent, reused from one RETR to the next.
    content: Vec<u8>,
}

impl Session<'_> {
    async fn run(&mut self, server: &mut Server) -> Ending {
        let mut input: Vec<u8> = Vec::new();
        let live = self.shared.live.get();
        let t = &live.config.timeouts;
        let idle = t.command.max(MIN_AUTOLOGOUT);
        let mut deadline = Instant::now() + idle;
        let mut progressed = false;
        loop {
            let before = input.len();
            let event = server.poll(&mut input);
            progressed |= input.len() < before;
            match event {
                Event::NeedInput => {
                    if let Err(ending) = self.flush(server).await {
                        return ending;
                    }
                    let now = Instant::now();
                    if progressed {
                        // A whole command arrived: the next one has its own deadline (a
                        // byte now and then extends nothing).
                        deadline = now + idle;
                        self.activity.progress(false, now.into_std());
                        progressed = false;
                    }
                    if input.is_empty() {
                        input = Vec::new();
                    }
                    match self.stream.read_more(&mut input, deadline, false, &mut self.interrupt).await {
                        Wait::Data => {}
                        Wait::Closed => return Ending::Client,
                        // RFC 1939 §3: the autologout timer ends the session without UPDATE.
                        Wait::TimedOut => {
                            return self
                                .close(server, None, "Autologout; idle for too long", Ending::CommandDeadline)
                                .await;
                        }
                        Wait::Shutdown => {
                            return self
                                .close(
                                    server,
                                    Some(Code::SysTemp),
                                    "Server shutting down, try again later",
                                    Ending::Shutdown,
                                )
                                .await;
                        }
                        Wait::Evicted => {
                            return self
                                .close(
                                    server,
                                    Some(Code::SysTemp),
                                    "Too many connections, closing this idle session",
                                    Ending::Evicted,
                                )
                                .await;
                        }
                    }
                }
                Event::Authenticate => {
                    let result = match server.credentials().cloned() {
                        Some(creds) => Box::pin(login::check(self.shared, self.peer.ip(), creds)).await,
                        None => Err(dakiya_pop3::AuthFailure::Unavailable),
                    };
                    server.auth_result(result);
                }
                Event::OpenMaildrop => {
                    let result = self.open(server.user().unwrap_or_default()).await;
                    server.maildrop_opened(result);
                }
                Event::StartTls => {
                    if let Err(ending) = self.flush(server).await {
                        return ending;
                    }
                    input = Vec::new();
                    let acceptor = self.shared.live.get().tls.acceptor();
                    match self.stream.upgrade(acceptor, HANDSHAKE_TIMEOUT, &self.activity).await {
                        Ok(info) => {
                            tracing::info!(peer = %self.peer, version = %info.version, cipher = %info.cipher, "TLS established");
                            self.shared.metrics.tls(Direction::Inbound, &info.version);
                            server.tls_established();
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, error = %e, "STLS handshake failed");
                            return Ending::Protocol;
                        }
                    }
                }
                Event::Retrieve { msg, body_lines } => {
                    if let Err(ending) = Box::pin(self.retrieve(server, msg, body_lines)).await {
                        return ending;
                    }
                }
                Event::Commit => {
                    let result = self.commit(&server.deleted()).await;
                    server.committed(result);
                }
                Event::Close => {
                    let quit = server.output().starts_with(b"+OK");
                    let _ = self.flush(server).await;
                    return if quit { Ending::Client } else { Ending::Protocol };
                }
                _ => return Ending::Protocol,
            }
        }
    }

    /// Locks and lists the maildrop of `user`.
    async fn open(&mut self, user: &str) -> Result<Vec<dakiya_pop3::Entry>, OpenFailure> {
        let live = self.shared.live.get();
        let cfg = &live.config;
        let Some(path) = login::maildir_of(cfg, self.shared, user) else {
            tracing::warn!(user = %dakiya_proto::logtext::Esc(user), "pop3: this user has no mailbox of their own");
            return Err(OpenFailure::NoMailbox);
        };
        let opened = tokio::task::spawn_blocking(move || Maildrop::open(&path)).await;
        match opened {
            Ok(Ok((drop, entries))) => {
                tracing::info!(peer = %self.peer, user = %dakiya_proto::logtext::Esc(user), messages = entries.len(), "pop3: maildrop opened");
                self.maildrop = Some(drop);
                Ok(entries)
            }
            Ok(Err(OpenError::InUse)) => Err(OpenFailure::InUse),
            Ok(Err(OpenError::Io(e))) => {
                tracing::error!(user = %dakiya_proto::logtext::Esc(user), error = %e, "pop3: cannot open the maildrop");
                Err(OpenFailure::Unavailable)
            }
            Err(_) => Err(OpenFailure::Unavailable),
        }
    }

    /// RETR and TOP: the message read in one blocking call, and the `+OK`, the encoded
    /// content (RFC 1939 §3) and the `.` line queued as one answer, written at once when the
    /// queue reaches [`FLUSH_AT`] or the driver needs input. A message bigger than
    /// [`WHOLE_CAP`] is streamed in chunks. A failure after the `+OK` cannot be reported: it
    /// ends the session.
    async fn retrieve(&mut self, server: &mut Server, msg: usize, body_lines: Option<u64>) -> Result<(), Ending> {
        let path = self.maildrop.as_ref().and_then(|m| m.file(msg));
        let content = std::mem::take(&mut self.content);
        let (read, mut content) = match path {
            Some(p) => read_blocking(p, content).await,
            None => (None, content),
        };
        server.retrieve_opened(read.is_some());
        self.take_output(server);
        let mut enc = ContentEncoder::new(body_lines);
        let result = match read {
            None => Ok(()),
            Some(Message::Whole) => {
                enc.encode(&content, &mut self.out);
                enc.finish(&mut self.out);
                if self.out.len() >= FLUSH_AT { self.write_out().await } else { Ok(()) }
            }
            Some(Message::Large(file)) => self.stream_large(file, enc).await,
        };
        content.clear();
        content.shrink_to(KEEP_CAPACITY);
        self.content = content;
        result
    }

    /// Sends a message bigger than [`WHOLE_CAP`] after the queued output, in chunks.
    async fn stream_large(&mut self, file: std::fs::File, mut enc: ContentEncoder) -> Result<(), Ending> {
        self.write_out().await?;
        let mut file = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(peer = %self.peer, error = %e, "pop3: reading a message failed; closing");
                    return Err(Ending::Protocol);
                }
            };
            if n == 0 || enc.is_done() {
                break;
            }
            enc.encode(&buf[..n], &mut self.out);
            self.write_out().await?;
        }
        enc.finish(&mut self.out);
        Ok(())
    }

    /// UPDATE: removes the deleted messages durably; `Err(())` if some could not be.
    async fn commit(&mut self, deleted: &[usize]) -> Result<(), ()> {
        let Some(drop) = self.maildrop.take() else { return Ok(()) };
        let indices = deleted.to_vec();
        let n = indices.len();
        let result = tokio::task::spawn_blocking(move || drop.remove(&indices)).await;
        match result {
            Ok(Ok(())) => {
                tracing::info!(peer = %self.peer, deleted = n, "pop3: maildrop updated");
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::error!(peer = %self.peer, error = %e, "pop3: removing deleted messages failed");
                Err(())
            }
            Err(_) => Err(()),
        }
    }

    /// Moves the state machine's pending replies to the end of [`Session::out`].
    fn take_output(&mut self, server: &mut Server) {
        if !server.output().is_empty() {
            self.out.extend_from_slice(server.output());
            server.clear_output();
        }
    }

    /// Writes [`Session::out`] within the write deadline (a short one when shutting down).
    async fn write_out(&mut self) -> Result<(), Ending> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit =
            if self.interrupt.shutting_down() { CLOSE_TIMEOUT } else { self.shared.live.get().config.timeouts.write };
        let result = self.stream.write_all(&self.out, Instant::now() + limit).await;
        self.out.clear();
        self.out.shrink_to(KEEP_CAPACITY);
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Ending::WriteDeadline),
            Err(_) => Err(Ending::Client),
        }
    }

    /// Writes all pending replies within the write deadline.
    async fn flush(&mut self, server: &mut Server) -> Result<(), Ending> {
        self.take_output(server);
        self.write_out().await
    }

    /// Ends the session with `-ERR text` (nothing is deleted), written with a short deadline.
    async fn close(&mut self, server: &mut Server, code: Option<Code>, text: &str, ending: Ending) -> Ending {
        server.shutdown(code, text);
        self.take_output(server);
        let _ = self.stream.write_all(&self.out, Instant::now() + CLOSE_TIMEOUT).await;
        self.out.clear();
        ending
    }
}

/// Reads message file `path` into `content` on the blocking pool, in one hand-off; `None` if
/// it cannot be (the buffer comes back either way, unless the task panicked).
async fn read_blocking(path: std::path::PathBuf, mut content: Vec<u8>) -> (Option<Message>, Vec<u8>) {
    let task = tokio::task::spawn_blocking(move || {
        let read = maildrop::read_message(&path, WHOLE_CAP, &mut content).ok();
        (read, content)
    });
    task.await.unwrap_or_else(|_| (None, Vec::new()))
}
