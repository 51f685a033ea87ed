//! Configuration: parsed from a TOML string (apart from reading the file, so
//! tests need no files), overridden by command-line flags, then validated.
//! Every key is documented in `config.toml.example`.

mod changes;
mod cli;
mod limits;
mod restart;
pub use restart::RESTART_KEYS;
mod tls;

pub use changes::{changes, Change};
pub use cli::{Cli, HELP_SECTIONS};
pub use limits::{ClientSocket, Keepalive};
pub use tls::{ClientTlsMode, ServerTlsMode, TlsVersions};

use crate::secret::{Secret, SecretError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Why a configuration was refused; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// How clients prove who they are to pgsplit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// Any user and database the servers accept.
    #[default]
    Trust,
    Md5,
    #[serde(rename = "scram-sha-256")]
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// A TLS client certificate whose CN is the user name (needs
    /// `client_tls_sslmode` verify-ca or verify-full).
    Cert,
}

/// The config file's spelling (`scram-sha-256`), for logs and
/// `--check-config`; not Rust's Debug name.
impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Cert => "cert",
        })
    }
}

/// How long a client keeps a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// From a client's first statement until the server is idle again.
    #[default]
    Transaction,
    /// For the client's whole session.
    Session,
}

impl std::fmt::Display for PoolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        })
    }
}

/// Where a read-only transaction that keeps its snapshot (`BEGIN
/// ISOLATION LEVEL REPEATABLE READ READ ONLY`) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadOnlyTransactions {
    #[default]
    Primary,
    /// Whole on one replica connection.
    Replica,
}

/// Where the reads of a transaction that has not written yet run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransactionReads {
    /// On replicas, each like an autocommit read, until the first
    /// statement that needs the primary opens the transaction there.
    #[default]
    Replica,
    /// Every transaction on the primary from its BEGIN.
    Primary,
}

/// How reads are spread over replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaSelection {
    /// The replica with the fewest checked-out connections, ties in turn.
    #[default]
    LeastBusy,
    RoundRobin,
}

/// Which reads must see which writes (read-your-writes by WAL position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Any healthy replica serves a read, however far behind.
    Eventual,
    /// A client's reads see that client's own committed writes.
    #[default]
    Session,
    /// Every read sees every write acknowledged through this pgsplit before it.
    Global,
    /// Every read sees every write committed anywhere (through any
    /// instance, or on the primary directly) before it arrived.
    Cluster,
}

/// The health monitor: one check per server every `interval`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Seconds between checks.
    pub interval: f64,
    /// Seconds a check (connect and query) may take before it counts as failed.
    pub timeout: f64,
    /// Consecutive results that agree before a server changes state.
    pub threshold: u32,
    /// Who the monitor logs in as; default: the first [[users]] entry, else "postgres".
    pub user: Option<String>,
    /// Its password; default: that user's password from [[users]].
    pub password: Option<String>,
    /// The database it connects to; default: the first of `databases`, else "postgres".
    pub database: Option<String>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: 1.0,
            timeout: 1.0,
            threshold: 3,
            user: None,
            password: None,
            database: None,
        }
    }
}

impl HealthSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [("interval", self.interval), ("timeout", self.timeout)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(invalid(
                    &format!("health.{name}"),
                    "must be a positive number of seconds",
                ));
            }
        }
        if self.threshold == 0 {
            return Err(invalid("health.threshold", "must be at least 1"));
        }
        Ok(())
    }
}

/// Pool settings of one role (primary or replicas), named as in SQLAlchemy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Connections opened when a pool starts (see `Pools::warm_up`).
    pub pool_size: u32,
    /// Extra connections opened under load.
    pub max_overflow: u32,
    /// Seconds a client waits for a connection before it gets an error.
    pub pool_timeout: f64,
    /// Seconds after which a connection is closed and replaced (0: never).
    pub pool_recycle: f64,
    /// Check each connection with a round trip before handing it out.
    pub pool_pre_ping: bool,
    /// Seconds a connection may stay idle (0: never closed).
    pub idle_timeout: f64,
    /// Seconds to open and log in a server connection.
    pub connect_timeout: f64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_size: 5,
            max_overflow: 10,
            pool_timeout: 30.0,
            pool_recycle: 0.0,
            pool_pre_ping: false,
            idle_timeout: 600.0,
            connect_timeout: 5.0,
        }
    }
}

