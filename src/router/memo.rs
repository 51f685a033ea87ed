//! A session's memo: the routes of the last few statement shapes it sent.
//!
//! Most clients send a handful of statements over and over with other
//! literals. Normalising each one and looking its key up in the shared cache
//! cost about 900 instructions per pgbench select, more than a quarter of
//! PgBouncer's whole cost per select; matching the text against a
//! remembered [`Template`] costs a comparison per stretch of kept text and a
//! look at each literal, and takes no lock.
//!
//! Only routes the shared cache would hold are remembered (they depend on
//! the statement's structure alone), each under exactly the key the cache
//! has it under, so a memo answers as the cache would. The memo belongs to
//! one router: a reload makes a new one, and the memo forgets.
//!
//! Clients tend to send their statements in the same order (a TPC-B
//! transaction is seven of them, always in turn, and its updates come in
//! two shapes, `+ 5` and `+ -5`), so each entry notes the last two that
//! came after it, and those are tried first. A client whose statements keep
//! missing (more shapes than slots) stops learning new ones but every
//! `COLD_RELEARN`th, so that it pays little for a memo that does not help.

use super::normalize::Template;
use super::{Route, Router};

/// Statement shapes remembered per session.
const SLOTS: usize = 16;

/// Longer statements are left to the shared cache: the memo is per client,
/// and thousands of clients each keeping sixteen long texts add up.
const MAX_LEN: usize = 1024;

/// Misses in a row after which a memo learns only every `COLD_RELEARN`th
/// statement it misses.
const COLD_AFTER: u32 = 64;
const COLD_RELEARN: u32 = 16;

#[derive(Default)]
pub struct RouteMemo {
    /// The router these routes came from (`Router::id`); 0 before any.
    router: u64,
    entries: Vec<Entry>,
    /// The entry used last.
    last: usize,
    /// The entry a new one replaces once all slots are taken.
    replace: usize,
    /// Statements missed since the last hit.
    misses: u32,
}

struct Entry {
    template: Template,
    route: Route,
    /// The entries used right after this one, the latest first.
    next: [usize; 2],
}

impl RouteMemo {
    /// The route of `sql` if its shape was seen lately, by this router.
    pub fn find(&mut self, router: &Router, sql: &str) -> Option<Route> {
        if self.router != router.id {
            return None;
        }
        let Some(found) = self.position(sql) else {
            self.misses = self.misses.saturating_add(1);
            return None;
        };
        self.misses = 0;
        self.followed_by(found);
        self.entries.get(found).map(|e| e.route.clone())
    }

    /// The entry `sql` matches: those that followed the last one first.
    fn position(&self, sql: &str) -> Option<usize> {
        let matches = |at: usize| {
            self.entries
                .get(at)
                .is_some_and(|e| e.template.matches(sql))
        };
        let guesses = self.entries.get(self.last).map_or([0, 0], |e| e.next);
        guesses
            .into_iter()
            .find(|&at| matches(at))
            .or_else(|| (0..self.entries.len()).find(|&at| !guesses.contains(&at) && matches(at)))
    }

    /// Remembers that statements keyed `key` (without its tag) by the fast
    /// path, as `sql` was, route as `route`.
    pub(super) fn remember(&mut self, router: &Router, sql: &str, key: &str, route: &Route) {
        if sql.len() > MAX_LEN {
            return;
        }
        if self.router != router.id {
            *self = RouteMemo {
                router: router.id,
                ..RouteMemo::default()
            };
        }
        if self.misses > COLD_AFTER && !self.misses.is_multiple_of(COLD_RELEARN) {
            return;
        }
        let Some(template) = Template::learn(sql, key) else {
            return;
        };
        debug_assert!(template.matches(sql) && template.len() <= MAX_LEN);
        let entry = Entry {
            template,
            route: route.clone(),
            next: [0, 0],
        };
        let at = if self.entries.len() < SLOTS {
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let at = self.replace;
            self.replace = (at + 1) % SLOTS;
            if let Some(slot) = self.entries.get_mut(at) {
                *slot = entry;
            }
            at
        };
        self.followed_by(at);
    }

