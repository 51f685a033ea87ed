//! What the primary's catalog says about functions: whether any function of
//! a name is volatile (`pg_proc.provolatile = 'v'`). Looked up once per
//! database and name, then cached; the router asks through
//! `FunctionCatalog` and stays free of I/O.

use crate::router::FunctionCatalog;
use crate::server::{ServerConnection, ServerError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// Function facts per database.
#[derive(Default)]
pub struct Catalog {
    databases: RwLock<HashMap<String, Arc<DatabaseFunctions>>>,
}

impl Catalog {
    pub fn database(&self, name: &str) -> Arc<DatabaseFunctions> {
        if let Some(db) = self.databases.read().get(name) {
            return db.clone();
        }
        self.databases
            .write()
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

/// Volatility by function name, for one database.
#[derive(Default)]
pub struct DatabaseFunctions {
    volatile: RwLock<HashMap<String, bool>>,
}

impl FunctionCatalog for DatabaseFunctions {
    fn is_volatile(&self, name: &str) -> Option<bool> {
        self.volatile.read().get(name).copied()
    }
}

impl DatabaseFunctions {
    /// Asks the primary about `names` and records the answers. A name the
    /// catalog does not have is recorded as volatile: unknown means primary.
    pub async fn look_up(
        &self,
        names: &[String],
        primary: &mut ServerConnection,
    ) -> Result<(), ServerError> {
        let rows = primary.simple_query(&lookup_sql(names)).await?;
        let mut found: HashMap<String, bool> = names.iter().map(|n| (n.clone(), true)).collect();
        for row in rows {
            if let [Some(name), Some(volatile)] = row.as_slice() {
                found.insert(name.clone(), volatile == "t");
            }
        }
        tracing::debug!(?found, "function volatility looked up");
        self.volatile.write().extend(found);
        Ok(())
    }
}

fn lookup_sql(names: &[String]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    format!(
        "select proname::text, bool_or(provolatile = 'v') from pg_catalog.pg_proc \
         where proname = any(array[{}]::name[]) group by 1",
        quoted.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_sql_quotes_names() {
        let sql = lookup_sql(&["f".into(), "it's".into()]);
        assert!(sql.contains("array['f','it''s']::name[]"), "{sql}");
    }
}
