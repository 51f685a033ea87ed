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
    /// COMMIT, END; `chain`: AND CHAIN, a new transaction like it begins.
    Commit {
        chain: bool,
    },
    /// ROLLBACK, ABORT (not TO a savepoint); `chain` as for COMMIT.
    Rollback {
        chain: bool,
    },
    /// ROLLBACK TO [SAVEPOINT] name.
    RollbackTo,
    Savepoint,
    Release,
    /// SET TRANSACTION ...: the transaction's own characteristics.
    SetTransaction(BeginOptions),
    /// Anything else that controls transactions (two-phase commit,
    /// several in one query): the primary's.
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

    /// PostgreSQL's spelling, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read uncommitted",
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        }
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
        Statement::Commit { chain, .. } => Control::Commit { chain: *chain },
        Statement::Rollback {
            chain,
            savepoint: None,
        } => Control::Rollback { chain: *chain },
        Statement::Rollback {
            chain: false,
            savepoint: Some(_),
        } => Control::RollbackTo,
        Statement::Rollback { .. } => Control::Other,
        Statement::Savepoint { .. } => Control::Savepoint,
        Statement::ReleaseSavepoint { .. } => Control::Release,
        Statement::Set(Set::SetTransaction {
            session: false,
            modes,
            snapshot: None,
        }) => Control::SetTransaction(begin_options(modes)),
        Statement::Set(Set::SetTransaction { session: false, .. }) => Control::Other,
        _ => return None,
    })
}

/// A BEGIN or START TRANSACTION the SQL parser does not take: with
/// `[NOT] DEFERRABLE`, which only a SERIALIZABLE READ ONLY transaction
/// heeds. Read word by word, as PostgreSQL's grammar has it; anything
/// else in it, `None`.
pub(crate) fn begin_with_deferrable(sql: &str) -> Option<BeginOptions> {
    let text = sql.trim().trim_end_matches(';').to_ascii_lowercase();
    let text = text.replace(',', " , ");
    let mut words = text.split_whitespace().peekable();
    match words.next()? {
        "begin" => {
            words.next_if(|w| matches!(*w, "work" | "transaction"));
        }
        "start" if words.next()? == "transaction" => {}
        _ => return None,
    }
    let mut options = BeginOptions::default();
    let mut deferrable = false;
    while let Some(word) = words.next() {
        match (word, words.peek().copied()) {
            (",", _) => {}
            ("deferrable", _) => deferrable = true,
            ("not", Some("deferrable")) => {
                words.next();
                deferrable = true;
            }
            ("read", Some("only")) => {
                words.next();
                options.read_only = Some(true);
            }
            ("read", Some("write")) => {
                words.next();
                options.read_only = Some(false);
            }
            ("isolation", Some("level")) => {
                words.next();
                let level = match (words.next()?, words.peek().copied()) {
                    ("serializable", _) => "serializable".to_string(),
                    (first @ ("repeatable" | "read"), Some(second)) => {
                        words.next();
                        format!("{first} {second}")
                    }
                    _ => return None,
                };
                options.isolation = Some(Isolation::from_setting(&level)?);
            }
            _ => return None,
        }
    }
    // Without DEFERRABLE the SQL parser would have taken it.
    deferrable.then_some(options)
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
        let commit = |chain| Some(Control::Commit { chain });
        let rollback = |chain| Some(Control::Rollback { chain });
        assert_eq!(of("commit"), commit(false));
        assert_eq!(of("end"), commit(false));
        assert_eq!(of("commit and chain"), commit(true));
        assert_eq!(of("rollback"), rollback(false));
        assert_eq!(of("abort"), rollback(false));
        assert_eq!(of("rollback and chain"), rollback(true));
        assert_eq!(of("rollback to savepoint a"), Some(Control::RollbackTo));
        assert_eq!(of("rollback to a"), Some(Control::RollbackTo));
        assert_eq!(of("savepoint a"), Some(Control::Savepoint));
        assert_eq!(of("release a"), Some(Control::Release));
        assert_eq!(
            of("set transaction isolation level serializable"),
            Some(Control::SetTransaction(BeginOptions {
                isolation: Some(Isolation::Serializable),
                read_only: None
            }))
        );
        assert_eq!(
            of("set transaction read write"),
            Some(Control::SetTransaction(BeginOptions {
                isolation: None,
                read_only: Some(false)
            }))
        );
        assert_eq!(of("select 1"), None);
    }

    #[test]
    fn begin_with_deferrable_read_by_hand() {
        let options = |isolation, read_only| {
            Some(BeginOptions {
                isolation,
                read_only,
            })
        };
        assert_eq!(
            begin_with_deferrable(
                "start transaction isolation level read committed, read write, not deferrable"
            ),
            options(Some(Isolation::ReadCommitted), Some(false))
        );
        assert_eq!(
            begin_with_deferrable("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE;"),
            options(Some(Isolation::Serializable), Some(true))
        );
        assert_eq!(
            begin_with_deferrable("begin work deferrable"),
            options(None, None)
        );
        // Without DEFERRABLE it is the parser's; anything odd, no one's.
        assert_eq!(begin_with_deferrable("begin read only"), None);
        assert_eq!(begin_with_deferrable("begin deferrable; select 1"), None);
        assert_eq!(
            begin_with_deferrable("begin isolation level snapshot deferrable"),
            None
        );
        assert_eq!(begin_with_deferrable("select deferrable"), None);
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
