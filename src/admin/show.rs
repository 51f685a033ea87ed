//! The tables SHOW answers with: PgBouncer's columns, in PgBouncer 1.23's
//! order and with its names where the concept is the same, then pgsplit's
//! own at the end of each row (a script that reads PgBouncer's columns by
//! position or by name reads pgsplit's the same way). Where pgsplit has
//! no such number, the column says 0 (or NULL for a time), and the comment
//! at the column says why.

use super::command::{Show as What, HELP};
use super::table::{int, text, timestamp, Column, Table, Value};
use super::{
    ClientRow, ConfigRow, DatabaseRow, PoolRow, RouteRow, ServerRow, Show, StatsRow, UserRow,
};
use crate::metrics::ServerSample;

/// The table `what` asks for.
pub fn table(console: &impl Show, what: What) -> Table {
    match what {
        What::Pools => pools(console.pools()),
        What::Servers => servers(console.servers()),
        What::Clients => clients(console.clients()),
        What::Stats => stats(console.stats()),
        What::Databases => databases(console.databases()),
        What::Users => users(console.users()),
        What::Lists => lists(console.lists()),
        What::Config => config(console.config()),
        What::Version => one_text("version", format!("pgsplit {}", env!("CARGO_PKG_VERSION"))),
        What::Help => one_text("commands", HELP.to_string()),
        What::Health => health(&console.sample().servers),
        What::Metrics => metrics(console.metrics()),
    }
}

fn one_text(column: &'static str, value: String) -> Table {
    let mut t = Table::new(&[text(column)]);
    t.push(vec![value.into()]);
    t
}

const POOLS: [Column; 24] = [
    text("database"),
    text("user"),
    int("cl_active"),
    int("cl_waiting"),
    int("cl_active_cancel_req"),
    int("cl_waiting_cancel_req"),
    int("sv_active"),
    int("sv_active_cancel"),
    int("sv_being_canceled"),
    int("sv_idle"),
    int("sv_used"),
    int("sv_tested"),
    int("sv_login"),
    int("maxwait"),
    int("maxwait_us"),
    text("pool_mode"),
    // pgsplit's: which server of the database this pool is.
    text("server"),
    text("role"),
    int("pool_size"),
    // Checked out and running a client's request (sv_active less parked).
    int("checked_out"),
    int("parked"),
    int("overflow"),
    int("max_overflow"),
    int("healthy"),
];

/// One row per server pool: pgsplit pools each server (the primary, each
/// replica) of a database and user apart, with its own `pool_size`, so
/// the row is what a limit applies to (README "Admin console").
fn pools(rows: Vec<PoolRow>) -> Table {
    let mut t = Table::new(&POOLS);
    for PoolRow {
        sample: p,
        pool_mode,
    } in rows
    {
        // Clients linked to a connection of this pool: those running on
        // one, and the idle ones it is parked with.
        let linked = p.checked_out + p.parked;
        t.push(vec![
            p.database.into(),
            p.user.into(),
            linked.into(),
            p.waiting.into(),
            // Cancel requests are forwarded at once, never queued.
            0u32.into(),
            0u32.into(),
            linked.into(),
            0u32.into(),
            0u32.into(),
            p.checked_in.into(),
            // No server_check_query: a released connection is idle at once.
            0u32.into(),
            0u32.into(),
            p.opening.into(),
            // The wait of the oldest waiter is not kept (the checkout
            // wait histogram has every wait once it ended).
            0u32.into(),
            0u32.into(),
            pool_mode.into(),
            p.server.into(),
            p.role.into(),
            p.size.into(),
            p.checked_out.into(),
            p.parked.into(),
            p.overflow.into(),
            p.max_overflow.into(),
            p.healthy.into(),
        ]);
    }
    t
}

/// SHOW SERVERS and SHOW CLIENTS share PgBouncer's socket columns.
const SOCKET: [Column; 20] = [
    text("type"),
    text("user"),
    text("database"),
    text("replication"),
    text("state"),
    text("addr"),
    int("port"),
    text("local_addr"),
    int("local_port"),
    text("connect_time"),
    text("request_time"),
    int("wait"),
    int("wait_us"),
    int("close_needed"),
    text("ptr"),
    text("link"),
    int("remote_pid"),
    text("tls"),
    text("application_name"),
    int("prepared_statements"),
];

