//! Wire-level behaviour: malformed or hostile input gets a protocol
//! violation (08P01) and leaves pgsplit serving others; SSL is refused
//! cleanly; empty queries and COPY in both directions pass through.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use pgsplit::config::Config;
use support::cluster::Cluster;
use support::proxy::{connect, one, proxy_config, psql_args, Proxy};

const MAX_MESSAGE: usize = 4096;

/// A backend message: type byte and body.
struct Message {
    tag: u8,
    body: Vec<u8>,
}

impl Message {
    /// The fields of an ErrorResponse or NoticeResponse, by field type byte.
    fn fields(&self) -> HashMap<char, String> {
        self.body
            .split(|&b| b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }
}

fn raw(p: &Proxy) -> TcpStream {
    let s = TcpStream::connect(p.addr()).expect("connect to pgsplit");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A startup-style packet: length, then `code`, then `body`.
fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut p = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn startup(version: u32) -> Vec<u8> {
    packet(version, b"user\0postgres\0database\0postgres\0\0")
}

/// The next message, or None when the connection is closed (or reset).
fn read_message(s: &mut TcpStream) -> Option<Message> {
    let mut header = [0u8; 5];
    s.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    s.read_exact(&mut body).ok()?;
    Some(Message {
        tag: header[0],
        body,
    })
}

/// Reads until an ErrorResponse and returns its fields; panics on close.
fn expect_error(s: &mut TcpStream, what: &str) -> HashMap<char, String> {
    loop {
        match read_message(s) {
            Some(m) if m.tag == b'E' => return m.fields(),
            Some(_) => continue,
            None => panic!("{what}: connection closed without an ErrorResponse"),
        }
    }
}

/// True once the peer has closed the connection (reads end, not time out).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Logs in over trust and reads up to the first ReadyForQuery.
fn logged_in(p: &Proxy) -> TcpStream {
    let mut s = raw(p);
    s.write_all(&startup(196608)).unwrap();
    loop {
        let m = read_message(&mut s).expect("login: connection closed");
        assert_ne!(m.tag, b'E', "login failed: {:?}", m.fields());
        if m.tag == b'Z' {
            return s;
        }
    }
}

async fn still_serves(p: &Proxy, after: &str) {
    let client = connect(p.port()).await;
    assert_eq!(
        one(&client, "select 40 + 2").await.as_deref(),
        Some("42"),
        "after {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_startup_packets_are_refused() {
    let c = Cluster::start();
    let p = Proxy::start(Config {
        max_message_size: MAX_MESSAGE,
        ..proxy_config(&c)
    });

    // Protocol 2.0.
    let mut s = raw(&p);
    s.write_all(&startup(2 << 16)).unwrap();
    let e = expect_error(&mut s, "protocol 2.0");
    assert_eq!(e[&'C'], "08P01", "{e:?}");
    assert!(e[&'M'].contains("unsupported frontend protocol"), "{e:?}");
    assert!(closed(&mut s));
    still_serves(&p, "protocol 2.0").await;

    // A first packet claiming 4 GB: an error or a close, never a wait.
    let mut s = raw(&p);
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]).unwrap();
    match read_message(&mut s) {
        None => {}
        Some(m) => {
            assert_eq!(m.tag, b'E');
            assert_eq!(m.fields()[&'C'], "08P01", "{:?}", m.fields());
        }
    }
    still_serves(&p, "a huge startup length").await;

    // Terminate before any startup (a driver giving up at once): closed
    // without a word, as PostgreSQL does.
    let mut s = raw(&p);
    s.write_all(&frame(b'X', b"")).unwrap();
    assert!(read_message(&mut s).is_none(), "an answer to Terminate");
    still_serves(&p, "an early Terminate").await;

    // SSLRequest: 'N', then a plain startup on the same connection works.
    let mut s = raw(&p);
    s.write_all(&packet(80877103, b"")).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    s.write_all(&startup(196608)).unwrap();
    loop {
        let m = read_message(&mut s).expect("startup after SSLRequest");
        assert_ne!(m.tag, b'E', "{:?}", m.fields());
        if m.tag == b'Z' {
            break;
        }
    }

    // And so for psql: prefer falls back to plain text, require fails.
    let ok = psql_args(
        p.port(),
        &["-U", "postgres", "-d", "postgres", "-c", "select 1"],
        &[("PGSSLMODE", "prefer")],
    );
    assert_eq!(ok.as_deref(), Ok("1"));
    let err = psql_args(
        p.port(),
        &["-U", "postgres", "-d", "postgres", "-c", "select 1"],
        &[("PGSSLMODE", "require")],
    )
    .unwrap_err();
    assert!(err.contains("does not support SSL"), "{err}");
}

/// Frame errors after login get an ErrorResponse 08P01 before the
/// connection closes, and pgsplit goes on serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frame_lengths_are_refused() {
    let c = Cluster::start();
    let p = Proxy::start(Config {
        max_message_size: MAX_MESSAGE,
        ..proxy_config(&c)
    });

