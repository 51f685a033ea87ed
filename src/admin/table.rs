//! A result set of the admin console: typed columns and their values.
//! Integers go out as `int8` (OID 20), so that a driver hands a script
//! numbers rather than strings to parse; PgBouncer mixes int4 and numeric,
//! which every driver reads as integers too.

/// The type a column is described with in RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

impl Kind {
    /// The PostgreSQL type OID.
    pub fn oid(self) -> u32 {
        match self {
            Kind::Text => 25,
            Kind::Int => 20,
        }
    }
}

/// One column: its name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// A text column.
pub const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}

/// An integer column.
pub const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
    }
}

/// One value; `Null` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
}

impl Value {
    /// The text form sent in a DataRow (the console answers in text format).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Text(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Value {
        s.map_or(Value::Null, Value::Text)
    }
}

impl From<bool> for Value {
    /// As PgBouncer shows flags (`paused`, `disabled`): 1 or 0.
    fn from(b: bool) -> Value {
        Value::Int(i64::from(b))
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
from_int!(u16, i32, i64, u32, u64, usize);

/// A whole result: what SHOW answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: &[Column]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; in debug builds, checks it fits the columns.
    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(
            row.len(),
            self.columns.len(),
            "row does not fit {:?}",
            self.columns
        );
        debug_assert!(row.iter().zip(&self.columns).all(|(v, c)| matches!(
            (v, c.kind),
            (Value::Null, _) | (Value::Text(_), Kind::Text) | (Value::Int(_), Kind::Int)
        )));
        self.rows.push(row);
    }
}

/// A point in time as PgBouncer's timestamp columns give it:
/// "2024-05-01 12:34:56 UTC".
pub fn timestamp(at: std::time::SystemTime) -> String {
    let seconds = at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`): no date crate
/// for one column.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_pgbouncer_writes_them() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(timestamp(leap), "2000-02-29 12:34:56 UTC");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(timestamp(later), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn integers_are_int8_and_flags_are_numbers() {
        assert_eq!(int("x").kind.oid(), 20);
        assert_eq!(text("x").kind.oid(), 25);
        assert_eq!(Value::from(true), Value::Int(1));
        assert_eq!(Value::from(u64::MAX), Value::Int(i64::MAX));
        assert_eq!(Value::from(7u32).as_text().as_deref(), Some("7"));
        assert_eq!(Value::Null.as_text(), None);
    }
}