/// `ptr` and `link`: PgBouncer shows memory addresses that tie a client
/// to its server; pgsplit shows the ids, "c12" for client 12 and "s7" for
/// server connection 7, which tie them as well and stay readable.
fn client_ptr(id: u64) -> String {
    format!("c{id}")
}

fn server_ptr(id: u64) -> String {
    format!("s{id}")
}

fn local_columns(local: Option<std::net::SocketAddr>) -> [Value; 2] {
    match local {
        Some(a) => [a.ip().to_string().into(), a.port().into()],
        None => [Value::Null, Value::Null],
    }
}

fn servers(rows: Vec<ServerRow>) -> Table {
    let mut columns = SOCKET.to_vec();
    columns.extend([int("id"), text("role"), text("server")]);
    let mut t = Table {
        columns,
        rows: Vec::new(),
    };
    for s in rows {
        let (host, port) = split_host_port(&s.server);
        let [local_addr, local_port] = local_columns(s.local);
        // PgBouncer's states: a parked connection is linked to its client.
        let state = if s.state == "parked" {
            "active"
        } else {
            s.state
        };
        t.push(vec![
            "S".into(),
            s.user.into(),
            s.database.into(),
            "none".into(),
            state.into(),
            host.into(),
            port,
            local_addr,
            local_port,
            timestamp(s.connected_at).into(),
            s.request_time.map(timestamp).into(),
            // Only clients wait.
            0u32.into(),
            0u32.into(),
            s.close_needed.into(),
            server_ptr(s.id).into(),
            s.client.map(client_ptr).into(),
            s.backend_pid.into(),
            s.tls.unwrap_or_default().into(),
            // A server connection's application_name is its login's.
            "".into(),
            // Prepared statements are counted per connection only inside
            // the session that holds it.
            0u32.into(),
            s.id.into(),
            s.role.into(),
            s.server.into(),
        ]);
    }
    t
}

/// "host:port" (or "[v6]:port") into its host and port.
fn split_host_port(addr: &str) -> (String, Value) {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = port.parse::<u32>().map_or(Value::Null, Value::from);
            (host.to_string(), port)
        }
        None => (addr.to_string(), Value::Null),
    }
}

fn clients(rows: Vec<ClientRow>) -> Table {
    let mut columns = SOCKET.to_vec();
    // `id` where PgBouncer 1.24 put it, then pgsplit's.
    columns.extend([
        int("id"),
        text("pinned"),
        int("statements"),
        int("connected_seconds"),
    ]);
    let mut t = Table {
        columns,
        rows: Vec::new(),
    };
    for c in rows {
        let [local_addr, local_port] = local_columns(c.local);
        let connected = c.connected_at.elapsed().map_or(0, |d| d.as_secs());
        t.push(vec![
            "C".into(),
            c.user.into(),
            c.database.into(),
            "none".into(),
            c.state.into(),
            c.addr.ip().to_string().into(),
            c.addr.port().into(),
            local_addr,
            local_port,
            timestamp(c.connected_at).into(),
            // The time of each request is not kept (it would cost the
            // forwarding path a clock read per statement).
            Value::Null,
            // Nor when a waiting client began to wait.
            0u32.into(),
            0u32.into(),
            0u32.into(),
            client_ptr(c.id).into(),
            c.server.map(server_ptr).into(),
            // A TCP client's process id is not known.
            0u32.into(),
            c.tls.unwrap_or_default().into(),
            c.application_name.into(),
            // Kept by the session, not published.
            0u32.into(),
            c.id.into(),
            c.pinned.into(),
            c.statements.into(),
            connected.into(),
        ]);
    }
    t
}

const STATS: [Column; 19] = [
    text("database"),
    int("total_server_assignment_count"),
    int("total_xact_count"),
    int("total_query_count"),
    int("total_received"),
    int("total_sent"),
    int("total_xact_time"),
    int("total_query_time"),
    int("total_wait_time"),
    int("avg_server_assignment_count"),
    int("avg_xact_count"),
    int("avg_query_count"),
    int("avg_recv"),
    int("avg_sent"),
    int("avg_xact_time"),
    int("avg_query_time"),
    int("avg_wait_time"),
    // pgsplit's: where the statements ran.
    int("total_primary_query_count"),
    int("total_replica_query_count"),
];

