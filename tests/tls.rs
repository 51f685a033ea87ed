//! TLS on both sides of pgsplit, with certificates made here (rcgen):
//! psql (`sslmode=verify-full`), tokio-postgres over rustls and a raw
//! rustls client (PostgreSQL 17's direct negotiation) to pgsplit;
//! plain clients refused under `require`; `cert` authentication; a
//! certificate swapped by a reload under a connected TLS client; and
//! pgsplit (its pools and its health monitor) to a primary and replica
//! that take TCP only over TLS with a client certificate.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgsplit::config::{AuthMethod, ClientTlsMode, Config, HealthSettings, ServerTlsMode, User};
use rustls::pki_types::{CertificateDer, ServerName};
use support::cluster::{free_port, Cluster, ClusterTls, PASSWORD};
use support::pki::{CertFiles, Pki};
use support::proxy::{code_of, message_of, proxy_config, psql_args, try_connect, Proxy};
use support::wire::{frame, Reader};
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

/// pgsplit's certificate for clients, for 127.0.0.1 and localhost.
fn pgsplit_cert(pki: &Pki) -> CertFiles {
    pki.server("pgsplit", &["127.0.0.1", "localhost"])
}

/// `config` with TLS to clients in `mode`, pgsplit's certificate from `pki`.
fn with_client_tls(mut config: Config, mode: ClientTlsMode, pki: &Pki) -> Config {
    let cert = pgsplit_cert(pki);
    config.client_tls_sslmode = mode;
    config.client_tls_cert_file = Some(path(&cert.cert));
    config.client_tls_key_file = Some(path(&cert.key));
    config.client_tls_ca_file = Some(path(pki.ca_file()));
    config
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn roots(ca: &Path) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A rustls client configuration trusting `ca`, offering `alpn`.
fn rustls_client(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// tokio-postgres over rustls (sslmode=require, pgsplit's certificate
/// checked against `ca`).
async fn connect_tls(conninfo: &str, ca: &Path) -> Result<Client, tokio_postgres::Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(ca, &[]));
    let (client, connection) =
        tokio_postgres::connect(&format!("{conninfo} sslmode=require"), tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// psql through pgsplit with `sslmode` and the other libpq `settings`
/// (name=value, space-separated): stdout, or stderr on failure.
fn psql_tls(port: u16, user: &str, settings: &str, sql: &str) -> Result<String, String> {
    let conninfo = format!("user={user} dbname=postgres {settings}");
    psql_args(
        port,
        &["-d", &conninfo, "-c", sql],
        &[("PGPASSWORD", PASSWORD)],
    )
}

/// The metrics text, once the endpoint (started beside the listener)
/// answers.
fn metrics(port: u16) -> String {
    let up = support::proxy::eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "metrics endpoint on {port}");
    support::http::get(port, "/metrics").1
}

fn tls_count(metrics: &str, side: &str, outcome: &str) -> f64 {
    support::http::value(
        metrics,
        &format!("pgsplit_tls_negotiations_total{{outcome=\"{outcome}\",side=\"{side}\"}}"),
    )
}

fn md5user() -> Vec<User> {
    vec![User {
        name: "md5user".into(),
        password: PASSWORD.into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_reach_primary_and_replica_through_pgsplit() {
    let c = Cluster::start();
    let pki = Pki::new("pgsplit test CA");
    let metrics_port = free_port();
    let mut config = with_client_tls(proxy_config(&c), ClientTlsMode::Require, &pki);
    config.auth = AuthMethod::Md5;
    config.users = md5user();
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let ca = path(pki.ca_file());

    // psql checks pgsplit's certificate and host name.
    let verify_full = format!("sslmode=verify-full sslrootcert={ca}");
    let info = psql_tls(p.port(), "md5user", &verify_full, "\\conninfo").unwrap();
    assert!(info.contains("SSL connection (protocol: TLSv1.3"), "{info}");
    assert_eq!(
        psql_tls(p.port(), "md5user", &verify_full, "select 40 + 2").unwrap(),
        "42"
    );
    // A certificate from another CA is not pgsplit's.
    let stranger = Pki::new("another CA");
    let other_ca = format!(
        "sslmode=verify-full sslrootcert={}",
        path(stranger.ca_file())
    );
    let refused = psql_tls(p.port(), "md5user", &other_ca, "select 1").unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // tokio-postgres over rustls: reads on the replica, writes on the
    // primary, large results and the extended protocol through TLS.
    let conninfo = format!(
        "host=127.0.0.1 port={} user=md5user password={PASSWORD} dbname=postgres",
        p.port()
    );
    c.psql(
        c.primary_port(),
        "create table tls_t(x int); grant all on tls_t to md5user",
    );
    let client = connect_tls(&conninfo, pki.ca_file()).await.unwrap();
    let port: i32 = client
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port as u16, c.replica_port());
    client
        .batch_execute("insert into tls_t values (1)")
        .await
        .unwrap();
    let rows = client
        .query(
            "select $1::text || repeat('x', 1000) from generate_series(1, $2::int)",
            &[&"row", &3000i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[2999].get::<_, String>(0).len(), 1003);

    // tokio-postgres sends its cancel request over TLS too.
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(pki.ca_file(), &[]));
    token.cancel_query(tls).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancel reached the statement")
        .unwrap()
        .unwrap_err();
    assert_eq!(code_of(&cancelled).as_deref(), Some("57014"), "{cancelled}");

    // libpq before 17 sends its cancel request in plain TCP whatever its
    // connection used: it still cancels under `require`.
    let psql = std::process::Command::new(support::cluster::pg_bin("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &p.port().to_string()])
        .args(["-d", &format!("user=md5user dbname=postgres {verify_full}")])
        .args(["-c", "select pg_sleep(30)"])
        .env("PGPASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &psql.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = psql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );

    let m = metrics(metrics_port);
    assert!(tls_count(&m, "client", "encrypted") >= 3.0, "{m}");
    assert!(tls_count(&m, "client", "handshake_failed") >= 1.0, "{m}");
    assert!(m.contains("pgsplit_tls_negotiations_total{outcome=\"tls_refused\",side=\"server\"} 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_are_refused_under_require_as_pgbouncer_words_it() {
    let c = Cluster::start();
    let pki = Pki::new("pgsplit test CA");
    let metrics_port = free_port();
    let mut config = with_client_tls(proxy_config(&c), ClientTlsMode::Require, &pki);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let m = metrics(metrics_port);
    assert_eq!(
        tls_count(&m, "client", "plain_refused"),
        0.0,
        "declared at 0: {m}"
    );

    let plain = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        p.port()
    );
    let error = try_connect(&plain)
        .await
        .err()
        .expect("a plain client is refused");
    assert_eq!(code_of(&error).as_deref(), Some("28000"));
    assert_eq!(message_of(&error), "SSL required");
    let psql = psql_tls(p.port(), "postgres", "sslmode=disable", "select 1").unwrap_err();
    assert!(psql.contains("SSL required"), "{psql}");
    // sslmode=prefer (libpq's default) asks for TLS and gets it.
    let info = psql_tls(p.port(), "postgres", "sslmode=prefer", "\\conninfo").unwrap();
    assert!(info.contains("SSL connection"), "{info}");
    assert_eq!(
        tls_count(&metrics(metrics_port), "client", "plain_refused"),
        2.0
    );
}

/// Sends a startup, reads until ReadyForQuery, runs `select 1`.
async fn startup_and_select_one<S>(stream: S) -> Vec<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = Reader::new(read);
    let login = frame::startup(&[("user", "postgres"), ("database", "postgres")]);
    write.write_all(&login).await.unwrap();
    write.write_all(&frame::query("select 1")).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(10);
    while let Some(m) = tokio::time::timeout(deadline, reader.next())
        .await
        .expect("an answer")
        .unwrap()
    {
        seen.push(m.summary());
        if m.tag == b'Z' && seen.iter().any(|s| s.starts_with('D')) {
            break;
        }
    }
    seen
}

async fn direct_tls(
    addr: std::net::SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls_client(ca, alpn)));
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_negotiation_needs_alpn_postgresql() {
    let c = Cluster::start();
    let pki = Pki::new("pgsplit test CA");
    let metrics_port = free_port();
    let mut config = with_client_tls(proxy_config(&c), ClientTlsMode::Allow, &pki);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);

    // PostgreSQL 17's sslnegotiation=direct: the ClientHello first, with
    // ALPN "postgresql" (Debian 12's libpq 15 cannot, so by hand).
    let tls = direct_tls(p.addr(), pki.ca_file(), &[b"postgresql"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    let seen = startup_and_select_one(tls).await;
    assert!(seen.contains(&"D".to_string()), "{seen:?}");

    // Without ALPN: PostgreSQL 17's refusal, said over the TLS session.
    let tls = direct_tls(p.addr(), pki.ca_file(), &[]).await;
    let (read, _write) = tokio::io::split(tls);
    let mut reader = Reader::new(read);
    let refusal = reader.next().await.unwrap().expect("an error");
    assert_eq!(refusal.code().as_deref(), Some("08P01"), "{refusal:?}");
    assert!(
        refusal.fields()[&'M'].contains("without ALPN"),
        "{refusal:?}"
    );
    assert!(reader.next().await.unwrap_or(None).is_none(), "then closed");

    // An SSLRequest inside TLS is refused, as PostgreSQL and PgBouncer do.
    let tls = direct_tls(p.addr(), pki.ca_file(), &[b"postgresql"]).await;
    let (read, mut write) = tokio::io::split(tls);
    write
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let refusal = Reader::new(read).next().await.unwrap().expect("an error");
    assert_eq!(refusal.code().as_deref(), Some("08P01"), "{refusal:?}");

    // `allow`: a plain client is served too.
    assert_eq!(
        psql_tls(p.port(), "postgres", "sslmode=disable", "select 7").unwrap(),
        "7"
    );
    let m = metrics(metrics_port);
    assert_eq!(tls_count(&m, "client", "no_alpn"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_authentication_maps_the_certificate_cn_to_the_user() {
    let c = Cluster::start();
    let pki = Pki::new("pgsplit test CA");
    let mut config = with_client_tls(proxy_config(&c), ClientTlsMode::VerifyFull, &pki);
    config.auth = AuthMethod::Cert;
    let p = Proxy::start(config);
    let ca = path(pki.ca_file());
    let with_cert = |cert: &CertFiles| {
        format!(
            "sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
            path(&cert.cert),
            path(&cert.key)
        )
    };

    let postgres = pki.client("postgres-client", "postgres");
    assert_eq!(
        psql_tls(
            p.port(),
            "postgres",
            &with_cert(&postgres),
            "select current_user"
        )
        .unwrap(),
        "postgres"
    );
    let alice = pki.client("alice-client", "alice");
    let refused = psql_tls(p.port(), "postgres", &with_cert(&alice), "select 1").unwrap_err();
    assert!(
        refused.contains("certificate authentication failed for user \"postgres\""),
        "{refused}"
    );
    // No certificate, or one from another CA: no TLS session at all.
    let bare = format!("sslmode=verify-full sslrootcert={ca}");
    assert!(psql_tls(p.port(), "postgres", &bare, "select 1").is_err());
    let stranger = Pki::new("another CA").client("stranger", "postgres");
    assert!(psql_tls(p.port(), "postgres", &with_cert(&stranger), "select 1").is_err());
    // And a plain client is refused (verify-full requires TLS).
    assert!(
        psql_tls(p.port(), "postgres", "sslmode=disable", "select 1")
            .unwrap_err()
            .contains("SSL required")
    );
}

/// pgsplit as a child process with a config file, for SIGHUP.
struct Child {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Child {
    fn start(toml: &str) -> Child {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pgsplit.toml");
        let log = dir.path().join("pgsplit.log");
        std::fs::write(&config, toml).unwrap();
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn pgsplit");
        Child {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hang_up_and_wait(&self, reloads: usize, needle: &str) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
        let done = support::proxy::eventually(Duration::from_secs(10), || {
            self.log().matches(needle).count() >= reloads
        });
        assert!(done, "no {needle:?} after SIGHUP:\n{}", self.log());
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_and_tls_clients_stay_connected() {
    let c = Cluster::start();
    let first = Pki::new("first CA");
    let second = Pki::new("second CA");
    let cert = pgsplit_cert(&first);
    let toml = format!(
        "primary = {:?}\nreplicas = [{:?}]\nclient_tls_sslmode = \"require\"\n\
         client_tls_cert_file = {:?}\nclient_tls_key_file = {:?}\n",
        c.primary_addr(),
        c.replica_addr(),
        path(&cert.cert),
        path(&cert.key)
    );
    let pgsplit = Child::start(&toml);
    let trusts = |pki: &Pki| format!("sslmode=verify-full sslrootcert={}", path(pki.ca_file()));
    let started = support::proxy::eventually(Duration::from_secs(10), || {
        psql_tls(pgsplit.port, "postgres", &trusts(&first), "select 1").is_ok()
    });
    assert!(started, "pgsplit did not start:\n{}", pgsplit.log());
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pgsplit.port
    );
    let connected = connect_tls(&conninfo, first.ca_file()).await.unwrap();
    connected.batch_execute("begin; select 1").await.unwrap();
    assert!(psql_tls(pgsplit.port, "postgres", &trusts(&second), "select 1").is_err());

    // New certificate and key in the same files, then SIGHUP.
    second.issue_to(
        &cert,
        "pgsplit",
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    pgsplit.hang_up_and_wait(1, "configuration reloaded");
    assert_eq!(
        psql_tls(pgsplit.port, "postgres", &trusts(&second), "select 2").unwrap(),
        "2"
    );
    assert!(psql_tls(pgsplit.port, "postgres", &trusts(&first), "select 1").is_err());
    // The client connected before the reload keeps its TLS session and
    // its transaction.
    let rows = connected.simple_query("select 3; commit").await.unwrap();
    assert!(!rows.is_empty());

    // A key that does not go with the certificate: the reload is refused
    // and the running certificate stays.
    std::fs::write(&cert.key, "not a key").unwrap();
    pgsplit.hang_up_and_wait(1, "reload refused");
    assert!(
        pgsplit.log().contains("client_tls_key_file"),
        "{}",
        pgsplit.log()
    );
    assert_eq!(
        psql_tls(pgsplit.port, "postgres", &trusts(&second), "select 4").unwrap(),
        "4"
    );
}

/// A primary and replica that take TCP only over TLS with a client
/// certificate naming the user; pgsplit's certificate to them names
/// `scramuser`.
struct TlsServers {
    cluster: Cluster,
    pki: Pki,
    scramuser: CertFiles,
}

fn tls_servers() -> TlsServers {
    let pki = Pki::new("servers' CA");
    let tls = ClusterTls {
        ca: pki.ca_file().to_path_buf(),
        // An address, no name: `localhost` is not valid for verify-full.
        server: pki.server("postgres-server", &["127.0.0.1"]),
        postgres: pki.client("harness", "postgres"),
    };
    let cluster = Cluster::start_tls(tls);
    let scramuser = pki.client("scramuser", "scramuser");
    TlsServers {
        cluster,
        pki,
        scramuser,
    }
}

/// pgsplit to `servers` with `server_tls_sslmode = mode`, logging in as
/// scramuser with its client certificate; clients connect in plain TCP.
fn to_tls_servers(servers: &TlsServers, mode: ServerTlsMode, primary: String) -> Config {
    let mut config = proxy_config(&servers.cluster);
    config.primary = Some(primary);
    config.users = vec![User {
        name: "scramuser".into(),
        password: PASSWORD.into(),
    }];
    config.server_tls_sslmode = mode;
    config.server_tls_ca_file = Some(path(servers.pki.ca_file()));
    config.server_tls_cert_file = Some(path(&servers.scramuser.cert));
    config.server_tls_key_file = Some(path(&servers.scramuser.key));
    config.health = HealthSettings {
        interval: 0.1,
        timeout: 2.0,
        threshold: 1,
        ..HealthSettings::default()
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsplit_reaches_servers_that_require_tls_and_client_certificates() {
    let servers = tls_servers();
    let c = &servers.cluster;
    let metrics_port = free_port();
    let mut config = to_tls_servers(&servers, ServerTlsMode::VerifyFull, c.primary_addr());
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=scramuser dbname=postgres",
        p.port()
    );
    let client = try_connect(&conninfo).await.unwrap();
    c.psql(
        c.primary_port(),
        "create table tls_servers(x int); grant all on tls_servers to scramuser",
    );
    let ssl: bool = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "pgsplit's connection is TLS");
    let port: i32 = client
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port as u16, c.replica_port());
    client
        .batch_execute("insert into tls_servers values (1)")
        .await
        .unwrap();
    // The health monitor (tokio-postgres over rustls, same certificate)
    // checks both servers every 0.1 s with a threshold of 1: were its
    // checks failing, the replica would be down and reads would go to the
    // primary. Read-your-writes also waits on the positions it reads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = client
        .query_one("select inet_server_port(), count(*) from tls_servers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as u16, c.replica_port());
    assert_eq!(row.get::<_, i64>(1), 1);
    let console = support::admin::console(p.port()).await;
    for server in support::admin::rows(&console, "SHOW HEALTH").await {
        let failures = server.iter().find(|(k, _)| k == "health_check_failures");
        assert_eq!(failures.map(|(_, v)| v.as_str()), Some("0"), "{server:?}");
    }
    let m = metrics(metrics_port);
    assert!(tls_count(&m, "server", "encrypted") >= 2.0, "{m}");

    // A cancel reaches the server (over TLS, as libpq 17 sends them).
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancel reached the statement")
        .unwrap()
        .unwrap_err();
    assert_eq!(code_of(&cancelled).as_deref(), Some("57014"), "{cancelled}");

    // Without TLS the servers refuse pgsplit, as they would any client.
    let plain = Proxy::start(to_tls_servers(
        &servers,
        ServerTlsMode::Disable,
        c.primary_addr(),
    ));
    let conninfo = format!(
        "host=127.0.0.1 port={} user=scramuser dbname=postgres",
        plain.port()
    );
    let error = try_connect(&conninfo).await.err().expect("refused");
    assert!(message_of(&error).contains("no encryption"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let servers = tls_servers();
    let c = &servers.cluster;
    // The servers' certificate names 127.0.0.1 only.
    let by_name = format!("localhost:{}", c.primary_port());
    let metrics_port = free_port();
    let mut config = to_tls_servers(&servers, ServerTlsMode::VerifyFull, by_name.clone());
    config.replicas.clear();
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    // The monitor fails its checks too (same TLS): it must not mark the
    // primary down before the login below, which would then be refused
    // for that instead of for the handshake.
    config.health.threshold = 1000;
    let full = Proxy::start(config);
    let conninfo = |port: u16| format!("host=127.0.0.1 port={port} user=scramuser dbname=postgres");
    let error = try_connect(&conninfo(full.port()))
        .await
        .err()
        .expect("refused");
    assert!(
        message_of(&error).contains("TLS handshake"),
        "{error}: {}",
        message_of(&error)
    );
    assert!(tls_count(&metrics(metrics_port), "server", "handshake_failed") >= 1.0);

    let mut config = to_tls_servers(&servers, ServerTlsMode::VerifyCa, by_name);
    config.replicas.clear();
    let ca_only = Proxy::start(config);
    let client = try_connect(&conninfo(ca_only.port())).await.unwrap();
    let port: i32 = client
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port as u16, c.primary_port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_require_refuses_a_server_without_tls_and_prefer_falls_back() {
    let c = Cluster::start();
    let metrics_port = free_port();
    let mut config = proxy_config(&c);
    config.server_tls_sslmode = ServerTlsMode::Require;
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let required = Proxy::start(config);
    let conninfo = |port: u16| format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let error = try_connect(&conninfo(required.port()))
        .await
        .err()
        .expect("refused");
    assert!(
        message_of(&error).contains("does not support TLS"),
        "{error}"
    );
    assert!(tls_count(&metrics(metrics_port), "server", "tls_refused") >= 1.0);

    let mut config = proxy_config(&c);
    config.server_tls_sslmode = ServerTlsMode::Prefer;
    let preferred = Proxy::start(config);
    let client = try_connect(&conninfo(preferred.port())).await.unwrap();
    let ssl: bool = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl, "plain, as the server has no TLS");
}

#[test]
fn unusable_tls_files_stop_pgsplit_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("pgsplit test CA");
    let cert = pgsplit_cert(&pki);
    let other = pgsplit_cert(&Pki::new("another CA"));
    let cases = [
        // A file that is not there.
        (
            path(&dir.path().join("missing.pem")),
            path(&cert.key),
            "client_tls_cert_file",
        ),
        // A key that is not the certificate's.
        (path(&cert.cert), path(&other.key), "client_tls_key_file"),
    ];
    for (cert_file, key_file, key) in cases {
        let config = dir.path().join("pgsplit.toml");
        std::fs::write(
            &config,
            format!(
                "primary = \"127.0.0.1:1\"\nclient_tls_sslmode = \"require\"\n\
                 client_tls_cert_file = {cert_file:?}\nclient_tls_key_file = {key_file:?}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}

/// SCRAM-SHA-256-PLUS for TLS clients (issue 19): pgsplit offers it over
/// TLS and checks the client's binding to its certificate, so psql (libpq)
/// logs in with `channel_binding=require`; a TLS client that does not bind
/// (tokio-postgres-rustls 0.13 computes no binding data) still logs in
/// with SCRAM-SHA-256. The keys such clients prove log in to the servers
/// too (auth_query, pass-through: the read runs on the replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_channel_binding_for_tls_clients() {
    let c = Cluster::start();
    let pki = Pki::new("pgsplit test CA");
    let metrics_port = free_port();
    let mut config = with_client_tls(proxy_config(&c), ClientTlsMode::Require, &pki);
    config.auth = AuthMethod::ScramSha256;
    config.auth_user = Some("postgres".into());
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let ca = path(pki.ca_file());

    let bound = format!("sslmode=verify-full sslrootcert={ca} channel_binding=require");
    let read = "/* pgsplit:replica */ select current_user || ' ' || inet_server_port()";
    assert_eq!(
        psql_tls(p.port(), "scramuser", &bound, read),
        Ok(format!("scramuser {}", c.replica_port()))
    );
    let conninfo = |password: &str| {
        format!(
            "host=127.0.0.1 port={} user=scramuser password={password} dbname=postgres",
            p.port()
        )
    };
    let client = connect_tls(&conninfo(PASSWORD), pki.ca_file())
        .await
        .expect("tokio-postgres over TLS without channel binding");
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "scramuser");
    // A wrong password is refused, bound or not.
    let e = connect_tls(&conninfo("wrong"), pki.ca_file())
        .await
        .err()
        .expect("refused");
    assert_eq!(code_of(&e).as_deref(), Some("28P01"), "{e}");
    assert_eq!(
        message_of(&e),
        "password authentication failed for user \"scramuser\""
    );
    let wrong = psql_args(
        p.port(),
        &[
            "-d",
            &format!("user=scramuser dbname=postgres {bound}"),
            "-c",
            "select 1",
        ],
        &[("PGPASSWORD", "wrong")],
    );
    assert!(wrong
        .unwrap_err()
        .contains("password authentication failed"));

    let text = metrics(metrics_port);
    let count = |mechanism: &str, result: &str| {
        support::http::value(
            &text,
            &format!("pgsplit_client_auth_total{{mechanism=\"{mechanism}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("scram-sha-256-plus", "ok"), 1.0, "{text}");
    assert_eq!(count("scram-sha-256-plus", "wrong_password"), 1.0, "{text}");
    assert_eq!(count("scram-sha-256", "ok"), 1.0, "{text}");
    assert_eq!(count("scram-sha-256", "wrong_password"), 1.0, "{text}");
}

/// Pass-through to servers over TLS (issue 19): scramuser is listed by its
/// SCRAM verifier only, so pgsplit logs in to the primary and the replica
/// with the keys its client proved; over TLS the servers offer
/// SCRAM-SHA-256-PLUS and pgsplit's own SCRAM client binds to their
/// certificate (a wrong binding would be refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_to_tls_servers_binds_to_their_certificate() {
    let servers = tls_servers();
    let c = &servers.cluster;
    let verifier = c.psql(
        c.primary_port(),
        "select rolpassword from pg_authid where rolname = 'scramuser'",
    );
    let metrics_port = free_port();
    let mut config = to_tls_servers(&servers, ServerTlsMode::VerifyFull, c.primary_addr());
    config.auth = AuthMethod::ScramSha256;
    config.users = vec![User {
        name: "scramuser".into(),
        password: verifier,
    }];
    // The health monitor's client needs a password of its own.
    config.health.user = Some("scramuser".into());
    config.health.password = Some(PASSWORD.into());
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=scramuser password={PASSWORD} dbname=postgres",
        p.port()
    );
    let client = try_connect(&conninfo).await.unwrap();
    let row = client
        .query_one(
            "/* pgsplit:replica */ select inet_server_port(), ssl \
             from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as u16, c.replica_port());
    assert!(row.get::<_, bool>(1), "TLS to the replica");
    let m = metrics(metrics_port);
    let logins = support::http::value(
        &m,
        "pgsplit_server_logins_total{credential=\"scram_keys\",result=\"ok\"}",
    );
    assert!(logins >= 2.0, "{m}");
}
