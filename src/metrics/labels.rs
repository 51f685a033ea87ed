//! Fixed label values, so per-statement handles are resolved once. The
//! statements' `reason` label is the routing decision's own vocabulary
//! (`router::decision::Why`).

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
