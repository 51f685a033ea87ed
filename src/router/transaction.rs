//! Transaction control statements, read for what the session does with a
//! transaction: BEGIN and its options (a transaction that has not written
//! yet is begun by pgsplit itself, see `router::decision`), COMMIT,
//! ROLLBACK, savepoints, SET TRANSACTION.

use sqlparser::ast::{
    Set, Statement, TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
};

/// A transaction control statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// BEGIN / START TRANSACTION, alone in its query.
    Begin(BeginOptions),
    /// COMMIT, END (not AND CHAIN).
    Commit,
    /// ROLLBACK, ABORT (not AND CHAIN, not TO a savepoint).
    Rollback,
    /// ROLLBACK TO [SAVEPOINT] name.
    RollbackTo,
    Savepoint,
    Release,
    /// SET TRANSACTION ...: the transaction's own characteristics.
    SetTransaction,
    /// Anything else that controls transactions (AND CHAIN, two-phase
    /// commit, several in one query): the primary's.
    Other,
}

/// What a BEGIN says of its transaction; `None`: the session's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BeginOptions {
    pub isolation: Option<Isolation>,
    pub read_only: Option<bool>,
}

/// Isolation levels, ordered by strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    /// Whether the whole transaction must see one snapshot (REPEATABLE
    /// READ and SERIALIZABLE): its statements cannot be spread over servers.
    pub fn keeps_snapshot(self) -> bool {
        self >= Isolation::RepeatableRead
    }

    /// A setting's value (`default_transaction_isolation`,
    /// `transaction_isolation`) as PostgreSQL spells it, in any case.
    pub fn from_setting(value: &str) -> Option<Isolation> {
        match value.trim().to_ascii_lowercase().as_str() {
            "read uncommitted" => Some(Isolation::ReadUncommitted),
            "read committed" => Some(Isolation::ReadCommitted),
            "repeatable read" => Some(Isolation::RepeatableRead),
            "serializable" => Some(Isolation::Serializable),
            _ => None,
        }
    }
}

/// The control statement `statement` is, if it is one.
pub(crate) fn control(statement: &Statement) -> Option<Control> {
    Some(match statement {
        Statement::StartTransaction {
            modes,
            statements,
            exception,
            ..
        } if statements.is_empty() && exception.is_none() => Control::Begin(begin_options(modes)),
        Statement::StartTransaction { .. } => Control::Other,
        Statement::Commit { chain: false, .. } => Control::Commit,
        Statement::Rollback {
            chain: false,
            savepoint: None,
        } => Control::Rollback,
        Statement::Rollback {
            chain: false,
            savepoint: Some(_),
        } => Control::RollbackTo,
        Statement::Commit { .. } | Statement::Rollback { .. } => Control::Other,
        Statement::Savepoint { .. } => Control::Savepoint,
        Statement::ReleaseSavepoint { .. } => Control::Release,
        Statement::Set(Set::SetTransaction { session: false, .. }) => Control::SetTransaction,
        _ => return None,
    })
}

fn begin_options(modes: &[TransactionMode]) -> BeginOptions {
    let mut options = BeginOptions::default();
    for mode in modes {
        match mode {
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => {
                options.read_only = Some(true)
            }
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => {
                options.read_only = Some(false)
            }
            TransactionMode::IsolationLevel(level) => {
                options.isolation = Some(match level {
                    TransactionIsolationLevel::ReadUncommitted => Isolation::ReadUncommitted,
                    TransactionIsolationLevel::ReadCommitted => Isolation::ReadCommitted,
                    TransactionIsolationLevel::RepeatableRead => Isolation::RepeatableRead,
                    // Not PostgreSQL's; in doubt, the strongest.
                    TransactionIsolationLevel::Serializable
                    | TransactionIsolationLevel::Snapshot => Isolation::Serializable,
                })
            }
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn of(sql: &str) -> Option<Control> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        control(&statements[0])
    }

    #[test]
    fn control_statements_and_options() {
        let begin = |isolation, read_only| {
            Some(Control::Begin(BeginOptions {
                isolation,
                read_only,
            }))
        };
        assert_eq!(of("begin"), begin(None, None));
        assert_eq!(of("BEGIN TRANSACTION"), begin(None, None));
        assert_eq!(
            of("start transaction isolation level repeatable read, read only"),
            begin(Some(Isolation::RepeatableRead), Some(true))
        );
        assert_eq!(of("begin read write"), begin(None, Some(false)));
        assert_eq!(of("commit"), Some(Control::Commit));
        assert_eq!(of("end"), Some(Control::Commit));
        assert_eq!(of("commit and chain"), Some(Control::Other));
        assert_eq!(of("rollback"), Some(Control::Rollback));
        assert_eq!(of("abort"), Some(Control::Rollback));
        assert_eq!(of("rollback to savepoint a"), Some(Control::RollbackTo));
        assert_eq!(of("rollback to a"), Some(Control::RollbackTo));
        assert_eq!(of("savepoint a"), Some(Control::Savepoint));
        assert_eq!(of("release a"), Some(Control::Release));
        assert_eq!(
            of("set transaction isolation level serializable"),
            Some(Control::SetTransaction)
        );
        assert_eq!(of("select 1"), None);
    }

    #[test]
    fn isolation_from_settings() {
        assert_eq!(
            Isolation::from_setting("Repeatable Read"),
            Some(Isolation::RepeatableRead)
        );
        assert!(Isolation::Serializable.keeps_snapshot());
        assert!(!Isolation::ReadCommitted.keeps_snapshot());
        assert_eq!(Isolation::from_setting("default"), None);
    }
}
