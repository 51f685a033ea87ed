//! The clients connected now, for SHOW CLIENTS, the client gauges and
//! graceful shutdown. A client registers once at login; per statement it
//! only stores its state into its own entry (no shared lock).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::SystemTime;

/// What a client is doing, for the gauges and SHOW CLIENTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Between statements, holding no server connection of its own
    /// (transaction pooling) or idle on it.
    Idle = 0,
    /// A statement or transaction in progress on a server connection.
    Active = 1,
    /// Waiting for a server connection.
    Waiting = 2,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

pub struct ClientInfo {
    /// The id SHOW CLIENTS lists, KILL_CLIENT takes and the client's log
    /// lines carry (`client`).
    pub id: u64,
    pub peer: SocketAddr,
    /// pgsplit's end of the connection.
    pub local: Option<SocketAddr>,
    /// The TLS version and cipher, when encrypted.
    pub tls: Option<String>,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub connected_at: SystemTime,
    state: AtomicU8,
    /// Why the client is pinned, while it is.
    pub pinned: Mutex<Option<String>>,
    /// Statements (and batches) the client sent to servers. Only its
    /// session writes it (`counted`).
    pub statements: AtomicU64,
    /// Woken when pgsplit starts (or hurries) its shutdown. A waker per
    /// client rather than one shared watch: the session polls it on every
    /// wait, and a shared channel's waiter list would be a lock all
    /// sessions take twice per statement.
    pub stop_waker: StopWaker,
    /// Set by KILL_CLIENT or KILL: the session ends at once.
    killed: AtomicBool,
}

/// Who a client is, as it connected.
pub struct Connected<'a> {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: Option<String>,
    pub user: &'a str,
    pub database: &'a str,
    pub application_name: &'a str,
}

/// The session task's waker, for the shutdown. Set once: a task keeps its
/// waker, and waking does not take it, so the session's waits need not
/// register again (an `AtomicWaker` costs two locked instructions per
/// wait, four per statement).
#[derive(Default)]
pub struct StopWaker(Mutex<Option<Waker>>);

impl StopWaker {
    /// Makes `waker` the one woken; `known` is the session's copy of the
    /// one set last, so this locks only when the waker changes.
    pub fn register(&self, waker: &Waker, known: &mut Option<Waker>) {
        if known.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        *self.0.lock() = Some(waker.clone());
        *known = Some(waker.clone());
    }

    pub fn wake(&self) {
        if let Some(waker) = self.0.lock().as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl ClientInfo {
    #[inline]
    pub fn set_state(&self, state: ClientState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// One more statement sent. A load and a store, not `fetch_add`: the
    /// session is the only writer, and this runs for every statement.
    #[inline]
    pub fn counted(&self) {
        let n = self.statements.load(Ordering::Relaxed);
        self.statements.store(n + 1, Ordering::Relaxed);
    }

    /// Ends the session (KILL_CLIENT, KILL): it sees this at its next
    /// wake, which this causes.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.stop_waker.wake();
    }

    #[inline]
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            1 => ClientState::Active,
            2 => ClientState::Waiting,
            _ => ClientState::Idle,
        }
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ClientInfo>>>,
}

/// Removes the client from the registry when its connection ends.
pub struct Registered<'a> {
    clients: &'a Clients,
    pub info: Arc<ClientInfo>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.clients.live.lock().remove(&self.info.id);
    }
}

impl Clients {
    /// A new connection's id, taken when it is accepted so that its log
    /// lines carry it from the first; the same id SHOW CLIENTS shows once
    /// it is `register`ed.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Lists a logged-in client (`who.id` from `next_id`).
    pub fn register(&self, who: Connected) -> Registered<'_> {
        let info = Arc::new(ClientInfo {
            id: who.id,
            peer: who.peer,
            local: who.local,
            tls: who.tls,
            user: who.user.to_string(),
            database: who.database.to_string(),
            application_name: who.application_name.to_string(),
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            pinned: Mutex::new(None),
            statements: AtomicU64::new(0),
            stop_waker: StopWaker::default(),
            killed: AtomicBool::new(false),
        });
        self.live.lock().insert(info.id, info.clone());
        Registered {
            clients: self,
            info,
        }
    }

    /// Wakes every session so it looks at the shutdown state.
    pub fn wake_all(&self) {
        for client in self.live.lock().values() {
            client.stop_waker.wake();
        }
    }

    /// Every connected client, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        let mut all: Vec<_> = self.live.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn count(&self) -> usize {
        self.live.lock().len()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.live.lock().get(&id).cloned()
    }
}
