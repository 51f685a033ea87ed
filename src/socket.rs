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

/// Writes all of `parts`, in order, offered to the socket in one call
/// (`try_write_vectored`): a client reads them as one arrival, as it
/// would PostgreSQL's one write. Some drivers look at their state when a
/// statement's error arrives, before the ReadyForQuery behind it has
/// been read: sent apart, it can be missed. What the socket leaves waits
/// for it to become writable, part by part.
pub async fn write_all_vectored(stream: &mut TcpStream, parts: &[&[u8]]) -> std::io::Result<()> {
    let slices: Vec<std::io::IoSlice> = parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let mut written = match stream.try_write_vectored(&slices) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    for part in parts {
        let skip = written.min(part.len());
        written -= skip;
        if skip < part.len() {
            stream.write_all(&part[skip..]).await?;
        }
    }
    Ok(())
}