/// Averages are over pgsplit's uptime, where PgBouncer's are over the
/// last `stats_period`: pgsplit keeps no periodic snapshot of its
/// counters (Prometheus' `rate()` over them gives any window).
fn stats(rows: Vec<StatsRow>) -> Table {
    let mut t = Table::new(&STATS);
    for s in rows {
        let per_second = |n: u64| (n as f64 / s.seconds.max(1.0)) as u64;
        let per = |total: u64, count: u64| total.checked_div(count).unwrap_or(0);
        t.push(vec![
            s.database.into(),
            s.server_assignments.into(),
            s.xacts.into(),
            s.queries.into(),
            s.received.into(),
            s.sent.into(),
            s.xact_us.into(),
            s.query_us.into(),
            s.wait_us.into(),
            per_second(s.server_assignments).into(),
            per_second(s.xacts).into(),
            per_second(s.queries).into(),
            per_second(s.received).into(),
            per_second(s.sent).into(),
            per(s.xact_us, s.xacts).into(),
            per(s.query_us, s.queries).into(),
            per(s.wait_us, s.server_assignments).into(),
            s.primary_queries.into(),
            s.replica_queries.into(),
        ]);
    }
    t
}

const DATABASES: [Column; 17] = [
    text("name"),
    text("host"),
    int("port"),
    text("database"),
    text("force_user"),
    int("pool_size"),
    int("min_pool_size"),
    int("reserve_pool"),
    int("server_lifetime"),
    text("pool_mode"),
    int("max_connections"),
    int("current_connections"),
    int("paused"),
    int("disabled"),
    // pgsplit's: the replicas, and the clients connected now.
    text("replicas"),
    int("current_client_connections"),
    int("max_overflow"),
];

fn databases(rows: Vec<DatabaseRow>) -> Table {
    let mut t = Table::new(&DATABASES);
    for d in rows {
        let (host, port) = match &d.primary {
            Some(addr) => {
                let (host, port) = split_host_port(addr);
                (Value::from(host), port)
            }
            None => (Value::Null, Value::Null),
        };
        t.push(vec![
            d.name.clone().into(),
            host,
            port,
            // The same name on the servers: pgsplit does not rename.
            d.name.into(),
            // No forced user: clients log in to servers as themselves.
            Value::Null,
            d.pool_size.into(),
            // Pools open pool_size connections once, and do not keep a
            // minimum open afterwards.
            0u32.into(),
            // No reserve pool: max_overflow is pgsplit's room beyond
            // pool_size (at the end of the row).
            0u32.into(),
            d.server_lifetime.into(),
            d.pool_mode.into(),
            d.max_connections.into(),
            d.current_connections.into(),
            d.paused.into(),
            d.disabled.into(),
            d.replicas.join(",").into(),
            d.current_client_connections.into(),
            d.max_overflow.into(),
        ]);
    }
    t
}

fn users(rows: Vec<UserRow>) -> Table {
    let columns = [
        text("name"),
        int("pool_size"),
        text("pool_mode"),
        int("max_user_connections"),
        int("current_connections"),
        // pgsplit's (PgBouncer 1.24 has it too, further on).
        int("current_client_connections"),
    ];
    let mut t = Table::new(&columns);
    for u in rows {
        t.push(vec![
            u.name.into(),
            u.pool_size.into(),
            u.pool_mode.into(),
            u.max_user_connections.into(),
            u.current_connections.into(),
            u.current_client_connections.into(),
        ]);
    }
    t
}

