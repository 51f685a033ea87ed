//! The pgsplit binary: help, refusing bad flags and config files with exit
//! status 2 and a message naming the problem, and a real start from flags.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::cluster::{free_port, Cluster};
use support::proxy::{eventually, psql_via};

fn pgsplit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgsplit"));
    cmd.stdin(Stdio::null()).env("RUST_LOG", "warn");
    cmd
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = pgsplit().args(args).output().expect("run pgsplit");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_refusals() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in ["--primary", "--replica", "--pool-mode"] {
        assert!(
            stdout.contains(flag),
            "--help does not mention {flag}:\n{stdout}"
        );
    }

    let (code, _, stderr) = run(&["--primary", "127.0.0.1:5432", "--pool-mode", "statement"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("statement"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgsplit.toml");
    std::fs::write(&file, "primary = \"127.0.0.1:5432\"\npool_sise = 3\n").unwrap();
    let (code, _, stderr) = run(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("pool_sise"),
        "the unknown key is not named: {stderr}"
    );

    let (code, _, stderr) = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("primary"), "{stderr}");

    // An empty password would let anyone in as that user: refused, by name.
    std::fs::write(
        &file,
        "primary = \"127.0.0.1:5432\"\nauth = \"md5\"\n\
         [[users]]\nname = \"app\"\npassword = \"\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("users[0].password") && stderr.contains("\"app\" has an empty password"),
        "{stderr}"
    );
}

/// `--help` is enough to run pgsplit without the README: each option says
/// which config key it overrides, and the end lists the config file's
/// main keys, the signals, the exit status and where metrics are.
#[test]
fn long_help_and_version() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for needle in [
        "Config key: pool_mode",
        "Config key: metrics_listen",
        "SIGHUP",
        "SIGTERM",
        "EXIT STATUS",
        "/healthz",
        "config.toml.example",
        "--check-config",
    ] {
        assert!(stdout.contains(needle), "--help lacks {needle}:\n{stdout}");
    }
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        concat!("pgsplit ", env!("CARGO_PKG_VERSION"))
    );
}

