//! A bounded map from cache key to route, shared by all sessions.
//!
//! Sharded so that concurrent sessions rarely wait on the same lock; each
//! shard is simply emptied when full. That keeps the code trivial, and a
//! statement mix that overflows the cache only costs re-parsing, not
//! correctness.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Route;

const SHARDS: usize = 16;

pub(crate) struct RouteCache {
    shards: Vec<Mutex<HashMap<String, Route>>>,
    /// Picks the shard; the maps hash again with their own state.
    hasher: RandomState,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RouteCache {
    /// A cache of about `capacity` entries; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        let shard_count = if capacity == 0 { 0 } else { SHARDS };
        RouteCache {
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<HashMap<String, Route>>> {
        if self.shards.is_empty() {
            return None;
        }
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        self.shards.get(index)
    }

    /// Looks `key` up, counting a hit or a miss.
    pub(crate) fn get(&self, key: &str) -> Option<Route> {
        let found = self.shard(key)?.lock().get(key).cloned();
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: String, route: Route) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let mut map = shard.lock();
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, route);
    }

    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }
}
