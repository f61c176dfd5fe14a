//! The message being received: from the start of DATA/BDAT into a spool writer (our
//! `Received:` field first, forged `Authentication-Results:` fields filtered out on verifying
//! sessions), then verified or signed ([`msgauth`](crate::msgauth)) and committed — durable
//! before the caller may answer 250.

mod milter;

use crate::envelope;
use crate::logging;
use crate::milter::Filters;
use crate::msgauth::{Mode, Received};
use crate::shared::Shared;
use crate::storage::Failure;
use crate::stream::TlsInfo;
use dakiya_config::{Checks, Target};
use dakiya_history::{Event, MessageIdScanner, Verdict};
use dakiya_mailauth::{HeaderFilter, SpfCheck};
use dakiya_metrics::Rejection;
use dakiya_proto::logtext::Esc;
use dakiya_proto::{Reply, Server};
use dakiya_queue::ReceivedCounter;
use dakiya_spool::{Envelope, MessageWriter, SpoolError};
use std::net::SocketAddr;

/// The message being received: its spool writer, or why it can no longer be stored.
pub struct Message {
    writer: Option<MessageWriter>,
    failed: Option<SpoolError>,
    rcpts: usize,
    sender: String,
    /// The envelope as given to the writer (the end of DATA may add `prepend`).
    envelope: Option<Envelope>,
    auth: Mode,
    /// Removes forged Authentication-Results fields (verifying sessions).
    filter: Option<HeaderFilter>,
    /// The message's arrival as the history records it, completed at commit.
    history: Option<dakiya_history::Received>,
    /// Finds the Message-ID for the history.
    message_id: MessageIdScanner,
    /// The authentication results decided at the end of DATA, for the history.
    verdicts: Vec<Verdict>,
    /// Why a milter quarantined the message: it is held once committed.
    quarantine: Option<String>,
    /// Counts the `Received:` fields as the message arrives, ours included, so that the
    /// delivery run's loop check (RFC 5321 §6.3) need not read the stored message again.
    received: ReceivedCounter,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            writer: None,
            failed: None,
            rcpts: 0,
            sender: String::new(),
            envelope: None,
            auth: Mode::None,
            filter: None,
            history: None,
            message_id: MessageIdScanner::default(),
            verdicts: Vec::new(),
            quarantine: None,
            received: ReceivedCounter::default(),
        }
    }
}

/// Where a message comes from: the client's address, its forward-confirmed reverse DNS
/// name (if screening found one) and the listener (`ROLE ADDRESS`).
pub struct Origin<'a> {
    pub peer: SocketAddr,
    pub name: Option<&'a str>,
    pub listener: &'a str,
}

impl Message {
    /// Starts storing the content of the session's transaction; `origin` says where it came
    /// from, `auth` what happens to it at the end besides storing it.
    pub fn start(
        &mut self,
        shared: &Shared,
        server: &Server<Vec<Target>>,
        origin: Origin,
        tls: Option<&TlsInfo>,
        auth: Mode,
    ) {
        let peer = origin.peer;
        self.abort();
        self.auth = auth;
        if auth == Mode::Verify {
            self.filter = Some(HeaderFilter::new(&shared.live.get().config.hostname));
        }
        let Some(tx) = server.transaction() else { return };
        let id = shared.spool.new_id();
        let env = envelope::build(id, tx, server.hello(), peer);
        self.rcpts = env.recipients.len();
        self.sender = env.sender.clone();
        self.envelope = Some(env.clone());
        self.history = Some(arrival(&env, tls, server.auth_user(), &origin));
        let trace =
            envelope::Trace { hello: server.hello(), peer, name: origin.name, tls, auth_user: server.auth_user() };
        let received = envelope::received_header(&shared.live.get().config.hostname, &env, tx, &trace);
        self.received.push(received.as_bytes());
        match shared.spool.writer(env) {
            Ok(mut w) => match w.write(received.as_bytes()) {
                Ok(()) => self.writer = Some(w),
                Err(e) => self.failed = Some(e),
            },
            Err(e) => self.failed = Some(e),
        }
    }

