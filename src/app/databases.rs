//! Which databases the admin console paused (PAUSE db) or disabled
//! (DISABLE db). Sessions ask at every checkout and every login, so the
//! common case (nothing paused or disabled) is one load of a flag and no
//! lock.

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct DatabaseSwitches {
    paused: Switch,
    disabled: Switch,
}

/// A set of databases, with a flag saying whether it is empty.
#[derive(Default)]
struct Switch {
    any: AtomicBool,
    names: Mutex<BTreeSet<String>>,
}

impl Switch {
    fn contains(&self, database: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.names.lock().contains(database)
    }

    /// Turns `database` on or off; whether that changed anything.
    fn set(&self, database: &str, on: bool) -> bool {
        let mut names = self.names.lock();
        let changed = match on {
            true => names.insert(database.to_string()),
            false => names.remove(database),
        };
        self.any.store(!names.is_empty(), Ordering::Relaxed);
        changed
    }

    fn clear(&self) {
        self.names.lock().clear();
        self.any.store(false, Ordering::Relaxed);
    }

    fn names(&self) -> Vec<String> {
        self.names.lock().iter().cloned().collect()
    }
}

impl DatabaseSwitches {
    pub fn is_paused(&self, database: &str) -> bool {
        self.paused.contains(database)
    }

    /// Whether `database` was not paused before.
    pub fn pause(&self, database: &str) -> bool {
        self.paused.set(database, true)
    }

    /// Whether `database` was paused.
    pub fn resume(&self, database: &str) -> bool {
        self.paused.set(database, false)
    }

    /// A RESUME of everything lifts the pauses of single databases too,
    /// as PgBouncer's does.
    pub fn resume_all(&self) {
        self.paused.clear();
    }

    pub fn paused(&self) -> Vec<String> {
        self.paused.names()
    }

    pub fn is_disabled(&self, database: &str) -> bool {
        self.disabled.contains(database)
    }

    pub fn disable(&self, database: &str) {
        self.disabled.set(database, true);
    }

    pub fn enable(&self, database: &str) {
        self.disabled.set(database, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_and_disabling_are_per_database() {
        let s = DatabaseSwitches::default();
        assert!(!s.is_paused("a"));
        assert!(s.pause("a"));
        assert!(!s.pause("a"), "paused already");
        assert!(s.is_paused("a") && !s.is_paused("b"));
        assert!(!s.resume("b"));
        assert!(s.resume("a"));
        assert!(!s.is_paused("a"));
        s.pause("a");
        s.pause("b");
        s.resume_all();
        assert!(s.paused().is_empty());
        s.disable("a");
        assert!(s.is_disabled("a") && !s.is_disabled("b"));
        s.enable("a");
        assert!(!s.is_disabled("a"));
    }
}
