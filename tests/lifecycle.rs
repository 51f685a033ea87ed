//! The pgsplit process over its life: reload on SIGHUP under pgbench load
//! (pool sizes and replicas change, no transaction fails; an invalid file
//! is refused), and graceful shutdown on SIGTERM under load (transactions
//! in flight finish, clients are told 57P01 between transactions, no
//! acknowledged write is lost; a second signal exits at once).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::cluster::{free_port, Cluster};
use support::proxy::{code_of, connect_with_task, eventually, pgbench, psql_via};
use tokio_postgres::{Client, NoTls};

/// A client whose connection task returns how the connection ended.
async fn connect_watched(
    port: u16,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    (client, tokio::spawn(connection))
}

/// pgsplit as a child process with a config file; killed when dropped.
struct Pgsplit {
    child: std::process::Child,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pgsplit {
    fn start(toml: &str) -> Pgsplit {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pgsplit.toml");
        let log = dir.path().join("pgsplit.log");
        std::fs::write(&config, toml).unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pgsplit");
        let p = Pgsplit {
            child,
            port,
            config,
            log,
            _dir: dir,
        };
        assert!(
            eventually(Duration::from_secs(10), || psql_via(port, "select 1")
                .is_ok()),
            "pgsplit did not start:\n{}",
            p.log()
        );
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    fn rewrite(&self, toml: &str) {
        std::fs::write(&self.config, toml).unwrap();
        self.signal("HUP");
    }

    /// Waits for the process to exit; its status code.
    fn exited_within(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Pgsplit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(c: &Cluster, replicas: &[String], pool_size: u32, extra: &str) -> String {
    let replicas: Vec<String> = replicas.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "primary = {:?}\nreplicas = [{}]\n{extra}\n[pool.primary]\npool_size = {pool_size}\nmax_overflow = 4\n[pool.replica]\npool_size = {pool_size}\nmax_overflow = 4\n",
        c.primary_addr(),
        replicas.join(", ")
    )
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn reload_under_load_changes_pools_and_replicas_without_failures() {
    let c = Cluster::start();
    let (ok, out) = pgbench(c.primary_port(), &["-i", "-s", "1", "-q"]);
    assert!(ok, "{out}");
    c.wait_replica_caught_up();
    let replica = vec![c.replica_addr()];
    let p = Pgsplit::start(&config(&c, &replica, 2, ""));
    let port = p.port;
    let bench = std::thread::spawn(move || {
        pgbench(
            port,
            &[
                "-c",
                "8",
                "-j",
                "2",
                "-T",
                "6",
                "-b",
                "tpcb-like@1",
                "-b",
                "select-only@4",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(1200));
    p.rewrite(&config(&c, &replica, 5, ""));
    std::thread::sleep(Duration::from_millis(1200));
    p.rewrite(&config(&c, &[], 3, ""));
    std::thread::sleep(Duration::from_millis(1200));
    // Invalid: refused, the running configuration stays.
    p.rewrite("primary = \"nowhere\"\n");
    std::thread::sleep(Duration::from_millis(600));
    p.rewrite(&config(
        &c,
        &replica,
        4,
        "replica_selection = \"round_robin\"",
    ));
    let (ok, out) = bench.join().unwrap();
    let log = p.log();
    assert!(ok, "pgbench failed:\n{out}\n{log}");
    assert!(!out.contains("aborted"), "{out}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    assert_eq!(count(&log, "configuration reloaded"), 3, "{log}\n{out}");
    assert_eq!(count(&log, "reload refused"), 1, "{log}");
    // Back with the replica: reads go there again.
    assert!(
        eventually(Duration::from_secs(10), || psql_via(
            port,
            "select inet_server_port()"
        ) == Ok(c
            .replica_port()
            .to_string())),
        "{}",
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_transactions_finish_and_tells_clients() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "CREATE TABLE acked(id int primary key)");
    let mut p = Pgsplit::start(&config(&c, &[c.replica_addr()], 2, "shutdown_timeout = 10"));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (client, task) = connect_watched(p.port).await;
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            let mut goodbye = None;
            for n in 0.. {
                let id = w * 100_000 + n;
                // Between transactions pgsplit may tell the client to go.
                if let Err(e) = client.batch_execute("BEGIN").await {
                    goodbye = code_of(&e);
                    break;
                }
                // Inside one, nothing may fail.
                client
                    .batch_execute(&format!("INSERT INTO acked VALUES ({id})"))
                    .await
                    .expect("insert inside a transaction");
                client
                    .batch_execute("SELECT pg_sleep(0.1)")
                    .await
                    .expect("statement inside a transaction");
                client.batch_execute("COMMIT").await.expect("commit");
                acked.lock().unwrap().push(id);
            }
            // The goodbye reaches the statement waiting for it, or, when
            // the client was idle, the connection.
            match task.await.unwrap() {
                Err(e) => goodbye.or(code_of(&e)).ok_or(e.to_string()),
                Ok(()) => goodbye.ok_or("closed without a goodbye".to_string()),
            }
        }));
    }
    // A long transaction in flight at the signal finishes.
    let (long, long_task) = connect_with_task(p.port).await;
    long.batch_execute("BEGIN").await.unwrap();
    let long_tx = tokio::spawn(async move {
        long.batch_execute("SELECT pg_sleep(1.5); INSERT INTO acked VALUES (-1)")
            .await?;
        long.batch_execute("COMMIT").await
    });
    // An idle client, blocked waiting for input, is woken and told too.
    let (_idle, idle_task) = connect_watched(p.port).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.signal("TERM");

    let idle_end = tokio::time::timeout(Duration::from_secs(5), idle_task)
        .await
        .expect("the idle client was told within 5 s")
        .unwrap();
    assert_eq!(
        idle_end.err().as_ref().and_then(code_of).as_deref(),
        Some("57P01")
    );
    long_tx
        .await
        .unwrap()
        .expect("the transaction in flight committed");
    for worker in workers {
        assert_eq!(worker.await.unwrap().as_deref(), Ok("57P01"));
    }
    let _ = long_task.await;
    assert_eq!(
        p.exited_within(Duration::from_secs(10)),
        Some(0),
        "{}",
        p.log()
    );
    let stored: usize = c
        .psql(c.primary_port(), "SELECT count(*) FROM acked WHERE id >= 0")
        .parse()
        .unwrap();
    assert_eq!(
        stored,
        acked.lock().unwrap().len(),
        "acknowledged commits lost"
    );
    assert!(stored > 0);
    assert!(p.log().contains("shutting down"), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let c = Cluster::start();
    let mut p = Pgsplit::start(&config(&c, &[c.replica_addr()], 2, "shutdown_timeout = 60"));
    let (client, _task) = connect_with_task(p.port).await;
    client.batch_execute("BEGIN").await.unwrap();
    p.signal("TERM");
    assert_eq!(
        p.exited_within(Duration::from_millis(700)),
        None,
        "exited with a transaction open"
    );
    p.signal("TERM");
    assert!(
        p.exited_within(Duration::from_secs(3)).is_some(),
        "{}",
        p.log()
    );
}

/// Users and the authentication method change on reload for new clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_users() {
    let c = Cluster::start();
    let p = Pgsplit::start(&config(&c, &[c.replica_addr()], 2, ""));
    let login = |password: &str| {
        support::proxy::psql_args(
            p.port,
            &[
                "-U",
                "md5user",
                "-d",
                "postgres",
                "-c",
                "select current_user",
            ],
            &[("PGPASSWORD", password)],
        )
    };
    // Top-level keys first: config() puts `extra` before its tables.
    let md5 = format!(
        "auth = \"md5\"\n[[users]]\nname = \"md5user\"\npassword = \"{}\"\n",
        support::cluster::PASSWORD
    );
    p.rewrite(&config(&c, &[c.replica_addr()], 2, &md5));
    assert!(
        eventually(Duration::from_secs(5), || count(
            &p.log(),
            "configuration reloaded"
        ) == 1),
        "{}",
        p.log()
    );
    assert_eq!(login(support::cluster::PASSWORD).as_deref(), Ok("md5user"));
    let refused = login("wrong").unwrap_err();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
}
