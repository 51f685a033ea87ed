//! A client's named prepared statements. In transaction pooling one
//! client's statements run on many server connections, and many clients
//! share a server connection, so pgsplit keeps each client's statements and
//! prepares them on whichever server connection runs them, under a name
//! derived from the statement's text and parameter types: the same
//! statement gets the same server-side name for every client, and two
//! different statements never share one.

use crate::router::Route;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A statement as the client prepared it.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The name it has on server connections ("" for the unnamed statement).
    pub server_name: Arc<str>,
    /// The Parse body after the name: text, parameter count and types.
    pub after_name: Bytes,
    /// Where it goes, once known (not classified inside transactions).
    pub route: Option<Route>,
}

impl Statement {
    pub fn query(&self) -> &[u8] {
        let end = self
            .after_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.after_name.len());
        &self.after_name[..end]
    }
}

#[derive(Default)]
pub struct Statements {
    named: HashMap<Bytes, Statement>,
    /// The last unnamed statement, re-parsed when a later batch binds it
    /// on another server connection.
    unnamed: Option<Statement>,
}

impl Statements {
    /// Records a Parse; returns the statement as pgsplit will send it.
    pub fn parsed(&mut self, name: &[u8], after_name: Bytes, route: Option<Route>) -> Statement {
        let server_name: Arc<str> = if name.is_empty() {
            Arc::from("")
        } else {
            Arc::from(server_name(&after_name))
        };
        let statement = Statement {
            server_name,
            after_name,
            route,
        };
        if name.is_empty() {
            self.unnamed = Some(statement.clone());
        } else {
            self.named
                .insert(Bytes::copy_from_slice(name), statement.clone());
        }
        statement
    }

    pub fn get(&self, name: &[u8]) -> Option<&Statement> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    pub fn set_route(&mut self, name: &[u8], route: Route) {
        let statement = if name.is_empty() {
            self.unnamed.as_mut()
        } else {
            self.named.get_mut(name)
        };
        if let Some(s) = statement {
            s.route = Some(route);
        }
    }

    /// Forgets every statement (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.named.clear();
        self.unnamed = None;
    }

    pub fn closed(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }
}

/// `pgsplit_` and 128 bits of hash, hex: 40 characters, under PostgreSQL's
/// 63-byte name limit. A collision would need 2^64 distinct statements.
pub fn server_name(after_name: &[u8]) -> String {
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        after_name.hash(&mut h);
        h.finish()
    };
    format!("pgsplit_{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_name_different_text_different_name() {
        let a = server_name(b"select 1\0\0\0");
        assert_eq!(a, server_name(b"select 1\0\0\0"));
        assert_ne!(a, server_name(b"select 2\0\0\0"));
        // Same text, other parameter types: another statement.
        assert_ne!(
            server_name(b"select $1\0\0\x01\0\0\0\x17"),
            server_name(b"select $1\0\0\x01\0\0\0\x19")
        );
        assert_eq!(a.len(), 40);
    }

    #[test]
    fn named_and_unnamed_are_kept_apart() {
        let mut s = Statements::default();
        s.parsed(b"P_0", Bytes::from_static(b"select 1\0\0\0"), None);
        s.parsed(b"", Bytes::from_static(b"select 2\0\0\0"), None);
        assert_eq!(s.get(b"P_0").unwrap().query(), b"select 1");
        assert_eq!(s.get(b"").unwrap().query(), b"select 2");
        assert_eq!(&*s.get(b"").unwrap().server_name, "");
        s.closed(b"P_0");
        assert!(s.get(b"P_0").is_none());
    }
}
