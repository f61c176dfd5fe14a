//! Binding a listener's socket: at start (before privileges are dropped, `privdrop.rs`) and
//! on a reload (`reload.rs`), in one place so both behave alike.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Ports below this one are privileged on Unix: binding them needs root or
/// `CAP_NET_BIND_SERVICE`.
const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// A listening TCP socket on `address`, non-blocking. An IPv6 address gets `IPV6_V6ONLY`, so
/// that `0.0.0.0:25` and `[::]:25` can both be configured (Linux otherwise lets `[::]` take
/// the IPv4 port too, and the second bind fails). A privileged port that cannot be bound says
/// why.
pub(crate) fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    bind_socket(address).map_err(|e| explain(address, e))
}

fn bind_socket(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// `e`, with a hint when it is a refused privileged port.
fn explain(address: SocketAddr, e: io::Error) -> io::Error {
    let privileged = address.port() != 0 && address.port() < FIRST_UNPRIVILEGED_PORT;
    if e.kind() == io::ErrorKind::PermissionDenied && privileged {
        let message = format!(
            "{e}: port {} is below {FIRST_UNPRIVILEGED_PORT}; binding it needs root (at start, before `user` \
             takes over) or the CAP_NET_BIND_SERVICE capability (the packaged systemd unit grants it)",
            address.port()
        );
        return io::Error::new(e.kind(), message);
    }
    e
}

/// The tokio listener for a socket from [`bind`]; must run inside a tokio runtime.
pub(crate) fn into_tokio(socket: std::net::TcpListener) -> io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_wildcards_share_a_port() {
        let v4 = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = v4.local_addr().unwrap().port();
        // Without IPV6_V6ONLY this fails with "address in use" on Linux.
        match bind(SocketAddr::from(([0u16; 8], port))) {
            Ok(v6) => assert_eq!(v6.local_addr().unwrap().port(), port),
            // A machine without IPv6 cannot tell.
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(e) => panic!("[::]:{port}: {e}"),
        }
    }

    #[test]
    fn a_refused_privileged_port_says_why() {
        let e = explain("0.0.0.0:25".parse().unwrap(), io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
        let e = explain("0.0.0.0:2525".parse().unwrap(), io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
    }
}
