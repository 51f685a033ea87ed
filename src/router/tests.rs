//! The routing table: statement in, destination (and reason) out.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::router::{BeginOptions, Control};
use Destination::{Primary, Replica};

/// A catalog stub: `my_volatile` and `audit_log` are volatile, `my_stable` and
/// `slugify` are not; anything else is unknown.
pub(super) fn catalog() -> HashMap<String, bool> {
    [
        ("my_volatile", true),
        ("audit_log", true),
        ("my_stable", false),
        ("slugify", false),
        ("cheap_volatile", true),
    ]
    .into_iter()
    .map(|(name, volatile)| (name.to_string(), volatile))
    .collect()
}

fn config() -> RouterConfig {
    RouterConfig {
        read_only_functions: vec!["cheap_volatile".into(), "reporting.my_volatile".into()],
        write_functions: vec!["app.bump_counter".into(), "touch".into()],
        ..RouterConfig::default()
    }
}

fn route(sql: &str, config: &RouterConfig) -> Route {
    match classify(sql, config, &catalog()) {
        Classification::Routed(route) => route,
        Classification::NeedsCatalog(names) => panic!("{sql}: needs catalog for {names:?}"),
    }
}

/// Statements with only a destination to check.
const DESTINATIONS: &[(&str, Destination)] = &[
    // plain reads
    ("select 1", Replica),
    ("SELECT 1;", Replica),
    ("  \n\tselect 1  ", Replica),
    (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
        Replica,
    ),
    ("select * from t where a in (select b from u)", Replica),
    (
        "select a, count(*) from t group by a having count(*) > 1 order by 2 desc limit 10",
        Replica,
    ),
    (
        "select * from t join u using (id) left join v on v.id = t.id",
        Replica,
    ),
    ("values (1), (2)", Replica),
    // sqlparser 0.64 does not parse PostgreSQL's bare `TABLE t`: a missed
    // optimisation, on the safe side.
    ("table t", Primary),
    ("select 1 union all select 2", Replica),
    ("select 1 except select 2 intersect select 3", Replica),
    ("with x as (select 1) select * from x", Replica),
    (
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select * from r",
        Replica,
    ),
    ("SeLeCt * FrOm T", Replica),
    ("select E'\\xZZ', E'\\u0041'", Replica),
    ("select E'\\u12'", Primary),
    ("select * from t where path = 'C:\\dir'", Replica),
    ("select \"Weird Name\".\"Col\" from \"Weird Name\"", Replica),
    ("select exists (select 1 from t where a = 1)", Replica),
    (
        "select case when a > 0 then 'pos' else 'neg' end from t",
        Replica,
    ),
    (
        "select now(), current_timestamp, current_date, current_user",
        Replica,
    ),
    (
        "select lower(name), upper(name), length(name), coalesce(a, b) from t",
        Replica,
    ),
    ("select pg_catalog.count(*) from t", Replica),
    ("select * from generate_series(1, 3)", Replica),
    (
        "select * from generate_series(1, 3) as g(n) join t on t.id = g.n",
        Replica,
    ),
    ("select * from unnest(array[1,2,3])", Replica),
    ("select jsonb_build_object('a', 1)", Replica),
    ("select random()", Replica),
    ("select gen_random_uuid()", Replica),
    ("select pg_sleep(1)", Replica),
    ("select clock_timestamp()", Replica),
    ("select pg_backend_pid(), version()", Replica),
    ("select current_setting('work_mem')", Replica),
    ("select x::text, cast(y as int) from t", Replica),
    (
        "select extract(year from d), substring(s from 1 for 2) from t",
        Replica,
    ),
    (
        "select * from t where s like 'a%' and d > now() - interval '1 day'",
        Replica,
    ),
    ("select $1, $2::int", Replica),
    ("select 'a;b', $$ insert $$", Replica),
    ("select 1 -- trailing comment", Replica),
    ("/* leading comment */ select 1", Replica),
    ("select 'it''s'", Replica),
    ("select E'a\\'b'", Replica),
    ("select 1; select 2", Replica),
    ("select my_stable(x) from t", Replica),
    ("select slugify(name) from t", Replica),
    ("select * from lateral_view, lateral (select 1) s", Replica),
    (
        "select row_number() over (partition by a order by b) from t",
        Replica,
    ),
    ("select * from t for update", Primary),
    // writes
    ("insert into t values (1)", Primary),
    ("INSERT INTO t SELECT * FROM u", Primary),
    ("update t set a = 1", Primary),
    ("delete from t where id = 1", Primary),
    (
        "merge into t using u on t.id = u.id when matched then update set a = u.a",
        Primary,
    ),
    ("insert into t values (1) returning id", Primary),
    ("create table t (a int)", Primary),
    ("create table t2 as select * from t", Primary),
    ("drop table t", Primary),
    ("alter table t add column b int", Primary),
    ("truncate t", Primary),
    ("create index on t (a)", Primary),
    ("grant select on t to bob", Primary),
    ("create materialized view mv as select 1", Primary),
    ("refresh materialized view mv", Primary),
    // session commands and utilities
    ("set search_path = app", Primary),
    ("set local statement_timeout = 0", Primary),
    ("reset all", Primary),
    ("discard all", Primary),
    ("listen chan", Primary),
    ("notify chan", Primary),
    ("unlisten *", Primary),
    ("prepare p as select 1", Primary),
    ("execute p", Primary),
    ("deallocate p", Primary),
    ("declare c cursor for select 1", Primary),
    ("fetch next from c", Primary),
    ("close c", Primary),
    ("copy t to stdout", Replica),
    ("copy (select 1) to stdout", Replica),
    ("copy (select x from t where x > 1) to stdout with (format csv)", Replica),
    ("copy (select nextval('s')) to stdout", Primary),
    ("copy (select * from t for update) to stdout", Primary),
    ("copy t to '/tmp/x'", Primary),
    ("copy t from stdin", Primary),
    ("vacuum t", Primary),
    ("analyze t", Primary),
    ("lock table t in exclusive mode", Primary),
    ("call proc()", Primary),
    ("do $$ begin perform 1; end $$", Primary),
    ("checkpoint", Primary),
    ("set transaction read only", Primary),
    // multi-statement: the strictest part wins
    ("select 1; insert into t values (1)", Primary),
    ("insert into t values (1); select 1", Primary),
    ("select 1; select nextval('s')", Primary),
    // garbage is the primary's (the server will report the error)
    ("selec 1", Primary),
    ("select from where", Primary),
    ("'", Primary),
    ("select 'unterminated", Primary),
    ("/* unterminated comment", Primary),
    (")))(((", Primary),
    ("select * from t for no key update", Primary),
    ("select * from t for key share", Primary),
];

