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

use super::normalize::Template;
use super::{Route, Router};

/// Statement shapes remembered per session.
const SLOTS: usize = 4;

/// Longer statements are left to the shared cache: the memo is per client,
/// and thousands of clients each keeping four long texts add up.
const MAX_LEN: usize = 1024;

#[derive(Default)]
pub struct RouteMemo {
    /// The router these routes came from (`Router::id`); 0 before any.
    router: u64,
    entries: Vec<(Template, Route)>,
    /// The entry a new one replaces once all slots are taken.
    next: usize,
}

impl RouteMemo {
    /// The route of `sql` if its shape was seen lately, by this router.
    pub fn find(&self, router: &Router, sql: &str) -> Option<Route> {
        if self.router != router.id {
            return None;
        }
        self.entries
            .iter()
            .find(|(template, _)| template.matches(sql))
            .map(|(_, route)| route.clone())
    }

    /// Remembers that statements keyed `key` (without its tag) by the fast
    /// path, as `sql` was, route as `route`.
    pub(super) fn remember(&mut self, router: &Router, sql: &str, key: &str, route: &Route) {
        if sql.len() > MAX_LEN {
            return;
        }
        if self.router != router.id {
            self.entries.clear();
            self.next = 0;
            self.router = router.id;
        }
        let Some(template) = Template::learn(sql, key) else {
            return;
        };
        debug_assert!(template.matches(sql) && template.len() <= MAX_LEN);
        let entry = (template, route.clone());
        if self.entries.len() < SLOTS {
            self.entries.push(entry);
        } else if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = entry;
            self.next = (self.next + 1) % SLOTS;
        }
    }
}
