//! What the admin console's SHOW commands read: the application's pools,
//! connections, clients and counters, as plain rows.

use super::flatten::flatten;
use crate::admin::{
    ClientRow, ConfigRow, DatabaseRow, PoolRow, RouteRow, ServerRow, Show, StatsRow, UserRow,
};
use crate::app::App;
use crate::config::{Config, PoolMode, RESTART_KEYS};
use crate::metrics::Sample;
use crate::pool::registry::Use;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;

pub(super) fn pool_mode(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Transaction => "transaction",
        PoolMode::Session => "session",
    }
}

impl Show for App {
    fn sample(&self) -> Sample {
        App::sample(self)
    }

    fn pools(&self) -> Vec<PoolRow> {
        let mode = pool_mode(self.config().pool_mode);
        let mut pools = App::sample(self).pools;
        pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
        pools
            .into_iter()
            .map(|sample| PoolRow {
                sample,
                pool_mode: mode,
            })
            .collect()
    }

    fn servers(&self) -> Vec<ServerRow> {
        self.registry
            .list()
            .into_iter()
            .map(|e| ServerRow {
                id: e.id,
                user: e.user.clone(),
                database: e.database.clone(),
                state: match e.state() {
                    Use::Idle => "idle",
                    Use::Active => "active",
                    Use::Parked => "parked",
                },
                server: e.addr.to_string(),
                role: e.role.as_str(),
                local: e.local,
                connected_at: e.connected_at,
                request_time: e.request_time(),
                close_needed: e.close_needed(),
                client: e.linked_client().filter(|_| e.state() != Use::Idle),
                backend_pid: e.backend_pid,
                tls: e.tls.clone(),
            })
            .collect()
    }

    fn clients(&self) -> Vec<ClientRow> {
        // Which server connection each client holds (one, if it holds
        // several: a pinned client's primary and a spare replica).
        let held: HashMap<u64, u64> = self
            .registry
            .list()
            .iter()
            .filter(|e| e.state() != Use::Idle)
            .filter_map(|e| e.linked_client().map(|c| (c, e.id)))
            .collect();
        self.clients
            .list()
            .into_iter()
            .map(|c| ClientRow {
                id: c.id,
                user: c.user.clone(),
                database: c.database.clone(),
                application_name: c.application_name.clone(),
                addr: c.peer,
                local: c.local,
                tls: c.tls.clone(),
                state: c.state().as_str(),
                pinned: c.pinned.lock().clone(),
                statements: c.statements.load(Ordering::Relaxed),
                connected_at: c.connected_at,
                server: held.get(&c.id).copied(),
            })
            .collect()
    }

    fn stats(&self) -> Vec<StatsRow> {
        let seconds = self.metrics.uptime();
        self.metrics
            .by_database()
            .into_iter()
            .map(|t| StatsRow {
                database: t.database,
                server_assignments: t.checkouts,
                xacts: t.transactions,
                queries: t.statements[0] + t.statements[1],
                received: t.received,
                sent: t.sent,
                xact_us: t.transaction_nanos / 1000,
                query_us: t.statement_nanos / 1000,
                wait_us: t.wait_nanos / 1000,
                primary_queries: t.statements[0],
                replica_queries: t.statements[1],
                seconds,
            })
            .collect()
    }

    fn databases(&self) -> Vec<DatabaseRow> {
        let config = self.config();
        let (servers, clients) = (self.registry.list(), self.clients.list());
        let settings = &config.pool.primary;
        self.known_databases(&config)
            .into_iter()
            .map(|name| DatabaseRow {
                current_connections: servers.iter().filter(|e| e.database == name).count() as u64,
                current_client_connections: clients.iter().filter(|c| c.database == name).count()
                    as u64,
                paused: self.is_paused_for(&name),
                disabled: self.databases.is_disabled(&name),
                primary: config.primary.clone(),
                replicas: config.replicas.clone(),
                pool_size: settings.pool_size,
                max_overflow: settings.max_overflow,
                server_lifetime: settings.pool_recycle as u64,
                pool_mode: pool_mode(config.pool_mode),
                max_connections: config.max_db_connections,
                name,
            })
            .collect()
    }

    fn users(&self) -> Vec<UserRow> {
        let config = self.config();
        let (servers, clients) = (self.registry.list(), self.clients.list());
        let mut names: BTreeSet<String> = config.users.iter().map(|u| u.name.clone()).collect();
        names.extend(servers.iter().map(|e| e.user.clone()));
        names.extend(clients.iter().map(|c| c.user.clone()));
        names
            .into_iter()
            .map(|name| UserRow {
                pool_size: config.pool.primary.pool_size,
                pool_mode: pool_mode(config.pool_mode),
                max_user_connections: config.max_user_connections,
                current_connections: servers.iter().filter(|e| e.user == name).count() as u64,
                current_client_connections: clients.iter().filter(|c| c.user == name).count()
                    as u64,
                name,
            })
            .collect()
    }

    fn lists(&self) -> Vec<(&'static str, u64)> {
        let config = self.config();
        let current = self.current();
        let clusters = current.pools.snapshot();
        let users = self.users().len() as u64;
        vec![
            ("databases", self.known_databases(&config).len() as u64),
            ("users", users),
            ("peers", config.peers.len() as u64),
            (
                "pools",
                clusters.iter().map(|c| c.servers.len() as u64).sum(),
            ),
            // Peers forward cancel requests only: no pools of theirs.
            ("peer_pools", 0),
            // pgsplit allocates per client; there is no free list.
            ("free_clients", 0),
            ("used_clients", self.clients.count() as u64),
            // Connections whose login is in progress are not listed.
            ("login_clients", 0),
            ("free_servers", 0),
            ("used_servers", self.registry.list().len() as u64),
            // Server names are resolved at each connect, not cached.
            ("dns_names", 0),
            ("dns_zones", 0),
            ("dns_queries", 0),
            ("dns_pending", 0),
        ]
    }

    fn config(&self) -> Vec<ConfigRow> {
        let defaults: HashMap<String, String> = flattened(&Config::default()).into_iter().collect();
        flattened(&self.config())
            .into_iter()
            .map(|(key, value)| ConfigRow {
                default: defaults.get(&key).cloned().unwrap_or_default(),
                changeable: !RESTART_KEYS.contains(&key.as_str()),
                key,
                value,
            })
            .collect()
    }

    fn metrics(&self) -> Vec<(String, String, String)> {
        self.metrics.stats()
    }

    async fn route(&self, database: Option<&str>, sql: &str) -> Result<Vec<RouteRow>, String> {
        self.route_rows(database, sql).await
    }
}

impl App {
    /// The databases SHOW DATABASES lists: the configured ones, and any
    /// other a client used (when `databases` is empty, any is served).
    fn known_databases(&self, config: &Config) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = config.databases.iter().cloned().collect();
        let current = self.current();
        for cluster in current.pools.snapshot() {
            if let Some(pool) = cluster.servers.first() {
                names.insert(pool.database.clone());
            }
        }
        names.extend(self.databases.paused());
        names
    }
}

fn flattened(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match toml::Value::try_from(config) {
        Ok(value) => flatten("", &value, &mut out),
        Err(error) => out.push(("error".into(), error.to_string())),
    }
    out
}
