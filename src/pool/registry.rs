//! The server connections open now, one entry each, for the admin
//! console's SHOW SERVERS and for RECONNECT and WAIT_CLOSE. A connection
//! registers once when it is opened and leaves when it is closed; a
//! checkout only stores into its own entry (no shared lock per statement).
//!
//! One registry per process, shared by every configuration generation:
//! pools a reload keeps carry their connections over, and WAIT_CLOSE must
//! see the connections of pools a reload let go.

use crate::role::Role;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

/// What a server connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Use {
    /// In its pool, free for any client.
    Idle = 0,
    /// Checked out by a client.
    Active = 1,
    /// Kept by the idle client that used it last (transaction pooling's
    /// parking), until another client needs it.
    Parked = 2,
}

/// One open server connection, as SHOW SERVERS lists it.
#[derive(Debug)]
pub struct ServerEntry {
    pub id: u64,
    /// The server, HOST:PORT.
    pub addr: Arc<str>,
    /// The role the server was configured with.
    pub role: Role,
    pub database: String,
    pub user: String,
    /// pgsplit's end of the connection.
    pub local: Option<SocketAddr>,
    pub connected_at: SystemTime,
    /// The server process serving it.
    pub backend_pid: i32,
    /// The TLS version and cipher, when encrypted.
    pub tls: Option<String>,
    state: AtomicU8,
    /// The client holding it (its id in SHOW CLIENTS); 0: none.
    link: AtomicU64,
    /// Milliseconds since the Unix epoch of its last checkout; 0: never.
    request_ms: AtomicU64,
    /// RECONNECT or a reload asked for it to close once it is released.
    close_needed: AtomicBool,
}

impl ServerEntry {
    pub fn state(&self) -> Use {
        match self.state.load(Ordering::Relaxed) {
            1 => Use::Active,
            2 => Use::Parked,
            _ => Use::Idle,
        }
    }

    /// Checked out: active, and when.
    pub fn checked_out(&self) {
        self.state.store(Use::Active as u8, Ordering::Relaxed);
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.request_ms.store(ms, Ordering::Relaxed);
    }

    pub fn set_state(&self, state: Use) {
        self.state.store(state as u8, Ordering::Relaxed);
        if state == Use::Idle {
            self.link.store(0, Ordering::Relaxed);
        }
    }

    /// The client `id` holds it now. A load first: the session calls this
    /// whenever it points its cancel key, mostly at the same connection.
    pub fn link(&self, id: u64) {
        if self.link.load(Ordering::Relaxed) != id {
            self.link.store(id, Ordering::Relaxed);
        }
    }

    pub fn linked_client(&self) -> Option<u64> {
        Some(self.link.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    /// When it was last checked out.
    pub fn request_time(&self) -> Option<SystemTime> {
        let ms = self.request_ms.load(Ordering::Relaxed);
        (ms != 0).then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    pub fn mark_close_needed(&self) {
        self.close_needed.store(true, Ordering::Relaxed);
    }

    pub fn close_needed(&self) -> bool {
        self.close_needed.load(Ordering::Relaxed)
    }
}

/// What a connection tells about itself when it registers.
pub struct Opened {
    pub addr: Arc<str>,
    pub role: Role,
    pub database: String,
    pub user: String,
    pub local: Option<SocketAddr>,
    pub backend_pid: i32,
    pub tls: Option<String>,
}

#[derive(Default, Debug)]
pub struct Registry {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ServerEntry>>>,
}

/// A connection's place in the registry; dropping it (with the
/// connection) takes the entry out.
#[derive(Debug)]
pub struct Registered {
    registry: Weak<Registry>,
    pub entry: Arc<ServerEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.live.lock().remove(&self.entry.id);
        }
    }
}

impl Registry {
    pub fn register(self: &Arc<Self>, opened: Opened) -> Registered {
        let entry = Arc::new(ServerEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr: opened.addr,
            role: opened.role,
            database: opened.database,
            user: opened.user,
            local: opened.local,
            connected_at: SystemTime::now(),
            backend_pid: opened.backend_pid,
            tls: opened.tls,
            state: AtomicU8::new(Use::Idle as u8),
            link: AtomicU64::new(0),
            request_ms: AtomicU64::new(0),
            close_needed: AtomicBool::new(false),
        });
        self.live.lock().insert(entry.id, entry.clone());
        Registered {
            registry: Arc::downgrade(self),
            entry,
        }
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ServerEntry>> {
        let mut all: Vec<_> = self.live.lock().values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// Marks the connections of `database` (`None`: all) to close once
    /// released; how many were marked.
    pub fn mark_close_needed(&self, database: Option<&str>) -> usize {
        let live = self.live.lock();
        let marked = live
            .values()
            .filter(|e| database.is_none_or(|d| e.database == d));
        marked.map(|e| e.mark_close_needed()).count()
    }

    /// Marks the connections of one server pool (server, database, user)
    /// to close once released.
    pub fn mark_pool(&self, addr: &str, database: &str, user: &str) {
        let live = self.live.lock();
        live.values()
            .filter(|e| &*e.addr == addr && e.database == database && e.user == user)
            .for_each(|e| e.mark_close_needed());
    }

    /// Connections of `database` (`None`: all) marked to close that are
    /// still open.
    pub fn closing(&self, database: Option<&str>) -> usize {
        let live = self.live.lock();
        live.values()
            .filter(|e| e.close_needed() && database.is_none_or(|d| e.database == d))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(database: &str) -> Opened {
        Opened {
            addr: "h:1".into(),
            role: Role::Primary,
            database: database.into(),
            user: "u".into(),
            local: None,
            backend_pid: 7,
            tls: None,
        }
    }

    #[test]
    fn a_connection_leaves_when_closed_and_marks_count_until_then() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(opened("a"));
        let b = registry.register(opened("b"));
        assert_eq!(registry.list().len(), 2);
        assert_eq!(registry.mark_close_needed(Some("a")), 1);
        assert_eq!(registry.closing(None), 1);
        assert_eq!(registry.closing(Some("b")), 0);
        a.entry.checked_out();
        a.entry.link(9);
        assert_eq!(a.entry.state(), Use::Active);
        assert_eq!(a.entry.linked_client(), Some(9));
        a.entry.set_state(Use::Idle);
        assert_eq!(a.entry.linked_client(), None);
        drop(a);
        assert_eq!(registry.closing(None), 0);
        assert_eq!(registry.list().len(), 1);
        drop(b);
        assert!(registry.list().is_empty());
    }
}