#[test]
fn destinations() {
    let config = config();
    let mut failures = Vec::new();
    for (sql, expected) in DESTINATIONS {
        let got = route(sql, &config);
        if got.destination != *expected {
            failures.push(format!("{sql:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Statements whose reason matters.
fn reasons() -> Vec<(&'static str, Destination, Reason)> {
    use Reason::*;
    let write = |name: &str| WriteFunction(name.to_string());
    vec![
        ("select 1", Replica, ReadOnly),
        ("insert into t values (1)", Primary, Write),
        ("", Primary, Empty),
        ("   \n  ", Primary, Empty),
        (";", Primary, Empty),
        ("-- just a comment", Primary, Empty),
        // locking, anywhere in the tree
        ("select * from t for update", Primary, Locking),
        ("select * from t for share", Primary, Locking),
        ("select * from t for update skip locked", Primary, Locking),
        ("select * from t for update of t nowait", Primary, Locking),
        (
            "select * from (select * from t for update) s",
            Primary,
            Locking,
        ),
        (
            "select * from t where id in (select id from u for share)",
            Primary,
            Locking,
        ),
        (
            "with x as (select * from t for update) select * from x",
            Primary,
            Locking,
        ),
        (
            "select 1 union select a from (select a from t for update) s",
            Primary,
            Locking,
        ),
        // SELECT INTO
        ("select * into new_t from t", Primary, SelectInto),
        (
            "select a into temp tmp from t",
            Primary,
            Pins(Pin::TempObject),
        ),
        // data-modifying CTEs
        (
            "with x as (insert into t values (1) returning *) select * from x",
            Primary,
            DataModifyingCte,
        ),
        (
            "with x as (update t set a = 1 returning *) select * from x",
            Primary,
            DataModifyingCte,
        ),
        (
            "with x as (delete from t returning *) select count(*) from x",
            Primary,
            DataModifyingCte,
        ),
        (
            "with a as (select 1), b as (delete from t returning *) select * from a",
            Primary,
            DataModifyingCte,
        ),
        // sqlparser makes the whole statement a Query whose body is the INSERT.
        (
            "with x as (select 1) insert into t select * from x",
            Primary,
            DataModifyingCte,
        ),
        ("select * from t for no key update", Primary, ParseFailure),
        ("select * from t for key share", Primary, ParseFailure),
        // EXPLAIN
        ("explain select * from t", Replica, ReadOnly),
        ("explain verbose select * from t", Replica, ReadOnly),
        ("explain (costs off) select * from t", Replica, ReadOnly),
        ("explain (analyze false) select * from t", Replica, ReadOnly),
        ("explain (analyze off) select * from t", Replica, ReadOnly),
        ("explain analyze select * from t", Primary, ExplainAnalyze),
        ("EXPLAIN ANALYZE VERBOSE select 1", Primary, ExplainAnalyze),
        ("explain (analyze) select * from t", Primary, ExplainAnalyze),
        (
            "explain (analyze, buffers) select * from t",
            Primary,
            ExplainAnalyze,
        ),
        (
            "explain (costs off, ANALYZE true) select 1",
            Primary,
            ExplainAnalyze,
        ),
        ("explain (analyze 1) select 1", Primary, ExplainAnalyze),
        ("explain insert into t values (1)", Primary, Write),
        ("explain select nextval('s')", Primary, write("nextval")),
        ("explain select * from t for update", Primary, Locking),
        // write functions, in expressions and in FROM
        ("select nextval('s')", Primary, write("nextval")),
        ("SELECT NEXTVAL('s')", Primary, write("nextval")),
        ("select pg_catalog.nextval('s')", Primary, write("nextval")),
        ("select currval('s'), lastval()", Primary, write("currval")),
        ("select setval('s', 10)", Primary, write("setval")),
        // a lone set_config(literal name, value, false) is tracked like SET
        (
            "select set_config('search_path', 'x', false)",
            Primary,
            Setting("search_path".into()),
        ),
        (
            "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new",
            Primary,
            Setting("jit".into()),
        ),
        (
            "SELECT set_config('jit', $1, false)",
            Primary,
            Setting("jit".into()),
        ),
        (
            "select set_config(name, 'x', false) from t",
            Primary,
            Pins(Pin::SessionSetting),
        ),
        (
            "select set_config('a.b', 'x', false), set_config('a.c', 'y', false)",
            Primary,
            Pins(Pin::SessionSetting),
        ),
        (
            "select set_config('a.b', upper('x'), false)",
            Primary,
            Pins(Pin::SessionSetting),
        ),
        (
            "select set_config('a.b', 'x', true)",
            Primary,
            write("set_config"),
        ),
        (
            "select pg_advisory_lock(1)",
            Primary,
            Pins(Pin::AdvisoryLock),
        ),
        (
            "select pg_try_advisory_xact_lock(1, 2)",
            Primary,
            write("pg_try_advisory_xact_lock"),
        ),
        (
            "select * from pg_advisory_lock(1)",
            Primary,
            Pins(Pin::AdvisoryLock),
        ),
        (
            "select * from pg_catalog.pg_advisory_unlock_all()",
            Primary,
            write("pg_advisory_unlock_all"),
        ),
        ("select pg_notify('c', 'x')", Primary, write("pg_notify")),
        ("select txid_current()", Primary, write("txid_current")),
        (
            "select pg_current_wal_lsn()",
            Primary,
            write("pg_current_wal_lsn"),
        ),
        ("select lo_import('/tmp/x')", Primary, write("lo_import")),
        (
            "select * from dblink('x', 'select 1') as t(a int)",
            Primary,
            write("dblink"),
        ),
        (
            "select pg_terminate_backend(123)",
            Primary,
            write("pg_terminate_backend"),
        ),
        (
            "select pg_create_logical_replication_slot('s', 'pgoutput')",
            Primary,
            write("pg_create_logical_replication_slot"),
        ),
        ("select pg_stat_reset()", Primary, write("pg_stat_reset")),
        ("select setseed(0.5)", Primary, write("setseed")),
        (
            "select a, (select nextval('s')) from t",
            Primary,
            write("nextval"),
        ),
        (
            "select * from t where id = coalesce(nextval('s'), 1)",
            Primary,
            write("nextval"),
        ),
        (
            "select * from t order by nextval('s')",
            Primary,
            write("nextval"),
        ),
        (
            "select count(*) filter (where pg_advisory_lock(1) is null) from t",
            Primary,
            Pins(Pin::AdvisoryLock),
        ),
        (
            "select * from t join lateral (select nextval('s')) n on true",
            Primary,
            write("nextval"),
        ),
        ("select 1; select setval('s', 1)", Primary, write("setval")),
        ("values (nextval('s'))", Primary, write("nextval")),
        (
            "select * from (values (setval('s', 1))) v",
            Primary,
            write("setval"),
        ),
        (
            "select * from rows from (generate_series(1, 2), pg_advisory_lock(3))",
            Primary,
            Pins(Pin::AdvisoryLock),
        ),
        ("/* nextval() */ select 1", Replica, ReadOnly),
        ("select 'nextval(1)'", Replica, ReadOnly),
        ("select \"nextval\" from t", Replica, ReadOnly),
        // catalog-volatile and configured functions
        ("select my_volatile()", Primary, write("my_volatile")),
        ("select * from audit_log('x')", Primary, write("audit_log")),
        ("select cheap_volatile()", Replica, ReadOnly),
        ("select reporting.my_volatile()", Replica, ReadOnly),
        ("select other.my_volatile()", Primary, write("my_volatile")),
        ("select touch(1)", Primary, write("touch")),
        ("select app.bump_counter()", Primary, write("bump_counter")),
        ("select bump_counter()", Primary, write("bump_counter")),
        (
            "select my_stable(1), my_volatile()",
            Primary,
            write("my_volatile"),
        ),
        // SHOW and introspection
        ("show work_mem", Replica, ReadOnly),
        ("SHOW search_path", Replica, ReadOnly),
        ("show all", Replica, ReadOnly),
        ("show transaction isolation level", Replica, ReadOnly),
        ("show transaction_read_only", Primary, Introspection),
        ("select gid from pg_prepared_xacts", Primary, Introspection),
        (
            "select * from pg_catalog.pg_stat_activity",
            Primary,
            Introspection,
        ),
        (
            "select count(*) from pg_locks l join pg_class c on c.oid = l.relation",
            Primary,
            Introspection,
        ),
        ("select * from pg_stat_replication", Primary, Introspection),
        (
            "select slot_name from pg_replication_slots",
            Primary,
            Introspection,
        ),
        (
            "select exists (select 1 from pg_prepared_xacts)",
            Primary,
            Introspection,
        ),
        ("SHOW TRANSACTION_READ_ONLY", Primary, Introspection),
        ("show default_transaction_read_only", Primary, Introspection),
        ("show in_hot_standby", Primary, Introspection),
        (
            "select current_setting('transaction_read_only')",
            Primary,
            Introspection,
        ),
        (
            "select current_setting(name) from settings",
            Primary,
            Introspection,
        ),
        ("select pg_is_in_recovery()", Primary, Introspection),
        // transactions
        (
            "begin",
            Primary,
            Transaction(Control::Begin(BeginOptions::default())),
        ),
        (
            "BEGIN TRANSACTION",
            Primary,
            Transaction(Control::Begin(BeginOptions::default())),
        ),
        (
            "start transaction",
            Primary,
            Transaction(Control::Begin(BeginOptions::default())),
        ),
        (
            "begin read write",
            Primary,
            Transaction(Control::Begin(BeginOptions {
                read_only: Some(false),
                isolation: None,
            })),
        ),
        (
            "start transaction read only",
            Primary,
            Transaction(Control::Begin(BeginOptions {
                read_only: Some(true),
                isolation: None,
            })),
        ),
        (
            "commit",
            Primary,
            Transaction(Control::Commit { chain: false }),
        ),
        (
            "rollback",
            Primary,
            Transaction(Control::Rollback { chain: false }),
        ),
        (
            "end",
            Primary,
            Transaction(Control::Commit { chain: false }),
        ),
        ("savepoint a", Primary, Transaction(Control::Savepoint)),
        (
            "release savepoint a",
            Primary,
            Transaction(Control::Release),
        ),
        (
            "rollback to savepoint a",
            Primary,
            Transaction(Control::RollbackTo),
        ),
        // Transaction control with anything else in its query
        ("begin; select 1", Primary, Transaction(Control::Other)),
        (
            "start transaction read write, not deferrable",
            Primary,
            Transaction(Control::Begin(BeginOptions {
                isolation: None,
                read_only: Some(false),
            })),
        ),
        ("select 1; commit", Primary, Transaction(Control::Other)),
        // Reads of the transaction's own state: read-only, but tied to it
        ("select now()", Replica, TransactionState("now".into())),
        (
            "select current_timestamp",
            Replica,
            TransactionState("current_timestamp".into()),
        ),
        (
            "select localtimestamp",
            Replica,
            TransactionState("localtimestamp".into()),
        ),
        ("select clock_timestamp()", Replica, ReadOnly),
        // hints: checked before parsing, ignored inside literals
        ("/* pgsplit:primary */ select 1", Primary, Hint),
        ("select 1 /* pgsplit:primary */", Primary, Hint),
        (
            "/* pgsplit:replica */ select pg_advisory_lock(1)",
            Replica,
            Hint,
        ),
        (
            "/* app:web, pgsplit:replica */ select * from t for update",
            Replica,
            Hint,
        ),
        (
            "select '/* pgsplit:replica */' from t for update",
            Primary,
            Locking,
        ),
        (
            "-- pgsplit:replica\nselect nextval('s')",
            Primary,
            write("nextval"),
        ),
    ]
}

#[test]
fn reasons_table() {
    let config = config();
    let mut failures = Vec::new();
    for (sql, destination, reason) in reasons() {
        let got = route(sql, &config);
        let expected = Route::new(destination, reason);
        if got != expected {
            failures.push(format!("{sql:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unknown_functions_need_the_catalog() {
    let config = RouterConfig::default();
    let empty = HashMap::new();
    let needs = |sql: &str, catalog: &HashMap<String, bool>| classify(sql, &config, catalog);
    assert_eq!(
        needs("select my_func(a), other_func() from t", &empty),
        Classification::NeedsCatalog(vec!["my_func".into(), "other_func".into()])
    );
    assert_eq!(
        needs(
            "select * from my_srf(1) where my_func(a) and my_func(b)",
            &empty
        ),
        Classification::NeedsCatalog(vec!["my_srf".into(), "my_func".into()])
    );
    assert_eq!(
        needs("select myschema.count(*) from t", &empty),
        Classification::NeedsCatalog(vec!["count".into()])
    );
    assert_eq!(
        needs("select \"MyFunc\"()", &empty),
        Classification::NeedsCatalog(vec!["MyFunc".into()])
    );
    // Definite answers do not wait for the catalog.
    for sql in [
        "select my_func(), nextval('s')",
        "insert into t values (my_func())",
    ] {
        assert!(
            matches!(needs(sql, &empty), Classification::Routed(_)),
            "{sql}"
        );
    }
    // Once recorded, the answer is final; one volatile name is enough.
    let mut known = HashMap::new();
    known.insert("my_func".to_string(), false);
    assert_eq!(
        needs("select my_func(a), other_func() from t", &known),
        Classification::NeedsCatalog(vec!["other_func".into()])
    );
    known.insert("other_func".to_string(), false);
    assert_eq!(
        needs("select my_func(a), other_func() from t", &known),
        Classification::Routed(Route::new(Replica, Reason::ReadOnly))
    );
    known.insert("other_func".to_string(), true);
    assert_eq!(
        needs("select my_func(a), other_func() from t", &known),
        Classification::Routed(Route::new(
            Primary,
            Reason::WriteFunction("other_func".into())
        ))
    );
}

#[test]
fn garbage_never_panics() {
    let config = config();
    let long_nesting = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let deep_select = format!("{}1{}", "(select ".repeat(500), ")".repeat(500));
    let inputs = [
        "\0",
        "select '\0'",
        "\u{feff}select 1",
        "select 1 /* é */ -- ü",
        "$$",
        "$1$",
        "E'\\",
        "/*/",
        "*/",
        "'''",
        "\"\"\"",
        "select $a",
        "select 1e",
        "select .",
        "🦀",
        long_nesting.as_str(),
        deep_select.as_str(),
        ";;;;",
        "explain",
        "show",
        "begin begin",
    ];
    let router = Router::new(RouterConfig {
        cache_size: 64,
        ..config.clone()
    });
    for sql in inputs {
        let _ = classify(sql, &config, &catalog());
        let _ = router.classify(sql, &catalog());
        let _ = normalize::cache_key(sql);
        let _ = hint::find(sql);
    }
}

#[test]
fn describe_names_the_function() {
    assert_eq!(
        Reason::WriteFunction("nextval".into()).describe(),
        "calls nextval(), which may write"
    );
    assert!(!Reason::Locking.describe().is_empty());
}

#[test]
fn router_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

/// Prints classify() timings; run with `cargo test --release timings -- --nocapture --ignored`.
#[test]
#[ignore]
fn timings() {
    let catalog = catalog();
    let config = RouterConfig {
        cache_size: 10_000,
        ..RouterConfig::default()
    };
    let router = Router::new(config.clone());
    let rounds = 100_000u32;
    let sqls: Vec<String> = (0..rounds)
        .map(|aid| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"))
        .collect();

    let start = Instant::now();
    for sql in &sqls {
        std::hint::black_box(classify(sql, &config, &catalog));
    }
    let uncached = start.elapsed() / rounds;

    let start = Instant::now();
    for sql in &sqls {
        std::hint::black_box(router.classify(sql, &catalog));
    }
    let cached = start.elapsed() / rounds;

    let start = Instant::now();
    for sql in &sqls {
        std::hint::black_box(normalize::cache_key(sql));
    }
    let key = start.elapsed() / rounds;
    println!(
        "uncached classify: {uncached:?}/statement, cached: {cached:?}/statement, key alone: {key:?}"
    );
    println!("cache stats: {:?}", router.cache_stats());
}

/// Random texts, each also written with other literals: nothing may panic,
/// and texts that share a cache key route alike. The route the cache keeps
/// for a key is served to every text of the key, so every text of a key
/// whose route is cacheable must classify to the same route. Texts whose
/// routes are not cached (they read a literal's value, or need the
/// catalog) may differ, but only towards the primary: none may go to the
/// primary where the route the cache keeps for its key goes to a replica.
///
/// Known exceptions, left out here: texts sqlparser cannot parse, whose
/// pins are read from the raw text, literals included
/// (`pin::find_in_unparsed`: `DO $$BEGIN PERFORM set_config('a', 'b',
/// false); END$$` pins, `DO $$BEGIN NULL; END$$` does not, one key), and
/// which sqlparser may parse with a string where it fails with a number
/// (`select insert 'x'`, `select insert 1`); and `pg_temp` inside a
/// literal (`pin::names_temp_schema`), which is not among the literals
/// below.
#[test]
fn random_text_never_panics_and_texts_sharing_a_cache_key_route_alike() {
    /// Noise: a SQL-ish alphabet, to find panics.
    const ALPHABET: &[&str] = &[
        "select ",
        "'",
        "\"",
        "$",
        "$$",
        "$a$",
        "E'",
        "\\",
        "/*",
        "*/",
        "--",
        "\n",
        "1",
        ".",
        "e",
        "x",
        "(",
        ")",
        ";",
        "for update",
        "nextval(",
        "é",
        " ",
        "pgsplit:replica",
        "insert ",
        " from t",
        " where a = ",
        ", ",
        "current_setting(",
        "set_config(",
    ];
    /// Statements, for keys that parse: `{e}` is an expression, the same in
    /// every variant.
    const STATEMENTS: &[&str] = &[
        "select {e}",
        "select {e}, {e} from t where a = {e}",
        "select {e} from t for update",
        "select {e} into u",
        "values ({e}), ({e})",
        "select * from t where a in (select {e})",
        "with x as (select {e}) select * from x",
        "with x as (insert into t values ({e}) returning *) select * from x",
        "explain select {e}",
        "explain analyze select {e}",
        "/* pgsplit:replica */ select {e}",
        "copy (select {e}) to stdout",
        "insert into t values ({e})",
        "update t set a = {e} where b = {e}",
        "delete from t where a = {e}",
        "set work_mem = {e}",
        "prepare p as select {e}",
        "create temp table x as select {e}",
        "begin read only; select {e}",
    ];
    /// Expressions: `?` is a literal, another in each variant.
    const EXPRESSIONS: &[&str] = &[
        "?",
        "a",
        "?::int",
        "date ?",
        "? || ?",
        "a + ?",
        "(select ?)",
        "lower(?)",
        "now()",
        "random()",
        "current_setting(?)",
        "set_config(?, ?, false)",
        "nextval(?)",
        "pg_advisory_lock(?)",
        "my_volatile(?)",
        "my_stable(?)",
        "cheap_volatile(?)",
        "unknown_fn(?)",
    ];
    /// Whole literals, numbers and strings: the key makes each one byte.
    const LITERALS: &[&str] = &[
        "1",
        "23",
        "4.5",
        "6e7",
        "'a'",
        "''",
        "'transaction_read_only'",
        "'work_mem'",
        "E'b'",
        "$$c$$",
        "$q$d$q$",
    ];
    const VARIANTS: usize = 4;
    let config = config();
    let router = Router::new(RouterConfig {
        cache_size: 256,
        ..config.clone()
    });
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    // Parsed texts by cache key: (text, classification, cacheable).
    let mut keys: HashMap<String, Vec<(String, Classification, bool)>> = HashMap::new();
    for round in 0..10_000 {
        // A template: the text with `?` where a literal goes.
        let template = if round % 2 == 0 {
            (0..next(12))
                .map(|_| match next(ALPHABET.len() + 1) {
                    i if i < ALPHABET.len() => ALPHABET[i],
                    _ => "?",
                })
                .collect::<String>()
        } else {
            STATEMENTS[next(STATEMENTS.len())]
                .split("{e}")
                .enumerate()
                .map(|(i, part)| match i {
                    0 => part.to_string(),
                    _ => format!("{}{part}", EXPRESSIONS[next(EXPRESSIONS.len())]),
                })
                .collect()
        };
        for _ in 0..VARIANTS {
            let sql: String = template
                .split('?')
                .enumerate()
                .map(|(i, part)| match i {
                    0 => part.to_string(),
                    _ => format!("{}{part}", LITERALS[next(LITERALS.len())]),
                })
                .collect();
            let _ = router.classify(&sql, &catalog());
            let parsed = sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::PostgreSqlDialect {},
                &sql,
            )
            .is_ok();
            let texts = keys.entry(normalize::cache_key(&sql)).or_default();
            if parsed && texts.iter().all(|(text, ..)| *text != sql) {
                let outcome = classify::classify(&sql, &config, &catalog());
                texts.push((sql, outcome.classification, outcome.cacheable));
            }
        }
    }
    let mut compared = 0;
    for texts in keys.values().filter(|texts| texts.len() > 1) {
        let kept = texts.iter().find_map(|(sql, classification, cacheable)| {
            match (classification, cacheable) {
                (Classification::Routed(route), true) => Some((sql, route)),
                _ => None,
            }
        });
        let Some((first, kept)) = kept else {
            continue;
        };
        compared += 1;
        for (sql, classification, cacheable) in texts {
            let alike = match classification {
                Classification::Routed(route) if *cacheable => route == kept,
                Classification::Routed(route) => {
                    kept.destination == Primary || route.destination == Replica
                }
                Classification::NeedsCatalog(_) => kept.destination == Primary,
            };
            assert!(
                alike,
                "{sql:?} ({classification:?}) shares its cache key with {first:?}, \
                 whose route the cache keeps ({kept:?})"
            );
        }
    }
    // Enough keys shared by several texts that this tests something.
    assert!(compared > 500, "only {compared} keys compared");
}

/// A router with a cache of 100 routes, for the cache and memo tests.
pub(super) fn cached_router() -> Router {
    Router::new(RouterConfig {
        cache_size: 100,
        ..RouterConfig::default()
    })
}
