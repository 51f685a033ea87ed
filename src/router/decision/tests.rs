//! The decision table: statement text and the session's facts in, place
//! and reason out.

use super::*;
use crate::router::{classify, Classification, RouterConfig};
use std::collections::HashMap;
use Answer::*;
use Place::{Held, OpenOnPrimary, Primary, Replica};

fn route(sql: &str) -> Route {
    match classify(sql, &RouterConfig::default(), &HashMap::new()) {
        Classification::Routed(route) => route,
        other => panic!("{sql}: {other:?}"),
    }
}

/// No transaction, READ COMMITTED by default, lazy transactions on.
fn idle() -> Facts {
    Facts {
        default_isolation: Some(Isolation::ReadCommitted),
        ..Facts::default()
    }
}

fn lazy() -> Facts {
    Facts {
        transaction: Transaction::Lazy(Lazy::default()),
        ..idle()
    }
}

fn failed() -> Facts {
    Facts {
        transaction: Transaction::Lazy(Lazy {
            failed: true,
            ..Lazy::default()
        }),
        ..idle()
    }
}

/// A lazy transaction that ran a read, read only or not.
fn ran(read_only: bool) -> Facts {
    Facts {
        transaction: Transaction::Lazy(Lazy {
            ran: true,
            read_only,
            ..Lazy::default()
        }),
        ..idle()
    }
}

const BEGIN: Answer = Begin { read_only: false };
const COMMIT: Answer = Commit { chain: false };
const ROLLBACK: Answer = Rollback { chain: false };

