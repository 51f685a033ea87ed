//! The password message family (type `p`): a PasswordMessage (a cleartext
//! password or an md5 answer), a SASLInitialResponse and a SASLResponse
//! share one type byte, and only the exchange in progress tells them apart.
//! Decoded with PostgreSQL's checks and wording (`auth.c`, `auth-sasl.c`);
//! every error ends the login. No I/O.

use super::error::sqlstate;
use super::frame::cstr;
use super::{tag, PgError};

/// A message of the family broke its layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordMessageError {
    /// Another message where the exchange expects this family; `expected`
    /// is "password" or "SASL" as in PostgreSQL's message.
    #[error("expected {expected} response, got message type {tag}")]
    Unexpected { expected: &'static str, tag: u8 },
    #[error("invalid password packet size")]
    BadPasswordSize,
    #[error("empty password returned by client")]
    EmptyPassword,
    #[error("invalid string in message")]
    BadString,
    #[error("insufficient data left in message")]
    Insufficient,
    #[error("invalid message format")]
    Trailing,
}

impl PasswordMessageError {
    /// The FATAL error the client gets, as PostgreSQL words it.
    pub fn to_pg(&self) -> PgError {
        let code = match self {
            PasswordMessageError::EmptyPassword => sqlstate::INVALID_PASSWORD,
            _ => sqlstate::PROTOCOL_VIOLATION,
        };
        PgError::fatal(code, self.to_string())
    }
}

/// A SASLInitialResponse: the mechanism the client chose, and the first
/// message of its exchange (`None`: the client sends it on its own, after
/// an empty challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialResponse<'a> {
    pub mechanism: &'a [u8],
    pub data: Option<&'a [u8]>,
}

/// Checks that a message of the family came (`expected`: "password" or
/// "SASL").
pub fn expect(message_tag: u8, expected: &'static str) -> Result<(), PasswordMessageError> {
    if message_tag == tag::PASSWORD {
        Ok(())
    } else {
        Err(PasswordMessageError::Unexpected {
            expected,
            tag: message_tag,
        })
    }
}

/// A PasswordMessage's password (or md5 answer): one string, its
/// terminator ending the message, and not empty.
pub fn password(body: &[u8]) -> Result<&[u8], PasswordMessageError> {
    let (password, rest) = cstr(body).map_err(|_| PasswordMessageError::BadPasswordSize)?;
    if !rest.is_empty() {
        return Err(PasswordMessageError::BadPasswordSize);
    }
    if password.is_empty() {
        return Err(PasswordMessageError::EmptyPassword);
    }
    Ok(password)
}

/// A SASLInitialResponse: the mechanism's name, then the length of the
/// initial message (-1: none) and its bytes, and nothing after them.
pub fn initial_response(body: &[u8]) -> Result<InitialResponse<'_>, PasswordMessageError> {
    let (mechanism, rest) = cstr(body).map_err(|_| PasswordMessageError::BadString)?;
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return Err(PasswordMessageError::Insufficient);
    };
    let data = match i32::from_be_bytes(*len) {
        -1 if rest.is_empty() => None,
        -1 => return Err(PasswordMessageError::Trailing),
        len => {
            let len = usize::try_from(len).map_err(|_| PasswordMessageError::Insufficient)?;
            let data = rest.get(..len).ok_or(PasswordMessageError::Insufficient)?;
            if rest.len() > len {
                return Err(PasswordMessageError::Trailing);
            }
            Some(data)
        }
    };
    Ok(InitialResponse { mechanism, data })
}

/// A SASLResponse: its whole body is the mechanism's message.
pub fn response(body: &[u8]) -> &[u8] {
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_messages() {
        assert_eq!(password(b"md5abc\0"), Ok(&b"md5abc"[..]));
        assert_eq!(password(b"\0"), Err(PasswordMessageError::EmptyPassword));
        assert_eq!(password(b""), Err(PasswordMessageError::BadPasswordSize));
        assert_eq!(password(b"abc"), Err(PasswordMessageError::BadPasswordSize));
        assert_eq!(
            password(b"a\0b\0"),
            Err(PasswordMessageError::BadPasswordSize)
        );
        assert_eq!(PasswordMessageError::EmptyPassword.to_pg().code, "28P01");
    }

    #[test]
    fn initial_responses_as_libpq_sends_them() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&5i32.to_be_bytes());
        body.extend_from_slice(b"n,,xy");
        assert_eq!(
            initial_response(&body),
            Ok(InitialResponse {
                mechanism: b"SCRAM-SHA-256",
                data: Some(b"n,,xy"),
            })
        );
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(initial_response(&none).unwrap().data, None);
    }

    /// The messages that panicked pgwire's decoder: a bare `p` and a data
    /// length past the message's end.
    #[test]
    fn malformed_initial_responses_are_refused_not_panicked_on() {
        use PasswordMessageError::*;
        let with_len = |len: i32, data: &[u8]| {
            let mut body = b"SCRAM-SHA-256\0".to_vec();
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(data);
            body
        };
        for (body, error) in [
            (Vec::new(), BadString),
            (b"SCRAM-SHA-256".to_vec(), BadString),
            (b"SCRAM-SHA-256\0\0\0".to_vec(), Insufficient),
            (with_len(100, b"n,,"), Insufficient),
            (with_len(i32::MAX, b""), Insufficient),
            (with_len(-2, b""), Insufficient),
            (with_len(1, b"ab"), Trailing),
            (with_len(-1, b"x"), Trailing),
        ] {
            assert_eq!(initial_response(&body), Err(error.clone()), "{body:?}");
            assert_eq!(error.to_pg().code, "08P01");
        }
        assert_eq!(
            expect(b'Q', "SASL").unwrap_err().to_string(),
            "expected SASL response, got message type 81"
        );
    }
}
