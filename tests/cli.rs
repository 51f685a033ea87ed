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