impl PoolSettings {
    pub fn max_size(&self) -> u32 {
        self.pool_size + self.max_overflow
    }
    pub fn pool_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.pool_timeout)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout)
    }
    /// `None` when the setting is 0 (never).
    pub fn pool_recycle(&self) -> Option<Duration> {
        (self.pool_recycle > 0.0).then(|| Duration::from_secs_f64(self.pool_recycle))
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0.0).then(|| Duration::from_secs_f64(self.idle_timeout))
    }

    fn validate(&self, role: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("pool.{role}.{k}");
        if self.max_size() == 0 {
            return Err(invalid(
                &key("pool_size"),
                "pool_size + max_overflow must be at least 1",
            ));
        }
        for (name, value) in [
            ("pool_timeout", self.pool_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(invalid(&key(name), "must be a positive number of seconds"));
            }
        }
        for (name, value) in [
            ("pool_recycle", self.pool_recycle),
            ("idle_timeout", self.idle_timeout),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(invalid(
                    &key(name),
                    "must be 0 (never) or a positive number of seconds",
                ));
            }
        }
        Ok(())
    }
}

/// Pool settings per role.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pools {
    pub primary: PoolSettings,
    pub replica: PoolSettings,
}

/// A user pgsplit authenticates clients as, and logs in to the servers as.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Plain text, an md5 hash (`md5...`) or a SCRAM-SHA-256 verifier
    /// (`SCRAM-SHA-256$...`), as `crate::secret::Secret::parse` reads it:
    /// checks the client, and logs in to the servers (a verifier with the
    /// keys the client proved).
    pub password: String,
}

/// Another pgsplit instance of the fleet (cancels that arrive at the
/// wrong instance are forwarded to the one whose client it is).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its `instance_id`.
    pub id: u8,
    /// Where it listens for clients, HOST:PORT.
    pub address: String,
}

