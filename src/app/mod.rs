//! The application state every session shares: one `Arc<App>`, no globals,
//! so tests run many proxies side by side.
//!
//! What a reload may change (servers, pools, routing, users) lives in a
//! [`Current`] generation behind an `ArcSwap`: a reload builds the next one
//! and swaps it in. Sessions move to it at their next checkout, so clients
//! keep their connections and transactions in flight finish where they
//! started.
//!
//! Who is connected (`clients`) and what passwords are checked against
//! (`credentials`) are part of this state. The sessions (`client`) and the
//! listener use it; it knows nothing of them.

pub mod admission;
pub mod auth_query;
pub mod clients;
mod console;
pub mod credentials;
pub mod databases;

use crate::cancel::Cancels;
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError};
use crate::health::{Monitors, Topology};
use crate::metrics::{ClientCounts, Metrics, Sample};
use crate::pool::Pools;
use crate::router::{Router, RouterConfig};
use crate::secret::scram::Key;
use crate::server::Keyring;
use arc_swap::ArcSwap;
use auth_query::AuthQuery;
use clients::{ClientState, Clients};
use credentials::Credentials;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

pub struct App {
    current: ArcSwap<Current>,
    /// Bumped by every reload; a session compares it to its own
    /// generation's number with one load per checkout.
    generation: AtomicU64,
    pub catalog: Catalog,
    pub cancels: Cancels,
    pub metrics: Arc<Metrics>,
    pub clients: Clients,
    /// Client connections open now, logged in or not (`max_client_conn`).
    pub admission: admission::Admission,
    /// Each user's credential for server logins: from the configuration,
    /// or proved by the user's clients (pass-through); kept across reloads.
    pub keyring: Arc<Keyring>,
    /// Mock SCRAM salts are derived from it (see `Verifier::mock`): one per
    /// process, so an unknown user's salt stays the same across reloads.
    mock_secret: Key,
    /// Clients pinned to one server connection by session state.
    pub pinned_clients: AtomicUsize,
    /// PAUSE: no new server connections are handed out until RESUME.
    paused: AtomicBool,
    /// Woken by RESUME (of everything or of a database) and by a kill,
    /// so that paused clients look again.
    resumed: Notify,
    /// Databases paused or disabled one by one (PAUSE db, DISABLE db).
    pub databases: databases::DatabaseSwitches,
    /// Every server connection open (SHOW SERVERS, RECONNECT).
    pub registry: Arc<crate::pool::registry::Registry>,
    /// Shutdown progress (a `Stop` as a number): sessions load it once per
    /// wait, no lock. Sessions are woken through their registry entries,
    /// the listener through `stopping`.
    stop_level: AtomicU8,
    stopping: Notify,
    /// Re-reads the configuration for RELOAD and SIGHUP.
    reloader: OnceLock<Reloader>,
}

/// Re-reads the configuration (file and flags) for a reload.
pub type Reloader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// One generation of what a reload changes.
pub struct Current {
    pub config: Arc<Config>,
    pub topology: Arc<Topology>,
    pub pools: Arc<Pools>,
    pub router: Router,
    pub credentials: Credentials,
    /// Users looked up on the primary, when `auth_user` is set.
    pub auth_query: Option<AuthQuery>,
    /// TLS to clients and servers, loaded from this generation's files.
    pub tls: crate::tls::Tls,
    pub generation: u64,
    /// The health checks of this generation's servers; stop with it.
    monitors: OnceLock<Monitors>,
}

/// Where a shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stop {
    Running,
    /// No new clients; clients are told to leave between transactions.
    Draining,
    /// `shutdown_timeout` passed: remaining clients are cut off now.
    Now,
}

