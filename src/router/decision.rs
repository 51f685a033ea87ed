//! Where a statement runs, and why: one pure function of what the router
//! found in the statement ([`Route`]) and what the session knows
//! ([`Facts`]: its transaction, its pin, the connection it holds, its
//! settings). The debug log line, the `reason` label of
//! `pgsplit_statements_total` and SHOW ROUTE all print the [`Why`] decided
//! here; when the pool cannot give a read a replica, its own outcome
//! ([`Detour`]) takes the place of the reason (`Why::after`).
//!
//! A transaction that has run only reads is pgsplit's alone
//! ([`Transaction::Lazy`]): BEGIN is answered without a server, its reads
//! run like autocommit reads, and the first statement that needs the
//! primary opens the real transaction there ([`Place::OpenOnPrimary`]).

use super::transaction::{Control, Isolation};
use super::{Destination, Reason, Route};

pub use crate::config::{ReadOnlyTransactions, TransactionReads};

/// The client's transaction, as pgsplit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transaction {
    #[default]
    None,
    /// Begun, but nothing of it has reached a server: only reads ran,
    /// each on its own.
    Lazy(Lazy),
    /// Open on the server connection the client holds.
    Open,
}

/// A transaction begun by pgsplit alone, as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lazy {
    /// A statement of it failed, as a statement in a transaction fails
    /// it: only its end is accepted.
    pub failed: bool,
    /// A statement of it ran: on PostgreSQL its snapshot would be taken,
    /// and its isolation could no longer change.
    pub ran: bool,
    /// It is READ ONLY (from its BEGIN or the client's default).
    pub read_only: bool,
}

/// What the session knows when a statement arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    pub transaction: Transaction,
    /// The connection in use is fixed for this statement: a batch was
    /// sent on to it without its Sync, or it waits for a Sync.
    pub fixed: bool,
    /// The client is pinned to one primary connection (session state).
    pub pinned: bool,
    /// The client's settings make a standby refuse its transactions (a
    /// serializable default): its reads go to the primary too.
    pub primary_only: bool,
    pub transaction_reads: TransactionReads,
    pub read_only_transactions: ReadOnlyTransactions,
    /// The isolation a BEGIN without one gets: the client's setting, else
    /// the server's default for the database and role (`None`: not known;
    /// such a BEGIN goes to the primary).
    pub default_isolation: Option<Isolation>,
    /// The client's transactions are read only by default.
    pub default_read_only: bool,
}

/// Where the statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A replica the consistency mode and the lag limits allow, else the
    /// primary.
    Replica,
    Primary,
    /// The connection the client holds (its transaction, a batch).
    Held,
    /// The primary, after a BEGIN with the lazy transaction's own options:
    /// the first statement that needs the primary opens it there.
    OpenOnPrimary,
    /// pgsplit answers, as PostgreSQL would.
    Answer(Answer),
}

/// What pgsplit answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// BEGIN: the transaction starts, lazily.
    Begin { read_only: bool },
    /// BEGIN inside a transaction: WARNING 25001, then BEGIN.
    AlreadyInTransaction,
    /// COMMIT (END) of a lazy transaction; `chain`: AND CHAIN, a new one
    /// like it begins.
    Commit { chain: bool },
    /// ROLLBACK (ABORT), or COMMIT of a failed lazy transaction.
    Rollback { chain: bool },
    /// SET TRANSACTION of what cannot change once a statement ran: ERROR
    /// 25001, and the transaction fails.
    TooLate(TooLate),
    /// A statement after an error: ERROR 25P02.
    Aborted,
    /// ROLLBACK TO a savepoint a lazy transaction cannot have (a
    /// SAVEPOINT opens the transaction on the primary): ERROR 3B001.
    NoSavepoint,
}

/// What SET TRANSACTION can no longer change in a transaction that ran a
/// statement, as PostgreSQL words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLate {
    Isolation,
    ReadWrite,
}

impl TooLate {
    pub fn message(self) -> &'static str {
        match self {
            TooLate::Isolation => "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            TooLate::ReadWrite => "transaction read-write mode must be set before any query",
        }
    }
}

/// Why a statement ran where it did: the one vocabulary of the log, the
/// metrics' `reason` label and SHOW ROUTE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    ReadOnly,
    Write,
    Transaction,
    ReadOnlyTransaction,
    Hint,
    Locking,
    SelectInto,
    DataModifyingCte,
    Function,
    ExplainAnalyze,
    ParseFailure,
    Introspection,
    Empty,
    Pinned,
    Setting,
    /// The connection was already fixed: an open transaction or batch.
    InTransaction,
    /// A read inside a transaction that has not written yet.
    ReadInTransaction,
    /// The first statement of a transaction that needs the primary.
    OpensTransaction,
    /// pgsplit answered for a transaction that has reached no server.
    Answered,
    /// The client's settings keep its reads on the primary.
    PrimaryOnly,
    /// A read went to the primary: every replica lags past the limits.
    Lag,
    /// A read went to the primary: no replica replayed the client's
    /// writes within `max_wait_for_replica`.
    ConsistencyWait,
    /// A read went to the primary: no replica is up (or all are banned).
    NoReplica,
    /// A read went to a replica that may lag: the primary is down.
    PrimaryDown,
}

