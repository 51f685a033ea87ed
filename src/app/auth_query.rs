//! Users not in `[[users]]`, looked up on the primary (PgBouncer's
//! auth_query): pgsplit logs in as `auth_user` to `auth_dbname` through its
//! own pools, runs `auth_query` with the user name as `$1`, and checks the
//! client against the SCRAM verifier or md5 hash it returns. Answers are
//! kept `auth_cache_seconds`, so a burst of logins costs one query per
//! user, and a changed password is seen once the answer expires.

use super::credentials::Stored;
use crate::config::Config;
use crate::pool::{PoolError, Pools};
use crate::secret::{Secret, SecretError};
use crate::server::ServerError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers kept at most, so that logins with made-up names cannot grow the
/// cache without bound (expired ones are dropped first).
const MAX_CACHED: usize = 10_000;

/// The lookup of one configuration generation.
pub struct AuthQuery {
    user: String,
    database: String,
    query: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    at: Instant,
    stored: Option<Arc<Stored>>,
}

/// Where an answer came from, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Cached,
    Found,
    NotFound,
}

impl Answer {
    pub fn label(self) -> &'static str {
        match self {
            Answer::Cached => "cached",
            Answer::Found => "found",
            Answer::NotFound => "not_found",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    #[error("{0}")]
    Pool(#[from] PoolError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("auth_query must return two columns, the user name and its password (hash)")]
    Columns,
    #[error("the password auth_query returned cannot be used: {0}")]
    Secret(#[from] SecretError),
}

impl AuthQuery {
    /// The lookup `config` asks for, if any (`auth_user` set).
    pub fn new(config: &Config) -> Option<AuthQuery> {
        Some(AuthQuery {
            user: config.auth_user.clone()?,
            database: config.auth_dbname.clone(),
            query: config.auth_query.clone(),
            ttl: config.auth_cache_ttl(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `user`'s secret (`None`: no such user, or no password), from the
    /// cache or the primary.
    pub async fn lookup(
        &self,
        pools: &Pools,
        user: &str,
    ) -> Result<(Option<Arc<Stored>>, Answer), AuthQueryError> {
        if let Some(stored) = self.cached(user, Instant::now()) {
            return Ok((stored, Answer::Cached));
        }
        let stored = self.ask(pools, user).await?;
        self.keep(user, stored.clone(), Instant::now());
        let answer = if stored.is_some() {
            Answer::Found
        } else {
            Answer::NotFound
        };
        Ok((stored, answer))
    }

    async fn ask(&self, pools: &Pools, user: &str) -> Result<Option<Arc<Stored>>, AuthQueryError> {
        let cluster = pools.get(&self.database, &self.user);
        let mut conn = cluster.checkout_primary().await?;
        let rows = conn.query_params(&self.query, &[user]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let passwd = row.get(1).ok_or(AuthQueryError::Columns)?;
        // A role without a password (NULL) can log in with none: as
        // PostgreSQL, its clients are refused.
        let Some(passwd) = passwd.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let secret = Secret::parse(passwd)?;
        Ok(Some(Arc::new(Stored::new(user, &secret)?)))
    }

    fn cached(&self, user: &str, now: Instant) -> Option<Option<Arc<Stored>>> {
        let cache = self.cache.lock();
        let entry = cache.get(user)?;
        (now.duration_since(entry.at) < self.ttl).then(|| entry.stored.clone())
    }

    fn keep(&self, user: &str, stored: Option<Arc<Stored>>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, e| now.duration_since(e.at) < self.ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(user.to_string(), Cached { at: now, stored });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(ttl: f64) -> AuthQuery {
        AuthQuery::new(&Config {
            auth_user: Some("lookup".into()),
            auth_cache_seconds: ttl,
            ..Config::default()
        })
        .unwrap()
    }

    fn stored() -> Option<Arc<Stored>> {
        Some(Arc::new(
            Stored::new(
                "u",
                &Secret::Md5("md5a3556571e93b0d20722ba62be61e8c2d".into()),
            )
            .unwrap(),
        ))
    }

    #[test]
    fn answers_are_kept_for_the_ttl_only() {
        let q = lookup(10.0);
        let now = Instant::now();
        assert!(q.cached("u", now).is_none());
        q.keep("u", stored(), now);
        q.keep("ghost", None, now);
        assert!(matches!(
            q.cached("u", now + Duration::from_secs(9)),
            Some(Some(_))
        ));
        assert!(
            matches!(q.cached("ghost", now), Some(None)),
            "unknown users are kept too"
        );
        assert!(q.cached("u", now + Duration::from_secs(10)).is_none());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let q = lookup(0.0);
        let now = Instant::now();
        q.keep("u", stored(), now);
        assert!(q.cached("u", now).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let q = lookup(10.0);
        let now = Instant::now();
        for i in 0..MAX_CACHED + 5 {
            q.keep(&format!("user{i}"), None, now);
        }
        assert!(q.cache.lock().len() <= MAX_CACHED);
    }
}
