//! What pgsplit holds, as its admin console (the virtual database
//! `pgsplit`) shows it: server connections checked out or parked per pool,
//! and the clients still connected. Tests that end sessions in odd ways
//! use [`settled`] to check that pgsplit let go of everything.
//!
//! Admin console sessions are not clients: SHOW CLIENTS does not list them.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::proxy::try_connect;

/// A console connection to the proxy on 127.0.0.1:`port`.
pub async fn console(port: u16) -> Client {
    try_connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=pgsplit connect_timeout=10"
    ))
    .await
    .unwrap_or_else(|e| panic!("admin console on port {port}: {e}"))
}

/// Rows of an admin command as (column, value) pairs, values as text.
pub async fn rows(console: &Client, command: &str) -> Vec<Vec<(String, String)>> {
    let answer = tokio::time::timeout(Duration::from_secs(10), console.simple_query(command))
        .await
        .unwrap_or_else(|_| panic!("{command}: no answer from the admin console in 10 s"))
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    answer
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("NULL").to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn get<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}

fn number(row: &[(String, String)], column: &str) -> u64 {
    get(row, column)
        .parse()
        .unwrap_or_else(|e| panic!("{column} is not a number in {row:?}: {e}"))
}

/// What pgsplit holds now: a line per pool with connections checked out
/// or parked, and a line per connected client. Empty when it holds
/// nothing.
pub async fn held(console: &Client) -> Vec<String> {
    held_for(console, None).await
}

/// [`held`], only for `user`'s pools and clients when given.
pub async fn held_for(console: &Client, user: Option<&str>) -> Vec<String> {
    let mine = |row: &[(String, String)]| user.is_none_or(|u| get(row, "user") == u);
    let mut held = Vec::new();
    for pool in rows(console, "SHOW POOLS").await {
        if !mine(&pool) {
            continue;
        }
        let (out, parked) = (number(&pool, "checked_out"), number(&pool, "parked"));
        if out > 0 || parked > 0 {
            held.push(format!(
                "pool {} {} {}@{}: checked_out={out} parked={parked}",
                get(&pool, "role"),
                get(&pool, "server"),
                get(&pool, "user"),
                get(&pool, "database"),
            ));
        }
    }
    for client in rows(console, "SHOW CLIENTS").await {
        if !mine(&client) {
            continue;
        }
        held.push(format!(
            "client {} {}@{} from {}: state={} pinned={} statements={} connected {} s",
            get(&client, "id"),
            get(&client, "user"),
            get(&client, "database"),
            get(&client, "addr"),
            get(&client, "state"),
            get(&client, "pinned"),
            get(&client, "statements"),
            get(&client, "connected_seconds"),
        ));
    }
    held
}

/// Waits up to `within` until pgsplit holds nothing (no client connected,
/// no server connection checked out or parked); else what it still holds.
pub async fn settled(console: &Client, within: Duration) -> Result<(), Vec<String>> {
    settled_for(console, None, within).await
}

/// [`settled`], looking only at `user`'s pools and clients when given.
pub async fn settled_for(
    console: &Client,
    user: Option<&str>,
    within: Duration,
) -> Result<(), Vec<String>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = held_for(console, user).await;
        if now.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
