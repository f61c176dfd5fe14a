//! The control socket: `dakiya queue ...` talks to the running server through it.
//!
//! The server owns the spool (it holds the spool's lock), so other processes cannot read or
//! change the queue themselves; they ask the server over a Unix socket in the data directory.
//! The protocol is one JSON request line per connection, answered by one JSON response line,
//! then the server closes (see docs/queue-cli.md). Queue contents are private: the socket is
//! mode 0600, and connections from any user other than the server's own (or root) are
//! closed without an answer, which also covers the moment between `bind` and `chmod`.
//!
//! The wire format (requests, responses, their parsing and encoding, and the views built from
//! spool data) is `dakiya_control`'s; here is the server side: the socket, who may connect,
//! deadlines, carrying requests out.

use crate::reload::ReloadHandle;
use crate::status::StatusSource;
use dakiya_control::{
    ControlOp, MAX_REQUEST, MessageView, Request, Response, header_section, message_view, parse_request, queue_stats,
};
use dakiya_queue::QueueHandle;
use dakiya_spool::{QueueId, QueuedMessage, Spool, SpoolError};
// Where the server listens is part of the wire contract too; listen.rs names it from here.
pub use dakiya_control::SOCKET_NAME;
use std::io;
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

/// What the connection handlers share.
struct Ctx {
    spool: Arc<Spool>,
    queue: QueueHandle,
    /// Carries out `reload`.
    reload: ReloadHandle,
    /// Answers `status`.
    status: Arc<StatusSource>,
    /// The user id that owns the socket file: the server's own.
    owner: u32,
}

/// Listens on `path` until the process ends, answering requests.
pub async fn serve(
    path: PathBuf,
    spool: Arc<Spool>,
    queue: QueueHandle,
    reload: ReloadHandle,
    status: Arc<StatusSource>,
) -> io::Result<()> {
    let listener = bind(&path)?;
    let owner = std::fs::metadata(&path)?.uid();
    tracing::info!(path = %path.display(), "control socket listening");
    let ctx = Arc::new(Ctx { spool, queue, reload, status, owner });
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
            from_queue(spool, |messages, now| Response {
                ok: true,
                now: Some(now),
                messages: Some(messages.iter().map(|m| message_view(m, now, None)).collect()),
                ..Response::default()
            })
            .await
        }
        // Counted here, in one pass: a large queue is never shipped to the client.
        Request::Stats(top) => {
            from_queue(spool, move |messages, now| Response {
                ok: true,
                now: Some(now),
                stats: Some(queue_stats(messages, now, top.map(|n| n as usize))),
                ..Response::default()
            })
            .await
        }
        Request::Status => {
            let status = ctx.status.status().await;
            Response { ok: true, now: Some(crate::envelope::now()), status: Some(status), ..Response::default() }
        }
        Request::Show(id) => match tokio::task::spawn_blocking(move || show(&spool, &id)).await {
            Ok(Ok((view, now))) => Response { ok: true, now: Some(now), message: Some(view), ..Response::default() },
            Ok(Err(e)) => Response::error(e),
            Err(e) => Response::error(format!("internal error: {e}")),
        },
        // Answered once the reload is done or refused (it has logged either).
        Request::Reload => match ctx.reload.reload().await {
            Ok(summary) => Response { ok: true, reload: Some(summary), ..Response::default() },
            Err(e) => Response::error(e.to_string()),
        },
        Request::Control(op) => {
            match op_id(&op) {
                Some(id) => tracing::info!(queue_id = %id, ?op, "control socket: queue operation"),
                None => tracing::info!(?op, "control socket: queue operation"),
            }
            match ctx.queue.control(op).await {
                Ok(n) => Response { ok: true, affected: Some(n), ..Response::default() },
                Err(e) => Response::error(e),
            }
        }
    }
}

/// `list` and `stats`: reads every queued message and answers with `answer(messages, now)`,
/// off the async threads (a large queue takes a while).
async fn from_queue(
    spool: Arc<Spool>,
    answer: impl FnOnce(&[QueuedMessage], u64) -> Response + Send + 'static,
) -> Response {
    let answered = tokio::task::spawn_blocking(move || {
        let messages = spool.list()?;
        Ok::<_, SpoolError>(answer(&messages, crate::envelope::now()))
    });
    match answered.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => Response::error(format!("cannot read the queue: {e}")),
        Err(e) => Response::error(format!("internal error: {e}")),
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

/// The message an operation is about, if it names one (issue #16: every line about a message
/// carries its queue ID).
fn op_id(op: &ControlOp) -> Option<&QueueId> {
    match op {
        ControlOp::Retry(id) => id.as_ref(),
        ControlOp::Hold(id) | ControlOp::Release(id) | ControlOp::Delete(id) => Some(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_control::RequestError;

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
