//! Command-line flags. Each one overrides the config file's key of the same
//! meaning, so pgsplit can also start without a file.

use super::{AuthMethod, Config, ConfigError, Consistency, LogFormat, PoolMode};
use clap::Parser;

/// The text `--help` opens with (`-h` shows the one-line `about`).
const LONG_ABOUT: &str = "\
pgsplit is a PostgreSQL proxy that speaks the wire protocol to clients and \
servers. It sends statements that provably only read to streaming replicas \
and everything else (writes, transactions that wrote, anything it cannot \
classify) to the primary, with pooled server connections, health checks, \
replica lag limits and read-your-writes.

Settings come from a TOML file (--config) and from the flags below; a flag \
overrides the file's key of the same meaning. Without a file, --primary is \
enough to start.";

/// What `--help` ends with, and the man page's sections after OPTIONS
/// (tests/man_page.rs): what a user needs without the README. Lines stay
/// under 72 columns, so the man page's preformatted text fits a terminal.
pub const HELP_SECTIONS: [(&str, &str); 5] = [
    (
        "CONFIG FILE",
        "\
TOML; every key is documented in config.toml.example.
  listen, primary, replicas    where clients connect; the servers
  auth, [[users]], auth_query  client logins (trust, md5,
                               scram-sha-256, cert)
  pool_mode                    transaction or session
  [pool.primary], [pool.replica]
                               pool_size, max_overflow, pool_timeout,
                               idle_timeout, connect_timeout
  consistency, max_replica_lag_bytes, max_replica_lag_seconds
                               read-your-writes and lag limits
  metrics_listen               HTTP /metrics, /status, /healthz
  admin_users, stats_users     who may use the admin console
  max_client_conn, query_timeout, client_idle_timeout,
  shutdown_timeout             limits and timeouts
  client_tls_*, server_tls_*   TLS to clients and to servers
  log_format, worker_threads   logs, runtime threads",
    ),
    (
        "SIGNALS",
        "\
SIGHUP           reload the config file and flags; clients stay
                 connected. Changed keys are logged (old -> new);
                 keys that need a restart (listen, metrics_listen)
                 are logged and keep their old value.
SIGTERM, SIGINT  graceful shutdown: stop accepting, let transactions
                 finish for up to shutdown_timeout seconds, then
                 close. A second signal exits at once.",
    ),
    (
        "EXIT STATUS",
        "\
0  shut down cleanly, or --check-config found the config valid
1  could not start (cannot listen, no runtime), or a second signal
2  invalid flags or config (the message names the key)",
    ),
    (
        "OBSERVABILITY",
        "\
With metrics_listen (--metrics-listen) set, HTTP GET /metrics
(Prometheus), /status (JSON) and /healthz (200 while writes or reads
can be served, else 503). The admin console is the virtual database
\"pgsplit\" on the listen port:
  psql -h 127.0.0.1 -p 6432 -U admin pgsplit    (then SHOW HELP)
Logs go to standard output, one line per event; RUST_LOG sets the
level (default info; RUST_LOG=pgsplit=debug shows every route).",
    ),
    (
        "SEE ALSO",
        "\
config.toml.example and README.md (routing rules, pool modes,
failover, TLS, metrics), in the source or /usr/share/doc/pgsplit.",
    ),
];