/// The whole configuration. Field docs are in `config.toml.example`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    pub primary: Option<String>,
    pub replicas: Vec<String>,
    pub auth: AuthMethod,
    pub pool_mode: PoolMode,
    pub users: Vec<User>,
    pub databases: Vec<String>,
    pub pool: Pools,
    pub max_message_size: usize,
    pub batch_hold_limit: usize,
    pub read_only_transactions: ReadOnlyTransactions,
    pub transaction_reads: TransactionReads,
    pub idle_transaction_timeout: f64,
    pub read_only_functions: Vec<String>,
    pub write_functions: Vec<String>,
    pub routing_cache_size: usize,
    pub replica_selection: ReplicaSelection,
    pub replica_ban_time: f64,
    pub consistency: Consistency,
    pub max_wait_for_replica: f64,
    /// Tell clients, in a ParameterStatus `pgsplit.commit_lsn` before the
    /// ReadyForQuery that ends a write, a WAL position covering it (a
    /// consistency token). Off by default: it costs the write one position
    /// sample on the primary (shared by the writes committing meanwhile).
    /// A client turns it on or off for itself with the setting
    /// `pgsplit.report_commit_lsn`.
    pub report_commit_lsn: bool,
    pub max_replica_lag_bytes: u64,
    pub max_replica_lag_seconds: f64,
    pub health: HealthSettings,
    pub metrics_listen: Option<String>,
    pub admin_users: Vec<String>,
    // auth_query: users looked up on the primary (see `auth_query_settings`).
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub auth_query: String,
    pub auth_dbname: String,
    pub auth_cache_seconds: f64,
    pub shutdown_timeout: f64,
    pub autodb_idle_timeout: f64,
    pub log_format: LogFormat,
    pub worker_threads: usize,
    // Limits and timeouts (PgBouncer's names; see `limits`).
    pub max_client_conn: usize,
    pub max_db_connections: u32,
    pub max_user_connections: u32,
    pub client_login_timeout: f64,
    pub client_idle_timeout: f64,
    pub query_timeout: f64,
    pub tcp_keepalive: bool,
    pub tcp_keepidle: u32,
    pub tcp_keepintvl: u32,
    pub tcp_keepcnt: u32,
    pub tcp_user_timeout: u64,
    /// Users who may run the admin console's SHOW commands (and nothing
    /// else); see `admin::access`.
    pub stats_users: Vec<String>,
    pub failover_wait: f64,
    pub instance_id: u8,
    pub peers: Vec<Peer>,
    pub peers_dns: Option<String>,
    /// SO_REUSEPORT on `listen`: several processes on one machine share
    /// the port (README, "Running a fleet").
    pub reuse_port: bool,
    /// A second listener of this process's own (its peers' `address` for
    /// it), for the CancelRequests they forward when they share `listen`
    /// with `reuse_port`. It takes clients like `listen`.
    pub peer_listen: Option<String>,
    // TLS (config/tls.rs; README "TLS").
    pub client_tls_sslmode: ClientTlsMode,
    pub client_tls_cert_file: Option<String>,
    pub client_tls_key_file: Option<String>,
    pub client_tls_ca_file: Option<String>,
    pub client_tls_protocols: String,
    pub client_tls_ciphers: String,
    pub server_tls_sslmode: ServerTlsMode,
    pub server_tls_ca_file: Option<String>,
    pub server_tls_cert_file: Option<String>,
    pub server_tls_key_file: Option<String>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6432".into(),
            primary: None,
            replicas: Vec::new(),
            auth: AuthMethod::Trust,
            pool_mode: PoolMode::Transaction,
            users: Vec::new(),
            databases: Vec::new(),
            pool: Pools::default(),
            max_message_size: 256 * 1024 * 1024,
            batch_hold_limit: 1024 * 1024,
            read_only_transactions: ReadOnlyTransactions::Primary,
            transaction_reads: TransactionReads::Replica,
            idle_transaction_timeout: 0.0,
            read_only_functions: Vec::new(),
            write_functions: Vec::new(),
            routing_cache_size: 10_000,
            replica_selection: ReplicaSelection::LeastBusy,
            replica_ban_time: 5.0,
            consistency: Consistency::Session,
            max_wait_for_replica: 0.05,
            report_commit_lsn: false,
            max_replica_lag_bytes: 0,
            max_replica_lag_seconds: 0.0,
            health: HealthSettings::default(),
            metrics_listen: None,
            admin_users: Vec::new(),
            auth_user: None,
            auth_password: None,
            auth_query: DEFAULT_AUTH_QUERY.to_string(),
            auth_dbname: "postgres".to_string(),
            auth_cache_seconds: 10.0,
            shutdown_timeout: 30.0,
            autodb_idle_timeout: 3600.0,
            log_format: LogFormat::Text,
            worker_threads: 0,
            max_client_conn: limits::DEFAULT_MAX_CLIENT_CONN,
            max_db_connections: 0,
            max_user_connections: 0,
            client_login_timeout: 60.0,
            client_idle_timeout: 0.0,
            query_timeout: 0.0,
            tcp_keepalive: true,
            tcp_keepidle: 0,
            tcp_keepintvl: 0,
            tcp_keepcnt: 0,
            tcp_user_timeout: 0,
            stats_users: Vec::new(),
            failover_wait: 5.0,
            instance_id: 0,
            peers: Vec::new(),
            peers_dns: None,
            reuse_port: false,
            peer_listen: None,
            client_tls_sslmode: ClientTlsMode::Disable,
            client_tls_cert_file: None,
            client_tls_key_file: None,
            client_tls_ca_file: None,
            client_tls_protocols: "secure".into(),
            client_tls_ciphers: "default".into(),
            server_tls_sslmode: ServerTlsMode::Disable,
            server_tls_ca_file: None,
            server_tls_cert_file: None,
            server_tls_key_file: None,
        }
    }
}

