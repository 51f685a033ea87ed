//! pgsplit in-process, in front of a [`Cluster`], plus client helpers.
//!
//! Each `Proxy` runs on its own thread with its own tokio runtime, so a
//! test's proxy does not depend on (or stall with) the test's runtime, and
//! tests in one binary run in parallel. Dropping the `Proxy` stops it.
//!
//! ```ignore
//! let c = Cluster::start();
//! let p = Proxy::start(proxy_config(&c));
//! let client = connect(p.port()).await;
//! ```

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use pgsplit::config::{Config, PoolSettings, Pools};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

use super::cluster::{pg_bin, Cluster};

/// A running pgsplit listening on 127.0.0.1 on a free port.
pub struct Proxy {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts pgsplit with `config` (its `listen` is ignored: the proxy
    /// binds 127.0.0.1:0) and returns once it accepts connections.
    /// Panics if `config` does not validate.
    pub fn start(config: Config) -> Proxy {
        Self::start_on(config, "127.0.0.1:0")
    }

    /// [`Proxy::start`], listening on `bind` (`0.0.0.0:0`: every interface,
    /// for tests that connect from an address other than loopback).
    pub fn start_on(config: Config, bind: &str) -> Proxy {
        let bind = bind.to_string();
        init_logging();
        config.validate().expect("test config must validate");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pgsplit-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .thread_name("pgsplit-proxy-worker")
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = pgsplit::listener::bind::bind(&bind, config.reuse_port)
                        .await
                        .unwrap_or_else(|e| panic!("bind {bind}: {e}"));
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    pgsplit::run(config, listener, async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
                });
                // Client tasks may still be parked on sockets: drop them.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn proxy thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy did not report its address");
        Proxy {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `RUST_LOG=pgsplit=debug cargo test ...` shows the proxy's logs.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Small pools, so tests exercise sharing and checkout waits.
pub fn small_pool() -> PoolSettings {
    PoolSettings {
        pool_size: 2,
        max_overflow: 8,
        pool_timeout: 5.0,
        ..PoolSettings::default()
    }
}

/// A config for `cluster`: its primary, its replica, small pools, trust.
pub fn proxy_config(cluster: &Cluster) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        primary: Some(cluster.primary_addr()),
        replicas: vec![cluster.replica_addr()],
        pool: Pools {
            primary: small_pool(),
            replica: small_pool(),
        },
        ..Config::default()
    }
}

/// Connects as `postgres` to database `postgres` on 127.0.0.1:`port`.
pub async fn connect(port: u16) -> Client {
    try_connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"
    ))
    .await
    .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

/// Connects with a libpq-style connection string; the connection task is
/// spawned on the current runtime.
pub async fn try_connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Like [`connect`], also returning the connection task so a test can
/// abort it (an abrupt client disconnect).
pub async fn connect_with_task(port: u16) -> (Client, tokio::task::JoinHandle<()>) {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// Runs `sql` with psql through 127.0.0.1:`port` as `postgres`; trimmed
/// stdout, or stderr on failure.
pub fn psql_via(port: u16, sql: &str) -> Result<String, String> {
    psql_args(port, &["-U", "postgres", "-d", "postgres", "-c", sql], &[])
}

/// Runs psql with `args` (after the host and port) and `env`; trimmed
/// stdout, or stderr on failure. psql never prompts.
pub fn psql_args(port: u16, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-w",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .arg("-p")
    .arg(port.to_string())
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server (or pgsplit) sent one.
pub fn code_of(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// The message of a tokio-postgres error from the server, else its Display.
pub fn message_of(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// First column of the first row of a simple query, as text.
pub async fn one(client: &Client, sql: &str) -> Option<String> {
    use tokio_postgres::SimpleQueryMessage;
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", e.as_db_error()));
    msgs.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    })?
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port in the first column of the first row `sql` returns (tests put
/// `inet_server_port()` there to see which server ran a statement).
pub async fn port_of(client: &Client, sql: &str) -> u16 {
    one(client, sql)
        .await
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: first column is not a port: {e}"))
}

/// Runs pgbench against 127.0.0.1:`port` as `postgres` with `args`;
/// whether it exited 0, and its output. Does not panic, so it can run on a
/// helper thread.
pub fn pgbench(port: u16, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(crate::support::cluster::pg_bin("pgbench"))
        .args(["-h", "127.0.0.1", "-U", "postgres"])
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .arg("postgres")
        .env_remove("PGPASSWORD")
        .env_remove("PGOPTIONS")
        .output()
        .expect("run pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
