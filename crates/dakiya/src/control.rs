//! The control socket: `dakiya queue ...` talks to the running server through it.
//!
//! The server owns the spool (it holds the spool's lock), so other processes cannot read or
//! change the queue themselves; they ask the server over a Unix socket in the data directory.
//! The protocol is one JSON request line per connection, answered by one JSON response line,
//! then the server closes (see docs/queue-cli.md). Queue contents are private: the socket is
//! mode 0600, and connections from any user other than the server's own (or root) are
//! closed without an answer, which also covers the moment between `bind` and `chmod`.

use crate::queue::{ControlOp, QueueHandle};
use dakiya_spool::{BodyType, DsnRet, FailureDetail, Notify, QueueId, QueuedMessage, RcptState, Recipient, Spool};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// The socket's name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// The longest request line accepted, without its line feed. Real requests are under 100 bytes.
pub const MAX_REQUEST: usize = 4096;
/// How much of a body `show` reads looking for the end of the header section.
pub const MAX_HEADERS: u64 = 64 * 1024;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long carrying out a request may take (listing a large queue reads many files).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait to be accepted.
const MAX_CLIENTS: usize = 8;

/// A request, as parsed from its JSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every queued message with its recipients' states.
    List,
    /// One message in detail, with its header section.
    Show(QueueId),
    /// A change carried out by the scheduler.
    Control(ControlOp),
}

/// Why a request line was refused; the text goes back to the client as `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("request line longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("empty request")]
    Empty,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{0} needs an id")]
    MissingId(&'static str),
    #[error("{0}")]
    Unexpected(&'static str),
    #[error("invalid queue id: expected 16 uppercase hex digits")]
    InvalidId,
}

/// The request line's JSON object, before its fields are checked against the command.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// Parses one request line (without its line feed). Never does I/O.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Empty);
    }
    let malformed = |e: serde_json::Error| RequestError::Malformed(e.to_string());
    // Through a map first: a derived struct would also accept a JSON array.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).map_err(malformed)?;
    let raw: RawRequest = serde_json::from_value(object.into()).map_err(malformed)?;
    let id = |cmd: &'static str| -> Result<QueueId, RequestError> {
        let id = raw.id.as_deref().ok_or(RequestError::MissingId(cmd))?;
        id.parse().map_err(|_| RequestError::InvalidId)
    };
    if raw.all && raw.cmd != "retry" {
        return Err(RequestError::Unexpected("\"all\" is only for retry"));
    }
    match raw.cmd.as_str() {
        "list" if raw.id.is_some() => Err(RequestError::Unexpected("list takes no id")),
        "list" => Ok(Request::List),
        "show" => Ok(Request::Show(id("show")?)),
        "retry" if raw.all && raw.id.is_some() => Err(RequestError::Unexpected("retry takes an id or all, not both")),
        "retry" if raw.all => Ok(Request::Control(ControlOp::Retry(None))),
        "retry" => Ok(Request::Control(ControlOp::Retry(Some(id("retry")?)))),
        "hold" => Ok(Request::Control(ControlOp::Hold(id("hold")?))),
        "release" => Ok(Request::Control(ControlOp::Release(id("release")?))),
        "delete" => Ok(Request::Control(ControlOp::Delete(id("delete")?))),
        _ => Err(RequestError::UnknownCommand(raw.cmd.chars().take(32).collect())),
    }
}

impl Request {
    /// The request as a JSON line, without the line feed (what the client sends).
    pub fn encode(&self) -> String {
        let (cmd, id, all) = match self {
            Request::List => ("list", None, false),
            Request::Show(id) => ("show", Some(id), false),
            Request::Control(ControlOp::Retry(None)) => ("retry", None, true),
            Request::Control(ControlOp::Retry(Some(id))) => ("retry", Some(id), false),
            Request::Control(ControlOp::Hold(id)) => ("hold", Some(id), false),
            Request::Control(ControlOp::Release(id)) => ("release", Some(id), false),
            Request::Control(ControlOp::Delete(id)) => ("delete", Some(id), false),
        };
        let raw = RawRequest { cmd: cmd.into(), id: id.map(|id| id.to_string()), all };
        serde_json::to_string(&raw).unwrap_or_default()
    }
}

/// The one response line. `ok` says whether the request was carried out; the other fields
/// belong to particular commands and are left out when not used.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The server's clock (unix seconds) when it answered `list` or `show`; ages and next
    /// attempts are relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<u64>,
    /// `list`: every queued message, in queue id order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
    /// `show`: the message, with `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageView>,
    /// `retry`, `hold`, `release`, `delete`: how many messages the request affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<usize>,
}

impl Response {
    fn error(text: impl Into<String>) -> Response {
        Response { ok: false, error: Some(text.into()), ..Response::default() }
    }
}

/// One queued message as `list` and `show` report it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageView {
    pub id: QueueId,
    /// When the message was accepted (unix seconds).
    pub received_at: u64,
    /// Seconds since `received_at`.
    pub age: u64,
    /// The reverse-path without angle brackets; `""` is the null sender `<>`.
    pub sender: String,
    /// Body size in bytes.
    pub size: u64,
    pub held: bool,
    pub recipients: Vec<RcptView>,
    /// `show` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<MessageDetail>,
}

