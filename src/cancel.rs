//! Cancel requests. Each client gets pgsplit's own random BackendKeyData;
//! while a statement of it runs, its slot names the server connection
//! running it, so a CancelRequest reaches that server with that server's key
//! and nobody else's query.

use crate::tls::ServerTls;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The server backend a cancel must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: Arc<str>,
    pub pid: i32,
    pub secret: i32,
}

/// One client's current server, pointed at on every checkout and cleared
/// on every release: twice per transaction, so it is written without a
/// locked instruction (a mutex and an `Arc` clone were six per statement).
/// The backend's key is one atomic word; the server's address sits beside
/// it and is stored anew only when the client moves to another server.
/// Only its session writes it; a cancel request reads it.
#[derive(Default)]
pub struct CancelSlot {
    /// The backend's pid (high half) and secret (low half); 0 for none,
    /// since no backend has pid 0.
    key: AtomicU64,
    addr: Mutex<Option<Arc<str>>>,
    /// Which `Arc` `addr` holds, so the session can tell without locking.
    addr_ptr: AtomicUsize,
    /// While the client's statement waits for a server connection: the
    /// number of that wait (0: not waiting). A cancel then has no backend
    /// to go to; it is remembered for that wait (`cancelled`), and the
    /// statement is not sent.
    waiting: AtomicU64,
    /// The wait a cancel came during. A number, not a flag: a cancel that
    /// read `waiting` just before its wait ended cannot mark a later one.
    cancelled: AtomicU64,
    /// Numbers the waits.
    waits: AtomicU64,
    /// Wakes the waiting statement when a cancel comes for it.
    woken: tokio::sync::Notify,
}

impl CancelSlot {
    /// Cancels now go to this backend.
    pub fn point(&self, addr: &Arc<str>, pid: i32, secret: i32) {
        let ptr = Arc::as_ptr(addr) as *const u8 as usize;
        if self.addr_ptr.load(Ordering::Relaxed) != ptr {
            // A reader must not pair the old backend's key with the new
            // address: the key goes first.
            self.key.store(0, Ordering::Release);
            *self.addr.lock() = Some(addr.clone());
            self.addr_ptr.store(ptr, Ordering::Relaxed);
        }
        let key = (u64::from(pid as u32) << 32) | u64::from(secret as u32);
        self.key.store(key, Ordering::Release);
    }

    /// No statement of the client runs: cancels are ignored. SeqCst: a
    /// cancel that registered itself in flight and then still finds the
    /// key (`Cancels::cancel`) is seen by whoever takes the connection
    /// after this (`Cancels::landed`).
    pub fn clear(&self) {
        self.key.store(0, Ordering::SeqCst);
    }

    /// The client's statement starts to wait for a server connection;
    /// returns the wait's number for `wait_ends`.
    pub fn wait_begins(&self) -> u64 {
        let wait = self.waits.fetch_add(1, Ordering::Relaxed) + 1;
        self.waiting.store(wait, Ordering::SeqCst);
        wait
    }

    /// The wait numbered `wait` is over; whether a cancel came during it
    /// (the statement must then not run).
    pub fn wait_ends(&self, wait: u64) -> bool {
        self.waiting.store(0, Ordering::SeqCst);
        self.cancelled.load(Ordering::SeqCst) == wait
    }

    /// Resolves when a cancel comes during the wait numbered `wait`.
    pub async fn cancelled_during(&self, wait: u64) {
        loop {
            let woken = self.woken.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.cancelled.load(Ordering::SeqCst) == wait {
                return;
            }
            woken.await;
        }
    }

    /// A cancel for a statement that reached no server yet: remembered
    /// for its wait, if it is waiting. Whether it was.
    fn cancel_waiting(&self) -> bool {
        match self.waiting.load(Ordering::SeqCst) {
            0 => false,
            wait => {
                self.cancelled.store(wait, Ordering::SeqCst);
                self.woken.notify_waiters();
                true
            }
        }
    }