    // A Query claiming 1 MB, over max_message_size.
    let mut s = logged_in(&p);
    s.write_all(&[b'Q', 0, 0x10, 0, 0]).unwrap();
    let e = expect_error(&mut s, "oversized frame");
    assert_eq!(e[&'C'], "08P01", "{e:?}");
    assert!(
        e[&'M'].contains(&MAX_MESSAGE.to_string()),
        "the limit is not named: {e:?}"
    );
    assert!(closed(&mut s));
    still_serves(&p, "an oversized frame").await;

    // A length under 4 (the length counts itself).
    let mut s = logged_in(&p);
    s.write_all(&[b'Q', 0, 0, 0, 2]).unwrap();
    let e = expect_error(&mut s, "length 2");
    assert_eq!(e[&'C'], "08P01", "{e:?}");
    assert!(closed(&mut s));
    still_serves(&p, "a length under 4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type_is_a_protocol_violation() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let mut s = logged_in(&p);
    s.write_all(&[b'z', 0, 0, 0, 4]).unwrap();
    let e = expect_error(&mut s, "message type 'z'");
    assert_eq!(e[&'C'], "08P01", "{e:?}");
    assert!(closed(&mut s));
    still_serves(&p, "an unknown message type").await;
}

/// A frontend message: type byte, length, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Reads messages up to ReadyForQuery; returns their type bytes.
fn until_ready(s: &mut TcpStream) -> Vec<u8> {
    let mut tags = Vec::new();
    loop {
        let m = read_message(s).expect("connection closed before ReadyForQuery");
        if m.tag == b'E' {
            panic!("error: {:?}", m.fields());
        }
        tags.push(m.tag);
        if m.tag == b'Z' {
            return tags;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_and_copy_round_trip() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table cp(id int, v text)");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;

    let msgs = client.simple_query("").await.expect("empty query");
    assert!(msgs
        .iter()
        .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    assert_eq!(one(&client, "select 1").await.as_deref(), Some("1"));

    // COPY FROM STDIN over the simple protocol (as psql does it).
    let data: String = (1..=500).map(|i| format!("{i}\tline {i}\n")).collect();
    let mut s = logged_in(&p);
    s.write_all(&frame(b'Q', b"copy cp from stdin\0")).unwrap();
    let m = read_message(&mut s).expect("CopyInResponse");
    assert_eq!(
        m.tag, b'G',
        "expected CopyInResponse, got {:?}",
        m.tag as char
    );
    let mut out = Vec::new();
    for chunk in data.as_bytes().chunks(1000) {
        out.extend(frame(b'd', chunk));
    }
    out.extend(frame(b'c', b""));
    s.write_all(&out).unwrap();
    assert_eq!(until_ready(&mut s), b"CZ");
    s.write_all(&frame(b'Q', b"select count(*) from cp\0"))
        .unwrap();
    assert_eq!(until_ready(&mut s), b"TDCZ");
    assert_eq!(
        c.psql(c.primary_port(), "select count(*), sum(id) from cp"),
        "500|125250"
    );

    // COPY TO STDOUT (extended protocol, tokio-postgres) only reads: it runs
    // on the replica, once that has the rows another session wrote.
    c.wait_replica_caught_up();
    let port = client
        .copy_out("copy (select inet_server_port()) to stdout")
        .await
        .expect("copy out");
    let port: Vec<Bytes> = port.try_collect().await.expect("copy out data");
    assert_eq!(
        String::from_utf8(port.concat()).unwrap().trim(),
        c.replica_port().to_string()
    );
    for sql in [
        "copy cp to stdout",
        "copy (select * from cp order by id) to stdout",
    ] {
        let stream = client.copy_out(sql).await.expect("copy out");
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy out data");
        let mut lines: Vec<String> = String::from_utf8(chunks.concat())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort_by_key(|l| l.split('\t').next().unwrap().parse::<i32>().unwrap());
        assert_eq!(lines.join("\n") + "\n", data, "{sql}");
        // The connection is still good for ordinary work, in both protocols.
        assert_eq!(
            one(&client, "select count(*) from cp where id > 250")
                .await
                .as_deref(),
            Some("250")
        );
        let n: i64 = client
            .query_one("select count(*) from cp where id > $1", &[&400i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 100);
    }
}

/// tokio-postgres sends COPY FROM STDIN as Parse/Bind/Execute/Sync, then
/// CopyData.., CopyDone, Sync. The server ignores the Sync that arrives
/// during copy-in and answers one ReadyForQuery: pgsplit must count one,
/// or the next query sees an unexpected message and the server connection
/// stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_in_leaves_the_session_usable() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table cp(id int, v text)");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;

    let data: String = (1..=500).map(|i| format!("{i}\tline {i}\n")).collect();
    let sink = client.copy_in("copy cp from stdin").await.expect("copy in");
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(1000) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.expect("finish copy in"), 500);
    assert_eq!(
        c.psql(c.primary_port(), "select count(*), sum(id) from cp"),
        "500|125250"
    );

    let n: i64 = client
        .query_one("select count(*) from cp where id > $1", &[&400i32])
        .await
        .expect("the query after COPY FROM STDIN")
        .get(0);
    assert_eq!(n, 100);
    assert_eq!(one(&client, "select 1").await.as_deref(), Some("1"));
}
