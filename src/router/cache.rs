//! A bounded map from cache key to route, shared by all sessions.
//!
//! Sharded so that concurrent sessions rarely wait on the same lock; each
//! shard is simply emptied when full. That keeps the code trivial, and a
//! statement mix that overflows the cache only costs re-parsing, not
//! correctness.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::RandomState;

use parking_lot::Mutex;

use super::Route;

const SHARDS: usize = 16;

/// Entries by the key's 64-bit hash, keeping the key to compare: the text
/// is hashed once per lookup, not once for the shard and again in the map.
type Entries = HashMap<u64, (String, Route), BuildHasherDefault<Prehashed>>;

/// Counters live with the entries, under the shard's lock: a counter shared
/// by all shards would bounce between cores on every statement.
#[derive(Default)]
struct Shard {
    entries: Entries,
    hits: u64,
    misses: u64,
}

/// A `Hasher` for keys that are already random-state hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) struct RouteCache {
    shards: Vec<Mutex<Shard>>,
    /// Hashes keys: foldhash, several times faster than the standard
    /// SipHash on statement-sized strings, and randomly seeded per cache;
    /// a collision costs a re-parse, never a wrong route.
    hasher: RandomState,
    per_shard: usize,
}

impl RouteCache {
    /// A cache of about `capacity` entries; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        let shard_count = if capacity == 0 { 0 } else { SHARDS };
        RouteCache {
            shards: (0..shard_count)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            hasher: RandomState::default(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &str) -> Option<(&Mutex<Shard>, u64)> {
        if self.shards.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        let index = hash as usize % self.shards.len();
        self.shards.get(index).map(|shard| (shard, hash))
    }

    /// Looks `key` up, counting a hit or a miss.
    pub(crate) fn get(&self, key: &str) -> Option<Route> {
        let (shard, hash) = self.shard(key)?;
        let mut shard = shard.lock();
        let found = match shard.entries.get(&hash) {
            Some((stored, route)) if stored == key => Some(route.clone()),
            _ => None,
        };
        match found {
            Some(_) => shard.hits += 1,
            None => shard.misses += 1,
        }
        found
    }

    pub(crate) fn insert(&self, key: String, route: Route) {
        let Some((shard, hash)) = self.shard(&key) else {
            return;
        };
        let mut shard = shard.lock();
        let map = &mut shard.entries;
        if map.len() >= self.per_shard && !map.contains_key(&hash) {
            map.clear();
        }
        // A colliding entry is replaced: the cost is a re-parse, never a
        // wrong route, since lookups compare the whole key.
        map.insert(hash, (key, route));
    }

    pub(crate) fn stats(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(hits, misses), shard| {
            let shard = shard.lock();
            (hits + shard.hits, misses + shard.misses)
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    //! What the cache keeps: routes by normalised text, never those that
    //! depend on a literal's value or on the catalog, within its bound.

    use super::super::tests::{cached_router, catalog};
    use super::super::{Classification, Destination::*, Reason, Route, Router, RouterConfig};
    use std::collections::HashMap;

    #[test]
    fn router_caches_by_normalised_text() {
        let router = cached_router();
        let catalog = catalog();
        let read = |aid: u32| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
        for aid in 0..10 {
            let got = router.classify(&read(aid), &catalog);
            assert_eq!(
                got,
                Classification::Routed(Route::new(Replica, Reason::ReadOnly))
            );
        }
        assert_eq!(router.cache_stats(), (9, 1));
        assert_eq!(router.cache.len(), 1);
    }

    #[test]
    fn literal_sensitive_routes_are_not_shared() {
        let router = cached_router();
        let catalog = catalog();
        let destination = |sql: &str| match router.classify(sql, &catalog) {
            Classification::Routed(route) => route.destination,
            other => panic!("{other:?}"),
        };
        assert_eq!(destination("select current_setting('work_mem')"), Replica);
        assert_eq!(
            destination("select current_setting('transaction_read_only')"),
            Primary
        );
        assert_eq!(destination("select current_setting('work_mem')"), Replica);
    }

    #[test]
    fn catalog_questions_are_not_cached() {
        let router = cached_router();
        let mut catalog = HashMap::new();
        let sql = "select my_func(1)";
        assert_eq!(
            router.classify(sql, &catalog),
            Classification::NeedsCatalog(vec!["my_func".into()])
        );
        catalog.insert("my_func".to_string(), true);
        assert_eq!(
            router.classify(sql, &catalog),
            Classification::Routed(Route::new(Primary, Reason::WriteFunction("my_func".into())))
        );
        // Final, but it came from one database's catalog and the cache serves
        // all databases: not cached.
        let _ = router.classify("select my_func(2)", &catalog);
        assert_eq!(router.cache_stats().0, 0);
        assert_eq!(router.cache.len(), 0);
    }

    #[test]
    fn cache_stays_bounded_and_can_be_disabled() {
        let catalog = catalog();
        let router = Router::new(RouterConfig {
            cache_size: 32,
            ..RouterConfig::default()
        });
        for i in 0..1000 {
            let _ = router.classify(&format!("select c{i} from t"), &catalog);
        }
        assert!(router.cache.len() <= 32 + 16, "{}", router.cache.len());

        let router = Router::new(RouterConfig::default());
        for _ in 0..3 {
            let _ = router.classify("select 1", &catalog);
        }
        assert_eq!(router.cache.len(), 0);
        assert_eq!(router.cache_stats(), (0, 0));
    }
}
