//! What a reload changes: the keys whose values differ between the running
//! configuration and the one read again, in the config file's dotted
//! names (`pool.replica.pool_size`, `users[1].password`), and which of
//! them take effect only at a restart. The reload logs each and keeps the
//! running value of those that cannot be applied.

use super::restart::RESTART_KEYS;
use super::Config;
use serde_json::Value;
use std::collections::BTreeMap;

/// One key whose value differs, both values as the config file would
/// spell them (secrets masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub old: String,
    pub new: String,
}

impl Change {
    /// Whether this key takes effect only at a restart.
    pub fn needs_restart(&self) -> bool {
        RESTART_KEYS.contains(&self.key.as_str())
    }
}

/// The keys whose values differ, sorted by name.
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    let (before, after) = (flatten(old), flatten(new));
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| {
            let shown = |value: Option<&Value>| match value {
                Some(_) if is_secret(key) => "********".to_string(),
                Some(value) => show(value),
                None => "(none)".to_string(),
            };
            Change {
                key: key.clone(),
                old: shown(before.get(key)),
                new: shown(after.get(key)),
            }
        })
        .collect()
}

fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.contains("password")
}

/// Every scalar of the config by its dotted key; arrays of scalars stay
/// one value (`replicas`), arrays of tables are indexed (`users[0].name`).
fn flatten(config: &Config) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    // Config is plain data: serializing it cannot fail.
    if let Ok(value) = serde_json::to_value(config) {
        walk("", &value, &mut out);
    }
    out
}

fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    let key = |name: &str| match prefix {
        "" => name.to_string(),
        _ => format!("{prefix}.{name}"),
    };
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                walk(&key(name), v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// A value as TOML would write it: strings quoted, lists in brackets.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::User;

    fn change(key: &str, old: &str, new: &str) -> Change {
        Change {
            key: key.into(),
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn the_changed_keys_by_their_dotted_names() {
        let old = Config::default();
        assert_eq!(changes(&old, &old.clone()), vec![]);
        let mut new = old.clone();
        new.pool.replica.pool_size = 7;
        new.replicas = vec!["h:2".into(), "h:3".into()];
        new.metrics_listen = Some("127.0.0.1:9930".into());
        new.query_timeout = 2.5;
        assert_eq!(
            changes(&old, &new),
            vec![
                change("metrics_listen", "(none)", "\"127.0.0.1:9930\""),
                change("pool.replica.pool_size", "5", "7"),
                change("query_timeout", "0.0", "2.5"),
                change("replicas", "[]", "[\"h:2\",\"h:3\"]"),
            ]
        );
    }

    #[test]
    fn passwords_are_masked_and_users_indexed() {
        let mut old = Config::default();
        let user = |name: &str, password: &str| User {
            name: name.into(),
            password: password.into(),
        };
        old.users = vec![user("app", "one")];
        let mut new = old.clone();
        new.users = vec![user("app", "two"), user("ops", "three")];
        let found = changes(&old, &new);
        assert_eq!(
            found,
            vec![
                change("users[0].password", "********", "********"),
                change("users[1].name", "(none)", "\"ops\""),
                change("users[1].password", "(none)", "********"),
            ]
        );
        assert!(!format!("{found:?}").contains("two"));
    }

    #[test]
    fn restart_keys_keep_their_running_values() {
        let old = Config::default();
        let mut new = old.clone();
        new.listen = "0.0.0.0:7000".into();
        new.worker_threads = 3;
        new.pool_mode = crate::config::PoolMode::Session;
        let found = changes(&old, &new);
        let restart: Vec<&str> = found
            .iter()
            .filter(|c| c.needs_restart())
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(restart, ["listen", "worker_threads"]);
        new.keep_restart_keys(&old);
        let left: Vec<String> = changes(&old, &new).into_iter().map(|c| c.key).collect();
        assert_eq!(left, ["pool_mode"]);
    }
}
