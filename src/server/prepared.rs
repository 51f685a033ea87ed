//! The statements pgsplit has prepared on one server connection for its
//! clients, and what a Describe said of each: the shape of its parameters
//! and result. Clients' named statements live on the servers under names
//! pgsplit derives from their text (`client::statements`), shared by every
//! client that prepares the same text; the unnamed statement belongs to the
//! client that parsed it last.
//!
//! Sans I/O: the batch writer consults and updates it as it sends, and the
//! exchange undoes what a failed batch did not do.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What a Describe of a statement reports, reduced to what a client
/// decodes with: the parameter types and, per result column, its name,
/// type, length and modifier (PostgreSQL's own check, `equalTupleDescs`,
/// looks at those too). Table OIDs and column numbers are left out: a
/// table dropped and created again with the same columns reads the same.
///
/// A Describe of a portal bound from the statement tells the columns
/// only: its shape has no parameter part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    columns: u64,
    parameters: Option<u64>,
}

impl Shape {
    /// From the body of a ParameterDescription (`None`: not described,
    /// a portal's Describe) and of the RowDescription that followed it
    /// (`None`: NoData). `None` when either is malformed.
    pub fn of(parameters: Option<&[u8]>, rows: Option<&[u8]>) -> Option<Shape> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match rows {
            None => 0u8.hash(&mut h),
            Some(body) => {
                1u8.hash(&mut h);
                hash_columns(body, &mut h)?;
            }
        }
        let columns = h.finish();
        let parameters = parameters.map(|body| {
            // The parameter count and OIDs, as sent.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut h);
            h.finish()
        });
        Some(Shape {
            columns,
            parameters,
        })
    }

    /// Whether a statement described as `self` runs as a client that knows
    /// it as `known` expects: the same result columns, and the same
    /// parameter types where both are known.
    pub fn fits(&self, known: &Shape) -> bool {
        self.columns == known.columns
            && match (self.parameters, known.parameters) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// `self`, learnt since `earlier`: a portal's Describe keeps the
    /// parameter types the statement's Describe gave.
    pub fn after(self, earlier: Option<Shape>) -> Shape {
        Shape {
            parameters: self.parameters.or(earlier.and_then(|e| e.parameters)),
            ..self
        }
    }
}

fn hash_columns(body: &[u8], h: &mut impl Hasher) -> Option<()> {
    let count = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    count.hash(h);
    let mut at = 2;
    for _ in 0..count {
        let name_end = at + memchr::memchr(0, body.get(at..)?)?;
        body[at..name_end].hash(h);
        // table OID (4) and column number (2) skipped; type OID (4),
        // length (2) and modifier (4) kept; format (2) skipped: a
        // statement's Describe always says text.
        let fixed = body.get(name_end + 1..name_end + 19)?;
        fixed[6..16].hash(h);
        at = name_end + 19;
    }
    Some(())
}

/// A statement as it stands on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The shape a Describe reported for it here, if one was seen.
    pub shape: Option<Shape>,
}

/// The unnamed statement on a connection: whose it is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unnamed {
    /// Tells the client and its Parse body apart (`client::statements`).
    pub key: u64,
    pub shape: Option<Shape>,
}

/// What pgsplit prepared on one server connection.
#[derive(Debug, Default)]
pub struct Prepared {
    named: HashMap<Arc<str>, Entry>,
    unnamed: Option<Unnamed>,
}

/// A statement's state before pgsplit changed it: put back if the server
/// skipped the message that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    Named(Arc<str>, Option<Entry>),
    Unnamed(Option<Unnamed>),
}

