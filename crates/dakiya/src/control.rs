//! The control socket: `dakiya queue ...` talks to the running server through it.
//!
//! The server owns the spool (it holds the spool's lock), so other processes cannot read or
//! change the queue themselves; they ask the server over a Unix socket in the data directory.
//! The protocol is one JSON request line per connection, answered by one JSON response line,
//! then the server closes (see docs/queue-cli.md). Queue contents are private: the socket is
//! mode 0600, and connections from any user other than the server's own (or root) are
//! closed without an answer, which also covers the moment between `bind` and `chmod`.
//!
//! The wire format (requests, responses, their parsing and encoding) is `dakiya_control`'s;
//! here is the server side: the socket, who may connect, deadlines, carrying requests out.

use dakiya_control::{
    MAX_HEADERS, MAX_REQUEST, MessageDetail, MessageView, RcptDetail, RcptView, Request, Response, StateName,
    parse_request,
};
use dakiya_queue::QueueHandle;
use dakiya_spool::{QueueId, QueuedMessage, RcptState, Recipient, Spool};
// Where the server listens is part of the wire contract too; listen.rs names it from here.
pub use dakiya_control::SOCKET_NAME;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long carrying out a request may take (listing a large queue reads many files).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait to be accepted.
const MAX_CLIENTS: usize = 8;

/// The view of `m` at time `now`; `headers` (from `show`) adds the details.
pub fn message_view(m: &QueuedMessage, now: u64, headers: Option<(String, bool)>) -> MessageView {
    let env = &m.envelope;
    let with_detail = headers.is_some();
    let recipients = env
        .recipients
        .iter()
        .zip(m.states.iter().chain(std::iter::repeat(&RcptState::Pending)))
        .map(|(r, s)| rcpt_view(r, s, with_detail))
        .collect();
    let detail = headers.map(|(headers, headers_truncated)| MessageDetail {
        client_ip: env.client_ip.clone(),
        helo: env.helo.clone(),
        body: env.body,
        smtputf8: env.smtputf8,
        dsn_ret: env.dsn_ret,
        dsn_envid: env.dsn_envid.clone(),
        headers,
        headers_truncated,
    });
    MessageView {
        id: env.id.clone(),
        received_at: env.received_at,
        age: now.saturating_sub(env.received_at),
        sender: env.sender.clone(),
        size: m.size,
        held: m.held,
        recipients,
        detail,
    }
}

fn rcpt_view(r: &Recipient, s: &RcptState, with_detail: bool) -> RcptView {
    let base = RcptView {
        address: r.address.clone(),
        state: StateName::Pending,
        attempts: None,
        next_attempt: None,
        at: None,
        error: None,
        detail: None,
    };
    let (mut v, failure, notified) = match s {
        RcptState::Pending => (base, None, false),
        RcptState::Delivered { at } => (RcptView { state: StateName::Delivered, at: Some(*at), ..base }, None, false),
        RcptState::Deferred { attempts, next_attempt, error, detail, delay_notified } => {
            let v = RcptView {
                state: StateName::Deferred,
                attempts: Some(*attempts),
                next_attempt: Some(*next_attempt),
                error: Some(error.clone()),
                ..base
            };
            (v, detail.clone(), *delay_notified)
        }
        RcptState::Failed { at, error, detail, notified } => {
            let v = RcptView { state: StateName::Failed, at: Some(*at), error: Some(error.clone()), ..base };
            (v, detail.clone(), *notified)
        }
    };
    if with_detail {
        v.detail = Some(RcptDetail {
            original: r.original.clone(),
            orcpt: r.orcpt.clone(),
            notify: r.notify.clone(),
            mailbox: r.mailbox.as_ref().map(|(domain, mailbox)| format!("{domain}/{mailbox}")),
            failure,
            notified,
        });
    }
    v
}

/// The header section at the start of `body`: everything before the first empty line
/// (RFC 5322 §2.1), read no further than [`MAX_HEADERS`] bytes. Lines come back joined by `\n`;
/// the flag says the limit was reached before the empty line.
pub fn header_section(body: impl Read) -> io::Result<(String, bool)> {
    let mut buf = Vec::new();
    body.take(MAX_HEADERS).read_to_end(&mut buf)?;
    let (end, truncated) = if buf.starts_with(b"\r\n") {
        (0, false)
    } else {
        match buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(pos) => (pos + 2, false),
            None => (buf.len(), buf.len() as u64 >= MAX_HEADERS),
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).replace("\r\n", "\n");
    Ok((text, truncated))
}

/// What the connection handlers share.
struct Ctx {
    spool: Arc<Spool>,
    queue: QueueHandle,
    /// The user id that owns the socket file: the server's own.
    owner: u32,
}