/// `--check-config FILE` validates without starting: "ok" and a summary
/// with exit status 0 for a good file (no server is contacted: the
/// primary here does not exist), the key and status 2 for a bad one.
#[test]
fn check_config_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgsplit.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\nprimary = \"192.0.2.1:5432\"\n\
         replicas = [\"192.0.2.2:5432\", \"192.0.2.3:5432\"]\nauth = \"md5\"\n\
         [[users]]\nname = \"app\"\npassword = \"secret\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, stdout, stderr) = run(&["--check-config", path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    for part in [
        "listen 127.0.0.1:1",
        "primary 192.0.2.1:5432",
        "2 replicas",
        "auth md5",
        "1 user",
    ] {
        assert!(stdout.contains(part), "{part} missing: {stdout}");
    }
    // Flags apply on top, as at a start.
    let (code, stdout, _) = run(&["--check-config", path, "--pool-mode", "session"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("pool_mode session"), "{stdout}");

    std::fs::write(
        &file,
        "primary = \"192.0.2.1:5432\"\n[pool.replica]\npool_timeout = -1\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["--check-config", path]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("pool.replica.pool_timeout"), "{stderr}");

    let (code, _, stderr) = run(&["--check-config", "/nonexistent/pgsplit.toml"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot read config file /nonexistent/pgsplit.toml"),
        "{stderr}"
    );
}

/// Kills the child when the test ends, also on panic.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn starts_from_flags_and_serves_psql() {
    let c = Cluster::start();
    let port = free_port();
    let child = Child(
        pgsplit()
            .args([
                "--primary",
                &c.primary_addr(),
                "--replica",
                &c.replica_addr(),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "pgsplit did not listen on {port}"
    );
    assert_eq!(
        psql_via(port, "select inet_server_port()").as_deref(),
        Ok(c.replica_port().to_string().as_str())
    );
    assert_eq!(
        psql_via(port, "create table cli_t(x int)"),
        Ok(String::new())
    );
    drop(child);
}

/// Right after start, before any client, the families a dashboard shows
/// are there at 0 (not "no data"): labelled counters with their known
/// labels, and the process's own metrics.
#[test]
fn metrics_exist_at_zero_right_after_start() {
    let (port, metrics_port) = (free_port(), free_port());
    let _child = Child(
        pgsplit()
            // Nothing listens there: no server is needed for this.
            .args(["--primary", "127.0.0.1:1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
    }));
    let text = support::http::get(metrics_port, "/metrics").1;
    for series in [
        "pgsplit_client_connections_accepted_total 0",
        "pgsplit_errors_total{class=\"08\",side=\"pgsplit\"} 0",
        "pgsplit_errors_total{class=\"42\",side=\"server\"} 0",
        "pgsplit_statements_total{destination=\"primary\",reason=\"write\"} 0",
        "pgsplit_refusals_total{reason=\"max_client_conn\"} 0",
        "pgsplit_timeouts_total{timeout=\"query_timeout\"} 0",
        "pgsplit_reloads_total{result=\"ok\"} 0",
        "pgsplit_cancel_requests_total{outcome=\"local\"} 0",
        "pgsplit_client_connections{state=\"waiting\"} 0",
        "pgsplit_server_up{server=\"127.0.0.1:1\"}",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
}

/// Logs written to a pipe (a service manager's, `| tee`) have no colour
/// codes: they are for terminals only.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Child(
        pgsplit()
            .args(["--primary", "127.0.0.1:1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgsplit"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let listening = line.contains("pgsplit listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    drop(child);
    let text = lines.join("\n");
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains("\x1b["), "colour codes in a pipe:\n{text:?}");
}

/// `--log-format json`: every log line is a JSON object with a message.
#[test]
fn json_logs() {
    let c = Cluster::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let child = Child(
        pgsplit()
            .args(["--primary", &c.primary_addr(), "--log-format", "json"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(eventually(Duration::from_secs(10), || psql_via(
        port, "select 1"
    )
    .is_ok()));
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("client connected")),
        "{text}"
    );
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["message"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
    }
}

/// At its open file limit pgsplit refuses new clients in words (FATAL
/// 53300, PostgreSQL's "sorry, too many clients already") instead of
/// leaving them in the listen queue, logs it at most once a second, and
/// does not blame a replica whose connection it could not open for want
/// of descriptors: the replica is not banned and serves reads once
/// descriptors are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_clients_are_refused_and_no_server_is_blamed() {
    use std::os::unix::process::CommandExt;
    use support::proxy::{code_of, message_of, try_connect};

    let c = Cluster::start();
    let (port, metrics_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgsplit.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nprimary = \"{}\"\nreplicas = [\"{}\"]\n\
             metrics_listen = \"127.0.0.1:{metrics_port}\"\nreplica_ban_time = 60.0\n\
             [pool.primary]\npool_size = 1\nmax_overflow = 1\n\
             [pool.replica]\npool_size = 1\nmax_overflow = 1\n",
            c.primary_addr(),
            c.replica_addr()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut cmd = pgsplit();
    cmd.args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let _child = Child(cmd.spawn().expect("spawn pgsplit"));
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while try_connect(&conninfo).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "pgsplit did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut clients = Vec::new();
    let refused = loop {
        match try_connect(&conninfo).await {
            Ok(client) => clients.push(client),
            Err(e) => break e,
        }
        assert!(clients.len() < 48, "more clients than descriptors");
    };
    assert_eq!(code_of(&refused).as_deref(), Some("53300"), "{refused}");
    assert_eq!(message_of(&refused), "sorry, too many clients already");
    // More, for over a second: each refused at once, and a line a second.
    let started = std::time::Instant::now();
    let mut more = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let e = try_connect(&conninfo)
            .await
            .err()
            .expect("got in past the limit");
        assert_eq!(code_of(&e).as_deref(), Some("53300"), "{e}");
        more += 1;
    }
    assert!(more >= 20, "only {more} refusals in 1.5 s");

    // A read that needs a new replica connection, with no descriptor for
    // it: it goes to the primary, and the replica is not blamed.
    drop(clients.pop());
    let mut client = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client = try_connect(&conninfo).await.ok();
        if client.is_some() {
            break;
        }
    }
    let client = client.expect("no room made by a client that left");
    let port_of = |row: Vec<tokio_postgres::SimpleQueryMessage>| {
        row.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    };
    let ran_on = port_of(
        client
            .simple_query("select inet_server_port()")
            .await
            .unwrap(),
    );
    assert_eq!(ran_on, Some(c.primary_port().to_string()));

    // Descriptors free again: the replica serves reads at once.
    clients.truncate(clients.len().saturating_sub(8));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran_on = port_of(
        client
            .simple_query("select inet_server_port()")
            .await
            .unwrap(),
    );
    assert_eq!(
        ran_on,
        Some(c.replica_port().to_string()),
        "the replica was banned"
    );
    let metrics = support::http::get(metrics_port, "/metrics").1;
    let value = |series: &str| support::http::value(&metrics, series);
    assert!(
        value("pgsplit_refusals_total{reason=\"fd_limit\"}") >= 21.0,
        "{metrics}"
    );
    assert_eq!(
        value(&format!(
            "pgsplit_replica_bans_total{{server=\"{}\"}}",
            c.replica_addr()
        )),
        0.0
    );
    drop(client);
    drop(clients);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("new clients are refused"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines about the file limit for {more} refusals in 1.5 s:\n{text}"
    );
    assert!(!text.contains("banned"), "{text}");
    assert!(!text.contains("accept failed"), "{text}");
}

/// What a client sends cannot forge log lines: a user name with a newline
/// and a terminal escape is logged on its line, escaped; and a log that
/// is not a terminal gets no colour codes.
#[test]
fn client_strings_cannot_forge_log_lines() {
    use std::io::{Read, Write};
    let c = Cluster::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let child = Child(
        pgsplit()
            .args(["--primary", &c.primary_addr()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(eventually(Duration::from_secs(10), || psql_via(
        port, "select 1"
    )
    .is_ok()));
    let forged = "2026-01-01T00:00:00.000000Z  INFO pgsplit::admin: admin command command=Shutdown";
    let user = format!("eve\n{forged}\x1b[2J");
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (name, value) in [
        ("user", user.as_str()),
        ("database", "db\r\nx"),
        ("application_name", "app\u{9b}"),
    ] {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&startup).unwrap();
    // The role does not exist: the server's refusal comes back and the
    // connection closes.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'E'));
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with(forged)),
        "a forged line:\n{text}"
    );
    assert!(text.contains("eve\\n2026-01-01T00:00:00.000000Z"), "{text}");
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(text.contains("db\\r\\nx"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape codes in a log that is no terminal:\n{text}"
    );
    assert!(!text.contains('\r'), "{text}");
}

/// Each log line about a client carries its id (the one SHOW CLIENTS
/// shows) and its address, from its login to its end: here a client whose
/// role does not exist, refused, and one that runs a statement.
#[test]
fn client_log_lines_carry_the_client_id_and_peer() {
    let c = Cluster::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let child = Child(
        pgsplit()
            .args(["--primary", &c.primary_addr()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(eventually(Duration::from_secs(10), || psql_via(
        port, "select 1"
    )
    .is_ok()));
    let refused = support::proxy::psql_args(port, &["-U", "nobody_here", "-c", "select 1"], &[]);
    assert!(refused.is_err());
    // The line is written after the client is told.
    eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("does not exist")
    });
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let about_clients: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("client connected") || l.contains("client disconnected"))
        .collect();
    assert!(about_clients.len() >= 4, "{text}");
    for line in &about_clients {
        assert!(line.contains("client{client_id="), "no client id: {line}");
        assert!(line.contains(" peer=127.0.0.1:"), "no peer: {line}");
    }
    let refusal = about_clients
        .iter()
        .find(|l| l.contains("client disconnected") && l.contains("nobody_here"))
        .unwrap_or_else(|| panic!("no line for the refused client:\n{text}"));
    // Its id is the one its "client connected" line had.
    let id = |line: &str| {
        line.split("client_id=")
            .nth(1)
            .and_then(|r| r.split([' ', '}']).next())
            .map(str::to_string)
    };
    let connected = about_clients
        .iter()
        .find(|l| l.contains("client connected") && l.contains("nobody_here"))
        .unwrap();
    assert_eq!(id(refusal), id(connected), "{text}");
}

/// SIGHUP: the log says which keys changed (`key: old -> new`) and which
/// need a restart; those keep their running value (the old port still
/// serves, the new one is not opened), the others apply.
#[test]
fn a_reload_logs_what_changed_and_what_needs_a_restart() {
    let c = Cluster::start();
    let (port, other_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("pgsplit.toml"), dir.path().join("log"));
    let config = |listen: u16, pool_size: u32| {
        format!(
            "listen = \"127.0.0.1:{listen}\"\nprimary = \"{}\"\n\
             [pool.primary]\npool_size = {pool_size}\n",
            c.primary_addr()
        )
    };
    std::fs::write(&file, config(port, 2)).unwrap();
    let child = Child(
        pgsplit()
            .args(["--config", file.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    assert!(eventually(Duration::from_secs(10), || psql_via(
        port, "select 1"
    )
    .is_ok()));
    std::fs::write(&file, config(other_port, 3)).unwrap();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    let logged = |needle: &str| std::fs::read_to_string(&log).unwrap().contains(needle);
    assert!(
        eventually(Duration::from_secs(10), || logged("configuration reloaded")),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("reload: pool.primary.pool_size: 2 -> 3"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "reload: listen: \"127.0.0.1:{port}\" -> \"127.0.0.1:{other_port}\" needs a restart; \
             the running value \"127.0.0.1:{port}\" stays in use"
        )),
        "{text}"
    );
    assert_eq!(psql_via(port, "select 1").as_deref(), Ok("1"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err());
    drop(child);
}

/// pgsplit's resident memory (VmRSS), in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Raises this process's open file limit to its hard limit (1,000 clients
/// need 1,000 descriptors on this side too).
fn raise_own_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct only.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur as u64
}

/// Memory per idle client (bench/idle_clients.sh measures it at 10,000
/// beside PgBouncer, with the release build): 1,000 clients that logged
/// in and ran a statement, once idle, cost a few KiB each, and when they
/// leave the memory goes back to the system. Before: 20 KiB each (a 16 KiB
/// read buffer, an 8 KiB write buffer and a 9 KiB future, held for good),
/// all of it kept after they left. Measured here (the debug build the
/// tests run): 6.6 to 7.5 KiB per idle client, 1 to 3 MiB kept after they
/// left, once jemalloc has purged (the test waits for it, up to a bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_cost_a_few_kib_and_give_it_back_when_they_leave() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 1,000 clients, or as many as this machine's hard limit on open
    // files lets both sides hold (this process and pgsplit each need one
    // per client).
    let limit = raise_own_file_limit();
    let count = (limit.saturating_sub(200) / 2).min(1000) as usize / 100 * 100;
    assert!(
        count >= 200,
        "open file limit {limit}: too low for this test"
    );
    let c = Cluster::start();
    let port = free_port();
    let child = Child(
        pgsplit()
            .args([
                "--primary",
                &c.primary_addr(),
                "--replica",
                &c.replica_addr(),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgsplit"),
    );
    let pid = child.0.id();
    assert!(eventually(Duration::from_secs(10), || psql_via(
        port, "select 1"
    )
    .is_ok()));
    let startup = support::wire::frame::startup(&[("user", "postgres"), ("database", "postgres")]);
    let query = support::wire::frame::query("select 1");
    // Logs in and runs a statement; the connection is then idle.
    let client = || async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        for message in [&startup, &query] {
            s.write_all(message).await.unwrap();
            let mut seen = Vec::new();
            // Until ReadyForQuery: 'Z', length 5, status.
            while seen.len() < 6 || seen[seen.len() - 6] != b'Z' {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed: {seen:?}");
                seen.extend_from_slice(&chunk[..n]);
            }
        }
        s
    };
    let first = client().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = rss_kib(pid);
    let mut clients = Vec::new();
    for _ in 0..count / 100 {
        clients.extend(futures::future::join_all((0..100).map(|_| client())).await);
    }
    let connected = (rss_kib(pid) - base) / count as f64;
    // Idle sessions give their buffers back after 5 to 10 s of silence,
    // and jemalloc returns freed pages over the next seconds.
    eprintln!("{connected:.2} KiB per client connected");
    let started = std::time::Instant::now();
    let mut idle = connected;
    while started.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle = (rss_kib(pid) - base) / count as f64;
        if idle < 8.0 && started.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    assert!(idle < 10.0, "{idle:.1} KiB per idle client");
    drop(clients);
    drop(first);
    let started = std::time::Instant::now();
    let mut left = f64::MAX;
    while started.elapsed() < Duration::from_secs(30) && left >= 4096.0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = rss_kib(pid) - base;
    }
    assert!(
        left < 4096.0,
        "{left:.0} KiB still held after {count} clients left"
    );
    eprintln!("{idle:.2} KiB per idle client; {left:.0} KiB held after they left");
}