fn lists(rows: Vec<(&'static str, u64)>) -> Table {
    let mut t = Table::new(&[text("list"), int("items")]);
    for (list, items) in rows {
        t.push(vec![list.into(), items.into()]);
    }
    t
}

fn config(rows: Vec<ConfigRow>) -> Table {
    let columns = [
        text("key"),
        text("value"),
        text("default"),
        text("changeable"),
    ];
    let mut t = Table::new(&columns);
    for c in rows {
        let changeable = if c.changeable { "yes" } else { "no" };
        t.push(vec![
            c.key.into(),
            c.value.into(),
            c.default.into(),
            changeable.into(),
        ]);
    }
    t
}

/// pgsplit's own: each configured server's health, as it was SHOW
/// SERVERS' before that became PgBouncer's list of connections.
fn health(servers: &[ServerSample]) -> Table {
    let columns = [
        text("server"),
        text("configured_role"),
        text("state"),
        int("up"),
        int("takes_writes"),
        int("lag_bytes"),
        text("lag_seconds"),
        int("health_check_failures"),
        int("bans"),
    ];
    let mut t = Table::new(&columns);
    for s in servers {
        t.push(vec![
            s.server.clone().into(),
            s.configured_role.clone().into(),
            s.state.clone().into(),
            s.up.into(),
            s.primary.into(),
            s.lag_bytes.into(),
            format!("{:.3}", s.lag_seconds).into(),
            s.check_failures.into(),
            s.bans.into(),
        ]);
    }
    t
}

fn metrics(rows: Vec<(String, String, String)>) -> Table {
    let mut t = Table::new(&[text("metric"), text("labels"), text("value")]);
    for (m, l, v) in rows {
        t.push(vec![m.into(), l.into(), v.into()]);
    }
    t
}

pub fn route(rows: Vec<RouteRow>) -> Table {
    let columns = [
        text("context"),
        text("destination"),
        text("reason"),
        text("description"),
    ];
    let mut t = Table::new(&columns);
    for r in rows {
        t.push(vec![
            r.context.into(),
            r.destination.into(),
            r.reason.into(),
            r.description.into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::table::Kind;

    #[test]
    fn pools_start_with_pgbouncers_columns_and_counts_are_integers() {
        let names: Vec<_> = POOLS.iter().map(|c| c.name).collect();
        assert_eq!(
            names[..16],
            [
                "database",
                "user",
                "cl_active",
                "cl_waiting",
                "cl_active_cancel_req",
                "cl_waiting_cancel_req",
                "sv_active",
                "sv_active_cancel",
                "sv_being_canceled",
                "sv_idle",
                "sv_used",
                "sv_tested",
                "sv_login",
                "maxwait",
                "maxwait_us",
                "pool_mode"
            ]
        );
        assert!(POOLS[2..15].iter().all(|c| c.kind == Kind::Int));
        let sample = crate::metrics::PoolSample {
            database: "d".into(),
            checked_out: 2,
            parked: 1,
            checked_in: 4,
            waiting: 3,
            ..Default::default()
        };
        let t = pools(vec![PoolRow {
            sample,
            pool_mode: "transaction",
        }]);
        let row = &t.rows[0];
        assert_eq!(row[2], Value::Int(3), "cl_active: linked to a connection");
        assert_eq!(row[3], Value::Int(3), "cl_waiting");
        assert_eq!(row[6], Value::Int(3), "sv_active: checked out and parked");
        assert_eq!(row[9], Value::Int(4), "sv_idle");
    }

    #[test]
    fn stats_average_per_second_and_per_event() {
        let row = StatsRow {
            database: "d".into(),
            server_assignments: 10,
            xacts: 20,
            queries: 40,
            received: 1000,
            xact_us: 2000,
            query_us: 4000,
            wait_us: 50,
            seconds: 10.0,
            ..Default::default()
        };
        let t = stats(vec![
            row,
            StatsRow {
                database: "idle".into(),
                ..Default::default()
            },
        ]);
        let names: Vec<_> = t.columns.iter().map(|c| c.name).collect();
        let get = |r: usize, name: &str| {
            t.rows[r][names.iter().position(|n| *n == name).unwrap()].clone()
        };
        assert_eq!(get(0, "avg_xact_count"), Value::Int(2));
        assert_eq!(get(0, "avg_recv"), Value::Int(100));
        assert_eq!(get(0, "avg_xact_time"), Value::Int(100));
        assert_eq!(get(0, "avg_query_time"), Value::Int(100));
        assert_eq!(get(0, "avg_wait_time"), Value::Int(5));
        assert_eq!(
            get(1, "avg_query_time"),
            Value::Int(0),
            "no division by zero"
        );
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("10.0.0.1:5432"),
            ("10.0.0.1".into(), Value::Int(5432))
        );
        assert_eq!(
            split_host_port("[::1]:6432"),
            ("::1".into(), Value::Int(6432))
        );
        assert_eq!(
            split_host_port("db.example:x"),
            ("db.example".into(), Value::Null)
        );
    }
}
