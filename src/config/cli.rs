//! Command-line flags. Each one overrides the config file's key of the same
//! meaning, so pgsplit can also start without a file.

use super::{AuthMethod, Config, ConfigError, Consistency, LogFormat, PoolMode};
use clap::Parser;

/// pgsplit: a PostgreSQL proxy that sends read-only statements to replicas
/// and everything else to the primary.
#[derive(Debug, Parser, Default)]
#[command(name = "pgsplit", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (see config.toml.example); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The primary server (writes, transactions, anything not provably read-only).
    #[arg(long, value_name = "HOST:PORT")]
    pub primary: Option<String>,
    /// A streaming replica for reads; repeat for several. Replaces the file's list.
    #[arg(long = "replica", value_name = "HOST:PORT")]
    pub replicas: Vec<String>,
    /// How clients authenticate to pgsplit [default: trust].
    #[arg(long, value_enum)]
    pub auth: Option<AuthMethod>,
    /// Connections opened per server, database and user (both roles) [default: 5].
    #[arg(long, value_name = "N")]
    pub pool_size: Option<u32>,
    /// transaction: a server connection per transaction; session: per client [default: transaction].
    #[arg(long, value_enum)]
    pub pool_mode: Option<PoolMode>,
    /// Read-your-writes: eventual (any replica), session (a client sees its own writes), global (every read sees every earlier write) [default: session].
    #[arg(long, value_enum)]
    pub consistency: Option<Consistency>,
    /// Serve GET /metrics (Prometheus), /status and /healthz here [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Log line format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Cli {
    /// The file (if any) with the flags applied on top, validated.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
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