impl Config {
    /// Parses TOML text; does not validate (overrides come first).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(one_line(&e.to_string())))
    }

    /// Reads and parses a file.
    pub fn from_file(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The runtime threads to start on a machine with `cores` cores:
    /// `worker_threads`, or with 0 half the cores (at least one). A proxy
    /// spends most of its time in the kernel's socket paths; with a worker
    /// per core the workers park and wake each other (on 2 cores twice the
    /// context switches per statement and about 1 us more CPU per select
    /// than one thread, and lower throughput in every bench workload; see
    /// bench/README.md), and the servers on the same machine lose the core.
    pub fn runtime_threads(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            n => n,
        }
    }

    /// Checks what serde cannot; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|_| invalid("listen", format!("{:?} is not ADDR:PORT", self.listen)))?;
        let primary = self.primary.as_deref().ok_or_else(|| {
            invalid(
                "primary",
                "no primary server configured (set primary or --primary HOST:PORT)",
            )
        })?;
        check_host_port("primary", primary)?;
        for replica in &self.replicas {
            check_host_port("replicas", replica)?;
        }
        self.pool.primary.validate("primary")?;
        self.pool.replica.validate("replica")?;
        let password_auth = matches!(self.auth, AuthMethod::Md5 | AuthMethod::ScramSha256);
        if password_auth && self.users.is_empty() && self.auth_user.is_none() {
            return Err(invalid(
                "users",
                "md5 and scram-sha-256 need [[users]] entries, or auth_user to look users up",
            ));
        }
        self.validate_users()?;
        self.validate_auth_query()?;
        if self.max_message_size < 1024 {
            return Err(invalid("max_message_size", "must be at least 1024 bytes"));
        }
        if !(self.replica_ban_time >= 0.0 && self.replica_ban_time.is_finite()) {
            return Err(invalid(
                "replica_ban_time",
                "must be 0 or a positive number of seconds",
            ));
        }
        for (name, value) in [
            ("max_wait_for_replica", self.max_wait_for_replica),
            ("max_replica_lag_seconds", self.max_replica_lag_seconds),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(invalid(name, "must be 0 or a positive number of seconds"));
            }
        }
        self.health.validate()?;
        tls::validate(self)?;
        if let Some(addr) = &self.metrics_listen {
            addr.parse::<SocketAddr>()
                .map_err(|_| invalid("metrics_listen", format!("{addr:?} is not ADDR:PORT")))?;
        }
        for (name, value) in [
            ("shutdown_timeout", self.shutdown_timeout),
            ("autodb_idle_timeout", self.autodb_idle_timeout),
            ("idle_transaction_timeout", self.idle_transaction_timeout),
            ("failover_wait", self.failover_wait),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(invalid(name, "must be 0 or a positive number of seconds"));
            }
        }
        self.validate_limits()?;
        self.validate_fleet()
    }

    fn validate_fleet(&self) -> Result<(), ConfigError> {
        if !self.peers.is_empty() && self.instance_id == 0 {
            return Err(invalid(
                "instance_id",
                "must be set (1 to 255, unique in the fleet) when [[peers]] is set",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for peer in &self.peers {
            if peer.id == 0 || peer.id == self.instance_id || !ids.insert(peer.id) {
                return Err(invalid(
                    "peers",
                    format!(
                        "peer id {} must be 1 to 255, not this instance's and not repeated",
                        peer.id
                    ),
                ));
            }
            if !peer.address.contains(':') {
                return Err(invalid(
                    "peers",
                    format!("{:?} is not HOST:PORT", peer.address),
                ));
            }
        }
        match &self.peers_dns {
            Some(name) if !name.contains(':') => {
                Err(invalid("peers_dns", format!("{name:?} is not NAME:PORT")))
            }
            _ => Ok(()),
        }
    }

    /// The instance id this pgsplit puts in its clients' cancel keys: the
    /// configured one, else, in a fleet found by DNS, a random one (there a
    /// cancel for another instance goes to every peer, so the id only
    /// needs to differ from this one's most of the time), else 0.
    pub fn instance(&self) -> u8 {
        match (self.instance_id, &self.peers_dns) {
            (0, Some(_)) => rand::random::<u8>().max(1),
            (id, _) => id,
        }
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn failover_wait(&self) -> Duration {
        Duration::from_secs_f64(self.failover_wait)
    }

    pub fn replica_ban_time(&self) -> Duration {
        Duration::from_secs_f64(self.replica_ban_time)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout)
    }

    /// How long a client may keep a transaction open on a server and idle
    /// before pgsplit ends its session; `None` when 0 (never).
    pub fn idle_transaction_timeout(&self) -> Option<Duration> {
        (self.idle_transaction_timeout > 0.0)
            .then(|| Duration::from_secs_f64(self.idle_transaction_timeout))
    }

    /// How long pools created on demand may stay unused before they are
    /// closed; `None` when 0 (never).
    pub fn autodb_idle_timeout(&self) -> Option<Duration> {
        (self.autodb_idle_timeout > 0.0).then(|| Duration::from_secs_f64(self.autodb_idle_timeout))
    }

    pub fn max_wait_for_replica(&self) -> Duration {
        Duration::from_secs_f64(self.max_wait_for_replica)
    }

    /// The role and database the health monitor logs in with. Its
    /// client (tokio-postgres) needs a password in plain text: by default
    /// the first `[[users]]` entry that has one, else auth_user.
    pub fn health_login(&self) -> (String, Option<String>, String) {
        let plain = |text: &str| Secret::parse(text).ok()?.plain().map(str::to_string);
        let user = self
            .health
            .user
            .clone()
            .or_else(|| {
                let with_plain = self.users.iter().find(|u| plain(&u.password).is_some());
                with_plain.map(|u| u.name.clone())
            })
            .or_else(|| self.auth_user.clone())
            .unwrap_or_else(|| "postgres".to_string());
        let password = self.health.password.clone().or_else(|| {
            let listed = self.user(&user).map(|u| u.password.as_str());
            let auth = self
                .auth_password
                .as_deref()
                .filter(|_| self.auth_user.as_ref() == Some(&user));
            listed.or(auth).and_then(plain)
        });
        let database = self
            .health
            .database
            .clone()
            .or_else(|| self.databases.first().cloned())
            .unwrap_or_else(|| "postgres".to_string());
        (user, password, database)
    }
}

/// PgBouncer's default: the role's password hash (SCRAM verifier or md5),
/// readable by superusers only.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";

impl Config {
    /// Each `[[users]]` entry has a name and a password pgsplit can use.
    fn validate_users(&self) -> Result<(), ConfigError> {
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty() {
                return Err(invalid(&format!("users[{i}].name"), "must not be empty"));
            }
            Secret::parse(&user.password).map_err(|e| {
                let why = match e {
                    SecretError::Empty => "has an empty password: set one (pgsplit, like \
                        PostgreSQL, never logs anyone in with an empty password)"
                        .to_string(),
                    other => other.to_string(),
                };
                invalid(
                    &format!("users[{i}].password"),
                    format!("user \"{}\" {why}", user.name),
                )
            })?;
        }
        Ok(())
    }

    /// auth_user can log in without a client (to run auth_query), and
    /// the lookup has what it needs.
    fn validate_auth_query(&self) -> Result<(), ConfigError> {
        let Some(auth_user) = &self.auth_user else {
            if self.auth_password.is_some() {
                return Err(invalid(
                    "auth_password",
                    "is only used with auth_user: set auth_user too",
                ));
            }
            return Ok(());
        };
        if auth_user.is_empty() {
            return Err(invalid("auth_user", "must not be empty"));
        }
        if !matches!(self.auth, AuthMethod::Md5 | AuthMethod::ScramSha256) {
            return Err(invalid(
                "auth_user",
                "auth_query checks client passwords: it needs auth = \"md5\" or \"scram-sha-256\"",
            ));
        }
        if self.auth_query.trim().is_empty() {
            return Err(invalid("auth_query", "must not be empty"));
        }
        if self.auth_dbname.is_empty() {
            return Err(invalid("auth_dbname", "must not be empty"));
        }
        if !(self.auth_cache_seconds >= 0.0 && self.auth_cache_seconds.is_finite()) {
            return Err(invalid(
                "auth_cache_seconds",
                "must be 0 or a positive number of seconds",
            ));
        }
        let listed = self.user(auth_user).map(|u| &u.password);
        let secret = match (&self.auth_password, listed) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "auth_password",
                    format!("auth_user \"{auth_user}\" also has a password in [[users]]: keep one"),
                ))
            }
            (Some(password), None) => {
                Some(Secret::parse(password).map_err(|e| invalid("auth_password", e.to_string()))?)
            }
            // Checked by validate_users.
            (None, Some(password)) => Secret::parse(password).ok(),
            (None, None) => None,
        };
        if let Some(Secret::Scram(_)) = secret {
            return Err(invalid(
                "auth_user",
                format!(
                    "pgsplit logs in as \"{auth_user}\" with no client to prove a SCRAM \
                     verifier's keys: give its password (or md5 hash, for servers that ask for md5)"
                ),
            ));
        }
        Ok(())
    }

    /// auth_user's secret for logging in to the servers: its `[[users]]`
    /// password or `auth_password` (none: the servers trust it).
    pub fn auth_user_secret(&self) -> Option<Secret> {
        let auth_user = self.auth_user.as_deref()?;
        let text = self
            .auth_password
            .as_deref()
            .or_else(|| self.user(auth_user).map(|u| u.password.as_str()))?;
        Secret::parse(text).ok()
    }

    /// How long a looked-up password is kept.
    pub fn auth_cache_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.auth_cache_seconds)
    }
}