    /// Appends content (dot-unstuffed, as the session hands it over).
    pub fn write(&mut self, bytes: &[u8]) {
        self.message_id.push(bytes);
        self.received.push(bytes);
        match self.filter.as_mut() {
            Some(filter) => {
                let mut out = Vec::with_capacity(bytes.len());
                filter.push(bytes, &mut out);
                self.write_raw(&out);
            }
            None => self.write_raw(bytes),
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        // Past the spool's memory buffer, writes go to the file: keep that blocking I/O off
        // the runtime's reactor threads.
        const SPILL: u64 = 128 * 1024;
        let Some(w) = self.writer.as_mut() else { return };
        let result = if w.len() + bytes.len() as u64 > SPILL {
            tokio::task::block_in_place(|| w.write(bytes))
        } else {
            w.write(bytes)
        };
        if let Err(e) = result {
            self.failed = Some(e);
            self.writer = None;
        }
    }

    /// Makes the message durable; only then may the caller answer 250. Verifies or signs
    /// it first, per the session's [`Mode`].
    /// The session's milters see it first (`filters`), and may edit, discard or quarantine it.
    pub async fn commit(
        &mut self,
        shared: &Shared,
        checks: &Checks,
        spf: Option<&SpfCheck>,
        filters: &mut Filters,
    ) -> Result<String, Reply> {
        let temp_fail = |why: Failure| {
            shared.metrics.rejected(Rejection::LocalError);
            shared.health.commit_result(Err(&why));
            why.refuse(&logging::STORE_FAILED, "Temporary local problem storing the message, try again later")
        };
        if let Some(mut filter) = self.filter.take() {
            let mut rest = Vec::new();
            filter.finish(&mut rest);
            self.write_raw(&rest);
            if filter.removed > 0 {
                let id = self.envelope.as_ref().map(|e| e.id.to_string()).unwrap_or_default();
                tracing::info!(queue_id = %id, removed = filter.removed, "removed Authentication-Results fields claiming to be ours");
            }
        }
        // A milter may add or change header fields: then the count is not known.
        let received = (!filters.active()).then(|| self.received.count());
        if filters.active() && self.writer.is_some() {
            match self.run_milters(shared, filters).await {
                Ok(None) => {}
                Ok(Some(discarded)) => return Ok(discarded),
                Err(reply) => {
                    self.abort();
                    return Err(reply);
                }
            }
        }
        if self.auth != Mode::None && self.writer.is_some() {
            match self.add_auth_fields(shared, checks, spf).await {
                Ok(()) => {}
                Err(reply) => {
                    self.abort();
                    return Err(reply);
                }
            }
        }
        let Some(writer) = self.writer.take() else {
            return Err(temp_fail(self.failed.take().map_or(Failure::NoMessage, Failure::Spool)));
        };
        let size = writer.len();
        match commit(writer).await {
            Ok(Ok(id)) => {
                tracing::info!(queue_id = %id, from = %Esc(&format!("<{}>", self.sender)), rcpts = self.rcpts, size, "accepted");
                self.record(shared, id.as_str(), size);
                shared.metrics.message_accepted(size);
                shared.health.commit_result(Ok(()));
                if let Some(reason) = self.quarantine.take() {
                    // Held before the queue sees it (docs/milter.md, "Quarantine").
                    tracing::info!(queue_id = %id, reason = %Esc(&reason), "quarantined: held");
                    if let Err(e) = shared.queue.control(dakiya_control::ControlOp::Hold(id.clone())).await {
                        tracing::warn!(queue_id = %id, error = %Esc(&e), "could not hold a quarantined message");
                    }
                }
                match received {
                    Some(n) => shared.queue.enqueue_counted(id.clone(), n),
                    None => shared.queue.enqueue(id.clone()),
                }
                Ok(id.to_string())
            }
            Ok(Err(e)) => Err(temp_fail(e.into())),
            Err(e) => Err(temp_fail(e)),
        }
    }

    /// Reads the message back, has it verified or signed, and records the header fields to
    /// put on top of it in the envelope. `Err` is the reply refusing the message.
    async fn add_auth_fields(&mut self, shared: &Shared, checks: &Checks, spf: Option<&SpfCheck>) -> Result<(), Reply> {
        let temp = |why: SpoolError| {
            shared.metrics.rejected(Rejection::LocalError);
            Failure::from(why).refuse(&logging::READ_BACK_FAILED, "Temporary local problem, try again later")
        };
        let live = shared.live.get();
        let mailauth = &live.mailauth;
        let Some(keys) = mailauth.keys_for(self.auth) else { return Ok(()) };
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        // Reading back a spilled message is file I/O; a small one is only in memory.
        let content =
            if writer.is_spilled() { tokio::task::block_in_place(|| writer.content()) } else { writer.content() }
                .map_err(temp)?;
        let Some(mut env) = self.envelope.clone() else { return Ok(()) };
        let received = Received { content: &content, envelope: &env, spf, metrics: &shared.metrics };
        let prepend = mailauth.verify_or_sign(&keys, &live.config, self.auth, checks, received).await?;
        if prepend.is_empty() {
            return Ok(());
        }
        self.verdicts = dakiya_history::verdicts(&prepend);
        env.prepend = Some(prepend);
        let writer = self.writer.as_mut().expect("checked above");
        if writer.is_spilled() {
            tokio::task::block_in_place(|| writer.set_envelope(env))
        } else {
            writer.set_envelope(env)
        }
        .map_err(temp)
    }

    /// Drops whatever was received (a message never committed is not in the queue).
    pub fn abort(&mut self) {
        self.writer = None;
        self.failed = None;
        self.envelope = None;
        self.filter = None;
        self.auth = Mode::None;
        self.history = None;
        self.message_id = MessageIdScanner::default();
        self.verdicts.clear();
        self.quarantine = None;
        self.received = ReceivedCounter::default();
    }

    /// Records the committed message `id` of `size` bytes, and the verdicts, in the history.
    fn record(&mut self, shared: &Shared, id: &str, size: u64) {
        let Some(mut rx) = self.history.take() else { return };
        rx.size = size;
        rx.message_id = std::mem::take(&mut self.message_id).finish();
        shared.history.record(id, Event::Received(rx.clipped()));
        if !self.verdicts.is_empty() {
            shared.history.record(id, Event::Checks { results: std::mem::take(&mut self.verdicts) });
        }
    }
}

/// Commits the message and waits for it to be durable (only then may the session say 250).
/// A message held in memory is handed to the spool's committer thread and awaited through a
/// channel, so no blocking thread is taken per message; a spilled one (its file still to
/// finish and fsync) takes one, as file I/O must not run on the runtime's threads.
async fn commit(writer: MessageWriter) -> Result<Result<dakiya_spool::QueueId, SpoolError>, Failure> {
    if writer.is_spilled() {
        return Ok(tokio::task::spawn_blocking(move || writer.commit()).await?);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    writer.commit_then(move |result| {
        // The session may be gone (shutdown): the message is queued all the same, and
        // recovered at the next start, as with a blocking commit whose caller went away.
        let _ = tx.send(result);
    });
    // The spool calls back exactly once; a dropped callback (a panic) is a failed commit.
    Ok(rx.await.unwrap_or(Err(SpoolError::WriterFailed)))
}

/// The arrival of a message as the history records it; the size and Message-ID are added at
/// commit. Only the user name of an authenticated session is kept.
fn arrival(env: &Envelope, tls: Option<&TlsInfo>, user: Option<&str>, origin: &Origin) -> dakiya_history::Received {
    dakiya_history::Received {
        client: env.client_ip.clone(),
        client_name: origin.name.map(str::to_string),
        helo: env.helo.clone(),
        tls: tls.map(|t| format!("{} {}", t.version, t.cipher)),
        user: user.map(str::to_string),
        size: 0,
        message_id: None,
        sender: env.sender.clone(),
        rcpts: env.recipients.iter().map(|r| r.address.clone()).collect(),
        nrcpt: env.recipients.len(),
        listener: origin.listener.to_string(),
    }
}
