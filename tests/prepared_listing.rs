//! `pg_prepared_statements` through pgsplit: a client sees its own
//! prepared statements under the names it gave them, as it would direct,
//! and never the statements pgsplit prepared on a shared server connection
//! for other clients (their text included).

mod support;

use pgsplit::config::{Config, PoolSettings, Pools};
use support::cluster::Cluster;
use support::proxy::{connect, proxy_config, try_connect, Proxy};
use tokio_postgres::{Client, SimpleQueryMessage};

/// One connection per server: every client shares it.
fn one_connection(cluster: &Cluster) -> Config {
    let pool = PoolSettings {
        pool_size: 1,
        max_overflow: 0,
        ..PoolSettings::default()
    };
    Config {
        pool: Pools {
            primary: pool.clone(),
            replica: pool,
        },
        ..proxy_config(cluster)
    }
}

/// (name, statement) rows of pg_prepared_statements, through the extended
/// protocol (tokio-postgres prepares the listing itself too).
async fn listed(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "select name, statement from pg_prepared_statements order by name",
            &[],
        )
        .await
        .expect("list prepared statements")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The same, as a simple query (psql's way).
async fn listed_simply(client: &Client) -> Vec<String> {
    client
        .simple_query("select name from pg_prepared_statements order by name")
        .await
        .expect("list prepared statements")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_lists_its_own_statements_under_its_names() {
    let c = Cluster::start();
    let p = Proxy::start(one_connection(&c));
    let direct_port = c.primary_port();

    // The same two clients' statements, direct and through pgsplit.
    async fn scenario(port: u16) -> (Vec<(String, String)>, Vec<String>, Vec<(String, String)>) {
        let other = connect(port).await;
        let others = other
            .prepare("select 'secret text of another client'")
            .await
            .unwrap();
        let mine = connect(port).await;
        let one = mine.prepare("select 1").await.unwrap();
        let two = mine.prepare("select $1::int + 1").await.unwrap();
        mine.query(&one, &[]).await.unwrap();
        let listed_mine = listed(&mine).await;
        let simply = listed_simply(&mine).await;
        let listed_other = listed(&other).await;
        // The statements still run afterwards.
        assert_eq!(
            mine.query_one(&two, &[&41]).await.unwrap().get::<_, i32>(0),
            42
        );
        other.query(&others, &[]).await.unwrap();
        (listed_mine, simply, listed_other)
    }

    let direct = scenario(direct_port).await;
    let proxied = scenario(p.port()).await;
    // tokio-postgres numbers its statements process-wide (s0, s1, ...), so
    // the two runs' names differ: the texts, counts and kinds of name must not.
    let texts = |rows: &[(String, String)]| {
        let mut texts: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        texts.sort();
        texts
    };
    assert_eq!(texts(&proxied.0), texts(&direct.0), "extended listing");
    assert_eq!(proxied.1.len(), direct.1.len(), "simple listing");
    assert_eq!(
        texts(&proxied.2),
        texts(&direct.2),
        "the other client's listing"
    );
    for (name, text) in proxied.0.iter().chain(&proxied.2) {
        assert!(
            name.starts_with('s') && !name.starts_with("pgsplit"),
            "{name}: not the client's own name for {text:?}"
        );
    }
    assert!(
        proxied.0.iter().all(|(_, text)| !text.contains("secret")),
        "another client's statement leaked: {:?}",
        proxied.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_statements_lists_none() {
    let c = Cluster::start();
    let p = Proxy::start(one_connection(&c));
    let other = connect(p.port()).await;
    other.prepare("select 'someone else'").await.unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        p.port()
    );
    let quiet = try_connect(&conninfo).await.unwrap();
    assert!(listed_simply(&quiet).await.is_empty());
}