impl App {
    /// The application for `config`, with the TLS loaded from its files:
    /// starts its health checks and opens `pool_size` connections per
    /// pool (so it needs a tokio runtime).
    pub fn new(config: Config, tls: crate::tls::Tls) -> Arc<App> {
        let metrics = Arc::new(Metrics::new());
        metrics.declare_pin_reasons(&crate::router::Pin::ALL.map(crate::router::Pin::label));
        metrics.declare_admin_commands(&crate::admin::COMMANDS, &crate::admin::RESULTS);
        let outcomes = crate::tls::Outcome::PAIRS.map(|(side, o)| (side, o.label()));
        metrics.declare_tls_outcomes(&outcomes);
        let instance = config.instance();
        let keyring = Arc::new(Keyring::default());
        let mock_secret: Key = rand::random();
        let registry = Arc::new(crate::pool::registry::Registry::default());
        let shared = Shared {
            metrics: &metrics,
            keyring: &keyring,
            mock_secret,
            registry: &registry,
        };
        let current = Current::build(Arc::new(config), tls, None, &shared, 0);
        current.start();
        Arc::new(App {
            keyring,
            mock_secret,
            current: ArcSwap::from_pointee(current),
            generation: AtomicU64::new(0),
            catalog: Catalog::default(),
            cancels: Cancels::new(instance),
            metrics,
            clients: Clients::default(),
            admission: Default::default(),
            pinned_clients: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
            databases: Default::default(),
            registry,
            stop_level: AtomicU8::new(Stop::Running as u8),
            stopping: Notify::new(),
            reloader: OnceLock::new(),
        })
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// Swaps in `config` (already validated) and the TLS loaded from its
    /// files: new clients and the next checkout of every session use
    /// them. Servers that stay keep their health state; pools whose
    /// settings did not change keep their connections; clients keep
    /// their TLS sessions.
    pub fn reload(&self, config: Config, tls: crate::tls::Tls) {
        let old = self.current();
        let generation = old.generation + 1;
        let shared = Shared {
            metrics: &self.metrics,
            keyring: &self.keyring,
            mock_secret: self.mock_secret,
            registry: &self.registry,
        };
        let next = Current::build(Arc::new(config), tls, Some(&old), &shared, generation);
        next.start();
        self.current.store(Arc::new(next));
        self.generation.store(generation, Ordering::Release);
        self.metrics.reloaded(true);
    }

    pub fn set_reloader(&self, reloader: Reloader) {
        let _ = self.reloader.set(reloader);
    }

    /// Re-reads the configuration and swaps it in; an invalid one is
    /// refused (logged, counted) and the running one stays. Returns what
    /// happened, in words.
    pub fn reload_from_source(&self) -> Result<String, String> {
        let Some(reloader) = self.reloader.get() else {
            return Err("pgsplit was started without a config file: nothing to re-read".into());
        };
        let loaded = reloader().map_err(|e| e.to_string()).and_then(|config| {
            let tls = crate::tls::Tls::load(&config).map_err(|e| format!("invalid config: {e}"))?;
            Ok((config, tls))
        });
        let (mut config, tls) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "reload refused: the running configuration stays");
                self.metrics.reloaded(false);
                return Err(format!(
                    "reload refused, the running configuration stays: {error}"
                ));
            }
        };
        let old = self.config();
        let changes = crate::config::changes(&old, &config);
        log_changes(&changes);
        // What is in force (and SHOW CONFIG) says what pgsplit really uses.
        config.keep_restart_keys(&old);
        let changed = *old != config;
        self.reload(config, tls);
        let what = if changed {
            "configuration reloaded"
        } else {
            "configuration reloaded (unchanged)"
        };
        tracing::info!(generation = self.generation(), "{what}");
        Ok(what.to_string())
    }

    /// Before a statement that needs `database` free of other sessions
    /// (`router::command::exclusive_database`: DROP DATABASE, ALTER
    /// DATABASE ... RENAME or SET TABLESPACE, CREATE DATABASE ...
    /// TEMPLATE): closes pgsplit's idle connections to it on every server
    /// and for every user, after calling back those parked with idle
    /// clients (waiting up to 200 ms for them). Connections in use by
    /// other clients stay, and the statement then fails with
    /// PostgreSQL's own 55006, as it would directly. Costs nothing when
    /// pgsplit has no pool of `database`.
    pub async fn close_idle_connections(&self, database: &str) -> crate::pool::Closed {
        self.current().pools.close_idle_connections(database).await
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        if !paused {
            self.resumed.notify_waiters();
        }
    }

    /// Whether new transactions of `database` wait: PAUSE, or PAUSE of
    /// that database. One load when neither is in force.
    #[inline]
    pub fn is_paused_for(&self, database: &str) -> bool {
        self.is_paused() || self.databases.is_paused(database)
    }

    /// Returns once `client`'s database is resumed (at once if not
    /// paused), or the client is killed.
    pub async fn wait_resumed(&self, client: &clients::ClientInfo) {
        loop {
            let resumed = self.resumed.notified();
            if !self.is_paused_for(&client.database) || client.is_killed() {
                return;
            }
            resumed.await;
        }
    }

    /// Resumes the clients of `database` paused on their own.
    pub fn resume_database(&self, database: &str) -> bool {
        let was = self.databases.resume(database);
        self.resumed.notify_waiters();
        was
    }

    /// Ends a client's session at once (KILL_CLIENT, KILL).
    pub fn kill_session(&self, client: &clients::ClientInfo) {
        client.kill();
        // A client waiting out a PAUSE looks again.
        self.resumed.notify_waiters();
    }

    /// Moves the shutdown on to `stop` (never back).
    pub fn request_stop(&self, stop: Stop) {
        // Stored before the wakes: a session registers its waker, then
        // loads the level, so it either sees the new level or is woken.
        let before = self.stop_level.fetch_max(stop as u8, Ordering::SeqCst);
        if (stop as u8) > before {
            self.clients.wake_all();
            self.stopping.notify_waiters();
        }
    }

    /// Resolves once a shutdown has begun.
    pub async fn stopped(&self) {
        loop {
            let notified = self.stopping.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop_now() != Stop::Running {
                return;
            }
            notified.await;
        }
    }

    /// Where the shutdown stands.
    pub fn stop_now(&self) -> Stop {
        match self.stop_level.load(Ordering::SeqCst) {
            0 => Stop::Running,
            1 => Stop::Draining,
            _ => Stop::Now,
        }
    }

    /// Pools, servers and clients as they are now.
    pub fn sample(&self) -> Sample {
        let current = self.current();
        let (hits, misses) = current.router.cache_stats();
        let clusters = current.pools.snapshot();
        let mut servers: Vec<_> = current
            .topology
            .servers
            .iter()
            .map(|s| s.sample())
            .collect();
        for cluster in &clusters {
            for (server, pool) in servers.iter_mut().zip(cluster.all()) {
                server.bans += pool.bans.load(Ordering::Relaxed);
            }
        }
        for server in &mut servers {
            server.bans += current.pools.retired_bans(&server.server);
        }
        let waits = &current.topology.consistency_waits;
        Sample {
            pools: clusters
                .iter()
                .flat_map(|c| c.all().map(|p| p.sample()).collect::<Vec<_>>())
                .collect(),
            servers,
            clients: self.client_counts(),
            routing_cache_hits: hits + self.metrics.routing_memo_hits(),
            routing_cache_misses: misses,
            consistency_waits: [0, 1].map(|i| waits[i].load(Ordering::Relaxed)),
            position_samples: current.topology.position_samples.load(Ordering::Relaxed),
            paused: self.is_paused(),
            split_brain: current.topology.is_split_brain(),
        }
    }

    fn client_counts(&self) -> ClientCounts {
        let mut counts = ClientCounts {
            pinned: self.pinned_clients.load(Ordering::Relaxed) as u64,
            ..ClientCounts::default()
        };
        for client in self.clients.list() {
            match client.state() {
                ClientState::Idle => counts.idle += 1,
                ClientState::Active => counts.active += 1,
                ClientState::Waiting => counts.waiting += 1,
            }
        }
        counts
    }
}