/// `HOST:PORT` with a numeric port; the host is resolved when connecting.
fn check_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(invalid(key, format!("{value:?} is not HOST:PORT")))
    }
}

/// toml's messages span lines with a source excerpt; operators get one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The smallest valid configuration (a primary, every default), for the
/// config modules' tests.
#[cfg(test)]
pub(crate) fn valid_for_tests() -> Config {
    Config {
        primary: Some("127.0.0.1:5432".into()),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::valid_for_tests as valid;

    #[test]
    fn automatic_threads_are_half_the_cores() {
        let auto = valid();
        assert_eq!(auto.runtime_threads(1), 1);
        assert_eq!(auto.runtime_threads(2), 1);
        assert_eq!(auto.runtime_threads(8), 4);
        let set = Config {
            worker_threads: 3,
            ..valid()
        };
        assert_eq!(set.runtime_threads(2), 3);
    }

    #[test]
    fn example_file_parses_and_validates() {
        let text = include_str!("../../config.toml.example");
        let config = Config::from_toml(text).expect("example parses");
        config.validate().expect("example validates");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("primary = \"h:1\"\npool_sise = 3\n").unwrap_err();
        assert!(err.to_string().contains("pool_sise"), "{err}");
    }

    #[test]
    fn bad_enum_is_refused() {
        let err = Config::from_toml("pool_mode = \"statement\"").unwrap_err();
        assert!(
            err.to_string().contains("pool_mode") || err.to_string().contains("statement"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = valid();
        c.listen = "nope".into();
        assert!(c.validate().unwrap_err().to_string().contains("listen"));
        let mut c = valid();
        c.replicas = vec!["host-without-port".into()];
        assert!(c.validate().unwrap_err().to_string().contains("replicas"));
        let mut c = valid();
        c.pool.replica.pool_timeout = 0.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pool.replica.pool_timeout"));
        let mut c = valid();
        c.primary = None;
        assert!(c.validate().unwrap_err().to_string().contains("primary"));
        let mut c = valid();
        c.auth = AuthMethod::Md5;
        assert!(c.validate().unwrap_err().to_string().contains("users"));
        let mut c = valid();
        c.autodb_idle_timeout = -1.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("autodb_idle_timeout"));
    }

    #[test]
    fn autodb_idle_timeout_zero_means_never() {
        let mut c = valid();
        assert_eq!(c.autodb_idle_timeout(), Some(Duration::from_secs(3600)));
        c.autodb_idle_timeout = 0.0;
        c.validate().unwrap();
        assert_eq!(c.autodb_idle_timeout(), None);
    }

    /// The SCRAM verifier of "pencil" (RFC 7677).
    const PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn user(name: &str, password: &str) -> User {
        User {
            name: name.into(),
            password: password.into(),
        }
    }

    fn error_of(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn an_empty_password_is_refused_naming_the_user() {
        let mut c = valid();
        c.auth = AuthMethod::Md5;
        c.users = vec![user("alice", "secret"), user("bob", "")];
        let e = error_of(&c);
        assert!(e.contains("users[1].password"), "{e}");
        assert!(e.contains("\"bob\" has an empty password"), "{e}");
    }

    #[test]
    fn users_take_passwords_md5_hashes_and_scram_verifiers() {
        let mut c = valid();
        c.auth = AuthMethod::ScramSha256;
        c.users = vec![
            user("plain", "secret"),
            user("hashed", "md5a3556571e93b0d20722ba62be61e8c2d"),
            user("verified", PENCIL),
        ];
        c.validate().unwrap();
        c.users
            .push(user("broken", "SCRAM-SHA-256$4096:c2FsdA==$nope"));
        let e = error_of(&c);
        assert!(e.contains("users[3].password"), "{e}");
        assert!(e.contains("\"broken\"") && e.contains("verifier"), "{e}");
    }

    #[test]
    fn auth_query_settings_are_checked() {
        let mut c = valid();
        c.auth = AuthMethod::ScramSha256;
        c.auth_user = Some("lookup".into());
        c.validate()
            .expect("auth_user alone: no [[users]] needed, servers trust it");
        assert_eq!(c.auth_query, DEFAULT_AUTH_QUERY);
        assert_eq!(c.auth_cache_ttl(), Duration::from_secs(10));
        assert_eq!(c.auth_user_secret(), None);
        c.auth_password = Some("pw".into());
        assert_eq!(c.auth_user_secret(), Some(Secret::Plain("pw".into())));
        c.users = vec![user("lookup", "other")];
        assert!(error_of(&c).contains("auth_password"));
        c.auth_password = None;
        c.users = vec![user("lookup", PENCIL)];
        assert!(error_of(&c).contains("auth_user"));
        let mut c = valid();
        c.auth_user = Some("lookup".into());
        assert!(error_of(&c).contains("auth_user"), "trust mode");
        let mut c = valid();
        c.auth_password = Some("pw".into());
        assert!(error_of(&c).contains("auth_password"));
        let mut c = valid();
        c.auth = AuthMethod::Md5;
        c.auth_user = Some("lookup".into());
        c.auth_cache_seconds = -1.0;
        assert!(error_of(&c).contains("auth_cache_seconds"));
        c.auth_cache_seconds = 0.0;
        c.auth_password = Some(String::new());
        assert!(error_of(&c).contains("auth_password"));
    }

    #[test]
    fn the_health_monitor_logs_in_with_a_plain_password() {
        let mut c = valid();
        c.users = vec![
            user("hashed", "md5a3556571e93b0d20722ba62be61e8c2d"),
            user("plain", "secret"),
        ];
        assert_eq!(c.health_login().0, "plain");
        assert_eq!(c.health_login().1.as_deref(), Some("secret"));
        c.users.truncate(1);
        c.auth_user = Some("lookup".into());
        c.auth_password = Some("pw".into());
        assert_eq!(
            (c.health_login().0.as_str(), c.health_login().1.as_deref()),
            ("lookup", Some("pw"))
        );
        c.health.user = Some("hashed".into());
        assert_eq!(c.health_login().1, None, "a hash is no password for it");
    }

    #[test]
    fn pool_settings_map_to_durations() {
        let p = PoolSettings::default();
        assert_eq!(p.pool_recycle(), None);
        assert_eq!(p.max_size(), 15);
        assert_eq!(p.pool_timeout(), Duration::from_secs(30));
    }
}
