//! One SMTP connection: the sans-IO [`Client`] driven over a [`Stream`], every read and
//! write bounded by the phase's timeout (RFC 5321 §4.5.3.2).

use dakiya_metrics::{Direction, Metrics};
use std::sync::Arc;
use std::time::Duration;

use dakiya_proto::client::{
    AuthCredentials, Client, ClientConfig, ClientEvent, Failure, FailureKind, Job, Outcome, Phase, TlsPolicy,
};
use dakiya_proto::logtext::Esc;
use dakiya_route::NextHop;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::info;

use crate::body::Stuffed;
use crate::failure;
use crate::limits::Permits;
use crate::stream::Stream;

/// How much is read from the socket at a time (replies are bounded by the client's parser).
const READ_CHUNK: usize = 8 * 1024;
/// The most time spent saying goodbye (QUIT and its reply, TLS close): closing must not
/// hold a connection slot for the 5 minutes RFC 5321 §4.5.3.2 allows for a reply.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// How to open and run a session: identity, TLS policy and credentials.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) helo_name: String,
    pub(crate) policy: TlsPolicy,
    pub(crate) implicit_tls: bool,
    pub(crate) credentials: Option<AuthCredentials>,
    pub(crate) tls_config: Arc<rustls::ClientConfig>,
    pub(crate) connect_timeout: Duration,
    /// Where established TLS sessions are counted.
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// Checks an unverified session's certificate for TLS reports (MTA-STS `testing`).
    pub(crate) report_verifier: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

/// Why the TLS handshake failed, to give the job's failure the right status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsTrouble {
    Certificate,
    Handshake,
}

/// What a session showed of the next hop's TLS, for TLS-RPT (RFC 8460 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsSeen {
    /// TLS was established.
    Established,
    /// The server's EHLO reply had no STARTTLS.
    NotOffered,
    /// The handshake failed, not on the certificate.
    HandshakeFailed,
    /// The certificate failed, with its result type.
    Certificate(dakiya_mtasts::ResultType),
}

/// An open connection to a next hop, with its client and its share of the limits.
pub(crate) struct Connection {
    client: Client,
    stream: Stream,
    input: Vec<u8>,
    hop: NextHop,
    server_name: Option<ServerName<'static>>,
    tls_config: Arc<rustls::ClientConfig>,
    tls_trouble: Option<TlsTrouble>,
    certificate: Option<dakiya_mtasts::ResultType>,
    report_verifier: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    announced: bool,
    metrics: Option<Arc<Metrics>>,
    _permits: Permits,
}

/// Counts an established TLS session by its version.
fn count_tls(metrics: Option<&Metrics>, stream: &Stream) {
    if let (Some(m), Some(version)) = (metrics, stream.tls_version()) {
        m.tls(Direction::Outbound, version);
    }
}

