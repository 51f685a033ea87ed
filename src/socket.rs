//! Writes on the forwarding path.

use std::io::ErrorKind;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Writes all of `bytes`. The socket almost always has room for a whole
/// reply or statement, so it is offered them straight away (`try_write`:
/// no future, no waker, no task budget); only what it leaves waits for
/// the socket to become writable. Measured: proxy user time is what sets
/// throughput when the proxy is a single thread (bench/README.md).
pub async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let written = match stream.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    match bytes.get(written..) {
        Some(rest) if !rest.is_empty() => stream.write_all(rest).await,
        _ => Ok(()),
    }
}
