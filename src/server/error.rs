//! Errors on the server side of pgsplit: connecting, logging in, or a
//! server that broke the protocol or went away.

use crate::protocol::error::sqlstate;
use crate::protocol::{PgError, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection to server timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server answered with an ErrorResponse (login refused, query
    /// failed): relayed to the client with the server's own SQLSTATE.
    #[error("{message}")]
    Refused {
        severity: String,
        code: String,
        message: String,
    },
    #[error("server closed the connection")]
    Closed,
    /// A pooled connection failed its pre-ping.
    #[error("connection failed its check: {0}")]
    Stale(String),
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error(
        "server requested a password for user \"{0}\" but pgsplit has none: none is \
         configured, and no client of this user has logged in with one since pgsplit started"
    )]
    NoPassword(String),
    /// The server asks for a method the user's credential cannot answer
    /// (an md5 hash for SCRAM, a client's SCRAM keys for md5 or cleartext).
    #[error(
        "server requested {method} authentication for user \"{user}\" \
         but pgsplit has {have} for this user"
    )]
    CannotAnswer {
        user: String,
        method: &'static str,
        have: &'static str,
    },
    /// A client's SCRAM keys do not fit this server's verifier.
    #[error("cannot log in with the client's SCRAM keys: {0}")]
    PassThrough(&'static str),
    #[error("server requested an authentication method pgsplit does not support ({0})")]
    UnsupportedAuth(&'static str),
    /// The server answered `N` to the SSLRequest and `server_tls_sslmode`
    /// requires TLS.
    #[error("the server does not support TLS, and server_tls_sslmode requires it")]
    TlsRefused,
    /// The handshake failed: the certificate did not verify, no common
    /// version, the server went away.
    #[error("TLS handshake with the server failed: {0}")]
    TlsHandshake(std::io::Error),
    /// pgsplit itself is out of file descriptors (EMFILE, ENFILE): no
    /// fault of the server's, which is neither banned nor marked down.
    #[error("pgsplit is out of file descriptors ({0}); the server is not at fault")]
    OutOfFiles(std::io::Error),
}

impl ServerError {
    /// A failure to open a connection: pgsplit's own shortage of file
    /// descriptors told apart from the server's faults.
    pub fn connecting(error: std::io::Error) -> ServerError {
        match crate::fd_limit::is_exhaustion(&error) {
            true => ServerError::OutOfFiles(error),
            false => ServerError::Io(error),
        }
    }

    /// Whether the failure is pgsplit's own, not the server's.
    pub fn is_pgsplits_own(&self) -> bool {
        matches!(self, ServerError::OutOfFiles(_))
    }
}

impl From<ProtocolError> for ServerError {
    fn from(e: ProtocolError) -> Self {
        ServerError::Protocol(e.to_string())
    }
}

impl ServerError {
    /// Builds `Refused` from an ErrorResponse body.
    pub fn from_error_body(body: &[u8]) -> ServerError {
        let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
        for (kind, value) in crate::protocol::error::response_fields(body) {
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'S' => severity = value,
                b'C' => code = value,
                b'M' => message = value,
                _ => {}
            }
        }
        ServerError::Refused {
            severity,
            code,
            message,
        }
    }

    /// What a client is told when this stops its connection or statement.
    pub fn to_client_error(&self, fatal: bool) -> PgError {
        let make = if fatal {
            PgError::fatal
        } else {
            PgError::error
        };
        match self {
            ServerError::Refused { code, message, .. } => make(code, message.clone()),
            other => make(
                sqlstate::CONNECTION_FAILURE,
                format!("pgsplit: cannot use server: {other}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keeps_server_code_and_message() {
        let body = b"SFATAL\0VFATAL\0C3D000\0Mdatabase \"nope\" does not exist\0\0";
        let e = ServerError::from_error_body(body);
        let pg = e.to_client_error(true);
        assert_eq!(pg.code, "3D000");
        assert_eq!(pg.message, "database \"nope\" does not exist");
    }
}
