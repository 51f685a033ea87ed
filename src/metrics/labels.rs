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
    pub const ALL: [ErrorSide; 3] = [ErrorSide::Client, ErrorSide::Server, ErrorSide::Pgsplit];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSide::Client => "client",
            ErrorSide::Server => "server",
            ErrorSide::Pgsplit => "pgsplit",
        }
    }
}

/// Why pgsplit refused a client or a request because of a limit, as the
/// `reason` label of `pgsplit_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More clients than `max_client_conn`.
    MaxClientConn,
    /// Out of file descriptors (EMFILE or ENFILE) when accepting.
    FdLimit,
    /// A client waited `pool_timeout` for a server connection that
    /// `max_db_connections` kept from being opened.
    MaxDbConnections,
    /// The same, `max_user_connections`.
    MaxUserConnections,
    /// A message before authentication over its size limit.
    MessageTooLarge,
    /// A user not allowed on the admin console.
    AdminLogin,
    /// A stats user's command other than SHOW.
    AdminCommand,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::MaxClientConn,
        Refusal::FdLimit,
        Refusal::MaxDbConnections,
        Refusal::MaxUserConnections,
        Refusal::MessageTooLarge,
        Refusal::AdminLogin,
        Refusal::AdminCommand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxClientConn => "max_client_conn",
            Refusal::FdLimit => "fd_limit",
            Refusal::MaxDbConnections => "max_db_connections",
            Refusal::MaxUserConnections => "max_user_connections",
            Refusal::MessageTooLarge => "message_too_large",
            Refusal::AdminLogin => "admin_login",
            Refusal::AdminCommand => "admin_command",
        }
    }
}

/// Which timeout ended a wait, as the `timeout` label of
/// `pgsplit_timeouts_total`: each is its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    ClientLogin,
    ClientIdle,
    Query,
    IdleTransaction,
}

impl Timeout {
    pub const ALL: [Timeout; 4] = [
        Timeout::ClientLogin,
        Timeout::ClientIdle,
        Timeout::Query,
        Timeout::IdleTransaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Timeout::ClientLogin => "client_login_timeout",
            Timeout::ClientIdle => "client_idle_timeout",
            Timeout::Query => "query_timeout",
            Timeout::IdleTransaction => "idle_transaction_timeout",
        }
    }
}
