//! Why a statement goes where it goes, in words for the logs and the admin
//! console.

use super::pin::Pin;
use super::transaction::Control;

/// Why a statement goes where it goes; [`Reason::describe`] gives words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Provably read-only statement(s).
    ReadOnly,
    /// INSERT/UPDATE/DELETE/MERGE, DDL, session commands, or anything else
    /// not provably read-only.
    Write,
    /// BEGIN / START TRANSACTION / COMMIT / ROLLBACK / SAVEPOINT ...: what
    /// runs where is decided with the session's transaction
    /// (`router::decision`).
    Transaction(Control),
    /// A portal that outlives its batch (named, or read a few rows at a
    /// time): inside a transaction, where the transaction runs.
    Portal,
    /// A read of the transaction's own state (its start time, snapshot):
    /// anywhere outside a transaction, where the transaction runs inside
    /// one (`now()` is one value throughout a transaction).
    TransactionState(String),
    /// A `/* pgsplit:primary */` or `/* pgsplit:replica */` comment.
    Hint,
    /// A row-locking clause (FOR UPDATE / FOR SHARE ...) somewhere in the query.
    Locking,
    /// SELECT ... INTO creates a table.
    SelectInto,
    /// WITH x AS (INSERT/UPDATE/DELETE/MERGE ...) SELECT ...
    DataModifyingCte,
    /// Calls this function, which may write, lock or change session state
    /// (built-in list, configuration, or volatile in the catalog).
    WriteFunction(String),
    /// EXPLAIN ANALYZE runs the statement.
    ExplainAnalyze,
    /// The statement could not be parsed.
    ParseFailure,
    /// Asks whether the server is read-only or a standby.
    Introspection,
    /// The query string holds no statement.
    Empty,
    /// Leaves state in the server session: the client stays on its primary
    /// connection (transaction pooling).
    Pins(Pin),
    /// A plain session SET of this setting, alone in its query: tracked per
    /// client and set wherever the client's statements run.
    Setting(String),
}

impl Reason {
    /// A short explanation, e.g. "calls nextval(), which may write".
    pub fn describe(&self) -> String {
        match self {
            Reason::WriteFunction(name) => format!("calls {name}(), which may write"),
            Reason::Setting(name) => {
                format!("sets {name} for the session: pgsplit keeps it for the client")
            }
            Reason::TransactionState(name) => {
                format!("reads the transaction's state ({name}()): runs where its transaction runs")
            }
            Reason::Pins(pin) => format!(
                "creates session state ({}): the client stays on one primary connection",
                pin.describe()
            ),
            other => other.fixed_description().to_string(),
        }
    }

    fn fixed_description(&self) -> &'static str {
        match self {
            Reason::ReadOnly => "read-only statement",
            Reason::Write => "not provably read-only (writes, DDL or session commands)",
            Reason::Transaction(_) => "transaction control",
            Reason::TransactionState(_) => "reads the transaction's own state",
            Reason::Portal => "keeps a portal open for the transaction",
            Reason::Hint => "forced by a pgsplit hint comment",
            Reason::Locking => "takes row locks (FOR UPDATE/SHARE)",
            Reason::SelectInto => "SELECT INTO creates a table",
            Reason::DataModifyingCte => "contains a data-modifying statement (WITH ... INSERT)",
            Reason::ExplainAnalyze => "EXPLAIN ANALYZE executes the statement",
            Reason::ParseFailure => "could not be parsed, so not provably read-only",
            Reason::Introspection => "asks whether the server is read-only; the primary answers",
            Reason::Empty => "empty query",
            Reason::WriteFunction(_) => "calls a function which may write",
            Reason::Pins(_) => "creates session state",
            Reason::Setting(_) => "sets a session setting",
        }
    }
}
