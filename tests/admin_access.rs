//! Who may use the admin console, in every auth mode: `admin_users` run
//! every command, `stats_users` the SHOW commands only (ERROR 42501 "admin
//! access needed" for the rest), anyone else gets FATAL 28000 "not
//! allowed" at login; in trust mode with neither list set, only clients on
//! this machine get in. Before this, trust mode let any user name, from
//! anywhere, run SHUTDOWN.

mod support;

use std::net::IpAddr;

use pgsplit::config::{AuthMethod, Config, User};
use support::cluster::{free_port, PASSWORD};
use support::http;
use support::proxy::{code_of, message_of, try_connect, Proxy};
use tokio_postgres::Client;

/// A proxy on every interface whose servers are never reached: the
/// console needs none.
fn start(config: Config) -> (Proxy, u16) {
    let metrics = free_port();
    let config = Config {
        primary: Some("127.0.0.1:1".into()),
        metrics_listen: Some(format!("127.0.0.1:{metrics}")),
        ..config
    };
    (Proxy::start_on(config, "0.0.0.0:0"), metrics)
}

/// This machine's address on its way out (not loopback): a client that
/// connects to it is a remote peer as far as pgsplit can tell.
fn outside_address() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks a route.
    socket
        .connect("192.0.2.1:9")
        .or_else(|_| socket.connect("8.8.8.8:53"))
        .expect("no route out of this machine: the test needs a non-loopback address");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "only a loopback address here: {ip}");
    ip
}

async fn console(host: IpAddr, p: &Proxy, user: &str) -> Result<Client, tokio_postgres::Error> {
    try_connect(&format!(
        "host={host} port={} user={user} password={PASSWORD} dbname=pgsplit connect_timeout=10",
        p.port()
    ))
    .await
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn refused_login(host: IpAddr, p: &Proxy, user: &str, code: &str, message: &str) {
    match console(host, p, user).await {
        Ok(_) => panic!("{user} from {host} got into the admin console"),
        Err(e) => {
            assert_eq!(
                code_of(&e).as_deref(),
                Some(code),
                "{user} from {host}: {e}"
            );
            assert_eq!(message_of(&e), message, "{user} from {host}");
        }
    }
}

/// Runs `command`: `Ok` or the error's (SQLSTATE, message).
async fn run(client: &Client, command: &str) -> Result<(), (String, String)> {
    client
        .simple_query(command)
        .await
        .map(|_| ())
        .map_err(|e| (code_of(&e).unwrap_or_default(), message_of(&e)))
}

fn denied() -> Result<(), (String, String)> {
    Err(("42501".into(), "admin access needed".into()))
}

/// What an admin and a stats user may do, the same in every auth mode.
async fn admin_and_stats_users(host: IpAddr, p: &Proxy) {
    let admin = console(host, p, "boss").await.expect("admin_users log in");
    assert_eq!(run(&admin, "SHOW POOLS").await, Ok(()));
    assert_eq!(run(&admin, "PAUSE").await, Ok(()));
    assert_eq!(run(&admin, "RESUME").await, Ok(()));
    let stats = console(host, p, "watcher")
        .await
        .expect("stats_users log in");
    for show in ["SHOW POOLS", "SHOW STATS", "SHOW CLIENTS", "SHOW CONFIG"] {
        assert_eq!(run(&stats, show).await, Ok(()), "{show}");
    }
    for command in [
        "PAUSE",
        "RESUME",
        "RELOAD",
        "SHUTDOWN",
        "PAUSE postgres",
        "RECONNECT",
        "WAIT_CLOSE",
        "KILL postgres",
        "KILL_CLIENT 1",
        "DISABLE postgres",
        "ENABLE postgres",
    ] {
        assert_eq!(run(&stats, command).await, denied(), "{command}");
    }
    for show in [
        "SHOW SERVERS",
        "SHOW DATABASES",
        "SHOW USERS",
        "SHOW LISTS",
        "SHOW HEALTH",
    ] {
        assert_eq!(run(&stats, show).await, Ok(()), "{show}");
    }
    // The SHUTDOWN refused did nothing: pgsplit still serves.
    assert_eq!(run(&admin, "SHOW SERVERS").await, Ok(()));
    assert_eq!(run(&stats, "SHOW VERSION").await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_mode_without_lists_lets_in_this_machine_only() {
    let (p, metrics) = start(Config::default());
    let local = console(LOCAL, &p, "anyone").await.expect("loopback peer");
    assert_eq!(run(&local, "PAUSE").await, Ok(()));
    assert_eq!(run(&local, "RESUME").await, Ok(()));
    refused_login(outside_address(), &p, "anyone", "28000", "not allowed").await;
    refused_login(outside_address(), &p, "postgres", "28000", "not allowed").await;
    let text = http::get(metrics, "/metrics").1;
    assert_eq!(
        http::value(&text, "pgsplit_refusals_total{reason=\"admin_login\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_mode_with_lists_follows_them_from_anywhere() {
    let (p, metrics) = start(Config {
        admin_users: vec!["boss".into()],
        stats_users: vec!["watcher".into()],
        ..Config::default()
    });
    let outside = outside_address();
    admin_and_stats_users(outside, &p).await;
    admin_and_stats_users(LOCAL, &p).await;
    // Not listed: refused, from this machine too.
    refused_login(LOCAL, &p, "anyone", "28000", "not allowed").await;
    refused_login(outside, &p, "anyone", "28000", "not allowed").await;
    let text = http::get(metrics, "/metrics").1;
    assert_eq!(
        http::value(&text, "pgsplit_refusals_total{reason=\"admin_command\"}"),
        22.0,
        "11 commands refused to the stats user, from two places"
    );
    let killed = "pgsplit_admin_commands_total{command=\"KILL\",result=\"denied\"}";
    assert_eq!(http::value(&text, killed), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_modes_follow_the_lists_after_the_password() {
    for auth in [AuthMethod::Md5, AuthMethod::ScramSha256] {
        let user = |name: &str| User {
            name: name.into(),
            password: PASSWORD.into(),
        };
        let (p, _) = start(Config {
            auth,
            users: vec![user("boss"), user("watcher"), user("anyone")],
            admin_users: vec!["boss".into()],
            stats_users: vec!["watcher".into()],
            ..Config::default()
        });
        admin_and_stats_users(outside_address(), &p).await;
        refused_login(LOCAL, &p, "anyone", "28000", "not allowed").await;
        // The password is checked first: a wrong one says only that.
        let wrong = try_connect(&format!(
            "host=127.0.0.1 port={} user=boss password=wrong dbname=pgsplit",
            p.port()
        ))
        .await
        .err()
        .unwrap_or_else(|| panic!("{auth:?}: a wrong password got in"));
        assert_eq!(code_of(&wrong).as_deref(), Some("28P01"), "{auth:?}");
    }
    // With neither list, nobody, local or not.
    let (p, _) = start(Config {
        auth: AuthMethod::Md5,
        users: vec![User {
            name: "anyone".into(),
            password: PASSWORD.into(),
        }],
        ..Config::default()
    });
    refused_login(LOCAL, &p, "anyone", "28000", "not allowed").await;
}
