//! The admin console's view of the application.

use super::clients::ClientState;
use super::{App, Stop};
use crate::admin::{ClientRow, Console, RouteRow};
use crate::catalog::DatabaseFunctions;
use crate::pool::ClusterPools;
use crate::router::decision::{decide, Facts, Lazy, Transaction};
use crate::router::Isolation;
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

    async fn route(&self, database: Option<&str>, sql: &str) -> Result<Vec<RouteRow>, String> {
        let current = self.current();
        let config = &current.config;
        let database = database
            .map(str::to_string)
            .or_else(|| config.databases.first().cloned())
            .unwrap_or_else(|| "postgres".into());
        let cluster = current.pools.of_database(&database);
        if cluster.is_none() && !config.databases.is_empty() && !config.databases.contains(&database) {
            return Err(format!(
                "database \"{database}\" is not configured and no client has used it"
            ));
        }
        let functions = self.catalog.database(&database);
        let route = match current.router.classify(sql, &*functions) {
            Classification::Routed(route) => route,
            Classification::NeedsCatalog(names) => {
                match look_up(cluster.as_deref(), &functions, &names).await {
                    Ok(()) => match current.router.classify(sql, &*functions) {
                        Classification::Routed(route) => route,
                        Classification::NeedsCatalog(_) => return Ok(vec![unknown_functions(&names)]),
                    },
                    Err(why) => {
                        tracing::debug!(%why, "SHOW ROUTE: functions not looked up");
                        return Ok(vec![unknown_functions(&names)]);
                    }
                }
            }
        };
        let default_isolation = cluster.as_ref().and_then(|c| c.default_isolation());
        let facts = Facts {
            transaction_reads: config.transaction_reads,
            read_only_transactions: config.read_only_transactions,
            default_isolation,
            default_read_only: cluster.as_ref().is_some_and(|c| c.default_read_only()),
            primary_only: default_isolation == Some(Isolation::Serializable),
            ..Facts::default()
        };
        let lazy = Transaction::Lazy(Lazy {
            ran: true,
            ..Lazy::default()
        });
        let contexts = [
            ("outside a transaction", Transaction::None),
            ("in a transaction that has only read", lazy),
            ("in a transaction open on the primary", Transaction::Open),
        ];
        Ok(contexts
            .into_iter()
            .map(|(context, transaction)| {
                let decision = decide(&route, &Facts { transaction, ..facts });
                RouteRow {
                    context,
                    destination: decision.place.describe(),
                    reason: decision.why.as_str(),
                    description: decision.describe(&route),
                }
            })
            .collect())
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

/// Asks the primary, through the pools of a client of that database,
/// about functions the catalog does not know yet. With no such pools
/// (nobody used the database), there is no login to ask with.
async fn look_up(
    cluster: Option<&ClusterPools>,
    functions: &DatabaseFunctions,
    names: &[String],
) -> Result<(), String> {
    let cluster = cluster.ok_or("no client has used the database yet")?;
    let mut conn = cluster.checkout_primary().await.map_err(|e| e.to_string())?;
    functions
        .look_up(names, &mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// The answer when the catalog could not be asked.
fn unknown_functions(names: &[String]) -> RouteRow {
    RouteRow {
        context: "any",
        destination: "primary or replica",
        reason: "function",
        description: format!(
            "calls {}, not looked up in the primary's catalog yet: a volatile function sends it to the primary",
            names.join(", ")
        ),
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
