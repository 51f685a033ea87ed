//! Checks the test harness itself (tests/support/cluster.rs): a cluster starts,
//! the replica streams from the primary, and the helpers work. It also shows
//! how an integration test uses the harness.

mod support;

use std::time::Instant;

use support::cluster::{Cluster, PASSWORD};

#[test]
fn primary_streams_to_replica() {
    let started = Instant::now();
    let c = Cluster::start();
    eprintln!(
        "cluster started in {:?} (primary {}, replica {})",
        started.elapsed(),
        c.primary_addr(),
        c.replica_addr()
    );
    assert_ne!(c.primary_port(), c.replica_port());
    assert_eq!(c.primary_addr(), format!("127.0.0.1:{}", c.primary_port()));

    assert_eq!(c.psql(c.primary_port(), "select pg_is_in_recovery()"), "f");
    assert_eq!(c.psql(c.replica_port(), "select pg_is_in_recovery()"), "t");

    c.psql(
        c.primary_port(),
        "create table smoke(id int primary key, note text)",
    );
    c.psql(c.primary_port(), "insert into smoke values (1, 'hello')");
    c.wait_replica_caught_up();
    assert_eq!(
        c.psql(c.replica_port(), "select note from smoke where id = 1"),
        "hello"
    );

    // The replica is read-only.
    let err = c
        .try_psql(c.replica_port(), "insert into smoke values (2, 'no')")
        .unwrap_err();
    assert!(err.contains("read-only transaction"), "{err}");
}

#[test]
fn password_users_use_their_auth_method() {
    let c = Cluster::start();
    let stored = c.psql(
        c.primary_port(),
        "select rolname, split_part(rolpassword, '$', 1) like 'SCRAM-SHA-256' \
         from pg_authid where rolname in ('md5user', 'scramuser') order by 1",
    );
    assert_eq!(stored, "md5user|f\nscramuser|t");
    let methods = c.psql(
        c.primary_port(),
        "select user_name[1], auth_method from pg_hba_file_rules \
         where user_name[1] in ('md5user', 'scramuser') and type = 'host' order by 1",
    );
    assert_eq!(methods, "md5user|md5\nscramuser|scram-sha-256");

    for user in ["md5user", "scramuser"] {
        for port in [c.primary_port(), c.replica_port()] {
            let ok = c.try_psql_as(port, user, Some(PASSWORD), "select current_user");
            assert_eq!(ok.as_deref(), Ok(user));
            let err = c
                .try_psql_as(port, user, Some("wrong"), "select 1")
                .unwrap_err();
            assert!(err.contains("password authentication failed"), "{err}");
            let err = c.try_psql_as(port, user, None, "select 1").unwrap_err();
            assert!(err.contains("no password supplied"), "{err}");
        }
    }
}

#[test]
fn replica_can_be_stopped_and_restarted() {
    let c = Cluster::start();
    c.stop_replica();
    assert!(c.try_psql(c.replica_port(), "select 1").is_err());
    c.psql(
        c.primary_port(),
        "create table while_down(x int); insert into while_down values (7)",
    );
    c.start_replica();
    c.wait_replica_caught_up();
    assert_eq!(c.psql(c.replica_port(), "select x from while_down"), "7");
}

#[test]
fn drop_stops_servers_and_removes_dir() {
    let c = Cluster::start();
    let (dir, port) = (c.dir().to_path_buf(), c.primary_port());
    drop(c);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
