//! A client's named prepared statements. In transaction pooling one
//! client's statements run on many server connections, and many clients
//! share a server connection, so pgsplit keeps each client's statements and
//! prepares them on whichever server connection runs them, under a name
//! derived from the statement's text and parameter types: the same
//! statement gets the same server-side name for every client, and two
//! different statements never share one.
//!
//! pgsplit also keeps what the client was told of each statement (its
//! shape: parameter types and result columns), so that a statement
//! prepared again elsewhere after a schema change cannot hand the client
//! rows of another type than it decodes (`batch`).

use crate::router::{Command, Route};
use crate::server::prepared::Shape;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A statement as the client prepared it.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The client's name for it ("" for the unnamed statement).
    pub name: Bytes,
    /// The name it has on server connections ("" for the unnamed statement).
    pub server_name: Arc<str>,
    /// The Parse body after the name: text, parameter count and types.
    pub after_name: Bytes,
    /// Where it goes, once known (not classified inside transactions).
    pub route: Option<Route>,
    /// What the client's Describe of it reported, if it asked.
    pub shape: Option<Shape>,
    /// The unnamed statement's identity on a server connection: this
    /// client and this Parse body (0 for named statements).
    pub key: u64,
    /// Closed by a Close the server has not answered yet (see
    /// `Statements::closing`).
    pub closing: bool,
    /// It reads `pg_prepared_statements` (`batch::show_own_statements`).
    pub lists: bool,
    /// The database it needs free of other sessions (DROP DATABASE ...).
    pub database: Option<String>,
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

/// A statement of the client's as it was before a Parse or Close: what
/// the client has if the server skips that message (an error earlier in
/// its batch) or never gets it.
#[derive(Debug, Clone)]
pub struct Undo {
    /// The client's name for it ("" for the unnamed statement).
    name: Bytes,
    before: Option<Statement>,
}

#[derive(Default)]
pub struct Statements {
    named: HashMap<Bytes, Statement>,
    /// The last unnamed statement, re-parsed when a later batch binds it
    /// on another server connection.
    unnamed: Option<Statement>,
    /// Statements closed by a Close still in flight. The server may yet
    /// skip that Close (an error before it in its batch): a Bind of the
    /// name meanwhile goes to the server under the statement's server-side
    /// name, and the server says whether it still exists.
    closing: HashMap<Bytes, Statement>,
    /// The client's id: its unnamed statements' keys are its own.
    owner: u64,
}

impl Statements {
    pub fn new(owner: u64) -> Statements {
        Statements {
            owner,
            ..Statements::default()
        }
    }

    /// For an idle session: each statement's text gets an allocation of
    /// its own. Kept as it came, a statement's bytes are a slice of the
    /// read buffer they arrived in, and hold all of that buffer.
    pub fn compact(&mut self) {
        let statements = self.named.values_mut().chain(self.closing.values_mut());
        for statement in statements.chain(self.unnamed.as_mut()) {
            statement.after_name = Bytes::copy_from_slice(&statement.after_name);
        }
        self.named.shrink_to_fit();
        self.closing.shrink_to_fit();
    }

    /// Records a Parse; returns the statement as pgsplit will send it, and
    /// how to undo the record if the server skips the Parse.
    /// `route`: its classification; `routed` when it was routed (outside
    /// transactions), so that where it goes is known too.
    pub fn parsed(
        &mut self,
        name: &[u8],
        after_name: Bytes,
        route: Route,
        routed: bool,
    ) -> (Statement, Undo) {
        let lists = route.lists_statements;
        let database = match route.command.as_deref() {
            Some(Command::Database(database)) => Some(database.clone()),
            _ => None,
        };
        let route = routed.then_some(route);
        let (server_name, key): (Arc<str>, u64) = if name.is_empty() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (self.owner, &after_name[..]).hash(&mut h);
            (Arc::from(""), h.finish())
        } else {
            (Arc::from(server_name(&after_name)), 0)
        };
        let statement = Statement {
            lists,
            database,
            name: Bytes::copy_from_slice(name),
            server_name,
            after_name,
            route,
            shape: None,
            key,
            closing: false,
        };
        let before = if name.is_empty() {
            self.unnamed.replace(statement.clone())
        } else {
            self.closing.remove(name);
            self.named
                .insert(Bytes::copy_from_slice(name), statement.clone())
        };
        let undo = Undo {
            name: Bytes::copy_from_slice(name),
            before,
        };
        (statement, undo)
    }

    /// Puts a statement back as it was before a Parse or Close the server
    /// skipped.
    pub fn undo(&mut self, undo: Undo) {
        let Undo { name, before } = undo;
        if name.is_empty() {
            self.unnamed = before;
            return;
        }
        self.closing.remove(&name);
        match before {
            Some(statement) => {
                self.named.insert(name, statement);
            }
            None => {
                self.named.remove(&name);
            }
        }
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

    /// A Describe of the statement named `server_name` on the server told
    /// the client `shape`.
    pub fn described(&mut self, server_name: &str, shape: Shape) {
        if server_name.is_empty() {
            if let Some(s) = &mut self.unnamed {
                s.shape = Some(shape.after(s.shape));
            }
            return;
        }
        for s in self.named.values_mut() {
            if &*s.server_name == server_name {
                s.shape = Some(shape.after(s.shape));
            }
        }
    }

    /// The client's named statements (name, statement).
    pub fn named(&self) -> impl Iterator<Item = (&Bytes, &Statement)> {
        self.named.iter()
    }

    /// A simple query replaced the unnamed statement.
    pub fn forget_unnamed(&mut self) {
        if self.unnamed.is_some() {
            self.unnamed = None;
        }
    }

    /// A statement whose Close is still in flight.
    pub fn get_closing(&self, name: &[u8]) -> Option<&Statement> {
        self.closing.get(name)
    }

    /// Every Close sent has been answered.
    pub fn settle(&mut self) {
        if !self.closing.is_empty() {
            self.closing.clear();
        }
    }

    /// Forgets every statement (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.named.clear();
        self.closing.clear();
        self.unnamed = None;
    }

    pub fn closed(&mut self, name: &[u8]) -> Undo {
        let before = if name.is_empty() {
            self.unnamed.take()
        } else {
            let before = self.named.remove(name);
            if let Some(statement) = &before {
                let closing = Statement {
                    closing: true,
                    ..statement.clone()
                };
                self.closing.insert(Bytes::copy_from_slice(name), closing);
            }
            before
        };
        Undo {
            name: Bytes::copy_from_slice(name),
            before,
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
        let route = || {
            crate::router::Route::new(
                crate::router::Destination::Replica,
                crate::router::Reason::ReadOnly,
            )
        };
        s.parsed(
            b"P_0",
            Bytes::from_static(b"select 1\0\0\0"),
            route(),
            false,
        );
        let (_, undo) = s.parsed(b"", Bytes::from_static(b"select 2\0\0\0"), route(), false);
        assert_eq!(s.get(b"P_0").unwrap().query(), b"select 1");
        assert_eq!(s.get(b"").unwrap().query(), b"select 2");
        assert_eq!(&*s.get(b"").unwrap().server_name, "");
        let closed = s.closed(b"P_0");
        assert!(s.get(b"P_0").is_none());
        s.undo(closed);
        assert_eq!(s.get(b"P_0").unwrap().query(), b"select 1");
        s.undo(undo);
        assert!(s.get(b"").is_none());
    }
}
