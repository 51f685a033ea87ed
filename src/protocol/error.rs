//! Errors pgsplit reports to a client as an ErrorResponse, and protocol
//! violations found while reading a peer's bytes.

use bytes::BytesMut;

/// A peer broke the protocol; the client gets SQLSTATE 08P01.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type {:?}", *tag as char)]
    BadLength { tag: u8, len: usize },
    #[error("message of type {:?} is {len} bytes, over the limit of {max} bytes", *tag as char)]
    TooLarge { tag: u8, len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("unexpected message type {:?}", *.0 as char)]
    Unexpected(u8),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("invalid startup packet layout: {0}")]
    BadStartup(&'static str),
    /// A startup packet's length under 8 or over PostgreSQL's 10,000
    /// bytes (worded as PostgreSQL words it).
    #[error("invalid length of startup packet ({len} bytes; at most {max})")]
    StartupLength { len: usize, max: usize },
}

/// An error as the client sees it: severity, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    /// More fields, as (field type, value): where PostgreSQL's own error
    /// is imitated, its file and routine (`F`, `R`).
    pub more: Vec<(u8, &'static str)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

impl PgError {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Error,
            code: code.to_string(),
            message: message.into(),
            more: Vec::new(),
        }
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Fatal,
            ..Self::error(code, message)
        }
    }

    /// Appends the ErrorResponse frame.
    pub fn encode(&self, out: &mut BytesMut) {
        use pgwire::messages::{response::ErrorResponse, Message};
        let mut fields = vec![
            (b'S', self.severity.as_str().to_string()),
            (b'V', self.severity.as_str().to_string()),
            (b'C', self.code.clone()),
            (b'M', self.message.clone()),
        ];
        fields.extend(
            self.more
                .iter()
                .map(|(kind, value)| (*kind, value.to_string())),
        );
        // Encoding into a BytesMut cannot fail for messages this small.
        let _ = ErrorResponse::new(fields).encode(out);
    }
}

/// The ErrorResponse PostgreSQL sends when a prepared statement's result
/// would change type (plancache.c), field for field: drivers recognise it
/// by SQLSTATE and message (asyncpg, Npgsql) or by routine (PgJDBC) and
/// prepare the statement again.
pub fn cached_plan_changed(out: &mut BytesMut) {
    let mut error = PgError::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "cached plan must not change result type",
    );
    error.more = vec![(b'F', "plancache.c"), (b'R', "RevalidateCachedQuery")];
    error.encode(out);
}

impl From<&ProtocolError> for PgError {
    fn from(e: &ProtocolError) -> Self {
        PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
    }
}

/// SQLSTATEs pgsplit uses, by name.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// A transaction's characteristics set too late, BEGIN inside one.
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    pub const INVALID_SAVEPOINT: &str = "3B001";
    /// A statement cancelled (PostgreSQL's statement_timeout uses it).
    pub const QUERY_CANCELED: &str = "57014";
    /// PostgreSQL 14's idle_session_timeout.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
}

/// The fields of an ErrorResponse or NoticeResponse body, as (type, value),
/// up to its terminating zero.
pub fn response_fields(body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    body.split(|&b| b == 0)
        .map_while(|f| f.split_first().map(|(&kind, value)| (kind, value)))
}

/// One field of an ErrorResponse or NoticeResponse body.
pub fn response_field(body: &[u8], kind: u8) -> Option<&[u8]> {
    response_fields(body)
        .find(|&(k, _)| k == kind)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_bytes() {
        let mut out = BytesMut::new();
        PgError::fatal("28000", "role \"x\" does not exist").encode(&mut out);
        assert_eq!(out[0], b'E');
        let text = String::from_utf8_lossy(&out[5..]);
        assert!(text.contains("SFATAL\0"));
        assert!(text.contains("C28000\0"));
        assert!(text.contains("Mrole \"x\" does not exist\0"));
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
    }

    #[test]
    fn protocol_errors_map_to_08p01() {
        let e = PgError::from(&ProtocolError::Malformed("x"));
        assert_eq!(e.code, "08P01");
        assert_eq!(e.severity, Severity::Fatal);
    }
}
