//! A throwaway PostgreSQL 15 primary plus one streaming replica, owned by one
//! test.
//!
//! Every `Cluster` has its own temp dir and its own free ports, and nothing is
//! shared between instances, so tests that each start a cluster can run in
//! parallel threads of one test binary. Dropping the `Cluster` (also while a
//! failing test unwinds) stops both servers and removes the temp dir.
//!
//! ```ignore
//! mod support;
//! use support::cluster::Cluster;
//!
//! let c = Cluster::start();
//! c.psql(c.primary_port(), "create table t(x int); insert into t values (1)");
//! c.wait_replica_caught_up();
//! assert_eq!(c.psql(c.replica_port(), "select x from t"), "1");
//! ```
//!
//! Layout of `dir()`: `primary/` and `replica/` data directories, their logs
//! `primary.log` and `replica.log`, and the unix sockets of both servers.
//!
//! Authentication (pg_hba.conf, first match wins): user `postgres` and
//! replication connections are trusted; `md5user` must use md5 and
//! `scramuser` must use scram-sha-256 (both have password `secret`); any other
//! user is trusted, so tests may create their own roles.
//!
//! With [`Cluster::start_tls`] both servers have `ssl = on` and accept TCP
//! connections only over TLS with a client certificate naming the user
//! (`hostssl ... clientcert=verify-full`; unix sockets stay trusted); the
//! harness's own psql, pg_basebackup and the replica's walreceiver use
//! the `postgres` client certificate it is given.
//!
//! When the test runs as root, server binaries run as the `postgres` OS user
//! (initdb and postgres refuse to run as root); that user is created if it is
//! missing.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Directory tried before `PATH` when looking for PostgreSQL binaries.
const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";
/// OS user that owns and runs the servers when the tests run as root.
pub const SERVER_OS_USER: &str = "postgres";
/// Password of the `md5user` and `scramuser` roles.
pub const PASSWORD: &str = "secret";
/// How long to wait for a server to start or for the replica to stream.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to retry starting a server whose free port was taken meanwhile.
const PORT_RETRIES: usize = 5;

// Tests do not need durability, and a short wal_writer_delay makes
// asynchronously committed rows reach the replica within milliseconds.
// max_wal_size bounds the space a write-heavy test takes (the temp dir may be
// on tmpfs); hot_standby_feedback spares replica reads from recovery conflicts.
const SERVER_CONF: &str = "
# ---- pgsplit test harness (tests/support/cluster.rs) ----
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
hot_standby = on
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
wal_writer_delay = 10ms
max_wal_size = 256MB
hot_standby_feedback = on
shared_buffers = 64MB
max_prepared_transactions = 10
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
";

// First match wins, so the per-user lines must come before the catch-all.
const PG_HBA: &str = "\
# TYPE  DATABASE     USER       ADDRESS        METHOD
local   all          postgres                  trust
host    all          postgres   127.0.0.1/32   trust
local   replication  all                       trust
host    replication  all        127.0.0.1/32   trust
local   all          md5user                   md5
host    all          md5user    127.0.0.1/32   md5
local   all          scramuser                 scram-sha-256
host    all          scramuser  127.0.0.1/32   scram-sha-256
local   all          all                       trust
host    all          all        127.0.0.1/32   trust
";

// TCP only over TLS, with a certificate whose CN is the user; the same
// methods per user as PG_HBA otherwise.
const PG_HBA_TLS: &str = "\
# TYPE   DATABASE     USER       ADDRESS        METHOD
local    all          all                       trust
local    replication  all                       trust
hostssl  replication  all        127.0.0.1/32   trust          clientcert=verify-full
hostssl  all          md5user    127.0.0.1/32   md5            clientcert=verify-full
hostssl  all          scramuser  127.0.0.1/32   scram-sha-256  clientcert=verify-full
hostssl  all          all        127.0.0.1/32   trust          clientcert=verify-full
";

