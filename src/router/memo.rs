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
