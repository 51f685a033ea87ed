//! The options set on every accepted client socket: no Nagle delay, and
//! TCP keepalive and TCP_USER_TIMEOUT as configured (`tcp_keepalive*`,
//! `tcp_user_timeout`), so that a client that vanished without closing its
//! connection (a host that crashed, a cable pulled, a NAT that forgot it)
//! is found and its server connection, and in a transaction its locks, are
//! let go.

use crate::config::ClientSocket;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Sets `options` on `stream`.
pub fn configure(stream: &TcpStream, options: &ClientSocket) -> std::io::Result<()> {
    // Statements are small request/response exchanges: Nagle would delay
    // every one.
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    if let Some(keepalive) = options.keepalive {
        let mut params = TcpKeepalive::new();
        if let Some(idle) = keepalive.idle {
            params = params.with_time(idle);
        }
        if let Some(interval) = keepalive.interval {
            params = params.with_interval(interval);
        }
        if let Some(probes) = keepalive.probes {
            params = params.with_retries(probes);
        }
        // Also turns SO_KEEPALIVE on; unset fields keep the system's values.
        socket.set_tcp_keepalive(&params)?;
    }
    if let Some(timeout) = options.user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Keepalive;
    use std::time::Duration;

    async fn accepted() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener.accept().await.unwrap().0, client)
    }

    #[tokio::test]
    async fn configured_keepalive_is_read_back_from_the_socket() {
        let (stream, _client) = accepted().await;
        let options = ClientSocket {
            keepalive: Some(Keepalive {
                idle: Some(Duration::from_secs(77)),
                interval: Some(Duration::from_secs(7)),
                probes: Some(4),
            }),
            user_timeout: Some(Duration::from_millis(45_000)),
        };
        configure(&stream, &options).unwrap();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(77)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(7)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(45))
        );
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn defaults_turn_keepalive_on_with_the_systems_timing() {
        let (stream, _client) = accepted().await;
        let system = SockRef::from(&stream).tcp_keepalive_time().unwrap();
        configure(&stream, &crate::config::Config::default().client_socket()).unwrap();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), system);
        assert_eq!(socket.tcp_user_timeout().unwrap(), None);

        let (stream, _client) = accepted().await;
        configure(&stream, &ClientSocket::default()).unwrap();
        assert!(!SockRef::from(&stream).keepalive().unwrap());
    }
}