impl Prepared {
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.named.get(name).copied()
    }

    pub fn unnamed(&self) -> Option<Unnamed> {
        self.unnamed
    }

    /// A Parse of `name` (not described yet) is being sent.
    pub fn parsed(&mut self, name: &Arc<str>) -> Before {
        let before = self.named.insert(name.clone(), Entry { shape: None });
        Before::Named(name.clone(), before)
    }

    /// A Parse of the unnamed statement is being sent; `key` says whose
    /// and which (`None`: a client's own Parse pgsplit does not track).
    pub fn parsed_unnamed(&mut self, key: Option<u64>) -> Before {
        let before = self.unnamed.take();
        self.unnamed = key.map(|key| Unnamed { key, shape: None });
        Before::Unnamed(before)
    }

    /// A Close of `name` is being sent.
    pub fn closed(&mut self, name: &Arc<str>) -> Before {
        Before::Named(name.clone(), self.named.remove(name))
    }

    /// A simple query replaces the unnamed statement.
    pub fn forget_unnamed(&mut self) {
        self.unnamed = None;
    }

    /// A Describe of `name` ("" for the unnamed statement) reported `shape`.
    pub fn described(&mut self, name: &str, shape: Shape) {
        if name.is_empty() {
            if let Some(unnamed) = &mut self.unnamed {
                unnamed.shape = Some(shape.after(unnamed.shape));
            }
        } else if let Some(entry) = self.named.get_mut(name) {
            entry.shape = Some(shape.after(entry.shape));
        }
    }

    /// Puts back what a skipped message changed.
    pub fn undo(&mut self, before: &Before) {
        match before {
            Before::Named(name, Some(entry)) => {
                self.named.insert(name.clone(), *entry);
            }
            Before::Named(name, None) => {
                self.named.remove(name);
            }
            Before::Unnamed(unnamed) => self.unnamed = *unnamed,
        }
    }

    /// Every named statement (to close them all).
    pub fn names(&self) -> Vec<Arc<str>> {
        self.named.keys().cloned().collect()
    }

    /// The server dropped them all (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.named.clear();
        self.unnamed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RowDescription body with one column per (name, type OID, typmod).
    fn rows(columns: &[(&str, u32, i32)], table: u32) -> Vec<u8> {
        let mut b = (columns.len() as u16).to_be_bytes().to_vec();
        for (i, (name, oid, typmod)) in columns.iter().enumerate() {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&table.to_be_bytes());
            b.extend_from_slice(&(i as u16 + 1).to_be_bytes());
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&typmod.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
        }
        b
    }

    const NO_PARAMS: Option<&[u8]> = Some(b"\0\0");

    fn fit(a: Option<Shape>, b: Option<Shape>) -> bool {
        a.unwrap().fits(&b.unwrap())
    }

    #[test]
    fn shapes_differ_by_column_type_and_name_not_by_table() {
        let columns = |c: &[(&str, u32, i32)], table| Shape::of(NO_PARAMS, Some(&rows(c, table)));
        let int = columns(&[("a", 23, -1), ("b", 23, -1)], 1);
        assert!(!fit(int, columns(&[("a", 23, -1), ("b", 25, -1)], 1)));
        assert!(!fit(int, columns(&[("a", 23, -1), ("c", 23, -1)], 1)));
        assert!(fit(int, columns(&[("a", 23, -1), ("b", 23, -1)], 2)));
        let one = rows(&[("a", 23, -1)], 1);
        let int4_param = Shape::of(Some(b"\0\x01\0\0\0\x17"), Some(&one));
        let text_param = Shape::of(Some(b"\0\x01\0\0\0\x19"), Some(&one));
        assert!(!fit(int4_param, text_param));
        assert!(!fit(
            Shape::of(NO_PARAMS, None),
            Shape::of(NO_PARAMS, Some(b"\0\0"))
        ));
        // A portal's Describe: the columns, no parameter types.
        let portal = Shape::of(None, Some(&one));
        assert!(fit(portal, int4_param) && fit(int4_param, portal));
        assert_eq!(portal.unwrap().after(int4_param), int4_param.unwrap());
    }

    #[test]
    fn malformed_descriptions_have_no_shape() {
        assert_eq!(Shape::of(NO_PARAMS, Some(b"\0\x01a")), None);
        assert_eq!(Shape::of(NO_PARAMS, Some(b"\0")), None);
        let mut one = rows(&[("a", 23, -1)], 1);
        one.pop();
        assert_eq!(Shape::of(NO_PARAMS, Some(&one)), None);
    }

    #[test]
    fn changes_are_undone_newest_first() {
        let mut p = Prepared::default();
        let a: Arc<str> = Arc::from("a");
        p.parsed(&a);
        let shape = Shape::of(NO_PARAMS, None).unwrap();
        p.described("a", shape);
        let closed = p.closed(&a);
        let parsed = p.parsed(&a);
        assert_eq!(p.get("a"), Some(Entry { shape: None }));
        p.undo(&parsed);
        p.undo(&closed);
        assert_eq!(p.get("a"), Some(Entry { shape: Some(shape) }));
        let unnamed = p.parsed_unnamed(Some(7));
        p.described("", shape);
        assert_eq!(
            p.unnamed().map(|u| (u.key, u.shape)),
            Some((7, Some(shape)))
        );
        p.undo(&unnamed);
        assert_eq!(p.unnamed(), None);
    }
}