/// Why the pool did not give a read the server decided: its own outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detour {
    Lag,
    ConsistencyWait,
    NoReplica,
    PrimaryDown,
}

/// The decision for one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub place: Place,
    pub why: Why,
}

impl Decision {
    fn new(place: Place, why: Why) -> Decision {
        Decision { place, why }
    }

    /// In words: the statement's own reason (with its details, such as the
    /// function it calls) when the decision kept it, else the decision's.
    pub fn describe(&self, route: &Route) -> String {
        match self.why == why(&route.reason) {
            true => route.reason.describe(),
            false => self.why.describe().to_string(),
        }
    }
}

impl Place {
    /// In words, for SHOW ROUTE.
    pub fn describe(self) -> &'static str {
        match self {
            Place::Replica => "replica",
            Place::Primary => "primary",
            Place::Held => "the connection the client holds",
            Place::OpenOnPrimary => "primary (BEGIN there first)",
            Place::Answer(_) => "answered by pgsplit",
        }
    }
}

/// Where `route`'s statement runs, given `facts`.
pub fn decide(route: &Route, facts: &Facts) -> Decision {
    let control = match route.reason {
        Reason::Transaction(control) => Some(control),
        _ => None,
    };
    match facts.transaction {
        Transaction::Open => Decision::new(Place::Held, Why::InTransaction),
        Transaction::Lazy(Lazy { failed: true, .. }) => {
            Decision::new(Place::Answer(after_error(control)), Why::Answered)
        }
        Transaction::Lazy(lazy) => in_lazy_transaction(route, control, lazy, facts),
        Transaction::None if facts.fixed => Decision::new(Place::Held, Why::InTransaction),
        Transaction::None if facts.pinned => Decision::new(Place::Primary, Why::Pinned),
        Transaction::None => match control {
            Some(Control::Begin(options)) => begin(options, facts),
            _ => outside_transaction(route, facts),
        },
    }
}

/// A statement with no transaction: the router's destination, unless the
/// client's settings keep it on the primary.
fn outside_transaction(route: &Route, facts: &Facts) -> Decision {
    match route.destination {
        Destination::Replica if facts.primary_only => {
            Decision::new(Place::Primary, Why::PrimaryOnly)
        }
        Destination::Replica => Decision::new(Place::Replica, why(&route.reason)),
        Destination::Primary => Decision::new(Place::Primary, why(&route.reason)),
    }
}

/// A BEGIN: lazily, unless the transaction must keep one snapshot (then
/// whole on the primary, or whole on a replica when read only and allowed)
/// or the configuration or the client's settings want the primary.
fn begin(options: crate::router::BeginOptions, facts: &Facts) -> Decision {
    let Some(isolation) = options.isolation.or(facts.default_isolation) else {
        return Decision::new(Place::Primary, Why::Transaction);
    };
    let read_only = options.read_only.unwrap_or(facts.default_read_only);
    if isolation.keeps_snapshot() {
        // A hot standby refuses serializable transactions.
        let on_replica = read_only
            && isolation != Isolation::Serializable
            && facts.read_only_transactions == ReadOnlyTransactions::Replica
            && !facts.primary_only;
        return match on_replica {
            true => Decision::new(Place::Replica, Why::ReadOnlyTransaction),
            false => Decision::new(Place::Primary, Why::Transaction),
        };
    }
    match (facts.transaction_reads, facts.primary_only) {
        (TransactionReads::Replica, false) => {
            Decision::new(Place::Answer(Answer::Begin { read_only }), Why::Answered)
        }
        _ => Decision::new(Place::Primary, Why::Transaction),
    }
}

/// A statement of a transaction that has run only reads.
fn in_lazy_transaction(
    route: &Route,
    control: Option<Control>,
    lazy: Lazy,
    facts: &Facts,
) -> Decision {
    let answer = |answer| Decision::new(Place::Answer(answer), Why::Answered);
    match control {
        Some(Control::Begin(_)) => return answer(Answer::AlreadyInTransaction),
        Some(Control::Commit { chain }) => return answer(Answer::Commit { chain }),
        Some(Control::Rollback { chain }) => return answer(Answer::Rollback { chain }),
        Some(Control::RollbackTo) => return answer(Answer::NoSavepoint),
        Some(Control::SetTransaction(options)) if lazy.ran => {
            if options.isolation.is_some() {
                return answer(Answer::TooLate(TooLate::Isolation));
            }
            if options.read_only == Some(false) && lazy.read_only {
                return answer(Answer::TooLate(TooLate::ReadWrite));
            }
        }
        _ => {}
    }
    match (route.destination, &route.reason) {
        (Destination::Replica, Reason::TransactionState(_)) => {
            Decision::new(Place::OpenOnPrimary, Why::OpensTransaction)
        }
        (Destination::Replica, _) if facts.primary_only => {
            Decision::new(Place::OpenOnPrimary, Why::PrimaryOnly)
        }
        (Destination::Replica, _) => Decision::new(Place::Replica, Why::ReadInTransaction),
        (Destination::Primary, _) => Decision::new(Place::OpenOnPrimary, Why::OpensTransaction),
    }
}

