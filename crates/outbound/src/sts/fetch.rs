//! Fetching a policy over HTTPS (RFC 8461 §3.3): `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`,
//! the server's certificate checked against the WebPKI roots (and the configured extra
//! roots), HTTP 200 only, no redirects, `text/plain`, at most [`BODY_LIMIT`] octets, the
//! whole exchange bounded by a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dakiya_mtasts::{Policy, ResultType};
use dakiya_route::Router;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest policy accepted (RFC 8461 §3.2 suggests senders limit it; 64 KiB).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// The well-known path (RFC 8461 §3.3).
const PATH: &str = "/.well-known/mta-sts.txt";

/// Why no policy came back, with its TLS-RPT result type (RFC 8460 §4.3.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchError {
    pub(crate) result: ResultType,
    pub(crate) reason: String,
}

fn fetch_error(reason: impl Into<String>) -> FetchError {
    FetchError { result: ResultType::StsPolicyFetchError, reason: reason.into() }
}

/// Fetches and parses the policy of `domain` from `mta-sts.DOMAIN` on `port`, within `limit`.
pub(crate) async fn fetch(
    router: &Router,
    tls: Arc<rustls::ClientConfig>,
    domain: &str,
    port: u16,
    limit: Duration,
) -> Result<Policy, FetchError> {
    let host = format!("mta-sts.{domain}");
    let body = match tokio::time::timeout(limit, get(router, tls, &host, port)).await {
        Ok(result) => result?,
        Err(_) => return Err(fetch_error(format!("no policy from {host} within {} s", limit.as_secs()))),
    };
    Policy::parse(&body)
        .map_err(|e| FetchError { result: ResultType::StsPolicyInvalid, reason: format!("policy from {host}: {e}") })
}

/// One GET over a fresh connection to the first address that answers.
async fn get(router: &Router, tls: Arc<rustls::ClientConfig>, host: &str, port: u16) -> Result<Vec<u8>, FetchError> {
    let addrs = router.addresses(host).await.map_err(|e| fetch_error(format!("{host}: {e}")))?;
    let mut last = String::new();
    let mut tcp = None;
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(ip, port)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {host} [{ip}]: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| fetch_error(last))?;
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|_| fetch_error("bad host name"))?;
    let stream = TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| {
        if crate::tls::is_certificate_error(&e) {
            FetchError { result: ResultType::StsWebpkiInvalid, reason: format!("certificate of {host}: {e}") }
        } else {
            fetch_error(format!("TLS with {host}: {e}"))
        }
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fetch_error(format!("HTTP with {host}: {e}")))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(PATH)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "dakiya")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fetch_error(e.to_string()))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| fetch_error(format!("HTTP with {host}: {e}")))?;
        let status = response.status();
        // §3.3: "Senders MUST NOT follow HTTP redirects"; only 200 gives a policy.
        if status != hyper::StatusCode::OK {
            return Err(fetch_error(format!("{host} answered HTTP {}", status.as_u16())));
        }
        let media = response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = media.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("text/plain") {
            return Err(FetchError {
                result: ResultType::StsPolicyInvalid,
                reason: format!("{host} sent Content-Type {media:?}, not text/plain"),
            });
        }
        let body = Limited::new(response.into_body(), BODY_LIMIT).collect().await.map_err(|e| FetchError {
            result: ResultType::StsPolicyInvalid,
            reason: format!("policy from {host}: {e}"),
        })?;
        Ok(body.to_bytes().to_vec())
    }
    .await;
    driver.abort();
    result
}
