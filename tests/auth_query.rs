//! Users pgsplit's configuration does not list, or lists by their SCRAM
//! verifier or md5 hash only: auth_query looks them up on the primary,
//! clients are checked against what PostgreSQL itself stores, and the
//! servers are logged in to with what the client proved (its SCRAM keys,
//! or the md5 hash): no password in pgsplit's configuration. Reads reach
//! the replica, so it is logged in to that way too.

mod support;

use std::time::Duration;

use pgsplit::config::{AuthMethod, Config, User};
use support::cluster::{free_port, Cluster, PASSWORD};
use support::drivers::{output_within, python_has, script};
use support::proxy::{
    code_of, message_of, one, port_of, proxy_config, psql_args, try_connect, Proxy,
};

fn conninfo(p: &Proxy, user: &str, password: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname={db} connect_timeout=10",
        p.port()
    )
}

/// pgsplit with no `[[users]]`: it looks users up as `postgres` (trusted
/// by the test cluster's pg_hba.conf, and allowed to read pg_shadow).
fn auth_query_config(c: &Cluster, auth: AuthMethod) -> Config {
    Config {
        auth,
        auth_user: Some("postgres".into()),
        auth_cache_seconds: 1.0,
        ..proxy_config(c)
    }
}

async fn refused(conninfo: &str, user: &str) {
    match try_connect(conninfo).await {
        Ok(_) => panic!("{conninfo}: logged in"),
        Err(e) => {
            assert_eq!(code_of(&e).as_deref(), Some("28P01"), "{conninfo}: {e}");
            assert_eq!(
                message_of(&e),
                format!("password authentication failed for user \"{user}\"")
            );
        }
    }
}

/// `user` logs in with `password`, and its reads run on the replica:
/// both servers were logged in to without a password pgsplit knows.
async fn logs_in_everywhere(c: &Cluster, p: &Proxy, user: &str, password: &str, db: &str) {
    let client = try_connect(&conninfo(p, user, password, db))
        .await
        .unwrap_or_else(|e| panic!("{user} on {db}: {e}"));
    assert_eq!(
        one(&client, "select current_user").await.as_deref(),
        Some(user)
    );
    let read = "/* pgsplit:replica */ select inet_server_port()";
    assert_eq!(
        port_of(&client, read).await,
        c.replica_port(),
        "{user}'s read on {db}"
    );
    let write = "/* pgsplit:primary */ select inet_server_port()";
    assert_eq!(
        port_of(&client, write).await,
        c.primary_port(),
        "{user}'s write on {db}"
    );
}