/// What a failed lazy transaction answers: only its end is accepted.
fn after_error(control: Option<Control>) -> Answer {
    match control {
        Some(Control::Commit { chain } | Control::Rollback { chain }) => Answer::Rollback { chain },
        Some(Control::RollbackTo) => Answer::NoSavepoint,
        _ => Answer::Aborted,
    }
}

/// The reason label of a statement the router placed.
fn why(reason: &Reason) -> Why {
    match reason {
        Reason::ReadOnly | Reason::TransactionState(_) => Why::ReadOnly,
        Reason::Write => Why::Write,
        Reason::Transaction(_) | Reason::Portal => Why::Transaction,
        Reason::Hint => Why::Hint,
        Reason::Locking => Why::Locking,
        Reason::SelectInto => Why::SelectInto,
        Reason::DataModifyingCte => Why::DataModifyingCte,
        Reason::WriteFunction(_) => Why::Function,
        Reason::ExplainAnalyze => Why::ExplainAnalyze,
        Reason::ParseFailure => Why::ParseFailure,
        Reason::Introspection => Why::Introspection,
        Reason::Empty => Why::Empty,
        Reason::Pins(_) => Why::Pinned,
        Reason::Setting(_) => Why::Setting,
    }
}

impl Why {
    /// In discriminant order.
    pub const ALL: [Why; 24] = [
        Why::ReadOnly,
        Why::Write,
        Why::Transaction,
        Why::ReadOnlyTransaction,
        Why::Hint,
        Why::Locking,
        Why::SelectInto,
        Why::DataModifyingCte,
        Why::Function,
        Why::ExplainAnalyze,
        Why::ParseFailure,
        Why::Introspection,
        Why::Empty,
        Why::Pinned,
        Why::Setting,
        Why::InTransaction,
        Why::ReadInTransaction,
        Why::OpensTransaction,
        Why::Answered,
        Why::PrimaryOnly,
        Why::Lag,
        Why::ConsistencyWait,
        Why::NoReplica,
        Why::PrimaryDown,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::ReadOnly => "read_only",
            Why::Write => "write",
            Why::Transaction => "transaction",
            Why::ReadOnlyTransaction => "read_only_transaction",
            Why::Hint => "hint",
            Why::Locking => "locking",
            Why::SelectInto => "select_into",
            Why::DataModifyingCte => "data_modifying_cte",
            Why::Function => "function",
            Why::ExplainAnalyze => "explain_analyze",
            Why::ParseFailure => "parse_failure",
            Why::Introspection => "introspection",
            Why::Empty => "empty",
            Why::Pinned => "pinned",
            Why::Setting => "setting",
            Why::InTransaction => "in_transaction",
            Why::ReadInTransaction => "read_in_transaction",
            Why::OpensTransaction => "opens_transaction",
            Why::Answered => "answered",
            Why::PrimaryOnly => "primary_only",
            Why::Lag => "lag",
            Why::ConsistencyWait => "consistency_wait",
            Why::NoReplica => "no_replica",
            Why::PrimaryDown => "primary_down",
        }
    }

    /// The reason, when the pool could not give the statement the server
    /// decided (`detour`), is the pool's.
    pub fn after(self, detour: Option<Detour>) -> Why {
        match detour {
            None => self,
            Some(Detour::Lag) => Why::Lag,
            Some(Detour::ConsistencyWait) => Why::ConsistencyWait,
            Some(Detour::NoReplica) => Why::NoReplica,
            Some(Detour::PrimaryDown) => Why::PrimaryDown,
        }
    }

    /// In words, for the log and SHOW ROUTE.
    pub fn describe(self) -> &'static str {
        match self {
            Why::ReadInTransaction => {
                "read inside a transaction that has not written yet: runs like an autocommit read"
            }
            Why::OpensTransaction => {
                "the first statement of the transaction that needs the primary: opens it there"
            }
            Why::Answered => "answered by pgsplit: the transaction has reached no server",
            Why::InTransaction => "inside a transaction or batch: on the connection it holds",
            Why::PrimaryOnly => "the client's settings (serializable) keep its reads on the primary",
            Why::Pinned => "the client is pinned to one primary connection",
            Why::ReadOnlyTransaction => {
                "read-only transaction that keeps its snapshot, allowed on a replica by read_only_transactions"
            }
            Why::Lag => "no replica within the lag limits: the primary reads",
            Why::ConsistencyWait => {
                "no replica has the client's writes within max_wait_for_replica: the primary reads"
            }
            Why::NoReplica => "no replica is up: the primary reads",
            Why::PrimaryDown => "the primary is down: a replica reads, maybe behind",
            other => other.as_str(),
        }
    }
}

#[cfg(test)]
mod tests;
