//! Settings from the environment, read once at start-up.

use std::net::SocketAddr;

/// Where the app listens when `BIND` is unset (the seed's uvicorn default).
const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// Connections the app keeps open to pgsplit (SQLAlchemy's default).
const DEFAULT_POOL_SIZE: u32 = 5;
/// Extra connections it may open under load (SQLAlchemy's default).
const DEFAULT_MAX_OVERFLOW: u32 = 10;

/// Why the app cannot start; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:6432/postgres)")]
    MissingDatabaseUrl,
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything the app reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A postgres URL or libpq key=value string pointing at pgsplit.
    pub database_url: String,
    pub bind: SocketAddr,
    /// pgsplit's `/status` URL; `None` when unset (then /pool/status says so).
    pub pgsplit_status_url: Option<String>,
    pub pool_size: u32,
    pub max_overflow: u32,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    /// Empty values count as unset, as `VAR= cmd` usually means "none".
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").ok_or(ConfigError::MissingDatabaseUrl)?;
        Ok(Settings {
            database_url,
            bind: parse("BIND", get("BIND"), DEFAULT_BIND.parse().ok())?,
            pgsplit_status_url: get("PGSPLIT_STATUS_URL"),
            pool_size: parse("POOL_SIZE", get("POOL_SIZE"), Some(DEFAULT_POOL_SIZE))?,
            max_overflow: parse(
                "MAX_OVERFLOW",
                get("MAX_OVERFLOW"),
                Some(DEFAULT_MAX_OVERFLOW),
            )?,
        })
    }
}

fn parse<T>(name: &'static str, value: Option<String>, default: Option<T>) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match value {
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            value: v.clone(),
            reason: e.to_string(),
        }),
        // Defaults are constants that parse; `None` would be a bug here.
        None => default.ok_or(ConfigError::Invalid {
            name,
            value: String::new(),
            reason: "no default".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_and_status_url_is_optional() {
        let s = settings(&[("DATABASE_URL", "postgresql://u@h:6432/db")]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.pgsplit_status_url, None);
        assert_eq!((s.pool_size, s.max_overflow), (5, 10));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert!(matches!(
            settings(&[]),
            Err(ConfigError::MissingDatabaseUrl)
        ));
        let err = settings(&[("DATABASE_URL", "x"), ("BIND", "nope")]).unwrap_err();
        assert!(err.to_string().starts_with("BIND=\"nope\""), "{err}");
    }
}