fn check(cases: &[(&str, Facts, Place, Why)]) {
    let mut failures = Vec::new();
    for (sql, facts, place, why) in cases {
        let got = decide(&route(sql), facts);
        if got
            != (Decision {
                place: *place,
                why: *why,
            })
        {
            failures.push(format!(
                "{sql:?} with {facts:?}: expected {place:?} {why:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn outside_a_transaction() {
    check(&[
        ("select 1", idle(), Replica, Why::ReadOnly),
        ("select now()", idle(), Replica, Why::ReadOnly),
        ("insert into t values (1)", idle(), Primary, Why::Write),
        ("select nextval('s')", idle(), Primary, Why::Function),
        ("select * from t for update", idle(), Primary, Why::Locking),
        ("commit", idle(), Primary, Why::Transaction),
        ("savepoint a", idle(), Primary, Why::Transaction),
        (
            "select 1",
            Facts {
                primary_only: true,
                ..idle()
            },
            Primary,
            Why::PrimaryOnly,
        ),
        (
            "select 1",
            Facts {
                pinned: true,
                ..idle()
            },
            Primary,
            Why::Pinned,
        ),
        (
            "select 1",
            Facts {
                fixed: true,
                ..idle()
            },
            Held,
            Why::InTransaction,
        ),
    ]);
}

#[test]
fn begin_is_lazy_unless_the_transaction_keeps_a_snapshot() {
    let serializable_default = Facts {
        default_isolation: Some(Isolation::Serializable),
        ..idle()
    };
    let unknown_default = Facts {
        default_isolation: None,
        ..idle()
    };
    let replica_ro = Facts {
        read_only_transactions: ReadOnlyTransactions::Replica,
        ..idle()
    };
    let primary_reads = Facts {
        transaction_reads: TransactionReads::Primary,
        ..idle()
    };
    check(&[
        ("begin", idle(), Place::Answer(BEGIN), Why::Answered),
        (
            "START TRANSACTION",
            idle(),
            Place::Answer(BEGIN),
            Why::Answered,
        ),
        (
            "begin read write",
            idle(),
            Place::Answer(BEGIN),
            Why::Answered,
        ),
        (
            "begin isolation level read committed",
            serializable_default,
            Place::Answer(BEGIN),
            Why::Answered,
        ),
        ("begin", serializable_default, Primary, Why::Transaction),
        (
            "begin isolation level repeatable read",
            idle(),
            Primary,
            Why::Transaction,
        ),
        (
            "begin isolation level serializable",
            idle(),
            Primary,
            Why::Transaction,
        ),
        ("begin", unknown_default, Primary, Why::Transaction),
        (
            "begin isolation level read committed",
            unknown_default,
            Place::Answer(BEGIN),
            Why::Answered,
        ),
        ("begin", primary_reads, Primary, Why::Transaction),
        // A whole read-only transaction on one replica connection, if allowed.
        (
            "begin isolation level repeatable read read only",
            replica_ro,
            Replica,
            Why::ReadOnlyTransaction,
        ),
        (
            "begin isolation level repeatable read read only",
            idle(),
            Primary,
            Why::Transaction,
        ),
        (
            "begin isolation level serializable read only",
            replica_ro,
            Primary,
            Why::Transaction,
        ),
        // With anything else in its query, BEGIN is the primary's.
        ("begin; select 1", idle(), Primary, Why::Transaction),
        (
            "begin read only; select 1",
            replica_ro,
            Primary,
            Why::Transaction,
        ),
    ]);
}

#[test]
fn inside_a_lazy_transaction() {
    check(&[
        ("select * from t", lazy(), Replica, Why::ReadInTransaction),
        ("show search_path", lazy(), Replica, Why::ReadInTransaction),
        // Writes and everything with an effect open it on the primary.
        (
            "insert into t values (1)",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "update t set a = 1",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "create table x (a int)",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "set local statement_timeout = 1",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        ("savepoint a", lazy(), OpenOnPrimary, Why::OpensTransaction),
        ("release a", lazy(), OpenOnPrimary, Why::OpensTransaction),
        (
            "declare c cursor for select 1",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        ("lock table t", lazy(), OpenOnPrimary, Why::OpensTransaction),
        (
            "select * from t for share",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select nextval('s')",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "prepare p as select 1",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        ("execute p", lazy(), OpenOnPrimary, Why::OpensTransaction),
        (
            "set transaction isolation level serializable",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        // The transaction's own state: one value throughout it.
        ("select now()", lazy(), OpenOnPrimary, Why::OpensTransaction),
        (
            "select current_timestamp",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select transaction_timestamp()",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select localtimestamp",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select txid_current()",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select pg_current_xact_id()",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select pg_export_snapshot()",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select txid_current_snapshot()",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        // Its end, and another BEGIN, pgsplit answers.
        ("commit", lazy(), Place::Answer(COMMIT), Why::Answered),
        ("end", lazy(), Place::Answer(COMMIT), Why::Answered),
        ("rollback", lazy(), Place::Answer(ROLLBACK), Why::Answered),
        ("abort", lazy(), Place::Answer(ROLLBACK), Why::Answered),
        (
            "rollback to savepoint a",
            lazy(),
            Place::Answer(NoSavepoint),
            Why::Answered,
        ),
        (
            "begin",
            lazy(),
            Place::Answer(AlreadyInTransaction),
            Why::Answered,
        ),
        (
            "commit and chain",
            lazy(),
            Place::Answer(Commit { chain: true }),
            Why::Answered,
        ),
        (
            "rollback and chain",
            lazy(),
            Place::Answer(Rollback { chain: true }),
            Why::Answered,
        ),
        // The characteristics of a transaction: before any statement, set
        // on the primary; after one, PostgreSQL refuses what would change
        // its snapshot or make it writable.
        (
            "set transaction isolation level repeatable read",
            lazy(),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "set transaction isolation level repeatable read",
            ran(false),
            Place::Answer(TooLate(super::TooLate::Isolation)),
            Why::Answered,
        ),
        (
            "set transaction read write",
            ran(true),
            Place::Answer(TooLate(super::TooLate::ReadWrite)),
            Why::Answered,
        ),
        (
            "set transaction read write",
            ran(false),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "set transaction read only",
            ran(false),
            OpenOnPrimary,
            Why::OpensTransaction,
        ),
        (
            "select 1",
            Facts {
                primary_only: true,
                ..lazy()
            },
            OpenOnPrimary,
            Why::PrimaryOnly,
        ),
    ]);
}

#[test]
fn after_an_error_only_the_end_is_accepted() {
    check(&[
        ("select 1", failed(), Place::Answer(Aborted), Why::Answered),
        (
            "insert into t values (1)",
            failed(),
            Place::Answer(Aborted),
            Why::Answered,
        ),
        ("commit", failed(), Place::Answer(ROLLBACK), Why::Answered),
        ("rollback", failed(), Place::Answer(ROLLBACK), Why::Answered),
        (
            "rollback to savepoint a",
            failed(),
            Place::Answer(NoSavepoint),
            Why::Answered,
        ),
        ("begin", failed(), Place::Answer(Aborted), Why::Answered),
        (
            "commit and chain",
            failed(),
            Place::Answer(Rollback { chain: true }),
            Why::Answered,
        ),
    ]);
}

#[test]
fn an_open_transaction_keeps_its_connection() {
    let open = Facts {
        transaction: Transaction::Open,
        ..idle()
    };
    check(&[
        ("select 1", open, Held, Why::InTransaction),
        ("commit", open, Held, Why::InTransaction),
        ("begin", open, Held, Why::InTransaction),
    ]);
}

#[test]
fn the_pool_reason_takes_the_place_of_the_decision() {
    assert_eq!(Why::ReadOnly.after(None), Why::ReadOnly);
    assert_eq!(Why::ReadOnly.after(Some(Detour::Lag)), Why::Lag);
    assert_eq!(
        Why::ReadInTransaction.after(Some(Detour::ConsistencyWait)),
        Why::ConsistencyWait
    );
    for (i, why) in Why::ALL.iter().enumerate() {
        assert_eq!(*why as usize, i, "{why:?}");
    }
}
