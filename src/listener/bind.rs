//! Binding the client listener: with `reuse_port`, SO_REUSEPORT, so that
//! several pgsplit processes on one machine share one port and the kernel
//! spreads new connections over them. Hand-written with socket2 because
//! tokio's `TcpListener::bind` sets SO_REUSEADDR only.

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// How many connections the kernel queues before pgsplit accepts them
/// (tokio's own default for `TcpListener::bind`).
const BACKLOG: i32 = 1024;

/// Listens on `addr` (a host name resolves to its first address),
/// sharing the port with other processes if `reuse_port`.
pub async fn bind(addr: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr).await;
    }
    let addr: SocketAddr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} resolves to nothing"),
        )
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_listeners_share_a_port_only_when_both_ask() {
        let first = bind("127.0.0.1:0", true).await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let second = bind(&addr, true).await;
        assert!(second.is_ok(), "{second:?}");
        assert!(
            bind(&addr, false).await.is_err(),
            "a plain bind took a shared port"
        );
    }
}