/// Listens on `path` until the process ends, answering requests.
pub async fn serve(path: PathBuf, spool: Arc<Spool>, queue: QueueHandle) -> io::Result<()> {
    let listener = bind(&path)?;
    let owner = std::fs::metadata(&path)?.uid();
    tracing::info!(path = %path.display(), "control socket listening");
    let ctx = Arc::new(Ctx { spool, queue, owner });
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return Ok(()) };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            handle(stream, &ctx).await;
            drop(permit);
        });
    }
}

/// Binds the socket at `path` with mode 0600, replacing a stale socket left by a server that
/// is gone, but never one that still answers nor a file that is not a socket.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket"));
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server is answering on this socket"));
        }
        Ok(_) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => tracing::info!(path = %path.display(), "removed a stale control socket"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves one connection: checks who is asking, reads one request, writes one response.
async fn handle(mut stream: UnixStream, ctx: &Ctx) {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == ctx.owner || cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(uid = cred.uid(), "control socket: refused a connection from another user");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "control socket: cannot tell who connected; refused");
            return;
        }
    }
    let (reader, mut writer) = stream.split();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(reader)).await {
        Err(_) => Response::error("timed out waiting for the request"),
        Ok(Err(e)) => Response::error(format!("reading the request: {e}")),
        Ok(Ok(line)) => match parse_request(&line) {
            Err(e) => Response::error(e.to_string()),
            Ok(req) => match tokio::time::timeout(EXEC_TIMEOUT, execute(req, ctx)).await {
                Ok(r) => r,
                Err(_) => Response::error("timed out carrying out the request"),
            },
        },
    };
    let mut out = response.encode().into_bytes();
    out.push(b'\n');
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        writer.write_all(&out).await?;
        writer.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("control socket: client went away before reading the response");
    }
}

/// Reads one request line (the line feed removed; end of input also ends it), no longer than
/// [`MAX_REQUEST`] bytes: a longer one is returned as is for the parser to refuse, and
/// nothing after it is read.
async fn read_request(reader: impl AsyncRead + Unpin) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    BufReader::new(reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line).await?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

async fn execute(req: Request, ctx: &Ctx) -> Response {
    let spool = ctx.spool.clone();
    match req {
        Request::List => {
            let listed = tokio::task::spawn_blocking(move || spool.list()).await;
            let now = crate::envelope::now();
            match listed {
                Ok(Ok(messages)) => Response {
                    ok: true,
                    now: Some(now),
                    messages: Some(messages.iter().map(|m| message_view(m, now, None)).collect()),
                    ..Response::default()
                },
                Ok(Err(e)) => Response::error(format!("cannot read the queue: {e}")),
                Err(e) => Response::error(format!("internal error: {e}")),
            }
        }
        Request::Show(id) => match tokio::task::spawn_blocking(move || show(&spool, &id)).await {
            Ok(Ok((view, now))) => Response { ok: true, now: Some(now), message: Some(view), ..Response::default() },
            Ok(Err(e)) => Response::error(e),
            Err(e) => Response::error(format!("internal error: {e}")),
        },
        Request::Control(op) => {
            tracing::info!(?op, "control socket: queue operation");
            match ctx.queue.control(op).await {
                Ok(n) => Response { ok: true, affected: Some(n), ..Response::default() },
                Err(e) => Response::error(e),
            }
        }
    }
}