impl crate::http::Observed for App {
    fn sample(&self) -> Sample {
        App::sample(self)
    }

    fn metrics_text(&self) -> String {
        self.metrics.render(&App::sample(self))
    }
}

/// What every generation is built with and shares.
struct Shared<'a> {
    metrics: &'a Arc<Metrics>,
    keyring: &'a Arc<Keyring>,
    mock_secret: Key,
    registry: &'a Arc<crate::pool::registry::Registry>,
}

impl Current {
    fn build(
        config: Arc<Config>,
        tls: crate::tls::Tls,
        previous: Option<&Current>,
        shared: &Shared,
        generation: u64,
    ) -> Current {
        let topology = Topology::succeed(&config, previous.map(|p| &*p.topology));
        // Before the pools: their warm-up logs in with these.
        shared
            .keyring
            .configure(credentials::configured_logins(&config));
        let pools = Arc::new(Pools::new(
            config.clone(),
            topology.clone(),
            shared.metrics.clone(),
            shared.keyring.clone(),
            tls.servers.clone(),
            shared.registry.clone(),
        ));
        if let Some(previous) = previous {
            pools.inherit(&previous.pools);
        }
        Current {
            router: Router::new(router_config(&config)),
            credentials: Credentials::new(&config.users, shared.mock_secret),
            auth_query: AuthQuery::new(&config),
            tls,
            pools,
            topology,
            config,
            generation,
            monitors: OnceLock::new(),
        }
    }

    fn start(&self) {
        let monitors = crate::health::spawn_monitors(
            self.topology.clone(),
            &self.config,
            self.tls.servers.as_deref(),
        );
        let _ = self.monitors.set(monitors);
        self.pools.warm_up();
        self.pools.spawn_retirement();
    }
}

fn router_config(config: &Config) -> RouterConfig {
    RouterConfig {
        read_only_functions: lower(&config.read_only_functions),
        write_functions: lower(&config.write_functions),
        cache_size: config.routing_cache_size,
    }
}

fn lower(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_lowercase()).collect()
}

/// One line per key a reload changes (`key: old -> new`), and for keys
/// that need a restart, a warning that the running value stays.
fn log_changes(changes: &[crate::config::Change]) {
    for change in changes {
        let crate::config::Change { key, old, new } = change;
        if change.needs_restart() {
            tracing::warn!(
                "reload: {key}: {old} -> {new} needs a restart; the running value {old} stays in use"
            );
        } else {
            tracing::info!("reload: {key}: {old} -> {new}");
        }
    }
}
