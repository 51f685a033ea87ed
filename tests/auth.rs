//! Client authentication: md5 and SCRAM against pgsplit's user list (which
//! it also uses to log in to the servers), trust mode relaying the
//! servers' refusals, and the `databases` allow-list.

mod support;

use pgsplit::config::{AuthMethod, Config, User};
use support::cluster::{Cluster, PASSWORD};
use support::proxy::{code_of, message_of, one, proxy_config, psql_args, try_connect, Proxy};

fn conninfo(p: &Proxy, user: &str, password: Option<&str>, db: &str) -> String {
    let mut s = format!(
        "host=127.0.0.1 port={} user={user} dbname={db} connect_timeout=10",
        p.port()
    );
    if let Some(pw) = password {
        s.push_str(&format!(" password={pw}"));
    }
    s
}

/// Connecting must fail with `code` and exactly `message`.
async fn refused(conninfo: &str, code: &str, message: &str) {
    let err = match try_connect(conninfo).await {
        Ok(_) => panic!("{conninfo}: connected, expected {code}"),
        Err(e) => e,
    };
    assert_eq!(code_of(&err).as_deref(), Some(code), "{conninfo}: {err}");
    assert_eq!(message_of(&err), message, "{conninfo}");
}

async fn password_auth(auth: AuthMethod, user: &str) {
    let c = Cluster::start();
    let p = Proxy::start(Config {
        auth,
        users: vec![User {
            name: user.into(),
            password: PASSWORD.into(),
        }],
        ..proxy_config(&c)
    });

    let client = try_connect(&conninfo(&p, user, Some(PASSWORD), "postgres"))
        .await
        .unwrap_or_else(|e| panic!("{user} with the right password: {e}"));
    assert_eq!(
        one(&client, "select current_user").await.as_deref(),
        Some(user)
    );
    // Reads (replica) and writes (primary) both log in to the servers.
    assert_eq!(
        one(&client, "/* pgsplit:replica */ select current_user")
            .await
            .as_deref(),
        Some(user)
    );
    client
        .batch_execute("create temp table tt(x int); insert into tt values (1)")
        .await
        .unwrap();

    let psql = psql_args(
        p.port(),
        &["-U", user, "-d", "postgres", "-c", "select current_user"],
        &[("PGPASSWORD", PASSWORD)],
    );
    assert_eq!(psql.as_deref(), Ok(user));

    refused(
        &conninfo(&p, user, Some("wrong"), "postgres"),
        "28P01",
        &format!("password authentication failed for user \"{user}\""),
    )
    .await;
    let err = psql_args(
        p.port(),
        &["-U", user, "-d", "postgres", "-c", "select 1"],
        &[("PGPASSWORD", "wrong")],
    )
    .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    // An unknown role gets the same answer as a wrong password, after a
    // challenge, as from PostgreSQL and PgBouncer.
    refused(
        &conninfo(&p, "x", Some(PASSWORD), "postgres"),
        "28P01",
        "password authentication failed for user \"x\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_auth() {
    password_auth(AuthMethod::Md5, "md5user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_auth() {
    password_auth(AuthMethod::ScramSha256, "scramuser").await;
}

/// In trust mode the server's own FATAL (3D000 / 28000) reaches the client
/// at once, not a pool timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_relays_server_refusals() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    refused(
        &conninfo(&p, "postgres", None, "nope"),
        "3D000",
        "database \"nope\" does not exist",
    )
    .await;
    refused(
        &conninfo(&p, "ghost", None, "postgres"),
        "28000",
        "role \"ghost\" does not exist",
    )
    .await;
    // Still serving after the refusals.
    let ok = try_connect(&conninfo(&p, "postgres", None, "postgres"))
        .await
        .unwrap();
    assert_eq!(one(&ok, "select 1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_list_is_enforced() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database other");
    let p = Proxy::start(Config {
        databases: vec!["postgres".into()],
        ..proxy_config(&c)
    });
    refused(
        &conninfo(&p, "postgres", None, "other"),
        "3D000",
        "database \"other\" does not exist",
    )
    .await;
    let ok = try_connect(&conninfo(&p, "postgres", None, "postgres"))
        .await
        .unwrap();
    assert_eq!(
        one(&ok, "select current_database()").await.as_deref(),
        Some("postgres")
    );
}

/// With password authentication only `admin_users` reach the admin console;
/// others get 42501 after logging in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_needs_admin_users() {
    let c = Cluster::start();
    let user = |name: &str| User {
        name: name.into(),
        password: PASSWORD.into(),
    };
    let p = Proxy::start(Config {
        auth: AuthMethod::Md5,
        users: vec![user("md5user"), user("scramuser")],
        admin_users: vec!["md5user".into()],
        ..proxy_config(&c)
    });
    let admin = try_connect(&conninfo(&p, "md5user", Some(PASSWORD), "pgsplit"))
        .await
        .unwrap();
    assert!(admin.simple_query("SHOW POOLS").await.is_ok());
    refused(
        &conninfo(&p, "scramuser", Some(PASSWORD), "pgsplit"),
        "42501",
        "permission denied for the pgsplit admin console: user \"scramuser\" is not in admin_users",
    )
    .await;
    refused(
        &conninfo(&p, "md5user", Some("wrong"), "pgsplit"),
        "28P01",
        "password authentication failed for user \"md5user\"",
    )
    .await;
}
