//! The admin console's view of the application.

use super::clients::ClientState;
use super::{App, Stop};
use crate::admin::{ClientRow, Console};
use crate::metrics::Sample;
use crate::router::Classification;
use std::time::{Duration, Instant, SystemTime};

/// How long PAUSE waits for transactions in flight before it answers.
const PAUSE_WAIT: Duration = Duration::from_secs(10);

impl Console for App {
    fn sample(&self) -> Sample {
        App::sample(self)
    }

    fn clients(&self) -> Vec<ClientRow> {
        self.clients
            .list()
            .into_iter()
            .map(|c| ClientRow {
                id: c.id,
                user: c.user.clone(),
                database: c.database.clone(),
                application_name: c.application_name.clone(),
                addr: c.peer.to_string(),
                state: c.state().as_str(),
                pinned: c.pinned.lock().clone(),
                statements: c.statements.load(std::sync::atomic::Ordering::Relaxed),
                connected_seconds: SystemTime::now()
                    .duration_since(c.connected_at)
                    .map_or(0, |d| d.as_secs()),
            })
            .collect()
    }

    fn config(&self) -> Vec<(String, String)> {
        let config = self.config();
        let mut out = Vec::new();
        match toml::Value::try_from(&*config) {
            Ok(value) => flatten("", &value, &mut out),
            Err(error) => out.push(("error".into(), error.to_string())),
        }
        out
    }

    fn stats(&self) -> Vec<(String, String, String)> {
        self.metrics.stats()
    }

    fn route(&self, sql: &str) -> (String, String) {
        let current = self.current();
        let database = current
            .config
            .databases
            .first()
            .cloned()
            .unwrap_or_else(|| "postgres".into());
        let functions = self.catalog.database(&database);
        match current.router.classify(sql, &*functions) {
            Classification::Routed(route) => (
                route.destination.as_str().to_string(),
                route.reason.describe(),
            ),
            Classification::NeedsCatalog(names) => (
                "primary or replica".to_string(),
                format!(
                    "calls {}, not looked up in the primary's catalog yet: a volatile function sends it to the primary",
                    names.join(", ")
                ),
            ),
        }
    }

    fn reload(&self) -> Result<String, String> {
        self.reload_from_source()
    }

    async fn pause(&self) -> String {
        self.set_paused(true);
        tracing::info!("PAUSE: new transactions wait for RESUME");
        let deadline = Instant::now() + PAUSE_WAIT;
        loop {
            let active = self
                .clients
                .list()
                .iter()
                .filter(|c| c.state() == ClientState::Active)
                .count();
            if active == 0 {
                return "paused: no transaction in flight".into();
            }
            if Instant::now() >= deadline {
                return format!(
                    "paused; {active} clients still in a transaction after {PAUSE_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn resume(&self) {
        self.set_paused(false);
        tracing::info!("RESUME: transactions go on");
    }

    fn shutdown(&self) {
        tracing::info!("SHUTDOWN from the admin console");
        self.request_stop(Stop::Draining);
    }
}

/// Dotted keys for nested tables; passwords masked.
fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(|i| i.is_table()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        _ if prefix.ends_with("password") => out.push((prefix.to_string(), "********".into())),
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