/// [`HELP_SECTIONS`] as `--help` prints them.
fn after_long_help() -> String {
    HELP_SECTIONS
        .iter()
        .map(|(heading, body)| {
            let indented: Vec<String> = body.lines().map(|l| format!("  {l}")).collect();
            format!("{heading}\n{}", indented.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// pgsplit: a PostgreSQL proxy that sends read-only statements to replicas
/// and everything else to the primary.
#[derive(Debug, Parser, Default)]
#[command(
    name = "pgsplit",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = after_long_help()
)]
pub struct Cli {
    /// TOML configuration file; flags override it.
    ///
    /// Every key is documented in config.toml.example. Unknown keys are
    /// refused by name. Read again on SIGHUP (reload).
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,
    /// Validate FILE (with the other flags applied) and exit.
    ///
    /// Reads the file as --config would, applies the flags, checks every
    /// key and the TLS files, then prints a one-line summary starting with
    /// "ok" and exits 0, or prints what is wrong and exits 2. Nothing is
    /// started and no server is contacted.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<String>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    ///
    /// Config key: listen. Also serves the admin console (database
    /// "pgsplit"). Changing it needs a restart.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The primary server (writes, transactions, anything not provably read-only).
    ///
    /// Config key: primary. Required, in the file or here. If a replica is
    /// promoted, pgsplit follows whichever server reports it is the primary.
    #[arg(long, value_name = "HOST:PORT")]
    pub primary: Option<String>,
    /// A streaming replica for reads; repeat for several. Replaces the file's list.
    ///
    /// Config key: replicas [default: none, every statement goes to the
    /// primary]. Replicas behind the lag limits, down or banned are skipped.
    #[arg(long = "replica", value_name = "HOST:PORT")]
    pub replicas: Vec<String>,
    /// How clients authenticate to pgsplit [default: trust].
    ///
    /// Config key: auth. trust: any user and database the servers accept;
    /// md5 and scram-sha-256: passwords from [[users]] or auth_query; cert:
    /// a TLS client certificate whose CN is the user name.
    #[arg(long, value_enum)]
    pub auth: Option<AuthMethod>,
    /// Connections opened per server, database and user (both roles) [default: 5].
    ///
    /// Config keys: pool.primary.pool_size and pool.replica.pool_size (the
    /// flag sets both). Up to max_overflow more are opened under load.
    #[arg(long, value_name = "N")]
    pub pool_size: Option<u32>,
    /// transaction: a server connection per transaction; session: per client [default: transaction].
    ///
    /// Config key: pool_mode. In transaction mode a client that changes
    /// session state (SET, temporary tables, advisory locks, ...) is pinned
    /// to its connection until it resets it.
    #[arg(long, value_enum)]
    pub pool_mode: Option<PoolMode>,
    /// Read-your-writes: eventual (any replica), session (a client sees its own writes), global (every read sees every earlier write) [default: session].
    ///
    /// Config key: consistency. cluster: every read sees every write
    /// committed anywhere before it. A read that no replica can serve in
    /// time (max_wait_for_replica) goes to the primary.
    #[arg(long, value_enum)]
    pub consistency: Option<Consistency>,
    /// Serve GET /metrics (Prometheus), /status and /healthz here [default: off].
    ///
    /// Config key: metrics_listen. /healthz answers 200 while pgsplit can
    /// serve writes or reads, else 503. Changing it needs a restart.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Log line format [default: text].
    ///
    /// Config key: log_format. text: one line per event, fields as
    /// name=value; json: one JSON object per line. Colours only when
    /// standard output is a terminal.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Cli {
    /// The file (if any) with the flags applied on top, validated.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match self.config.as_ref().or(self.check_config.as_ref()) {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// `--check-config`: the one line printed for a valid config.
    pub fn summary(config: &Config) -> String {
        let servers = 1 + config.replicas.len();
        format!(
            "ok: listen {}, primary {}, {} replica{}, auth {}, pool_mode {}, {} user{} ({} server{})",
            config.listen,
            config.primary.as_deref().unwrap_or("-"),
            config.replicas.len(),
            plural(config.replicas.len()),
            config.auth,
            config.pool_mode,
            config.users.len(),
            plural(config.users.len()),
            servers,
            plural(servers),
        )
    }

    fn apply(&self, config: &mut Config) {
        if let Some(listen) = &self.listen {
            config.listen = listen.clone();
        }
        if let Some(primary) = &self.primary {
            config.primary = Some(primary.clone());
        }
        if !self.replicas.is_empty() {
            config.replicas = self.replicas.clone();
        }
        if let Some(auth) = self.auth {
            config.auth = auth;
        }
        if let Some(size) = self.pool_size {
            config.pool.primary.pool_size = size;
            config.pool.replica.pool_size = size;
        }
        if let Some(mode) = self.pool_mode {
            config.pool_mode = mode;
        }
        if let Some(consistency) = self.consistency {
            config.consistency = consistency;
        }
        if let Some(addr) = &self.metrics_listen {
            config.metrics_listen = Some(addr.clone());
        }
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_alone_make_a_config() {
        let cli = Cli::try_parse_from([
            "pgsplit",
            "--primary",
            "127.0.0.1:5432",
            "--replica",
            "127.0.0.1:5433",
            "--replica",
            "127.0.0.1:5434",
            "--pool-size",
            "7",
            "--pool-mode",
            "session",
            "--auth",
            "scram-sha-256",
            "--consistency",
            "global",
        ])
        .unwrap();
        let mut config = Config::default();
        cli.apply(&mut config);
        assert_eq!(config.replicas.len(), 2);
        assert_eq!(config.pool.replica.pool_size, 7);
        assert_eq!(config.pool_mode, PoolMode::Session);
        assert_eq!(config.auth, AuthMethod::ScramSha256);
        assert_eq!(config.consistency, Consistency::Global);
        assert_eq!(config.listen, "127.0.0.1:6432");
    }

    #[test]
    fn bad_flag_value_is_refused() {
        assert!(Cli::try_parse_from(["pgsplit", "--pool-mode", "statement"]).is_err());
        assert!(Cli::try_parse_from(["pgsplit", "--pool-size", "many"]).is_err());
        assert!(Cli::try_parse_from(["pgsplit", "--consistency", "strong"]).is_err());
    }
}