    /// Entry `at` was used after the last one.
    fn followed_by(&mut self, at: usize) {
        if let Some(last) = self.entries.get_mut(self.last) {
            if last.next[0] != at {
                last.next = [at, last.next[0]];
            }
        }
        self.last = at;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cached_router, catalog};
    use super::super::{Classification, Destination::*, Router, RouterConfig};
    use super::RouteMemo;
    use std::collections::HashMap;

    #[test]
    fn memo_answers_as_the_cache_would_for_its_router_only() {
        let router = cached_router();
        let catalog = catalog();
        let mut memo = RouteMemo::default();
        let read = |aid: u32| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
        assert_eq!(memo.find(&router, &read(1)), None);
        let routed = router.classify_remembering(&read(1), &catalog, &mut memo);
        let Classification::Routed(route) = routed else {
            panic!("{routed:?}")
        };
        assert_eq!(route.destination, Replica);
        assert_eq!(memo.find(&router, &read(2)), Some(route.clone()));
        assert_eq!(
            memo.find(&router, "UPDATE pgbench_accounts SET abalance = 1"),
            None
        );
        // A reload's router has its own configuration: the memo does not answer.
        let reloaded = cached_router();
        assert_eq!(memo.find(&reloaded, &read(3)), None);
        let _ = reloaded.classify_remembering(&read(3), &catalog, &mut memo);
        assert_eq!(memo.find(&reloaded, &read(4)), Some(route.clone()));
        assert_eq!(memo.find(&router, &read(4)), None);
    }

    #[test]
    fn memo_keeps_a_transactions_statements() {
        let router = cached_router();
        let catalog = catalog();
        let mut memo = RouteMemo::default();
        // Deltas are negative in every other round: two shapes of each.
        let tpcb = |i: i32| {
            [
                "BEGIN;".to_string(),
                format!("UPDATE pgbench_accounts SET abalance = abalance + {i} WHERE aid = {i};"),
                format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};"),
                format!("UPDATE pgbench_tellers SET tbalance = tbalance + {i} WHERE tid = {i};"),
                format!("UPDATE pgbench_branches SET bbalance = bbalance + {i} WHERE bid = {i};"),
                format!("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({i}, {i}, {i}, {i}, CURRENT_TIMESTAMP);"),
                "END;".to_string(),
            ]
        };
        for sql in tpcb(1).into_iter().chain(tpcb(-1)) {
            if memo.find(&router, &sql).is_none() {
                let _ = router.classify_remembering(&sql, &catalog, &mut memo);
            }
        }
        for round in [2, -3, -4, 5, 6, -7] {
            for sql in tpcb(round) {
                let expected = match router.classify(&sql, &catalog) {
                    Classification::Routed(route) => route,
                    other => panic!("{other:?}"),
                };
                assert_eq!(memo.find(&router, &sql), Some(expected), "{sql}");
            }
        }
    }

    #[test]
    fn memo_keeps_what_the_cache_keeps_and_no_more() {
        let router = cached_router();
        let mut catalog = HashMap::new();
        let mut memo = RouteMemo::default();
        // A literal's value decides the route.
        let _ =
            router.classify_remembering("select current_setting('work_mem')", &catalog, &mut memo);
        assert_eq!(
            memo.find(&router, "select current_setting('transaction_read_only')"),
            None
        );
        // The catalog decides it.
        catalog.insert("my_func".to_string(), false);
        let _ = router.classify_remembering("select my_func(1)", &catalog, &mut memo);
        assert_eq!(memo.find(&router, "select my_func(2)"), None);
        // Keyed raw (backslash in a string): no template.
        let _ = router.classify_remembering("select 'a\\b'", &catalog, &mut memo);
        assert_eq!(memo.find(&router, "select 'a\\b'"), None);
        // Only the last few shapes are kept.
        for i in 0..20 {
            let _ = router.classify_remembering(
                &format!("select c{i} from t where a = 1"),
                &catalog,
                &mut memo,
            );
        }
        assert!(memo
            .find(&router, "select c19 from t where a = 2")
            .is_some());
        assert_eq!(memo.find(&router, "select c0 from t where a = 2"), None);
        // No cache, no memo.
        let uncached = Router::new(RouterConfig::default());
        let _ = uncached.classify_remembering("select 1", &catalog, &mut memo);
        assert_eq!(memo.find(&uncached, "select 2"), None);
    }
}
