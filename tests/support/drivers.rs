//! Running a real driver's script from `tests/drivers/` against a fresh
//! [`Cluster`] and [`Proxy`] (tests/drivers.rs, tests/asyncpg.rs).
//!
//! Every script takes its connection argument(s) first, then the primary's
//! and the replica's ports, prints a line containing " ok" and exits 0 when
//! everything matched, and exits non-zero with what differed otherwise. A
//! driver that is not installed skips its test, unless
//! `PGSPLIT_REQUIRE_DRIVERS=1` (set by scripts/test.sh after installing
//! them), where it fails.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgsplit::config::Config;

use super::cluster::Cluster;
use super::proxy::{proxy_config, Proxy};

pub fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// The path of a script in tests/drivers/.
pub fn script(name: &str) -> String {
    drivers_dir().join(name).display().to_string()
}

/// Whether `probe` runs; if not, skip or (when required) fail.
pub fn available(name: &str, probe: &mut Command) -> bool {
    let ok = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("PGSPLIT_REQUIRE_DRIVERS").is_none(),
            "{name} is required (PGSPLIT_REQUIRE_DRIVERS) but not installed"
        );
        eprintln!("skipping: {name} is not installed");
    }
    ok
}

/// Whether Python can import `module` (skips or fails as [`available`]).
pub fn python_has(module: &str) -> bool {
    available(
        module,
        Command::new("python3").args(["-c", &format!("import {module}")]),
    )
}

/// Runs `command`; panics with its output unless it exits 0 and prints " ok".
pub fn run(mut command: Command) {
    let out = command.output().expect("driver script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driver check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" ok"),
        "driver check printed no ok:\n{stdout}\n{stderr}"
    );
}

/// Starts a cluster and pgsplit with [`proxy_config`], then runs `program`
/// with `args(proxy port)` followed by the primary and replica ports.
pub fn check(program: &str, env: &[(&str, &OsStr)], args: impl FnOnce(u16) -> Vec<String>) {
    check_with(proxy_config, program, env, args)
}

/// As [`check`], with the proxy's config made by `config` from the cluster.
pub fn check_with(
    config: impl FnOnce(&Cluster) -> Config,
    program: &str,
    env: &[(&str, &OsStr)],
    args: impl FnOnce(u16) -> Vec<String>,
) {
    start_and_run(config, program, env, args, Vec::new());
}

/// As [`check`], with `extra` arguments after the two ports.
pub fn check_then(program: &str, args: impl FnOnce(u16) -> Vec<String>, extra: Vec<String>) {
    start_and_run(proxy_config, program, &[], args, extra);
}

fn start_and_run(
    config: impl FnOnce(&Cluster) -> Config,
    program: &str,
    env: &[(&str, &OsStr)],
    args: impl FnOnce(u16) -> Vec<String>,
    extra: Vec<String>,
) {
    let cluster = Cluster::start();
    let proxy = Proxy::start(config(&cluster));
    let mut command = Command::new(program);
    command
        .envs(env.iter().copied())
        .args(args(proxy.port()))
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string())
        .args(extra);
    run(command);
}

/// The asyncpg DSN of pgsplit on `port`.
pub fn asyncpg_dsn(port: u16) -> String {
    format!("postgresql://postgres@127.0.0.1:{port}/postgres")
}

/// What a program printed, and how it ended.
pub struct Finished {
    /// `None` when it ran past its time and was killed.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Exit status (or the kill) and both outputs: for assertion messages.
    pub fn describe(&self) -> String {
        let how = match self.status {
            Some(s) => s.to_string(),
            None => "killed: it ran past its time limit".into(),
        };
        format!(
            "{how}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `command` (its stdin closed) for at most `limit`, then kills it and
/// everything it started (it runs in a process group of its own), so that
/// a driver waiting on a proxy that stopped answering fails a test instead
/// of hanging it.
pub fn output_within(command: &mut Command, limit: std::time::Duration) -> Finished {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    // Read both pipes on threads, so a chatty program never blocks on a
    // full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// [`run`] with a time limit: panics with the output unless `command` exits
/// 0 within `limit` and prints " ok"; returns its stdout.
pub fn run_within(mut command: Command, limit: std::time::Duration) -> String {
    let done = output_within(&mut command, limit);
    assert!(done.success(), "driver check failed: {}", done.describe());
    assert!(
        done.stdout.contains(" ok"),
        "driver check printed no ok: {}",
        done.describe()
    );
    done.stdout
}