    /// The backend a cancel should reach now. The key is read again after
    /// the address: if it changed meanwhile, the pair may not belong
    /// together and is read anew.
    fn target(&self) -> Option<CancelTarget> {
        for _ in 0..4 {
            let key = self.key.load(Ordering::SeqCst);
            if key == 0 {
                return None;
            }
            let addr = self.addr.lock().clone()?;
            if self.key.load(Ordering::SeqCst) == key {
                return Some(CancelTarget {
                    addr,
                    pid: (key >> 32) as u32 as i32,
                    secret: key as u32 as i32,
                });
            }
        }
        None
    }
}

#[derive(Default)]
pub struct Cancels {
    /// This instance's id in a fleet, in the keys it gives out (`key_for`).
    instance: u8,
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
    /// Backends (server, pid) a cancel is on its way to. PostgreSQL
    /// signals a backend (and its process group) some time after the
    /// request arrives; a statement that started there meanwhile, the next
    /// client's on a pooled connection, would be cancelled instead. So no
    /// session starts a statement on such a backend until the server has
    /// closed the cancel connection.
    in_flight: Mutex<HashMap<(Arc<str>, i32), usize>>,
    /// How many cancels are in flight: sessions look here first (one load
    /// per checkout), and at the map only when it is not 0.
    in_flight_count: AtomicUsize,
    landed: tokio::sync::Notify,
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
    /// Cancels whose keys carry instance id `instance` (see `key_for`).
    pub fn new(instance: u8) -> Cancels {
        Cancels {
            instance,
            ..Cancels::default()
        }
    }

