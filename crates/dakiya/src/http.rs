//! HTTP/1.1 serving for the listeners that are not SMTP (hyper underneath). The serve loop
//! here bounds what a client can hold: connections per listener, the time to send a
//! request head, its size and number of header fields, keep-alive idle time and the
//! lifetime of a connection; requests with a body are refused unless the route allows one
//! ([`Routes::body_limit`]), then read with a cap and a deadline. What a listener answers is
//! its [`Routes`]: `http/metrics.rs` for `role = "metrics"`, `http/client.rs` for
//! `role = "http"` and `"https"` ([`serve_tls`]: TLS first, from the SMTP certificate).

pub mod acme;
pub mod client;
pub mod metrics;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections one HTTP listener serves at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request head, and how long a kept-alive
/// connection may sit idle before its next request (hyper runs one timer for both).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may live, however busy (it also bounds a client that does not
/// read its responses).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// The largest request head (hyper's minimum buffer); larger ones get 431.
pub const MAX_HEAD: usize = 8192;
/// The most header fields a request may have; more get 431.
pub const MAX_HEADERS: usize = 32;

/// A response body.
pub type HttpBody = Full<Bytes>;

/// How long a client may take to send a request body a route accepts.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a listener answers: a response for a request without a body, and for the few
/// routes that take one, a response for a request with its (capped) body.
pub trait Routes: Send + Sync + 'static {
    /// Answers a request (its head: the body is refused before routes see it).
    fn route(&self, req: &Parts) -> impl Future<Output = Response<HttpBody>> + Send;

    /// The largest body `req` may carry; 0 (the default): none, answered 413 unread.
    fn body_limit(&self, _req: &Parts) -> usize {
        0
    }

    /// Answers a request with a body of at most [`Routes::body_limit`] octets.
    fn route_body(&self, req: &Parts, _body: Bytes) -> impl Future<Output = Response<HttpBody>> + Send {
        self.route(req)
    }
}

/// Where an HTTPS listener takes its TLS acceptor for each connection (the certificate in
/// force: reloads and renewed certificates apply to the next connection).
pub type Acceptors = Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>;

/// A response with `status`, a `text/plain` body.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<HttpBody> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// A response with `status`, `content_type` and `body`.
pub fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<HttpBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// 404 for an unknown path.
pub fn not_found() -> Response<HttpBody> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// 405 for a method a path does not take, naming the ones it does.
pub fn method_not_allowed(allow: &'static str) -> Response<HttpBody> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Accepts connections on `listener` until the task is aborted, serving each with
/// `routes`.
pub async fn serve<R: Routes>(listener: Arc<TcpListener>, routes: Arc<R>) {
    accept(listener, routes, None).await
}

/// As [`serve`], each connection starting with a TLS handshake (bounded by [`HEAD_TIMEOUT`]).
pub async fn serve_tls<R: Routes>(listener: Arc<TcpListener>, routes: Arc<R>, tls: Acceptors) {
    accept(listener, routes, Some(tls)).await
}

async fn accept<R: Routes>(listener: Arc<TcpListener>, routes: Arc<R>, tls: Option<Acceptors>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                if crate::logging::ACCEPT_FAILED.admit() {
                    tracing::warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let (routes, tls) = (routes.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, secure(stream, routes, tls)).await;
            drop(permit);
        });
    }
}

/// Serves one connection, after a TLS handshake when `tls` is given (a failed or slow one
/// just ends the connection).
async fn secure<R: Routes>(stream: TcpStream, routes: Arc<R>, tls: Option<Acceptors>) {
    let Some(tls) = tls else { return connection(stream, routes).await };
    if let Ok(Ok(stream)) = tokio::time::timeout(HEAD_TIMEOUT, tls().accept(stream)).await {
        connection(stream, routes).await;
    }
}

/// Serves one connection with hyper's HTTP/1.1 server and our bounds.
async fn connection<R: Routes, S>(stream: S, routes: Arc<R>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let routes = routes.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&*routes, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    // Errors are the client's (a malformed request, a timeout, a reset): hyper has answered
    // what can be answered (400, 431) and the connection ends; nothing to log per client.
    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
}

/// Refuses requests with a body unless the route takes one; reads an accepted body with
/// its cap and deadline; then asks the routes.
async fn answer<R: Routes>(routes: &R, req: Request<Incoming>) -> Response<HttpBody> {
    let (head, body) = req.into_parts();
    if body.is_end_stream() {
        return routes.route(&head).await;
    }
    let limit = routes.body_limit(&head);
    if limit == 0 {
        return closing(StatusCode::PAYLOAD_TOO_LARGE, "request bodies are not accepted\n");
    }
    // A declared length over the cap is refused before reading anything.
    if body.size_hint().lower() > limit as u64 {
        return closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => routes.route_body(&head, collected.to_bytes()).await,
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
        }
        Ok(Err(_)) => closing(StatusCode::BAD_REQUEST, "bad request body\n"),
        Err(_) => closing(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
    }
}

/// A `text/plain` response after which the connection closes (an unread or partly read
/// body leaves nothing else to do).
fn closing(status: StatusCode, body: &'static str) -> Response<HttpBody> {
    let mut r = text(status, body);
    r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(reply)).await;
    let _ = stream.shutdown().await;
}