/// Logins with asyncpg and psycopg 3 (tests/drivers/auth_check.py).
fn drivers_log_in(c: &Cluster, p: &Proxy, user: &str) {
    if !python_has("asyncpg") || !python_has("psycopg") {
        return;
    }
    let mut command = std::process::Command::new("python3");
    command.arg(script("auth_check.py")).args([
        p.port().to_string(),
        user.to_string(),
        PASSWORD.to_string(),
        c.primary_port().to_string(),
        c.replica_port().to_string(),
    ]);
    let done = output_within(&mut command, Duration::from_secs(60));
    assert!(
        done.success() && done.stdout.contains(" ok"),
        "{}",
        done.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_are_looked_up_and_logged_in_with_their_own_keys() {
    let c = Cluster::start();
    let metrics_port = free_port();
    let p = Proxy::start(Config {
        metrics_listen: Some(format!("127.0.0.1:{metrics_port}")),
        ..auth_query_config(&c, AuthMethod::ScramSha256)
    });
    logs_in_everywhere(&c, &p, "scramuser", PASSWORD, "postgres").await;
    refused(&conninfo(&p, "scramuser", "wrong", "postgres"), "scramuser").await;
    // Unknown, and a role whose md5 hash cannot check SCRAM: the same
    // answer, as from PostgreSQL.
    refused(&conninfo(&p, "ghost", PASSWORD, "postgres"), "ghost").await;
    refused(&conninfo(&p, "md5user", PASSWORD, "postgres"), "md5user").await;
    let psql = psql_args(
        p.port(),
        &[
            "-U",
            "scramuser",
            "-d",
            "postgres",
            "-c",
            "select current_user",
        ],
        &[("PGPASSWORD", PASSWORD)],
    );
    assert_eq!(psql.as_deref(), Ok("scramuser"));
    // Each refusal is counted by why (the client was told the same).
    let (_, text) = support::http::get(metrics_port, "/metrics");
    let auth = |result: &str| {
        let series =
            format!("pgsplit_client_auth_total{{mechanism=\"scram-sha-256\",result=\"{result}\"}}");
        support::http::value(&text, &series)
    };
    assert_eq!(
        [
            "ok",
            "wrong_password",
            "unknown_user",
            "unusable_secret",
            "protocol_violation"
        ]
        .map(auth),
        [2.0, 1.0, 1.0, 1.0, 0.0]
    );
    let lookups = |result: &str| {
        support::http::value(
            &text,
            &format!("pgsplit_auth_query_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(
        lookups("found") + lookups("cached"),
        4.0,
        "scramuser thrice, md5user"
    );
    assert_eq!(lookups("not_found"), 1.0, "ghost");
    // The primary and the replica, logged in to with scramuser's keys.
    let logins = |credential: &str| {
        let series =
            format!("pgsplit_server_logins_total{{credential=\"{credential}\",result=\"ok\"}}");
        support::http::value(&text, &series)
    };
    assert!(logins("scram_keys") >= 2.0, "{text}");
    drivers_log_in(&c, &p, "scramuser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_users_are_looked_up_and_logged_in_with_their_hash() {
    let c = Cluster::start();
    let p = Proxy::start(auth_query_config(&c, AuthMethod::Md5));
    logs_in_everywhere(&c, &p, "md5user", PASSWORD, "postgres").await;
    // md5 asked, only a verifier: SCRAM instead, as PostgreSQL does.
    logs_in_everywhere(&c, &p, "scramuser", PASSWORD, "postgres").await;
    refused(&conninfo(&p, "md5user", "wrong", "postgres"), "md5user").await;
    refused(&conninfo(&p, "ghost", PASSWORD, "postgres"), "ghost").await;
    drivers_log_in(&c, &p, "md5user");
}

/// ALTER ROLE ... PASSWORD on the primary: once the cached answer expires
/// the old password is refused and the new one logs in, also to servers
/// pgsplit had no connection to yet (with the new keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_is_used_once_the_cache_expires() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database other");
    let p = Proxy::start(auth_query_config(&c, AuthMethod::ScramSha256));
    logs_in_everywhere(&c, &p, "scramuser", PASSWORD, "postgres").await;
    c.psql(c.primary_port(), "alter role scramuser password 'changed'");
    c.wait_replica_caught_up();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    refused(
        &conninfo(&p, "scramuser", PASSWORD, "postgres"),
        "scramuser",
    )
    .await;
    logs_in_everywhere(&c, &p, "scramuser", "changed", "other").await;
    logs_in_everywhere(&c, &p, "scramuser", "changed", "postgres").await;
}

/// `[[users]]` with what pg_authid holds instead of passwords: the
/// verifier checks SCRAM and the hash md5, and the servers are logged in
/// to with the client's keys and the hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_listed_by_verifier_or_hash_log_in_with_pass_through() {
    let c = Cluster::start();
    let stored = |role: &str| {
        c.psql(
            c.primary_port(),
            &format!("select rolpassword from pg_authid where rolname = '{role}'"),
        )
    };
    let (verifier, hash) = (stored("scramuser"), stored("md5user"));
    assert!(verifier.starts_with("SCRAM-SHA-256$") && hash.starts_with("md5"));
    let p = Proxy::start(Config {
        auth: AuthMethod::Md5,
        users: vec![
            User {
                name: "scramuser".into(),
                password: verifier,
            },
            User {
                name: "md5user".into(),
                password: hash,
            },
        ],
        databases: vec!["postgres".into()],
        ..proxy_config(&c)
    });
    logs_in_everywhere(&c, &p, "md5user", PASSWORD, "postgres").await;
    logs_in_everywhere(&c, &p, "scramuser", PASSWORD, "postgres").await;
    refused(&conninfo(&p, "scramuser", "wrong", "postgres"), "scramuser").await;
    refused(&conninfo(&p, "md5user", "wrong", "postgres"), "md5user").await;
}

/// The README's setup without a superuser: a SECURITY DEFINER lookup
/// function, and an auth_user that must log in with a password, here given
/// as its md5 hash (md5user's pg_hba.conf line asks md5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_definer_lookup_as_an_auth_user_with_a_hash() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "CREATE FUNCTION public.user_lookup(name text, OUT usename name, OUT passwd text) \
           RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog \
           AS $$ SELECT usename, passwd FROM pg_shadow WHERE usename = name $$; \
         REVOKE ALL ON FUNCTION public.user_lookup(text) FROM public; \
         GRANT EXECUTE ON FUNCTION public.user_lookup(text) TO md5user",
    );
    let hash = c.psql(
        c.primary_port(),
        "select rolpassword from pg_authid where rolname = 'md5user'",
    );
    let p = Proxy::start(Config {
        auth: AuthMethod::ScramSha256,
        auth_user: Some("md5user".into()),
        auth_password: Some(hash),
        auth_query: "SELECT usename, passwd FROM public.user_lookup($1)".into(),
        ..proxy_config(&c)
    });
    logs_in_everywhere(&c, &p, "scramuser", PASSWORD, "postgres").await;
    refused(&conninfo(&p, "ghost", PASSWORD, "postgres"), "ghost").await;

    // auth_user cannot log in: clients are told pgsplit could not check
    // them (not that their password is wrong), and the log says why.
    let broken = Proxy::start(Config {
        auth: AuthMethod::ScramSha256,
        auth_user: Some("md5user".into()),
        auth_password: Some("wrong".into()),
        ..proxy_config(&c)
    });
    let e = try_connect(&conninfo(&broken, "scramuser", PASSWORD, "postgres"))
        .await
        .err()
        .expect("no login without a lookup");
    assert_eq!(code_of(&e).as_deref(), Some("08006"), "{e}");
    assert_eq!(
        message_of(&e),
        "pgsplit could not look up the user's password (auth_query failed; see pgsplit's log)"
    );
}
