//! Cancel requests. Each client gets pgsplit's own random BackendKeyData;
//! while a statement of it runs, its slot names the server connection
//! running it, so a CancelRequest reaches that server with that server's key
//! and nobody else's query.

use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The server backend a cancel must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: Arc<str>,
    pub pid: i32,
    pub secret: i32,
}

/// One client's current server, updated on every checkout and release.
#[derive(Default)]
pub struct CancelSlot(Mutex<Option<CancelTarget>>);

impl CancelSlot {
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.0.lock() = target;
    }
}

#[derive(Default)]
pub struct Cancels {
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

/// Removes the client's key when its session ends.
pub struct Registration<'a> {
    cancels: &'a Cancels,
    pub key: (i32, i32),
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.cancels.slots.lock().remove(&self.key);
    }
}

impl Cancels {
    /// A fresh random key for a new client.
    pub fn register(&self) -> Registration<'_> {
        let slot = Arc::new(CancelSlot::default());
        let mut slots = self.slots.lock();
        let key = loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if !slots.contains_key(&key) {
                break key;
            }
        };
        slots.insert(key, slot.clone());
        Registration {
            cancels: self,
            key,
            slot,
        }
    }

    /// Forwards a client's CancelRequest; unknown keys are ignored, as
    /// PostgreSQL does, so a guesser learns nothing.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = self
            .slots
            .lock()
            .get(&(pid, secret))
            .and_then(|s| s.0.lock().clone());
        let Some(target) = target else {
            tracing::debug!(pid, "cancel request with an unknown key ignored");
            return;
        };
        tracing::info!(server = %target.addr, server_pid = target.pid, "forwarding cancel request");
        if let Err(error) = send_cancel(&target).await {
            tracing::warn!(server = %target.addr, %error, "could not forward cancel request");
        }
    }
}

impl Cancels {
    /// Cancels whatever a server backend is running (a client left while
    /// its statement ran).
    pub async fn cancel_server(&self, pid: i32, secret: i32, addr: Arc<str>) {
        let target = CancelTarget { addr, pid, secret };
        if let Err(error) = send_cancel(&target).await {
            tracing::warn!(server = %target.addr, %error, "could not cancel an abandoned statement");
        }
    }
}

async fn send_cancel(target: &CancelTarget) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(target.pid, target.secret, &mut out);
    let mut stream = tokio::net::TcpStream::connect(&*target.addr).await?;
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_removed() {
        let cancels = Cancels::default();
        let a = cancels.register();
        let b = cancels.register();
        assert_ne!(a.key, b.key);
        assert!(a.key.0 >= 0);
        let key = a.key;
        drop(a);
        assert!(!cancels.slots.lock().contains_key(&key));
        assert!(cancels.slots.lock().contains_key(&b.key));
    }
}
