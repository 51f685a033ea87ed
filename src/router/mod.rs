//! Statement routing: which server, primary or replica, runs a statement.
//!
//! A pure function of the statement text, the configuration and what the
//! caller knows of the primary's function catalog; no I/O. Routing is
//! conservative: only a provably read-only statement may go to a replica, and
//! every decision carries a [`Reason`] that can be shown to a person.
//!
//! Known limits, all erring towards the primary or out of reach of a parser:
//! functions called through views, triggers, defaults or operators are not
//! seen.

mod cache;
mod classify;
mod command;
pub mod decision;
mod functions;
mod hint;
pub use hint::min_lsn as min_lsn_hint;
mod lex;
mod memo;
mod normalize;
mod pin;
mod reason;
mod transaction;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use command::{Command, SessionCommand};
pub use memo::RouteMemo;
pub use pin::Pin;
pub use reason::Reason;
pub use transaction::{BeginOptions, Control, Isolation};

use cache::RouteCache;

/// The server a statement should run on: the router's name for
/// [`crate::role::Role`], the same type, so that a route compares with a
/// server's or a connection's role as it is.
pub use crate::role::Role as Destination;

/// Where a statement goes and why, and what else the session does for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Destination,
    pub reason: Reason,
    /// A command the session follows (DEALLOCATE, RESET, DISCARD ALL) or
    /// prepares for (DROP DATABASE and friends).
    pub command: Option<Box<Command>>,
    /// It reads `pg_prepared_statements`.
    pub lists_statements: bool,
}

impl Route {
    pub fn new(destination: Destination, reason: Reason) -> Route {
        Route {
            destination,
            reason,
            command: None,
            lists_statements: false,
        }
    }
}

/// The router's configuration.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// Functions, volatile in the catalog, that the user declares free of side
    /// effects: lower-case, `"schema.f"` (matches only that schema) or `"f"`
    /// (any schema). The built-in write list still wins over this.
    pub read_only_functions: Vec<String>,
    /// More functions that must go to the primary; `"schema.f"` also matches
    /// an unqualified `f()`, which the search path may resolve to it.
    pub write_functions: Vec<String>,
    /// Bound on the classification cache, in entries; 0 disables it.
    pub cache_size: usize,
}

/// Facts about functions from the primary's catalog (pg_proc.provolatile),
/// supplied by the caller.
pub trait FunctionCatalog {
    /// Some(true) if any function of that name is volatile, Some(false) if
    /// known and none is volatile, None if not looked up yet.
    fn is_volatile(&self, name: &str) -> Option<bool>;
}

/// A map from function name to "is volatile" is a catalog.
impl FunctionCatalog for HashMap<String, bool> {
    fn is_volatile(&self, name: &str) -> Option<bool> {
        self.get(name).copied()
    }
}

/// The answer of the classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    Routed(Route),
    /// The statement calls functions whose volatility is not known yet: the
    /// caller looks them up in the primary's catalog (`select proname,
    /// bool_or(provolatile = 'v') from pg_proc where proname = any($1) group
    /// by 1`), records them in its [`FunctionCatalog`] (a name the catalog
    /// does not have must be recorded as volatile) and calls again. Names are
    /// without schema, folded as PostgreSQL stores them (unquoted names in
    /// lower case), each once.
    NeedsCatalog(Vec<String>),
}

/// Statements longer than this are not cached: their keys would cost more
/// memory than re-parsing them costs time, and they are rarely repeated.
const MAX_CACHED_LEN: usize = 16 * 1024;

thread_local! {
    /// The cache key being looked up: one buffer per thread, so that a hit
    /// (nearly every statement) allocates nothing; an insert copies it.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The classifier with its configuration and a bounded cache of routes.
/// `Send + Sync`; share it in an `Arc`.
pub struct Router {
    config: RouterConfig,
    cache: RouteCache,
    /// Tells this router from the one a reload replaces it with, so that a
    /// session's [`RouteMemo`] never answers with a route of another
    /// configuration (an address could be reused; a number is not).
    id: u64,
}

/// Numbers routers; only ever increases.
static NEXT_ROUTER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Router {
    pub fn new(config: RouterConfig) -> Router {
        let cache = RouteCache::new(config.cache_size);
        let id = NEXT_ROUTER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Router { config, cache, id }
    }

    /// Classifies `sql`, from the cache when a statement differing only in
    /// literal values was classified before. Only final routes that depend on
    /// nothing but the statement's structure are cached: not those that read a
    /// literal's value (`current_setting('...')`) nor those that asked the
    /// catalog, which is per database while one router serves them all.
    pub fn classify(&self, sql: &str, catalog: &dyn FunctionCatalog) -> Classification {
        self.classify_cached(sql, catalog, None)
    }

    /// As [`Router::classify`], and a cacheable route is also remembered in
    /// the session's `memo`, which answers for the same shape next time
    /// (`RouteMemo::find`) without normalising or locking.
    pub fn classify_remembering(
        &self,
        sql: &str,
        catalog: &dyn FunctionCatalog,
        memo: &mut RouteMemo,
    ) -> Classification {
        self.classify_cached(sql, catalog, Some(memo))
    }

    fn classify_cached(
        &self,
        sql: &str,
        catalog: &dyn FunctionCatalog,
        memo: Option<&mut RouteMemo>,
    ) -> Classification {
        if sql.len() > MAX_CACHED_LEN {
            return classify(sql, &self.config, catalog);
        }
        let (hit, fast) = KEY.with_borrow_mut(|key| {
            let fast = normalize::write_cache_key(sql, key);
            (self.cache.get(key), fast)
        });
        let route = match hit {
            Some(route) => route,
            None => {
                let outcome = classify::classify(sql, &self.config, catalog);
                let (Classification::Routed(route), true) =
                    (&outcome.classification, outcome.cacheable)
                else {
                    return outcome.classification;
                };
                let key = KEY.with_borrow(String::clone);
                self.cache.insert(key, route.clone());
                route.clone()
            }
        };
        // A disabled cache means nothing is kept, the memo included.
        if let (Some(memo), true, true) = (memo, fast, self.config.cache_size > 0) {
            KEY.with_borrow(|key| {
                memo.remember(self, sql, key.get(1..).unwrap_or_default(), &route)
            });
        }
        Classification::Routed(route)
    }

    /// (hits, misses) of the cache since the router was made.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }
}

/// A conservative route for `sql` when it could not be classified to the
/// end (its functions could not be looked up): the primary, with the
/// statement's commands still read.
pub fn primary_route(sql: &str, reason: Reason) -> Route {
    Route {
        command: command::command(sql).map(Box::new),
        lists_statements: command::lists_statements(sql),
        ..Route::new(Destination::Primary, reason)
    }
}

/// The key the cache keeps `sql`'s route under (literals replaced), for
/// the fuzz targets (`fuzz/`): texts that share it must route alike.
#[doc(hidden)]
pub fn cache_key(sql: &str) -> String {
    let mut key = String::new();
    normalize::write_cache_key(sql, &mut key);
    key
}

/// The uncached classifier and whether the cache would keep its route
/// (see [`Router::classify`]), for the fuzz targets.
#[doc(hidden)]
pub fn classify_for_cache(
    sql: &str,
    config: &RouterConfig,
    catalog: &dyn FunctionCatalog,
) -> (Classification, bool) {
    let outcome = classify::classify(sql, config, catalog);
    (outcome.classification, outcome.cacheable)
}

/// The uncached classifier, for tests and the admin console.
pub fn classify(sql: &str, config: &RouterConfig, catalog: &dyn FunctionCatalog) -> Classification {
    classify::classify(sql, config, catalog).classification
}
