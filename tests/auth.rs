//! Client authentication: md5 and SCRAM against pgsplit's user list (which
//! it also uses to log in to the servers), trust mode relaying the
//! servers' refusals, and the `databases` allow-list; what a client that
//! is not logged in can send (malformed SASL messages) and learn (nothing
//! about which roles exist). auth_query and verifiers: tests/auth_query.rs.

mod support;

use pgsplit::config::{AuthMethod, Config, User};
use support::cluster::{Cluster, PASSWORD};
use support::panics;
use support::proxy::{code_of, message_of, one, proxy_config, psql_args, try_connect, Proxy};
use support::wire::{self, frame};

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
/// others get PgBouncer's FATAL 28000 "not allowed" after logging in
/// (tests/admin_access.rs has every auth mode).
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
        "28000",
        "not allowed",
    )
    .await;
    refused(
        &conninfo(&p, "md5user", Some("wrong"), "pgsplit"),
        "28P01",
        "password authentication failed for user \"md5user\"",
    )
    .await;
}

/// Before authentication a client's bytes reach pgsplit's SASL decoder:
/// the messages that panicked the decoder pgsplit used before (a bare `p`,
/// a length past the message's end) and other malformed ones get
/// PostgreSQL's FATAL, with its words, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sasl_messages_are_refused_as_protocol_violations() {
    panics::record();
    let c = Cluster::start();
    let p = Proxy::start(Config {
        auth: AuthMethod::ScramSha256,
        users: vec![User {
            name: "scramuser".into(),
            password: PASSWORD.into(),
        }],
        ..proxy_config(&c)
    });
    let initial = |mechanism: &str, len: i32, data: &[u8]| {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(data);
        frame::message(b'p', &body)
    };
    for (message, code, expected) in [
        (
            b"p\0\0\0\x04".to_vec(),
            "08P01",
            "invalid string in message",
        ),
        (
            initial("SCRAM-SHA-256", 100, b"n,,"),
            "08P01",
            "insufficient data left in message",
        ),
        (
            initial("SCRAM-SHA-256", 1, b"n,,"),
            "08P01",
            "invalid message format",
        ),
        (
            initial("SCRAM-SHA-1", 3, b"n,,"),
            "08P01",
            "client selected an invalid SASL authentication mechanism",
        ),
        (
            initial("SCRAM-SHA-256", 1, b"x"),
            "08P01",
            "malformed SCRAM message",
        ),
        (
            initial("SCRAM-SHA-256", 12, b"n,a=x,n=,r=a"),
            "0A000",
            "client uses authorization identity, but it is not supported",
        ),
        (
            frame::query("select 1"),
            "08P01",
            "expected SASL response, got message type 81",
        ),
    ] {
        let mut client = challenged(p.addr(), "scramuser").await;
        assert_eq!(client.request, 10, "AuthenticationSASL");
        client.send(&message).await;
        let error = client.next().await;
        assert_eq!(error.tag, b'E', "{message:?}: {error:?}");
        let fields = error.fields();
        assert_eq!(fields[&'S'], "FATAL");
        assert_eq!(
            (fields[&'C'].as_str(), fields[&'M'].as_str()),
            (code, expected),
            "{message:?}"
        );
    }
    assert!(panics::recorded().is_empty(), "{:?}", panics::recorded());
}

/// An unknown role is challenged as a real one, with a salt and iteration
/// count that look real and stay the same across attempts, and refused
/// only at the end with the wrong password's words: no answer tells which
/// roles exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_roles_get_a_mock_challenge_then_28p01() {
    let c = Cluster::start();
    let users = vec![User {
        name: "scramuser".into(),
        password: PASSWORD.into(),
    }];
    let scram = Proxy::start(Config {
        auth: AuthMethod::ScramSha256,
        users: users.clone(),
        ..proxy_config(&c)
    });
    let (ghost, ghost_again, real) = (
        scram_challenge(&scram, "ghost").await,
        scram_challenge(&scram, "ghost").await,
        scram_challenge(&scram, "scramuser").await,
    );
    assert_eq!(ghost.0, ghost_again.0, "the same salt every time");
    assert_ne!(ghost.0, real.0);
    assert_eq!(
        (ghost.0.len(), ghost.1),
        (real.0.len(), real.1),
        "salt length and iterations"
    );
    assert_eq!(ghost.2, "password authentication failed for user \"ghost\"");
    assert_eq!(
        real.2,
        "password authentication failed for user \"scramuser\""
    );

    let md5 = Proxy::start(Config {
        auth: AuthMethod::Md5,
        users,
        ..proxy_config(&c)
    });
    for user in ["ghost", "scramuser"] {
        let mut client = challenged(md5.addr(), user).await;
        assert_eq!(client.request, 5, "{user}: AuthenticationMD5Password");
        client
            .send(&frame::message(
                b'p',
                b"md5000000000000000000000000000000000\0",
            ))
            .await;
        let error = client.next().await;
        assert_eq!(error.code().as_deref(), Some("28P01"), "{user}");
    }
}

/// A raw connection that sent its startup and read the first
/// authentication request.
struct Challenged {
    reader: wire::Reader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    /// The request's code (5 md5, 10 SASL).
    request: i32,
    /// The request's data after its code.
    data: Vec<u8>,
}

impl Challenged {
    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("send");
    }

    async fn next(&mut self) -> wire::Message {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), self.reader.next());
        next.await
            .expect("an answer within 10 s")
            .expect("read")
            .expect("a message, not a close")
    }
}

async fn challenged(addr: std::net::SocketAddr, user: &str) -> Challenged {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (read, writer) = stream.into_split();
    let mut client = Challenged {
        reader: wire::Reader::new(read),
        writer,
        request: 0,
        data: Vec::new(),
    };
    client
        .send(&frame::startup(&[("user", user), ("database", "postgres")]))
        .await;
    let request = client.next().await;
    assert_eq!(request.tag, b'R', "{user}: {request:?}");
    client.request = i32::from_be_bytes(request.body[..4].try_into().unwrap());
    client.data = request.body[4..].to_vec();
    client
}

/// A SCRAM exchange with a made-up proof: the salt and iteration count
/// of the challenge, and the message it was refused with.
async fn scram_challenge(p: &Proxy, user: &str) -> (Vec<u8>, String, String) {
    use base64::Engine;
    let mut client = challenged(p.addr(), user).await;
    assert_eq!(client.request, 10, "{user}: AuthenticationSASL");
    let first = b"n,,n=,r=clientnonce";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    client.send(&frame::message(b'p', &body)).await;
    let challenge = client.next().await;
    assert_eq!(
        &challenge.body[..4],
        &11i32.to_be_bytes(),
        "{user}: SASLContinue"
    );
    let text = String::from_utf8(challenge.body[4..].to_vec()).unwrap();
    let attr = |name: &str| {
        text.split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("{user}: no {name} in {text}"))
            .to_string()
    };
    let salt = base64::engine::general_purpose::STANDARD
        .decode(attr("s="))
        .unwrap();
    let last = format!("c=biws,r={},p={}", attr("r="), "A".repeat(43) + "=");
    client.send(&frame::message(b'p', last.as_bytes())).await;
    let error = client.next().await;
    assert_eq!(error.code().as_deref(), Some("28P01"), "{user}");
    (salt, attr("i="), error.fields()[&'M'].clone())
}