/// What a TLS cluster is started with: its CA (which also signs the
/// client certificates it accepts), its server certificate, and the
/// client certificate (CN `postgres`) the harness connects with.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub server: super::pki::CertFiles,
    pub postgres: super::pki::CertFiles,
}

/// A running primary and a replica streaming from it. See the module docs.
pub struct Cluster {
    /// Removed when the `Cluster` drops, after `Drop::drop` stopped the servers.
    dir: TempDir,
    primary_port: u16,
    replica_port: u16,
    /// The OS user that runs server binaries, when that is not us (root).
    run_as: Option<&'static str>,
    /// Set for a cluster that takes TCP connections over TLS only.
    tls: Option<ClusterTls>,
}

/// Path of a PostgreSQL binary: `/usr/lib/postgresql/15/bin/NAME` if present,
/// else the first `NAME` on `PATH`, else bare `NAME` (so the spawn error names it).
pub fn pg_bin(name: &str) -> PathBuf {
    let preferred = Path::new(PG15_BIN).join(name);
    if preferred.is_file() {
        return preferred;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process may
/// take it before the caller binds it; `Cluster::start` retries when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

impl Cluster {
    /// Initializes and starts a primary, creates `md5user` and `scramuser`,
    /// clones a replica with pg_basebackup and returns once the replica is
    /// streaming and in recovery. Panics with the server log on failure.
    pub fn start() -> Cluster {
        Self::start_with(None)
    }

    /// Like [`Cluster::start`], with TLS required over TCP (see the module
    /// docs).
    pub fn start_tls(tls: ClusterTls) -> Cluster {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<ClusterTls>) -> Cluster {
        let run_as = if is_root() {
            ensure_os_user(SERVER_OS_USER);
            Some(SERVER_OS_USER)
        } else {
            None
        };
        let base = temp_base();
        let dir = tempfile::Builder::new()
            .prefix("pgsplit-test-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("create temp dir in {}: {e}", base.display()));
        if let Some(user) = run_as {
            chown_to(dir.path(), user);
        }
        let primary_port = free_port();
        let mut replica_port = free_port();
        while replica_port == primary_port {
            replica_port = free_port();
        }
        // From here on a panic drops `cluster`, which stops whatever started.
        let mut cluster = Cluster {
            dir,
            primary_port,
            replica_port,
            run_as,
            tls,
        };
        cluster.init_primary();
        cluster.primary_port = cluster.start_server("primary", cluster.primary_port);
        cluster.create_password_users();
        cluster.clone_replica();
        cluster.replica_port = cluster.start_server("replica", cluster.replica_port);
        cluster.wait_streaming();
        cluster
    }

    pub fn primary_port(&self) -> u16 {
        self.primary_port
    }

    pub fn replica_port(&self) -> u16 {
        self.replica_port
    }

    /// `"127.0.0.1:PORT"` of the primary.
    pub fn primary_addr(&self) -> String {
        format!("127.0.0.1:{}", self.primary_port)
    }

    /// `"127.0.0.1:PORT"` of the replica.
    pub fn replica_addr(&self) -> String {
        format!("127.0.0.1:{}", self.replica_port)
    }

    /// The temp dir holding data directories, logs and unix sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `sql` (one or more statements) as `postgres` on 127.0.0.1:`port`
    /// with unaligned, tuples-only output and returns trimmed stdout.
    /// Panics with psql's stderr if psql fails.
    pub fn psql(&self, port: u16, sql: &str) -> String {
        self.try_psql(port, sql)
            .unwrap_or_else(|err| panic!("psql -p {port} -c {sql:?} failed: {err}"))
    }

    /// Like [`Cluster::psql`], but returns psql's stderr instead of panicking.
    pub fn try_psql(&self, port: u16, sql: &str) -> Result<String, String> {
        self.try_psql_as(port, "postgres", None, sql)
    }

    /// Runs `sql` on 127.0.0.1:`port` (a server or a proxy in front of one)
    /// as `user`, with `password` if given, and returns trimmed stdout or
    /// psql's stderr. psql never prompts for a password.
    pub fn try_psql_as(
        &self,
        port: u16,
        user: &str,
        password: Option<&str>,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = Command::new(pg_bin("psql"));
        clean_pg_env(&mut cmd)
            .args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-d", "postgres", "-U", user])
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null());
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        if port == self.primary_port || port == self.replica_port {
            self.tls_env(&mut cmd);
        }
        let out = cmd.output().map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// libpq's settings for connecting to a TLS cluster as `postgres`.
    fn tls_env(&self, cmd: &mut Command) {
        if let Some(tls) = &self.tls {
            cmd.env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", &tls.ca)
                .env("PGSSLCERT", &tls.postgres.cert)
                .env("PGSSLKEY", &tls.postgres.key);
        }
    }

    /// Stops the replica (fast shutdown) and waits until it is gone.
    pub fn stop_replica(&self) {
        self.stop("replica", "fast");
    }

    /// Stops `which` (`"primary"` or `"replica"`) with pg_ctl shutdown `mode`
    /// (`"fast"`, or `"immediate"` for a crash: no shutdown checkpoint and
    /// clients cut off without a goodbye) and waits until it is gone.
    pub fn stop(&self, which: &str, mode: &str) {
        let data = self.data_dir(which);
        let out = self.server_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-m", mode, "-w", "-t", "30", "stop"]);
        });
        if !out.status.success() {
            panic!(
                "stopping the {which} ({mode}) failed: {}",
                output_text(&out)
            );
        }
    }

    /// Starts the replica again on the same port and waits until it streams.
    pub fn start_replica(&self) {
        self.pg_ctl_start("replica")
            .unwrap_or_else(|e| panic!("{e}"));
        self.wait_streaming();
    }

    /// Starts the primary again on the same port and waits until it accepts
    /// connections (after an immediate stop that includes crash recovery).
    /// Does not wait for the replica: after a promotion it has none.
    pub fn start_primary(&self) {
        self.pg_ctl_start("primary")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Promotes the replica and returns once it has left recovery and takes
    /// writes. The old primary, if still running, does not know and keeps
    /// taking writes too: stop it first to avoid a split brain.
    pub fn promote_replica(&self) {
        let data = self.data_dir("replica");
        let out = self.server_cmd("pg_ctl", |c| {
            c.arg("-D").arg(&data).args(["-w", "-t", "30", "promote"]);
        });
        if !out.status.success() {
            panic!("promoting the replica failed: {}", output_text(&out));
        }
        // pg_ctl -w already waits for the promotion, but only by reading the
        // pid file; ask the server itself, as the tests will.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let in_recovery = self.try_psql(self.replica_port, "select pg_is_in_recovery()");
            if in_recovery.as_deref() == Ok("f") {
                return;
            }
            if Instant::now() > deadline {
                panic!("replica still in recovery after promotion: {in_recovery:?}");
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Pauses WAL replay on the replica: it stays connected and streaming
    /// (the primary sees it as healthy) but its data stops moving, the
    /// stale replica that read-your-writes must route around.
    pub fn pause_replay(&self) {
        self.psql(self.replica_port, "select pg_wal_replay_pause()");
        // The state turns 'paused' only once the startup process reaches a
        // record to stop at; with no WAL arriving it may stay 'pause
        // requested' indefinitely. Either way nothing more is replayed
        // (replay checks the request before applying each record), so after
        // a short poll for 'paused' 'pause requested' is good enough.
        let state = "select pg_get_wal_replay_pause_state()";
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let now = self.psql(self.replica_port, state);
            if now == "paused" {
                return;
            }
            if Instant::now() > deadline {
                assert_eq!(now, "pause requested", "replica replay state after pausing");
                return;
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Resumes WAL replay on the replica; it then catches up on its own
    /// (use [`Cluster::wait_replica_caught_up`] to wait for that).
    pub fn resume_replay(&self) {
        self.psql(self.replica_port, "select pg_wal_replay_resume()");
    }

    /// Waits (up to 10 s) until the replica has replayed all WAL the primary
    /// had at the time of the call. Panics on timeout.
    pub fn wait_replica_caught_up(&self) {
        // The harness runs with synchronous_commit=off, so a test's last commit
        // may not be written yet, and the insert position can point past a page
        // header the replica never reports. A commit with synchronous_commit=on
        // flushes everything before it, making the flush position a safe target.
        // (The SET is in effect when the implicit transaction commits.)
        self.psql(
            self.primary_port,
            "set synchronous_commit = on; select pg_current_xact_id()",
        );
        let target = self.psql(self.primary_port, "select pg_current_wal_flush_lsn()");
        let check = format!("select pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_psql(self.replica_port, &check).as_deref() == Ok("t") {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let replayed = self.try_psql(self.replica_port, "select pg_last_wal_replay_lsn()");
        panic!("replica did not replay up to {target} within 10 s (replayed: {replayed:?})");
    }

    /// Path of the server log of `"primary"` or `"replica"`.
    pub fn log_path(&self, which: &str) -> PathBuf {
        self.dir().join(format!("{which}.log"))
    }

    fn data_dir(&self, which: &str) -> PathBuf {
        self.dir().join(which)
    }

    fn init_primary(&self) {
        let data = self.data_dir("primary");
        let out = self.server_cmd("initdb", |c| {
            c.arg("-D").arg(&data);
            c.args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"]);
            c.args([
                "--auth-local=trust",
                "--auth-host=trust",
                "--no-sync",
                "--no-instructions",
            ]);
        });
        if !out.status.success() {
            panic!("initdb failed: {}", output_text(&out));
        }
        let sockets = self.dir().display();
        append(
            &data.join("postgresql.conf"),
            &format!("{SERVER_CONF}unix_socket_directories = '{sockets}'\n"),
        );
        let hba = match &self.tls {
            None => PG_HBA,
            Some(tls) => {
                append(
                    &data.join("postgresql.conf"),
                    &format!(
                        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                        tls.server.cert.display(),
                        tls.server.key.display(),
                        tls.ca.display()
                    ),
                );
                PG_HBA_TLS
            }
        };
        fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn create_password_users(&self) {
        self.psql(
            self.primary_port,
            &format!(
                "set password_encryption = 'md5'; \
                 create role md5user login password '{PASSWORD}'; \
                 set password_encryption = 'scram-sha-256'; \
                 create role scramuser login password '{PASSWORD}'"
            ),
        );
    }

    fn clone_replica(&self) {
        let data = self.data_dir("replica");
        let port = self.primary_port.to_string();
        let out = self.server_cmd("pg_basebackup", |c| {
            c.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D"])
                .arg(&data);
            c.args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        });
        if !out.status.success() {
            panic!("pg_basebackup failed: {}", output_text(&out));
        }
        // Name the walreceiver so pg_stat_replication identifies this replica.
        let ssl = match &self.tls {
            None => String::new(),
            Some(tls) => format!(
                " sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
                tls.ca.display(),
                tls.postgres.cert.display(),
                tls.postgres.key.display()
            ),
        };
        let conninfo = format!(
            "primary_conninfo = 'host=127.0.0.1 port={port} user=postgres application_name=replica{ssl}'\n"
        );
        append(&data.join("postgresql.auto.conf"), &conninfo);
    }

    /// Starts `which` on `port`, moving to another free port if someone took
    /// this one since `free_port` picked it. Returns the port it listens on.
    fn start_server(&self, which: &str, mut port: u16) -> u16 {
        let conf = self.data_dir(which).join("postgresql.conf");
        for _ in 0..PORT_RETRIES {
            // The last `port` line wins; the replica's copy of the primary's
            // config gets its own line appended here.
            append(&conf, &format!("port = {port}\n"));
            match self.pg_ctl_start(which) {
                Ok(()) => return port,
                Err(e) if e.contains("could not bind") || e.contains("already in use") => {
                    port = free_port();
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{which}: no free port after {PORT_RETRIES} attempts");
    }

    fn pg_ctl_start(&self, which: &str) -> Result<(), String> {
        let data = self.data_dir(which);
        let log = self.log_path(which);
        let out = self.server_cmd("pg_ctl", |c| {
            c.arg("-D").arg(&data).arg("-l").arg(&log);
            c.args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "start"]);
        });
        if out.status.success() {
            return Ok(());
        }
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        Err(format!(
            "starting the {which} failed: {}\n--- {} ---\n{}",
            output_text(&out),
            log.display(),
            tail(&log_text, 30)
        ))
    }

    /// Waits until the primary reports the replica as streaming and the
    /// replica reports being in recovery.
    fn wait_streaming(&self) {
        let streaming = "select count(*) from pg_stat_replication \
                         where application_name = 'replica' and state = 'streaming'";
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let on_primary = self.try_psql(self.primary_port, streaming);
            let in_recovery = self.try_psql(self.replica_port, "select pg_is_in_recovery()");
            if on_primary.as_deref() == Ok("1") && in_recovery.as_deref() == Ok("t") {
                return;
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.log_path("replica")).unwrap_or_default();
                panic!(
                    "replica not streaming after {START_TIMEOUT:?} (streaming count: \
                     {on_primary:?}, in recovery: {in_recovery:?})\n--- replica.log ---\n{}",
                    tail(&log, 30)
                );
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Runs a server binary, as the server OS user when we are root, from `/`
    /// so that an unreadable working directory causes no warnings.
    fn server_cmd(&self, bin: &str, args: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new(runuser());
                c.args(["-u", user, "--"]).arg(pg_bin(bin));
                c
            }
            None => Command::new(pg_bin(bin)),
        };
        args(&mut cmd);
        clean_pg_env(&mut cmd).current_dir("/").stdin(Stdio::null());
        self.tls_env(&mut cmd);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate: nothing needs to survive, and the temp dir goes next.
        for which in ["replica", "primary"] {
            let data = self.data_dir(which);
            if data.join("postmaster.pid").exists() {
                let _ = self.server_cmd("pg_ctl", |c| {
                    c.arg("-D")
                        .arg(&data)
                        .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
                });
            }
        }
    }
}

/// Where cluster temp dirs go: `$PGSPLIT_TEST_TMPDIR` if set, else `/dev/shm`
/// when it has room (initdb and pg_basebackup take about 1.1 s there against
/// 2.3 s on ext4), else the system temp dir.
fn temp_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGSPLIT_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    // A cluster takes about 100 MB; Docker's default /dev/shm is only 64 MB.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && free_mib(shm).is_some_and(|mib| mib >= 2048) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// Free space of the filesystem holding `path`, from `df`.
fn free_mib(path: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["-P", "-m"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Removes environment variables that would redirect libpq, pg_ctl or the
/// server away from the explicit arguments we pass (an empty value is not
/// the same as unset: the server rejects `PGPORT=`).
fn clean_pg_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGDATA",
    ] {
        cmd.env_remove(var);
    }
    for var in [
        "PGOPTIONS",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn is_root() -> bool {
    // Effective uid is the second field of "Uid:" in /proc/self/status.
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    id(&["-u"]).as_deref() == Some("0")
}

/// Runs `id ARGS` and returns its trimmed output, or None if it failed.
fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn ensure_os_user(user: &str) {
    if id(&["-u", user]).is_some() {
        return;
    }
    let status = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args([
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/bash",
            user,
        ])
        .status();
    // A parallel test may have created it first; only its absence matters.
    if id(&["-u", user]).is_none() {
        panic!("OS user {user} is missing and useradd failed: {status:?}");
    }
}

pub fn chown_to(path: &Path, user: &str) {
    let num = |flag| {
        id(&[flag, user])
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("cannot look up `id {flag} {user}`"))
    };
    std::os::unix::fs::chown(path, Some(num("-u")), Some(num("-g")))
        .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