/// What `show` adds to a message: the rest of the envelope and the header section.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageDetail {
    pub client_ip: String,
    pub helo: String,
    pub body: BodyType,
    pub smtputf8: bool,
    pub dsn_ret: Option<DsnRet>,
    pub dsn_envid: Option<String>,
    /// The header section (lines joined with `\n`, invalid UTF-8 replaced).
    pub headers: String,
    /// No blank line was found in the first [`MAX_HEADERS`] bytes.
    pub headers_truncated: bool,
}

/// A recipient's delivery state, by name.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Pending,
    Deferred,
    Delivered,
    Failed,
}

/// One recipient as `list` and `show` report it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RcptView {
    pub address: String,
    pub state: StateName,
    /// Deferred: attempts made so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Deferred: when the next attempt is due (unix seconds). Pending recipients are due now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
    /// Delivered or failed: when (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// Deferred or failed: the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `show` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RcptDetail>,
}

/// What `show` adds to a recipient.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RcptDetail {
    /// The RCPT TO address as the client gave it.
    pub original: String,
    pub orcpt: Option<String>,
    /// `None`: NOTIFY not given; `[]`: NOTIFY=NEVER.
    pub notify: Option<Vec<Notify>>,
    /// `domain/mailbox` for local delivery; `None` for remote delivery.
    pub mailbox: Option<String>,
    /// The DSN fields of the last failure.
    pub failure: Option<FailureDetail>,
    /// Deferred: a delay DSN was sent. Failed: the sender was told.
    pub notified: bool,
}

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
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| br#"{"ok":false,"error":"internal error"}"#.into());
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
    use dakiya_spool::Envelope;

    const ID: &str = "0655E5A000000001";

    fn id() -> QueueId {
        ID.parse().unwrap()
    }

    #[test]
    fn parses_every_command() {
        let cases = [
            (r#"{"cmd":"list"}"#, Request::List),
            (r#"{"cmd":"show","id":"0655E5A000000001"}"#, Request::Show(id())),
            (r#"{"cmd":"retry","id":"0655E5A000000001"}"#, Request::Control(ControlOp::Retry(Some(id())))),
            (r#"{"cmd":"retry","all":true}"#, Request::Control(ControlOp::Retry(None))),
            (r#" {"cmd":"hold","id":"0655E5A000000001"} "#, Request::Control(ControlOp::Hold(id()))),
            (r#"{"id":"0655E5A000000001","cmd":"release"}"#, Request::Control(ControlOp::Release(id()))),
            (r#"{"cmd":"delete","id":"0655E5A000000001"}"#, Request::Control(ControlOp::Delete(id()))),
        ];
        for (line, want) in cases {
            assert_eq!(parse_request(line.as_bytes()), Ok(want.clone()), "{line}");
            // What the client sends parses back to the same request.
            assert_eq!(parse_request(want.encode().as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn refuses_bad_requests() {
        use RequestError::*;
        let cases: [(&[u8], RequestError); 14] = [
            (b"", Empty),
            (b"  \r", Empty),
            (br#"{"cmd":"list","id":"0655E5A000000001"}"#, Unexpected("list takes no id")),
            (br#"{"cmd":"show"}"#, MissingId("show")),
            (br#"{"cmd":"delete","all":true}"#, Unexpected("\"all\" is only for retry")),
            (br#"{"cmd":"retry"}"#, MissingId("retry")),
            (br#"{"cmd":"retry","all":false}"#, MissingId("retry")),
            (
                br#"{"cmd":"retry","all":true,"id":"0655E5A000000001"}"#,
                Unexpected("retry takes an id or all, not both"),
            ),
            (br#"{"cmd":"hold","id":"../../etc/passwd"}"#, InvalidId),
            (br#"{"cmd":"hold","id":"0655e5a000000001"}"#, InvalidId),
            (br#"{"cmd":"flush"}"#, UnknownCommand("flush".into())),
            (br#"{"cmd":"list"} trailing"#, Malformed(String::new())),
            (br#"{"cmd":"list","force":true}"#, Malformed(String::new())),
            (b"\xff\xfe", Malformed(String::new())),
        ];
        for (line, want) in cases {
            let got = parse_request(line).unwrap_err();
            match want {
                Malformed(_) => assert!(matches!(got, Malformed(_)), "{line:?}: {got:?}"),
                want => assert_eq!(got, want, "{line:?}"),
            }
        }
        for line in [r#"["list"]"#, r#"{"cmd":1}"#, r#"{"cmd":"show","id":7}"#, "list", "{"] {
            assert!(matches!(parse_request(line.as_bytes()), Err(Malformed(_))), "{line}");
        }
    }

    #[test]
    fn long_requests_and_unknown_commands_are_bounded() {
        let pad = " ".repeat(MAX_REQUEST - r#"{"cmd":"list"}"#.len());
        let exact = format!("{pad}{}", r#"{"cmd":"list"}"#);
        assert_eq!(exact.len(), MAX_REQUEST);
        assert_eq!(parse_request(exact.as_bytes()), Ok(Request::List));
        let over = format!(" {exact}");
        assert_eq!(parse_request(over.as_bytes()), Err(RequestError::TooLong));
        // The error text echoes at most 32 characters of what the client sent.
        let long = format!(r#"{{"cmd":"{}"}}"#, "x".repeat(1000));
        let err = parse_request(long.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 60, "{err}");
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
        let line = serde_json::to_string(&response).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), response);
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

    #[test]
    fn error_response_is_one_small_line() {
        let line = serde_json::to_string(&Response::error("no message X in the queue")).unwrap();
        assert_eq!(line, r#"{"ok":false,"error":"no message X in the queue"}"#);
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