impl Connection {
    /// Connects to `hop` (and runs the handshake for implicit TLS), with `job` as the first
    /// job. A failure here is the host's: the caller tries the next one. It comes with the
    /// `Remote-MTA` when a server was reached (a failed implicit TLS handshake).
    pub(crate) async fn open(
        hop: &NextHop,
        setup: &Setup,
        permits: Permits,
        job: Job,
    ) -> Result<Connection, (Failure, Option<String>)> {
        let tcp = match timeout(setup.connect_timeout, TcpStream::connect(hop.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err((failure::connect(hop, &e.to_string()), None)),
            Err(_) => return Err((failure::connect(hop, "connection timed out"), None)),
        };
        // Commands are small and pipelined; Nagle would only add a round trip's delay.
        let _ = tcp.set_nodelay(true);
        let server_name = crate::tls::server_name(&hop.host);
        let mut stream = Stream::Plain(tcp);
        if setup.implicit_tls {
            // RFC 8314 §3.3: TLS from the first octet; the greeting comes inside it.
            let reached = |f: Failure| Err((f, Some(failure::remote_mta(hop))));
            let Some(name) = server_name.clone() else {
                return reached(failure::tls(hop, false, "the host name is not usable for TLS"));
            };
            let handshake = stream.handshake(setup.tls_config.clone(), name);
            match timeout(Phase::StartTls.timeout(), handshake).await {
                Ok(Ok(())) => count_tls(setup.metrics.as_deref(), &stream),
                Ok(Err(e)) => return reached(failure::tls(hop, crate::tls::is_certificate_error(&e), &e.to_string())),
                Err(_) => return reached(failure::tls(hop, false, "TLS handshake timed out")),
            }
        }
        let cfg = ClientConfig {
            helo_name: setup.helo_name.clone(),
            tls: setup.policy,
            implicit_tls: setup.implicit_tls,
            credentials: setup.credentials.clone(),
            lmtp: false,
        };
        Ok(Connection {
            client: Client::new(cfg, job),
            stream,
            input: Vec::new(),
            hop: hop.clone(),
            server_name,
            tls_config: setup.tls_config.clone(),
            tls_trouble: None,
            certificate: None,
            report_verifier: setup.report_verifier.clone(),
            announced: false,
            metrics: setup.metrics.clone(),
            _permits: permits,
        })
    }

    /// `host [ip]`, for `Remote-MTA` and logs.
    pub(crate) fn remote_mta(&self) -> String {
        failure::remote_mta(&self.hop)
    }

    /// True if the STARTTLS handshake failed (the host may still talk in clear).
    pub(crate) fn tls_failed(&self) -> bool {
        self.tls_trouble.is_some()
    }

    /// What the session showed of TLS, once it got as far as the EHLO reply; `None` if it
    /// ended earlier.
    pub(crate) fn tls_seen(&self) -> Option<TlsSeen> {
        // A failed check, whether it broke the handshake or was made after it for a report.
        if let Some(t) = self.certificate {
            return Some(TlsSeen::Certificate(t));
        }
        if self.stream.tls_version().is_some() {
            return Some(TlsSeen::Established);
        }
        if self.tls_trouble.is_some() {
            return Some(TlsSeen::HandshakeFailed);
        }
        // A session lost during EHLO would count here too; rare, and still not TLS.
        (self.client.greeting().is_some() && !self.client.extensions().starttls).then_some(TlsSeen::NotOffered)
    }

    /// Whether the server offered DSN (RFC 3461) in its EHLO reply: then it was handed the
    /// DSN parameters and reports on its own.
    pub(crate) fn offers_dsn(&self) -> bool {
        self.client.extensions().dsn
    }

    /// True if another job may be started on this connection.
    pub(crate) fn is_reusable(&self) -> bool {
        self.client.is_reusable()
    }

    /// Starts another job on an idle connection; gives it back if the connection cannot take it.
    pub(crate) fn next_job(&mut self, job: Job) -> Result<(), Job> {
        if self.stream.is_stale() {
            return Err(job);
        }
        self.client.next_job(job)
    }

    /// Runs the dialog until the job in progress is over.
    pub(crate) async fn run(&mut self, message: &[u8]) -> Outcome {
        // One deadline per awaited reply: a server that trickles octets cannot stretch it.
        let mut deadline = None;
        loop {
            let event = self.client.poll(&mut self.input);
            if !matches!(event, ClientEvent::NeedInput) {
                deadline = None;
            }
            match event {
                ClientEvent::Write(bytes) => {
                    let bytes = bytes.to_vec();
                    self.write(&bytes).await;
                }
                ClientEvent::NeedInput => {
                    let phase = self.client.phase();
                    let at = *deadline.get_or_insert_with(|| Instant::now() + phase.timeout());
                    self.read(at, phase).await;
                }
                ClientEvent::StartTls => self.start_tls().await,
                ClientEvent::SendBody => self.send_body(message).await,
                ClientEvent::Done(outcome) => return self.done(outcome),
                // Not expected with a job in progress; end the session cleanly.
                ClientEvent::Ready => self.client.finish(),
                ClientEvent::Closed => return Outcome::Temporary(failure::closed_early()),
                _ => self.client.connection_lost("unexpected state of the SMTP client"),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let limit = self.client.phase().timeout();
        match timeout(limit, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.client.connection_lost(&format!("write error: {e}")),
            Err(_) => self.client.connection_lost("timed out writing to the server"),
        }
    }

    async fn read(&mut self, deadline: Instant, phase: Phase) {
        let mut buf = [0u8; READ_CHUNK];
        match timeout_at(deadline, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) => self.client.connection_lost("connection closed by the server"),
            Ok(Ok(n)) => self.input.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => self.client.connection_lost(&format!("read error: {e}")),
            Err(_) => {
                let reason = format!("no reply within {} s ({phase})", phase.timeout().as_secs());
                self.client.connection_lost(&reason);
            }
        }
    }

    async fn start_tls(&mut self) {
        let Some(name) = self.server_name.clone() else {
            self.tls_trouble = Some(TlsTrouble::Handshake);
            self.client.connection_lost("the host name is not usable for TLS");
            return;
        };
        let handshake = self.stream.handshake(self.tls_config.clone(), name);
        match timeout(Phase::StartTls.timeout(), handshake).await {
            Ok(Ok(())) => {
                count_tls(self.metrics.as_deref(), &self.stream);
                if let (Some(verifier), Some(session), Some(name)) =
                    (&self.report_verifier, self.stream.tls_session(), &self.server_name)
                {
                    self.certificate = crate::tls::report_check(verifier, session, name);
                }
                self.client.tls_established();
            }
            Ok(Err(e)) => {
                let certificate = crate::tls::is_certificate_error(&e);
                self.certificate = crate::tls::certificate_result(&e);
                self.tls_trouble = Some(if certificate { TlsTrouble::Certificate } else { TlsTrouble::Handshake });
                self.client.connection_lost(&format!("TLS handshake failed: {e}"));
            }
            Err(_) => {
                self.tls_trouble = Some(TlsTrouble::Handshake);
                self.client.connection_lost("TLS handshake timed out");
            }
        }
    }

    /// Streams the content through the dot-stuffer, a chunk at a time, each write bounded
    /// by the data block timeout (RFC 5321 §4.5.3.2.5).
    async fn send_body(&mut self, message: &[u8]) {
        let limit = Phase::DataBlock.timeout();
        let mut body = Stuffed::new(message);
        while let Some(out) = body.next_chunk() {
            match timeout(limit, self.stream.write_all(out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return self.client.connection_lost(&format!("write error in the message content: {e}")),
                Err(_) => return self.client.connection_lost("timed out writing the message content"),
            }
        }
        self.client.body_sent();
    }

    /// The job's outcome, with the TLS failure's status when the handshake broke it, and
    /// the connection's log line the first time.
    fn done(&mut self, mut outcome: Outcome) -> Outcome {
        if let (Some(trouble), Outcome::Temporary(f)) = (self.tls_trouble, &mut outcome)
            && f.kind == FailureKind::Connection
            && f.phase == Phase::StartTls
        {
            failure::mark_tls(f, trouble == TlsTrouble::Certificate);
        }
        if !self.announced {
            self.announced = true;
            let tls = self.stream.tls_description().unwrap_or_else(|| "no TLS".to_owned());
            let greeting = self.client.greeting().is_some();
            info!(host = %Esc(&self.hop.host), addr = %self.hop.addr, tls = %tls, greeted = greeting, "outbound connection");
        }
        outcome
    }

    /// Ends the session politely (QUIT when the server still listens), within [`QUIT_WAIT`].
    pub(crate) async fn close(mut self) {
        self.client.finish();
        let deadline = Instant::now() + QUIT_WAIT;
        // A handful of steps at most: QUIT, its reply, the end. The bound guards the loop.
        for _ in 0..16 {
            match self.client.poll(&mut self.input) {
                ClientEvent::Write(bytes) => {
                    let bytes = bytes.to_vec();
                    if !matches!(timeout_at(deadline, self.stream.write_all(&bytes)).await, Ok(Ok(()))) {
                        break;
                    }
                }
                ClientEvent::NeedInput => {
                    let mut buf = [0u8; READ_CHUNK];
                    match timeout_at(deadline, self.stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => self.input.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                ClientEvent::Done(_) | ClientEvent::Ready => self.client.finish(),
                _ => break,
            }
        }
        let _ = timeout_at(deadline, self.stream.shutdown()).await;
    }
}
