//! Fixed label values, so per-statement handles are resolved once.

/// Why a statement ran where it did, as the `reason` label of
/// `pgsplit_statements_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
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
    /// Inside a transaction or a flushed batch: the server was already fixed.
    InTransaction,
    /// A read went to the primary: every replica lags past the limits.
    Lag,
    /// A read went to the primary: no replica replayed the client's writes
    /// within `max_wait_for_replica`.
    ConsistencyWait,
    /// A read went to the primary: no replica is up (or all are banned),
    /// or a read went to a replica because the primary is down.
    Fallback,
}

impl RouteLabel {
    /// In discriminant order.
    pub const ALL: [RouteLabel; 19] = [
        RouteLabel::ReadOnly,
        RouteLabel::Write,
        RouteLabel::Transaction,
        RouteLabel::ReadOnlyTransaction,
        RouteLabel::Hint,
        RouteLabel::Locking,
        RouteLabel::SelectInto,
        RouteLabel::DataModifyingCte,
        RouteLabel::Function,
        RouteLabel::ExplainAnalyze,
        RouteLabel::ParseFailure,
        RouteLabel::Introspection,
        RouteLabel::Empty,
        RouteLabel::Pinned,
        RouteLabel::Setting,
        RouteLabel::InTransaction,
        RouteLabel::Lag,
        RouteLabel::ConsistencyWait,
        RouteLabel::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::ReadOnly => "read_only",
            RouteLabel::Write => "write",
            RouteLabel::Transaction => "transaction",
            RouteLabel::ReadOnlyTransaction => "read_only_transaction",
            RouteLabel::Hint => "hint",
            RouteLabel::Locking => "locking",
            RouteLabel::SelectInto => "select_into",
            RouteLabel::DataModifyingCte => "data_modifying_cte",
            RouteLabel::Function => "function",
            RouteLabel::ExplainAnalyze => "explain_analyze",
            RouteLabel::ParseFailure => "parse_failure",
            RouteLabel::Introspection => "introspection",
            RouteLabel::Empty => "empty",
            RouteLabel::Pinned => "pinned",
            RouteLabel::Setting => "setting",
            RouteLabel::InTransaction => "in_transaction",
            RouteLabel::Lag => "lag",
            RouteLabel::ConsistencyWait => "consistency_wait",
            RouteLabel::Fallback => "fallback",
        }
    }
}

/// Who caused an error, as the `side` label of `pgsplit_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSide {
    /// The client broke the protocol or failed to log in.
    Client,
    /// A server's ErrorResponse, relayed.
    Server,
    /// pgsplit itself refused (no server available, pool timeout, ...).
    Pgsplit,
}

impl ErrorSide {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSide::Client => "client",
            ErrorSide::Server => "server",
            ErrorSide::Pgsplit => "pgsplit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, label) in RouteLabel::ALL.iter().enumerate() {
            assert_eq!(*label as usize, i, "{label:?}");
        }
    }
}
