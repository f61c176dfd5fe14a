//! The connection driver: moves bytes between a socket and the protocol state machine and
//! carries out its decisions (policy checks, TLS, spooling, commits).

use crate::admission::{Activity, Ticket};
use crate::milter::{Facts, Filters};
use crate::msgauth::Mode;
use crate::policy::{self, Client};
use crate::ratelimits::Guards;
use crate::receive::Message;
use crate::screen::{Gate, Screening};
use crate::shared::Shared;
use crate::stream::{Interrupt, Stream, TlsInfo, Wait};
use crate::summary::Ending;
use dakiya_config::{Checks, Config, Role, Target, Timeouts};
use dakiya_mailauth::SpfCheck;
use dakiya_metrics::{Direction, Rejection};
use dakiya_proto::address::ForwardPath;
use dakiya_proto::server::SessionPolicy;
use dakiya_proto::{Enhanced, Event, Reply, Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener's role and the client's address decide what the session offers.
fn session_policy(cfg: &Config, role: Role, peer: SocketAddr) -> SessionPolicy {
    let loopback_plain = cfg.auth.plaintext_on_loopback && peer.ip().to_canonical().is_loopback();
    match role {
        Role::Submission => SessionPolicy {
            starttls: true,
            implicit_tls: false,
            auth: true,
            auth_without_tls: loopback_plain,
            auth_required: true,
        },
        Role::Submissions => SessionPolicy {
            starttls: false,
            implicit_tls: true,
            auth: true,
            auth_without_tls: false,
            auth_required: true,
        },
        // Port 25: opportunistic STARTTLS for other servers; no AUTH (RFC 6409 §1).
        _ => SessionPolicy { starttls: true, ..SessionPolicy::default() },
    }
}

/// What a session takes from its listener: the message authentication checks, screening,
/// and the rate limits and greylisting.
#[derive(Clone)]
pub struct Door {
    pub checks: Checks,
    pub screening: Screening,
    pub guards: Arc<Guards>,
    /// The `[[milter]]` names the listener asks, in order.
    pub milters: Arc<[String]>,
}

/// Serves one connection to its end; `ticket` is its place among the open connections.
pub async fn handle(tcp: TcpStream, peer: SocketAddr, role: Role, door: Door, shared: Arc<Shared>, ticket: Ticket) {
    tracing::info!(peer = %peer, role = %role.as_str(), "connection opened");
    let Door { checks, screening, guards, milters } = door;
    // The session keeps its listener's role, its policy and its limits for its life; the
    // configuration's other decisions are taken afresh each time (docs/reload.md).
    let live = shared.live.get();
    let trusted = live.config.is_trusted(peer.ip());
    // Screening's DNS lookups start now, so they overlap the TLS handshake and the greeting.
    let local = tcp.local_addr().map_or(peer.ip(), |a| a.ip());
    let gate = Gate::start(&live, screening, peer.ip(), local, trusted);
    let policy = session_policy(&live.config, role, peer);
    let listener = tcp.local_addr().map_or_else(|_| role.as_str().to_string(), |a| format!("{} {a}", role.as_str()));
    let activity = ticket.activity.clone();
    let mut tls_info = None;
    let mut stream = if policy.implicit_tls {
        match crate::stream::accept(live.tls.acceptor(), tcp, HANDSHAKE_TIMEOUT, &activity).await {
            Ok(tls) => {
                let info = crate::stream::describe(&tls);
                tracing::info!(peer = %peer, version = %info.version, cipher = %info.cipher, "TLS established");
                shared.metrics.tls(Direction::Inbound, &info.version);
                tls_info = Some(info);
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
    let client = Client { ip: peer.ip(), trusted };
    let facts = Facts {
        hostname: live.config.hostname.clone(),
        daemon_name: role.as_str().to_string(),
        daemon_addr: Some(SocketAddr::new(local, 0)),
        peer: Some(peer),
        ..Facts::default()
    };
    drop(live);
    // Clients in trusted_networks (our own machines) are not limited per network.
    if !trusted && let Err(reply) = guards.rates.connect(peer.ip()) {
        shared.metrics.rejected(Rejection::RateLimitedConnect);
        let _ = stream.write_all(reply.to_wire().as_bytes(), Instant::now() + FINAL_WRITE_TIMEOUT).await;
        stream.shutdown(Instant::now() + CLOSE_TIMEOUT).await;
        shared.counters.ended(Ending::Protocol);
        return;
    }
    let mut server: Server<Vec<Target>> = Server::with_policy(shared.live.get().session.clone(), policy);
    let interrupt = Interrupt::new(shared.shutdown.clone(), activity.clone());
    let mut conn = Conn {
        stream: &mut stream,
        shared: &shared,
        peer,
        client,
        guards,
        tls: tls_info,
        listener,
        accepted: 0,
        checks,
        spf: None,
        interrupt,
        activity,
        gate,
        filters: Filters::new(milters, facts),
    };
    let ending = conn.run(&mut server).await;
    Box::pin(conn.filters.quit()).await;
    let accepted = conn.accepted;
    stream.shutdown(Instant::now() + CLOSE_TIMEOUT).await;
    shared.counters.ended(ending);
    tracing::info!(peer = %peer, messages = accepted, ending = %ending.as_str(), "connection closed");
    drop(ticket);
}

/// How long closing a connection (TLS close_notify, FIN) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The write deadline once the session is ending anyway (shutdown, eviction).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

struct Conn<'a> {
    stream: &'a mut Stream,
    shared: &'a Shared,
    peer: SocketAddr,
    client: Client,
    /// The listener's rate limits and greylisting.
    guards: Arc<Guards>,
    tls: Option<TlsInfo>,
    /// The listener's role and address, for the message history.
    listener: String,
    accepted: u32,
    checks: Checks,
    /// SPF results of the current transaction (verifying sessions only).
    spf: Option<SpfCheck>,
    interrupt: Interrupt,
    activity: Arc<Activity>,
    /// Screening: early talkers, DNS lists, FCrDNS, HELO checks.
    gate: Gate,
    /// The listener's milters (opened at the first MAIL that needs them).
    filters: Filters,
}

/// The deadlines of the session (style rule 8: a whole command, a whole message, every
/// write; a byte now and then extends nothing).
struct Clock {
    /// When the command line being waited for must be complete.
    command: Instant,
    /// When message content started, and how many octets have arrived since.
    data_start: Instant,
    data_bytes: u64,
    /// Set at shutdown for a session inside a transaction: it must end by then.
    grace: Option<Instant>,
}

impl Clock {
    /// The read deadline: the command deadline, or while content arrives the data deadline
    /// (no read waits more than `data`; the whole content gets `data` plus its size at
    /// `data_min_rate`), never past the shutdown grace.
    fn read_deadline(&self, t: &Timeouts, in_message: bool, now: Instant) -> (Instant, Ending) {
        let (deadline, why) = if in_message {
            let rate = t.data_min_rate.max(1);
            let allowance = t.data.saturating_add(Duration::from_secs(self.data_bytes / rate));
            ((now + t.data).min(self.data_start + allowance), Ending::DataDeadline)
        } else {
            (self.command, Ending::CommandDeadline)
        };
        match self.grace {
            Some(g) if g < deadline => (g, Ending::Shutdown),
            _ => (deadline, why),
        }
    }
}

impl Conn<'_> {
    /// What this session does to its messages' authentication.
    fn auth_mode(&self, server: &Server<Vec<Target>>) -> Mode {
        let submitted = server.auth_user().is_some() || self.client.trusted;
        self.shared.live.get().mailauth.mode(submitted, self.checks.verify)
    }

    /// RCPT, once the recipient is known to be acceptable: the per-user recipient limit, then
    /// greylisting (after the 550 for unknown users, so no one is told to retry for nothing).
    /// `allow_listed`: a DNS allow list vouches for the client (screening), which skips
    /// greylisting.
    fn guard_recipient(&self, server: &Server<Vec<Target>>, allow_listed: bool) -> Result<(), Reply> {
        let user = server.auth_user();
        let metrics = &self.shared.metrics;
        self.guards.rates.rcpt(self.client.ip, user).inspect_err(|_| metrics.rejected(Rejection::RateLimitedRcpt))?;
        let Some(greylist) = self.shared.greylist.as_ref().filter(|_| self.guards.greylist) else { return Ok(()) };
        let sender = server.transaction().map(|t| t.from.to_string()).unwrap_or_default();
        let recipient = match server.pending_recipient() {
            Some((ForwardPath::Mailbox(m), _)) => m.to_string(),
            _ => "postmaster".to_string(),
        };
        let verdict = greylist.check(&crate::greylisting::Asker {
            ip: self.client.ip,
            submitted: user.is_some() || self.client.trusted,
            allow_listed,
            sender: &sender,
            recipient: &recipient,
        });
        verdict.inspect_err(|_| metrics.rejected(Rejection::Greylisted))
    }

    /// MAIL to the listener's milters: the session's facts as they are now, the sender and
    /// its ESMTP parameters (crate::milter).
    async fn milter_mail(&mut self, server: &Server<Vec<Target>>) -> Result<(), Reply> {
        let submitted = server.auth_user().is_some() || self.client.trusted;
        self.filters.facts.helo = server.hello().map(|h| h.name.clone()).unwrap_or_default();
        self.filters.facts.tls = self.tls.as_ref().map(|t| (t.version.clone(), t.cipher.clone()));
        self.filters.facts.auth_user = server.auth_user().map(str::to_string);
        self.filters.facts.client_name = Box::pin(self.gate.name()).await;
        let sender = server.pending_sender().map(|f| f.to_string()).unwrap_or_default();
        let mut args = vec![format!("<{sender}>")];
        if let Some(p) = server.pending_mail_params() {
            args.extend(crate::milter::mail_params(p));
        }
        let live = self.shared.live.get();
        let body_cap = usize::try_from(live.config.limits.max_message_size).unwrap_or(usize::MAX);
        let verdict = self.filters.mail(&live.config.milters, submitted, args, body_cap).await;
        verdict.inspect_err(|_| self.shared.metrics.rejected(Rejection::MilterMail))
    }

    /// RCPT to the milters, once the recipient is otherwise acceptable.
    async fn milter_rcpt(&mut self, server: &Server<Vec<Target>>) -> Result<(), Reply> {
        let rcpt = match server.pending_recipient() {
            Some((ForwardPath::Mailbox(m), _)) => m.to_string(),
            _ => "postmaster".to_string(),
        };
        let verdict = self.filters.rcpt(vec![format!("<{rcpt}>")]).await;
        verdict.inspect_err(|_| self.shared.metrics.rejected(Rejection::MilterRcpt))
    }

    /// SPF at MAIL time, for verifying sessions; refuses when `spf_reject` says so.
    async fn check_spf(&mut self, server: &Server<Vec<Target>>, sender: &str) -> Result<(), Reply> {
        let mode = self.auth_mode(server);
        let helo = server.hello().map_or("", |h| h.name.as_str());
        let ip = self.peer.ip().to_canonical();
        let mailauth = self.shared.live.get().mailauth.clone();
        let (spf, refusal) = mailauth.check_spf(mode, self.checks.spf_reject, ip, helo, sender).await;
        self.spf = spf;
        match refusal {
            Some(reply) => {
                self.shared.metrics.rejected(Rejection::Spf);
                Err(reply)
            }
            None => Ok(()),
        }
    }

    async fn run(&mut self, server: &mut Server<Vec<Target>>) -> Ending {
        let mut input: Vec<u8> = Vec::new();
        let mut msg = Message::default();
        // The timeouts a session started with are its own.
        let cfg = self.shared.live.get().config.clone();
        let t = &cfg.timeouts;
        let start = Instant::now();
        let mut clock = Clock { command: start + t.command, data_start: start, data_bytes: 0, grace: None };
        let mut progressed = false;
        // Before the greeting (which the session has queued): the greet delay and the DNS
        // lists' verdict at connect.
        if let Err(stop) = Box::pin(self.gate.greet(self.stream, &mut input, &mut self.interrupt)).await {
            return self.stop(server, stop).await;
        }
        let ending = loop {
            let before = input.len();
            let event = server.poll(&mut input);
            let consumed = (before - input.len()) as u64;
            progressed |= consumed > 0;
            clock.data_bytes = clock.data_bytes.saturating_add(consumed);
            match event {
                Event::NeedInput => {
                    let busy = server.transaction().is_some() || server.in_message();
                    // Shutdown: a session with no transaction in progress is done (the
                    // 250 of its last message, if any, goes out with the 421).
                    if self.interrupt.shutting_down() && !busy {
                        break self.close(server, shutting_down(), Ending::Shutdown).await;
                    }
                    if let Err(ending) = self.flush(server).await {
                        break ending;
                    }
                    let now = Instant::now();
                    if progressed {
                        // A command or content was consumed: the next command line starts
                        // now, and admission sees progress.
                        clock.command = now + t.command;
                        self.activity.progress(busy, now.into_std());
                        progressed = false;
                    } else {
                        self.activity.set_busy(busy);
                    }
                    if input.is_empty() {
                        input = Vec::new();
                    }
                    let (deadline, why) = clock.read_deadline(t, server.in_message(), now);
                    let bulk = server.in_message();
                    match self.stream.read_more(&mut input, deadline, bulk, &mut self.interrupt).await {
                        Wait::Data => {
                            if let Err(stop) = self.gate.pipelining(server, &input) {
                                break self.stop(server, stop).await;
                            }
                        }
                        Wait::Closed => break Ending::Client,
                        Wait::TimedOut if why == Ending::Shutdown => {
                            break self.close(server, shutting_down(), Ending::Shutdown).await;
                        }
                        Wait::TimedOut => {
                            // RFC 5321 §4.5.3.2.7: the server may close an idle session with 421.
                            let reply = Reply::new(421, Enhanced(4, 4, 2), "Timeout, closing connection");
                            break self.close(server, reply, why).await;
                        }
                        Wait::Shutdown if busy => {
                            // A transaction in progress gets `shutdown_grace` to finish.
                            clock.grace = Some(Instant::now() + t.shutdown_grace);
                        }
                        Wait::Shutdown => break self.close(server, shutting_down(), Ending::Shutdown).await,
                        Wait::Evicted => {
                            let reply =
                                Reply::new(421, Enhanced(4, 4, 2), "Too many connections, closing this idle session");
                            break self.close(server, reply, Ending::Evicted).await;
                        }
                    }
                }
                Event::CheckRecipient => {
                    let path = server.pending_recipient().map(|(path, _)| path.clone());
                    let authenticated = server.auth_user().is_some();
                    let verdict = match path {
                        Some(path) => match Box::pin(self.gate.rcpt(&path, authenticated)).await {
                            Ok(()) => policy::check_recipient(self.shared, &self.client, server.auth_user(), &path),
                            Err((why, reply)) => {
                                self.shared.metrics.rejected(why);
                                Err(reply)
                            }
                        },
                        None => Err(Reply::new(451, Enhanced(4, 3, 0), "Internal error")),
                    };
                    let verdict = match verdict {
                        Ok(targets) => {
                            let allow_listed = Box::pin(self.gate.allow_listed()).await;
                            self.guard_recipient(server, allow_listed).map(|()| targets)
                        }
                        Err(reply) => Err(reply),
                    };
                    let verdict = match verdict {
                        Ok(targets) if self.filters.active() => {
                            Box::pin(self.milter_rcpt(server)).await.map(|()| targets)
                        }
                        other => other,
                    };
                    if verdict.is_ok() {
                        self.shared.metrics.recipient_accepted();
                    }
                    server.recipient_verdict(verdict);
                }
                Event::CheckSender => {
                    let mut verdict = match server.pending_sender() {
                        Some(from) => policy::check_sender(&self.shared.live.get().config, server.auth_user(), from),
                        None => Err(Reply::new(451, Enhanced(4, 3, 0), "Internal error")),
                    };
                    if verdict.is_err() {
                        self.shared.metrics.rejected(Rejection::SenderNotOwned);
                    }
                    if verdict.is_ok() {
                        verdict = self.gate.helo(server, &self.shared.live.get().config.hostname);
                        verdict = verdict.inspect_err(|_| self.shared.metrics.rejected(Rejection::Helo));
                    }
                    if verdict.is_ok() {
                        let sender = server.pending_sender().map(|f| f.to_string()).unwrap_or_default();
                        verdict = self.guards.rates.mail(&self.client, server.auth_user(), &sender);
                        verdict = verdict.inspect_err(|_| self.shared.metrics.rejected(Rejection::RateLimited));
                    }
                    if verdict.is_ok() {
                        let sender = server.pending_sender().map(|f| f.to_string()).unwrap_or_default();
                        // Rare, large awaits (here, for AUTH and the commit) are boxed so an
                        // idle session's task stays small (docs/hardening.md, "Memory").
                        verdict = Box::pin(self.check_spf(server, &sender)).await;
                    }
                    if verdict.is_ok() && self.filters.configured() {
                        verdict = Box::pin(self.milter_mail(server)).await;
                    }
                    server.sender_verdict(verdict);
                }
                Event::Authenticate => {
                    let result = match server.pending_auth().cloned() {
                        Some(creds) => {
                            // For the milters' {auth_type} macro.
                            self.filters.facts.auth_type = Some(creds.mechanism.name());
                            Box::pin(policy::check_password(self.shared, &self.client, creds)).await
                        }
                        None => Err(Reply::new(454, Enhanced(4, 7, 0), "Temporary authentication failure")),
                    };
                    server.auth_result(result);
                }
                Event::StartTls => {
                    if let Err(ending) = self.flush(server).await {
                        break ending;
                    }
                    // Whatever the client pipelined after STARTTLS was discarded by the
                    // session; drop anything we had read as well.
                    input = Vec::new();
                    let acceptor = self.shared.live.get().tls.acceptor();
                    match self.stream.upgrade(acceptor, HANDSHAKE_TIMEOUT, &self.activity).await {
                        Ok(info) => {
                            tracing::info!(peer = %self.peer, version = %info.version, cipher = %info.cipher, "TLS established");
                            self.shared.metrics.tls(Direction::Inbound, &info.version);
                            self.tls = Some(info);
                            server.tls_established();
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, error = %e, "STARTTLS handshake failed");
                            break Ending::Protocol;
                        }
                    }
                }
                Event::MessageStart => {
                    clock.data_start = Instant::now();
                    clock.data_bytes = 0;
                    let mode = self.auth_mode(server);
                    let name = Box::pin(self.gate.name()).await;
                    let origin =
                        crate::receive::Origin { peer: self.peer, name: name.as_deref(), listener: &self.listener };
                    msg.start(self.shared, server, origin, self.tls.as_ref(), mode);
                }
                Event::Body(bytes) => msg.write(bytes),
                Event::MessageEnd => {
                    match Box::pin(msg.commit(self.shared, &self.checks, self.spf.as_ref(), &mut self.filters)).await {
                        Ok(id) => {
                            self.accepted += 1;
                            server.message_committed(Ok(&id));
                        }
                        Err(reply) => server.message_committed(Err(reply)),
                    }
                }
                Event::MessageAbort => {
                    msg.abort();
                    Box::pin(self.filters.end_transaction()).await;
                }
                Event::Close => {
                    let quit = server.output().starts_with(b"221 2.0.0");
                    let _ = self.flush(server).await;
                    break if quit { Ending::Client } else { Ending::Protocol };
                }
                _ => break Ending::Protocol,
            }
        };
        msg.abort();
        ending
    }

    /// Ends the session as screening says, instead of the greeting or the next reply.
    async fn stop(&mut self, server: &mut Server<Vec<Target>>, stop: crate::screen::gate::Stop) -> Ending {
        server.clear_output();
        if let Some(why) = stop.rejection() {
            self.shared.metrics.rejected(why);
        }
        match stop.reply {
            Some(reply) => self.close(server, reply, stop.ending).await,
            None => stop.ending,
        }
    }

    /// Ends the session with `reply` (written with a short deadline: the session is over
    /// whether the client reads it or not).
    async fn close(&mut self, server: &mut Server<Vec<Target>>, reply: Reply, ending: Ending) -> Ending {
        server.shutdown(reply);
        if !server.output().is_empty() {
            let _ = self.stream.write_all(server.output(), Instant::now() + FINAL_WRITE_TIMEOUT).await;
            server.clear_output();
        }
        ending
    }

    /// Writes pending replies within the write deadline; `Err` says how the session ended.
    async fn flush(&mut self, server: &mut Server<Vec<Target>>) -> Result<(), Ending> {
        if !server.output().is_empty() {
            crate::measure::count_session_refusals(&self.shared.metrics, server.output());
            let cfg = self.shared.live.get().config.clone();
            let t = &cfg.timeouts;
            let limit = if self.interrupt.shutting_down() { t.write.min(FINAL_WRITE_TIMEOUT) } else { t.write };
            match self.stream.write_all(server.output(), Instant::now() + limit).await {
                Ok(()) => server.clear_output(),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(Ending::WriteDeadline),
                Err(_) => return Err(Ending::Client),
            }
        }
        Ok(())
    }
}

/// The reply that ends a session at shutdown (RFC 5321 §3.8: 421 when the service is
/// closing).
fn shutting_down() -> Reply {
    Reply::new(421, Enhanced(4, 3, 2), "Service shutting down, try again later")
}
