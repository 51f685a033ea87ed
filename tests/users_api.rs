//! The demo application, users-api, driven over HTTP through pgsplit in
//! front of a real primary and replica: every endpoint and error case,
//! which server answered, and 20 concurrent clients.
//!
//! users-api runs as a child process (the binary Cargo built for this
//! test), with `DATABASE_URL` at an in-process pgsplit.

mod support;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use support::cluster::{free_port, Cluster};
use support::proxy::{proxy_config, Proxy};

/// users-api as a child process; killed when dropped (also when a test fails).
struct UsersApi {
    child: Child,
    addr: SocketAddr,
    /// Its stdout and stderr, shown when it fails to start.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl UsersApi {
    /// Starts users-api with `DATABASE_URL` at pgsplit on `proxy_port` and
    /// waits until it listens (it binds only once its schema is readable).
    fn start(proxy_port: u16, status_url: &str) -> UsersApi {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("users-api.log");
        let out = std::fs::File::create(&log).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_users-api"))
            .env(
                "DATABASE_URL",
                format!("postgresql://postgres@127.0.0.1:{proxy_port}/postgres"),
            )
            .env("BIND", addr.to_string())
            .env("PGSPLIT_STATUS_URL", status_url)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn users-api");
        let mut app = UsersApi {
            child,
            addr,
            log,
            _dir: dir,
        };
        app.wait_listening();
        app
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("users-api exited with {status}:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                panic!("users-api not listening after 60 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for UsersApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer: status, the serving server's port, and the JSON body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    served_by: Option<u16>,
    /// The consistency token of a write's answer (X-Pgsplit-Lsn).
    token: Option<String>,
    body: Value,
}

/// One request on its own connection (hyper's connection-level client:
/// no client crate needed, hyper is already a dependency).
async fn call_raw(addr: SocketAddr, method: Method, path: &str, body: &str) -> Answer {
    call_with_token(addr, method, path, body, None).await
}

/// A request that sends a consistency token back (X-Pgsplit-Lsn).
async fn call_with_token(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("x-pgsplit-lsn", token);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status();
    let served_by = response
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let token = response
        .headers()
        .get("x-pgsplit-lsn")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {path}: body is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Answer {
        status,
        served_by,
        token,
        body,
    }
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: Option<Value>) -> Answer {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    call_raw(addr, method, path, &text).await
}

/// Everything a test needs, dropped in reverse: app, proxy, cluster.
struct Stack {
    app: UsersApi,
    _proxy: Proxy,
    cluster: Cluster,
}

impl Stack {
    fn start() -> Stack {
        let cluster = Cluster::start();
        let metrics_port = free_port();
        let mut config = proxy_config(&cluster);
        config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
        let proxy = Proxy::start(config);
        let status_url = format!("http://127.0.0.1:{metrics_port}/status");
        let app = UsersApi::start(proxy.port(), &status_url);
        Stack {
            app,
            _proxy: proxy,
            cluster,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.app.addr
    }

    /// A count straight from the primary (what really is in the table).
    fn primary_scalar(&self, sql: &str) -> String {
        self.cluster.psql(self.cluster.primary_port(), sql)
    }
}

/// The `type` of each entry of a 422 body's `detail` list.
fn detail_types(answer: &Answer) -> Vec<String> {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{answer:?}"
    );
    answer.body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("422 without a detail list: {answer:?}"))
        .iter()
        .map(|e| {
            assert!(e["loc"].is_array() && e["msg"].is_string(), "{e}");
            e["type"].as_str().unwrap().to_string()
        })
        .collect()
}

fn detail_text(answer: &Answer) -> &str {
    answer.body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail message: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_endpoints_answer_like_the_seed() {
    let s = Stack::start();
    let addr = s.addr();
    let primary = s.cluster.primary_port();

    // Create: 201, the user, written on the primary.
    let alice = call(
        addr,
        Method::POST,
        "/users",
        Some(json!({"name": "Alice", "email": "alice@example.com", "balance": 100})),
    )
    .await;
    assert_eq!(alice.status, StatusCode::CREATED, "{alice:?}");
    assert_eq!(alice.served_by, Some(primary), "writes run on the primary");
    assert_eq!(alice.body["name"], "Alice");
    assert_eq!(alice.body["balance"], 100.0);
    assert!(alice.body["created_at"].as_str().unwrap().ends_with('Z'));
    let alice_id = alice.body["id"].as_i64().unwrap();

    // Right after its POST the user is readable.
    let got = call(addr, Method::GET, &format!("/users/{alice_id}"), None).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.body, alice.body);
    assert!(got.served_by.is_some());

    // Duplicate email: 400, nothing added.
    let dup = call(
        addr,
        Method::POST,
        "/users",
        Some(json!({"name": "Other", "email": "alice@example.com"})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST, "{dup:?}");
    assert_eq!(detail_text(&dup), "Email already registered");

    // Validation: 422 with FastAPI's detail list, one entry per problem.
    let empty = call(addr, Method::POST, "/users", Some(json!({}))).await;
    assert_eq!(detail_types(&empty), ["missing", "missing"]);
    assert_eq!(empty.body["detail"][0]["loc"], json!(["body", "name"]));
    let bad = call(
        addr,
        Method::POST,
        "/users",
        Some(json!({"name": "B", "email": "not-an-email", "balance": -1})),
    )
    .await;
    assert_eq!(detail_types(&bad), ["value_error", "greater_than_equal"]);
    let not_json = call_raw(addr, Method::POST, "/users", "{\"name\": ").await;
    assert_eq!(detail_types(&not_json), ["json_invalid"]);
    assert_eq!(s.primary_scalar("select count(*) from users"), "1");

    // Get: 404 and 422.
    let missing = call(addr, Method::GET, "/users/999999", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(detail_text(&missing), "User not found");
    let not_id = call(addr, Method::GET, "/users/abc", None).await;
    assert_eq!(detail_types(&not_id), ["int_parsing"]);

    // The async paths are the same handlers.
    let bob = call(
        addr,
        Method::POST,
        "/async/users",
        Some(json!({"name": "Bob", "email": "bob@example.com", "balance": 5.25})),
    )
    .await;
    assert_eq!(bob.status, StatusCode::CREATED, "{bob:?}");
    let bob_id = bob.body["id"].as_i64().unwrap();
    let bob_again = call(addr, Method::GET, &format!("/async/users/{bob_id}"), None).await;
    assert_eq!(bob_again.body["balance"], 5.25);

    // List, with paging and its validation.
    let list = call(addr, Method::GET, "/users?skip=0&limit=10", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.served_by.is_some());
    let page = call(addr, Method::GET, "/users?skip=1&limit=1", None).await;
    assert!(page.body.as_array().unwrap().len() <= 1);
    let empty_page = call(addr, Method::GET, "/users?skip=1000", None).await;
    assert_eq!(empty_page.body, json!([]));
    assert!(
        empty_page.served_by.is_some(),
        "an empty page names its server too"
    );
    let bad_page = call(addr, Method::GET, "/users?skip=-1&limit=x", None).await;
    assert_eq!(
        detail_types(&bad_page),
        ["int_parsing", "greater_than_equal"]
    );

    // Update: changes the given fields on the primary; 404; 422.
    let renamed = call(
        addr,
        Method::PUT,
        &format!("/users/{alice_id}"),
        Some(json!({"name": "Alice Smith"})),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    assert_eq!(renamed.served_by, Some(primary));
    assert_eq!(renamed.body["name"], "Alice Smith");
    assert_eq!(renamed.body["email"], "alice@example.com");
    let nobody = call(
        addr,
        Method::PUT,
        "/users/999999",
        Some(json!({"name": "X"})),
    )
    .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    let negative = call(
        addr,
        Method::PUT,
        &format!("/users/{alice_id}"),
        Some(json!({"balance": -5})),
    )
    .await;
    assert_eq!(detail_types(&negative), ["greater_than_equal"]);

    // An email clash on update: a clear 400, and nothing about Bob changes.
    let clash = call(
        addr,
        Method::PUT,
        &format!("/users/{bob_id}"),
        Some(json!({"name": "Robert", "email": "alice@example.com"})),
    )
    .await;
    assert_eq!(clash.status, StatusCode::BAD_REQUEST, "{clash:?}");
    assert_eq!(detail_text(&clash), "Email already registered");
    assert_eq!(
        s.primary_scalar(&format!(
            "select name, email from users where id = {bob_id}"
        )),
        "Bob|bob@example.com"
    );

    batch_is_all_or_nothing(&s).await;
    transfers_move_money_or_nothing(&s, alice_id, bob_id).await;

    // Delete: 200, then 404 for it and for a GET.
    let deleted = call(addr, Method::DELETE, &format!("/users/{bob_id}"), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(deleted.served_by, Some(primary));
    let again = call(addr, Method::DELETE, &format!("/users/{bob_id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let gone = call(addr, Method::GET, &format!("/users/{bob_id}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    reads_reach_the_replica(&s, alice_id).await;
    a_token_reads_a_write_wherever_it_is_served(&s).await;
    pool_status_reports_both_pools(&s).await;
}

async fn batch_is_all_or_nothing(s: &Stack) {
    let addr = s.addr();
    let before = s.primary_scalar("select count(*) from users");
    let batch = call(
        addr,
        Method::POST,
        "/users/batch",
        Some(json!([
            {"name": "Carol", "email": "carol@example.com", "balance": 10},
            {"name": "Dave", "email": "dave@example.com"}
        ])),
    )
    .await;
    assert_eq!(batch.status, StatusCode::CREATED, "{batch:?}");
    assert_eq!(batch.served_by, Some(s.cluster.primary_port()));
    let names: Vec<&str> = batch
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Carol", "Dave"], "returned in input order");
    let after_ok: i64 = s
        .primary_scalar("select count(*) from users")
        .parse()
        .unwrap();
    assert_eq!(after_ok, before.parse::<i64>().unwrap() + 2);

    // One invalid row: 422 naming its index, nothing inserted.
    let invalid = call(
        addr,
        Method::POST,
        "/users/batch",
        Some(json!([
            {"name": "Erin", "email": "erin@example.com"},
            {"name": "Frank", "email": "frank"}
        ])),
    )
    .await;
    assert_eq!(detail_types(&invalid), ["value_error"]);
    assert_eq!(
        invalid.body["detail"][0]["loc"],
        json!(["body", 1, "email"])
    );
    // One row clashing with an existing user, or two rows with one email: 400.
    for rows in [
        json!([{"name": "Erin", "email": "erin@example.com"}, {"name": "C2", "email": "carol@example.com"}]),
        json!([{"name": "Erin", "email": "erin@example.com"}, {"name": "E2", "email": "erin@example.com"}]),
    ] {
        let refused = call(addr, Method::POST, "/users/batch", Some(rows)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    }
    let not_list = call(
        addr,
        Method::POST,
        "/users/batch",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(detail_types(&not_list), ["list_type"]);
    assert_eq!(
        s.primary_scalar("select count(*) from users"),
        after_ok.to_string(),
        "a refused batch inserts nothing"
    );
}

async fn transfers_move_money_or_nothing(s: &Stack, alice: i64, bob: i64) {
    let addr = s.addr();
    let balances = || {
        s.primary_scalar(&format!(
            "select string_agg(balance_cents::text, ',' order by id) from users where id in ({alice}, {bob})"
        ))
    };
    assert_eq!(balances(), "10000,525");

    let done = call(
        addr,
        Method::POST,
        &format!("/transfer?from_user_id={alice}&to_user_id={bob}&amount=30.5"),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.served_by, Some(s.cluster.primary_port()));
    assert_eq!(done.body["from_user"]["balance"], 69.5);
    assert_eq!(done.body["to_user"]["balance"], 35.75);
    assert_eq!(done.body["amount"], 30.5);
    assert_eq!(balances(), "6950,3575");

    let t = |query: String| async move {
        call(addr, Method::POST, &format!("/transfer?{query}"), None).await
    };
    // Bad amounts: 422.
    for amount in ["0", "-5", "abc", "1.001", "NaN"] {
        let bad = t(format!(
            "from_user_id={alice}&to_user_id={bob}&amount={amount}"
        ))
        .await;
        assert_eq!(
            bad.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount={amount}: {bad:?}"
        );
    }
    let missing = t(format!("from_user_id={alice}")).await;
    assert_eq!(detail_types(&missing), ["missing", "missing"]);
    // Unknown users: 404 (either side); the same user twice: 400.
    let unknown_to = t(format!("from_user_id={alice}&to_user_id=999999&amount=1")).await;
    assert_eq!(unknown_to.status, StatusCode::NOT_FOUND, "{unknown_to:?}");
    assert_eq!(detail_text(&unknown_to), "User 999999 not found");
    let unknown_from = t(format!("from_user_id=999999&to_user_id={bob}&amount=1")).await;
    assert_eq!(unknown_from.status, StatusCode::NOT_FOUND);
    let same = t(format!("from_user_id={alice}&to_user_id={alice}&amount=1")).await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST);
    // Insufficient funds: 409.
    let broke = t(format!("from_user_id={bob}&to_user_id={alice}&amount=1000")).await;
    assert_eq!(broke.status, StatusCode::CONFLICT, "{broke:?}");
    assert!(detail_text(&broke).starts_with("Insufficient funds"));

    assert_eq!(balances(), "6950,3575", "failed transfers change nothing");
}

/// After the replica has the data, reads land there (pgsplit's routing),
/// while every write above named the primary.
async fn reads_reach_the_replica(s: &Stack, id: i64) {
    s.cluster.wait_replica_caught_up();
    let replica = s.cluster.replica_port();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = call(s.addr(), Method::GET, &format!("/users/{id}"), None).await;
        assert_eq!(got.status, StatusCode::OK);
        if got.served_by == Some(replica) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no read answered by the replica (:{replica}) within 10 s; last: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = call(s.addr(), Method::GET, "/users", None).await;
    assert!(list.served_by.is_some());
}

/// The consistency-token recipe: a POST answer carries the write's WAL
/// position; a GET that sends it back is served only by a server that has
/// the write (the primary while the replica's replay is paused, the
/// replica again once it caught up).
async fn a_token_reads_a_write_wherever_it_is_served(s: &Stack) {
    s.cluster.wait_replica_caught_up();
    s.cluster.pause_replay();
    let body = json!({"name": "Tok", "email": "tok@example.com", "balance": 1.0});
    let created = call(s.addr(), Method::POST, "/users", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let token = created
        .token
        .clone()
        .expect("a POST answer carries X-Pgsplit-Lsn");
    let path = format!("/users/{}", created.body["id"]);
    let got = call_with_token(s.addr(), Method::GET, &path, "", Some(&token)).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(
        got.served_by,
        Some(s.cluster.primary_port()),
        "the replica does not have the write yet"
    );
    s.cluster.resume_replay();
    s.cluster.wait_replica_caught_up();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = call_with_token(s.addr(), Method::GET, &path, "", Some(&token)).await;
        assert_eq!(got.status, StatusCode::OK);
        if got.served_by == Some(s.cluster.replica_port()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a replica that has the write never served it: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pool_status_reports_both_pools(s: &Stack) {
    let status = call(s.addr(), Method::GET, "/pool/status", None).await;
    assert_eq!(status.status, StatusCode::OK);
    let pool = &status.body["app_pool"];
    for key in ["size", "checked_in", "checked_out", "overflow"] {
        assert!(pool[key].is_u64(), "app_pool.{key}: {}", status.body);
    }
    assert_eq!(pool["size"], 5);
    assert_eq!(pool["checked_out"], 0, "{}", status.body);
    // pgsplit's own pools, from its /status: the primary's and the replica's.
    let pools = status.body["pgsplit"]["pools"]
        .as_array()
        .unwrap_or_else(|| panic!("pgsplit's pools missing: {}", status.body));
    let mut roles: Vec<&str> = pools.iter().filter_map(|p| p["role"].as_str()).collect();
    roles.sort();
    assert_eq!(roles, ["primary", "replica"], "{}", status.body);
    assert!(
        pools.iter().all(|p| p["checked_out"] == 0),
        "{}",
        status.body
    );
}

/// 20 clients at once: creates, reads right after each create, list reads
/// and transfers. Ids are unique, every created user is readable at once,
/// transfers keep the sum of balances, and no connection stays checked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_clients_keep_the_books() {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 8;
    const START_BALANCE: i64 = 100;
    let s = Stack::start();
    let addr = s.addr();
    let replica = s.cluster.replica_port();

    // Accounts for the transfers, created up front.
    let mut accounts = Vec::new();
    for i in 0..10 {
        let a = call(
            addr,
            Method::POST,
            "/users",
            Some(json!({"name": format!("acct{i}"), "email": format!("acct{i}@bank.test"), "balance": START_BALANCE})),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        accounts.push(a.body["id"].as_i64().unwrap());
    }
    let accounts = Arc::new(accounts);

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let accounts = Arc::clone(&accounts);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut read_ports = Vec::new();
            for round in 0..ROUNDS {
                let email = format!("c{client}-r{round}@load.test");
                let created = call(
                    addr,
                    Method::POST,
                    "/users",
                    Some(json!({"name": format!("client {client}"), "email": email, "balance": START_BALANCE})),
                )
                .await;
                assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
                let id = created.body["id"].as_i64().unwrap();
                ids.push(id);

                let read = call(addr, Method::GET, &format!("/users/{id}"), None).await;
                assert_eq!(read.status, StatusCode::OK, "user {id} not readable right after its POST: {read:?}");
                assert_eq!(read.body["email"], email.as_str());
                read_ports.extend(read.served_by);

                let n = accounts.len();
                let from = accounts[(client * 7 + round) % n];
                let to = accounts[(client * 3 + round + 1) % n];
                if from != to {
                    let amount = 1 + (client + round) % 40;
                    let path = format!("/transfer?from_user_id={from}&to_user_id={to}&amount={amount}");
                    let t = call(addr, Method::POST, &path, None).await;
                    assert!(
                        t.status == StatusCode::OK || t.status == StatusCode::CONFLICT,
                        "transfer {from}->{to} {amount}: {t:?}"
                    );
                }
                if round % 3 == 0 {
                    let list = call(addr, Method::GET, "/users?limit=20", None).await;
                    assert_eq!(list.status, StatusCode::OK, "{list:?}");
                    read_ports.extend(list.served_by);
                }
            }
            (ids, read_ports)
        }));
    }
    let mut all_ids = Vec::new();
    let mut read_ports = Vec::new();
    for task in tasks {
        let (ids, ports) = task.await.expect("a client failed");
        all_ids.extend(ids);
        read_ports.extend(ports);
    }

    let unique: HashSet<i64> = all_ids.iter().copied().collect();
    assert_eq!(unique.len(), CLIENTS * ROUNDS, "duplicate ids");
    let users = (CLIENTS * ROUNDS + accounts.len()) as i64;
    assert_eq!(
        s.primary_scalar("select count(*) from users"),
        users.to_string()
    );
    assert_eq!(
        s.primary_scalar("select sum(balance_cents) from users"),
        (users * START_BALANCE * 100).to_string(),
        "transfers changed the sum of balances"
    );
    assert_eq!(
        s.primary_scalar("select count(*) from users where balance_cents < 0"),
        "0"
    );
    let on_replica = read_ports.iter().filter(|&&p| p == replica).count();
    eprintln!(
        "{} reads: {on_replica} answered by the replica, the rest by the primary",
        read_ports.len()
    );

    let status = call(addr, Method::GET, "/pool/status", None).await;
    assert_eq!(status.body["app_pool"]["checked_out"], 0, "{}", status.body);
}

/// With nothing listening at DATABASE_URL, users-api says why it cannot
/// connect ("Connection refused", the error its pool got opening a
/// connection) rather than bb8's bare "Timed out in bb8".
#[test]
fn a_refused_database_connection_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("users-api.log");
    let out = std::fs::File::create(&log).unwrap();
    // A port nothing listens on: free_port() bound it and let it go.
    let closed = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_users-api"))
        .env(
            "DATABASE_URL",
            format!("postgresql://postgres@127.0.0.1:{closed}/postgres"),
        )
        .env("BIND", format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn users-api");
    // The first checkout gives up after its 5 s timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("database not ready") {
        std::thread::sleep(Duration::from_millis(200));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = text
        .lines()
        .find(|l| l.contains("database not ready"))
        .unwrap_or_else(|| panic!("no retry logged:\n{text}"));
    assert!(line.contains("Connection refused"), "{line}");
    assert!(!text.contains("Timed out in bb8"), "{text}");
}