    /// A fresh random key for a new client.
    pub fn register(&self) -> Registration<'_> {
        let slot = Arc::new(CancelSlot::default());
        let mut slots = self.slots.lock();
        let key = loop {
            let key = key_for(self.instance, rand::random(), rand::random());
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

    /// Forwards a client's CancelRequest (over TLS as `tls` says, as
    /// libpq 17 sends them); unknown keys are ignored, as PostgreSQL
    /// does, so a guesser learns nothing. Whether the key is one of this
    /// instance's clients'.
    pub async fn cancel(&self, pid: i32, secret: i32, tls: Option<&ServerTls>) -> bool {
        let target = self
            .slots
            .lock()
            .get(&(pid, secret))
            .and_then(|s| s.target());
        let Some(target) = target else {
            let slot = self.slots.lock().get(&(pid, secret)).cloned();
            let Some(slot) = slot else {
                return false;
            };
            if slot.cancel_waiting() {
                tracing::info!(pid, "cancel request for a statement waiting for a server connection: it will not run");
            }
            return true;
        };
        let slot = self.slots.lock().get(&(pid, secret)).cloned();
        self.take_off(&target);
        // Still running? The statement may have ended, and its connection
        // gone to another client, before this cancel was marked in flight.
        if slot.and_then(|s| s.target()).as_ref() != Some(&target) {
            self.land(&target);
            tracing::debug!(pid, "cancel request after its statement ended: ignored");
            return true;
        }
        tracing::info!(server = %target.addr, server_pid = target.pid, "forwarding cancel request");
        if let Err(error) = send_cancel(&target, tls).await {
            tracing::warn!(server = %target.addr, %error, "could not forward cancel request");
        }
        self.land(&target);
        true
    }

    fn take_off(&self, target: &CancelTarget) {
        *self
            .in_flight
            .lock()
            .entry((target.addr.clone(), target.pid))
            .or_default() += 1;
        self.in_flight_count.fetch_add(1, Ordering::SeqCst);
    }

    fn land(&self, target: &CancelTarget) {
        {
            let mut in_flight = self.in_flight.lock();
            let key = (target.addr.clone(), target.pid);
            if let Some(n) = in_flight.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&key);
                }
            }
        }
        self.in_flight_count.fetch_sub(1, Ordering::SeqCst);
        self.landed.notify_waiters();
    }

    fn is_in_flight(&self, addr: &Arc<str>, pid: i32) -> bool {
        self.in_flight.lock().contains_key(&(addr.clone(), pid))
    }

    /// Whether any cancel is in flight (one load): if so, a session that
    /// just took a connection waits for `landed`.
    pub fn any_in_flight(&self) -> bool {
        self.in_flight_count.load(Ordering::SeqCst) != 0
    }

    /// Returns once no cancel is on its way to backend `pid` of server
    /// `addr` (at most `CANCEL_DONE_TIMEOUT` later): a session calls it
    /// before it starts a statement on a connection it just took.
    pub async fn landed(&self, addr: &Arc<str>, pid: i32) {
        let wait = async {
            loop {
                let notified = self.landed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.is_in_flight(addr, pid) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(CANCEL_DONE_TIMEOUT, wait)
            .await
            .is_err()
        {
            tracing::warn!(server = %addr, server_pid = pid, "a cancel to this backend did not land in time: using its connection anyway");
        } else {
            tracing::debug!(server = %addr, server_pid = pid, "waited for a cancel to land before using a connection");
        }
    }
}

impl Cancels {
    /// Cancels whatever a server backend is running (a client left while
    /// its statement ran).
    pub async fn cancel_server(
        &self,
        pid: i32,
        secret: i32,
        addr: Arc<str>,
        tls: Option<&ServerTls>,
    ) {
        let target = CancelTarget { addr, pid, secret };
        if let Err(error) = send_cancel(&target, tls).await {
            tracing::warn!(server = %target.addr, %error, "could not cancel an abandoned statement");
        }
    }
}

/// How long pgsplit waits for a server to close a cancel connection.
/// PostgreSQL closes it once it has signalled the backend; a server that
/// neither does so nor fails is not waited on for ever.
const CANCEL_DONE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client's key: the BackendKeyData's process id carries the instance
/// id in bits 23..31 (the sign bit stays clear, as a real pid's), so that
/// a peer that receives the CancelRequest knows whose client it is
/// (`fleet`); the rest is random.
fn key_for(instance: u8, pid_bits: i32, secret: i32) -> (i32, i32) {
    ((i32::from(instance) << 23) | (pid_bits & 0x7f_ffff), secret)
}

/// The instance id a client's key carries.
pub fn instance_of(pid: i32) -> u8 {
    ((pid >> 23) & 0xff) as u8
}

/// Sends a CancelRequest and waits until the server closes the connection.
/// PostgreSQL signals the backend (SIGINT) before it closes, so once the
/// close is seen the signal has been sent; a client told "done" earlier
/// could send its next statement before the signal lands, and have that
/// one cancelled instead (libpq and asyncpg wait for the close for this
/// reason, and so does pgsplit before it closes the client's connection).
async fn send_cancel(target: &CancelTarget, tls: Option<&ServerTls>) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(target.pid, target.secret, &mut out);
    let exchange = async {
        let mut stream = crate::server::encryption::open(&target.addr, tls)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        crate::socket::write_all(&mut stream, &out).await?;
        let mut sink = [0u8; 64];
        // The server sends nothing; EOF (or a reset) is its answer.
        loop {
            match stream.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // A TLS peer that closes without close_notify reads as
                // an unexpected end: the same answer.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(CANCEL_DONE_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the server did not close the cancel connection",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_the_backend_pointed_at_until_cleared() {
        let slot = CancelSlot::default();
        assert_eq!(slot.target(), None);
        let a: Arc<str> = Arc::from("127.0.0.1:5432");
        let b: Arc<str> = Arc::from("127.0.0.1:5433");
        slot.point(&a, 4242, -7);
        let expected = |addr: &Arc<str>, pid, secret| {
            Some(CancelTarget {
                addr: addr.clone(),
                pid,
                secret,
            })
        };
        assert_eq!(slot.target(), expected(&a, 4242, -7));
        slot.clear();
        assert_eq!(slot.target(), None);
        slot.point(&b, i32::MAX, i32::MIN);
        assert_eq!(slot.target(), expected(&b, i32::MAX, i32::MIN));
        slot.point(&a, 1, 0);
        assert_eq!(slot.target(), expected(&a, 1, 0));
    }

    #[test]
    fn keys_carry_the_instance_id() {
        for instance in [0, 1, 7, 255] {
            let cancels = Cancels::new(instance);
            let registration = cancels.register();
            assert!(registration.key.0 >= 0);
            assert_eq!(instance_of(registration.key.0), instance);
        }
        assert_eq!(key_for(255, -1, 5), (0x7fff_ffff, 5));
    }

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