/// `show`: the message in detail, and the time it was looked at.
fn show(spool: &Spool, id: &QueueId) -> Result<(MessageView, u64), String> {
    let m = spool.load(id).map_err(|e| e.to_string())?;
    let body = spool.body(id).map_err(|e| e.to_string())?;
    let headers = header_section(body).map_err(|e| format!("reading message {id}: {e}"))?;
    let now = crate::envelope::now();
    Ok((message_view(&m, now, Some(headers)), now))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dakiya_control::RequestError;
    use dakiya_spool::{BodyType, DsnRet, Envelope, FailureDetail, Notify};

    const ID: &str = "0655E5A000000001";

    fn id() -> QueueId {
        ID.parse().unwrap()
    }

    #[tokio::test]
    async fn reads_one_line_and_no_more_than_the_limit() {
        let read = |input: Vec<u8>| async move { read_request(input.as_slice()).await.unwrap() };
        assert_eq!(read(b"{\"cmd\":\"list\"}\nmore".to_vec()).await, b"{\"cmd\":\"list\"}");
        // A client may half-close instead of sending a line feed.
        assert_eq!(read(b"{\"cmd\":\"list\"}".to_vec()).await, b"{\"cmd\":\"list\"}");
        let mut long = vec![b'x'; 100_000];
        long.push(b'\n');
        let got = read(long).await;
        assert_eq!(got.len(), MAX_REQUEST + 1);
        assert_eq!(parse_request(&got), Err(RequestError::TooLong));
        let mut exact = vec![b' '; MAX_REQUEST];
        exact.push(b'\n');
        assert_eq!(read(exact).await.len(), MAX_REQUEST);
    }

    pub(crate) fn sample() -> QueuedMessage {
        let rcpt = |address: &str, mailbox: Option<(&str, &str)>| Recipient {
            address: address.into(),
            original: address.to_uppercase(),
            orcpt: None,
            notify: Some(vec![Notify::Failure]),
            mailbox: mailbox.map(|(d, m)| (d.into(), m.into())),
        };
        QueuedMessage {
            envelope: Envelope {
                id: id(),
                received_at: 1_000,
                sender: "a@remote.test".into(),
                client_ip: "192.0.2.1".into(),
                helo: "client.test".into(),
                body: BodyType::EightBitMime,
                smtputf8: false,
                dsn_ret: Some(DsnRet::Hdrs),
                dsn_envid: Some("env-1".into()),
                prepend: None,
                recipients: vec![
                    rcpt("alice@example.test", Some(("example.test", "alice"))),
                    rcpt("bob@elsewhere.test", None),
                    rcpt("carol@elsewhere.test", None),
                ],
            },
            states: vec![
                RcptState::Delivered { at: 1_001 },
                RcptState::Deferred {
                    attempts: 2,
                    next_attempt: 1_900,
                    error: "451 4.4.1 connection refused".into(),
                    detail: Some(FailureDetail { status: "4.4.1".into(), remote_mta: None, diagnostic: None }),
                    delay_notified: false,
                },
            ],
            size: 2048,
            held: false,
        }
    }

    #[test]
    fn list_view_has_states_but_no_details() {
        let v = message_view(&sample(), 1_200, None);
        assert_eq!((v.age, v.size, v.held, v.detail.is_none()), (200, 2048, false, true));
        let states: Vec<StateName> = v.recipients.iter().map(|r| r.state).collect();
        // A recipient without a status record is pending.
        assert_eq!(states, [StateName::Delivered, StateName::Deferred, StateName::Pending]);
        assert_eq!(v.recipients[0].at, Some(1_001));
        assert_eq!(v.recipients[1].next_attempt, Some(1_900));
        assert_eq!(v.recipients[1].attempts, Some(2));
        assert!(v.recipients.iter().all(|r| r.detail.is_none()));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["recipients"][1]["state"], "deferred");
        assert_eq!(json["recipients"][1]["error"], "451 4.4.1 connection refused");
        assert!(json["recipients"][2].get("error").is_none());
    }

    #[test]
    fn show_view_adds_envelope_and_recipient_details() {
        let v = message_view(&sample(), 1_200, Some(("Subject: x\n".into(), false)));
        let d = v.detail.as_ref().unwrap();
        assert_eq!(
            (d.client_ip.as_str(), d.helo.as_str(), d.dsn_ret),
            ("192.0.2.1", "client.test", Some(DsnRet::Hdrs))
        );
        let r = v.recipients[0].detail.as_ref().unwrap();
        assert_eq!(r.mailbox.as_deref(), Some("example.test/alice"));
        assert_eq!(r.original, "ALICE@EXAMPLE.TEST");
        assert_eq!(v.recipients[1].detail.as_ref().unwrap().failure.as_ref().unwrap().status, "4.4.1");
        // Round trip: what the server sends, the client reads.
        let response = Response { ok: true, now: Some(1_200), message: Some(v), ..Response::default() };
        assert_eq!(Response::parse(response.encode().as_bytes()), Ok(response));
    }

    #[test]
    fn header_section_ends_at_the_first_blank_line() {
        let (h, cut) = header_section(&b"Received: x\r\n\tby y\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore"[..]).unwrap();
        assert_eq!((h.as_str(), cut), ("Received: x\n\tby y\nSubject: hi\n", false));
        assert_eq!(header_section(&b"\r\nbody"[..]).unwrap(), (String::new(), false));
        assert_eq!(header_section(&b"Subject: only\r\n"[..]).unwrap(), ("Subject: only\n".into(), false));
        let huge = format!("X-Long: {}\r\n\r\nbody", "a".repeat(100_000));
        let (h, cut) = header_section(huge.as_bytes()).unwrap();
        assert!(cut);
        assert_eq!(h.len() as u64, MAX_HEADERS);
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_NAME);
        let live = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // The file stays behind when the listener goes (as after a crash): it is replaced.
        assert!(path.exists());
        let _again = bind(&path).unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        assert_eq!(bind(&file).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
