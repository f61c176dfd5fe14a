//! The byte stream under the SMTP client: TCP, then TLS over it after STARTTLS (or from the
//! start, for implicit TLS). Time limits are the caller's; this only moves bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connection to a next hop.
pub(crate) enum Stream {
    /// Clear text.
    Plain(TcpStream),
    /// After a TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
    /// The TCP stream went into a handshake that failed: nothing more can be done.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was given up")
}

impl Stream {
    /// Reads what is there (at most `buf.len()` octets); 0 means end of stream.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Err(gone()),
        }
    }

    /// Writes all of `bytes` and flushes them to the socket.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                // tokio-rustls may hold the last record until flushed.
                s.flush().await
            }
            Stream::Gone => Err(gone()),
        }
    }

    /// Runs a TLS handshake over the clear-text stream. On failure the stream is [`Stream::Gone`].
    pub(crate) async fn handshake(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        *self = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// The TLS version (`TLSv1.3`), or `None` in clear text.
    /// The TLS session, if any.
    pub(crate) fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match self {
            Stream::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    pub(crate) fn tls_version(&self) -> Option<&'static str> {
        match self {
            Stream::Tls(s) => Some(crate::tls::version(s.get_ref().1)),
            Stream::Plain(_) | Stream::Gone => None,
        }
    }

    /// The TLS version and cipher suite, or `None` in clear text.
    pub(crate) fn tls_description(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => Some(crate::tls::describe(s.get_ref().1)),
            Stream::Plain(_) | Stream::Gone => None,
        }
    }

    /// Whether an idle connection can no longer carry a job: the server closed it, the
    /// socket failed, or the server said something unasked (typically a 421 before it
    /// hangs up on an idle client, RFC 5321 §4.5.3.2.7). Never waits.
    pub(crate) fn is_stale(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 512];
        let mut read = ReadBuf::new(&mut buf);
        let poll = match self {
            Stream::Plain(s) => Pin::new(s).poll_read(&mut cx, &mut read),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(&mut cx, &mut read),
            Stream::Gone => return true,
        };
        // Ready means data, end of stream or an error: each makes the connection unusable.
        poll.is_ready()
    }

    /// Closes the write side (a TLS close_notify first).
    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }
}
