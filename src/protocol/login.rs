//! What a server sends while pgsplit logs in to it, after the
//! StartupMessage: authentication requests, then ParameterStatus and
//! BackendKeyData up to ReadyForQuery. Decoded from a frame's type and body
//! without I/O; a body that breaks its layout is an error, never a panic.

use super::frame::cstr;
use super::{tag, ProtocolError};

/// AuthenticationRequest codes (the Int32 after `R`).
const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;
const BACKEND_KEY_DATA: u8 = b'K';

/// One message of a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMessage<'a> {
    AuthenticationOk,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    /// The SASL mechanisms the server offers, in its order.
    Sasl {
        mechanisms: Vec<&'a [u8]>,
    },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// Kerberos, GSSAPI, SSPI: the request's code.
    OtherAuthentication(i32),
    ParameterStatus {
        name: &'a [u8],
        value: &'a [u8],
    },
    BackendKeyData {
        pid: i32,
        secret: i32,
    },
    ReadyForQuery,
    /// An ErrorResponse's body.
    Error(&'a [u8]),
    /// NoticeResponse, NegotiateProtocolVersion and anything else a login
    /// can go on after.
    Other(u8),
}

/// Decodes the message `message_tag` with `body` (the frame after its
/// length).
pub fn decode(message_tag: u8, body: &[u8]) -> Result<LoginMessage<'_>, ProtocolError> {
    Ok(match message_tag {
        b'R' => authentication(body)?,
        tag::PARAMETER_STATUS => {
            let (name, rest) = cstr(body)?;
            let (value, _) = cstr(rest)?;
            LoginMessage::ParameterStatus { name, value }
        }
        BACKEND_KEY_DATA => {
            let (pid, rest) = int32(body)?;
            let (secret, _) = int32(rest)?;
            LoginMessage::BackendKeyData { pid, secret }
        }
        tag::READY_FOR_QUERY => LoginMessage::ReadyForQuery,
        tag::ERROR_RESPONSE => LoginMessage::Error(body),
        other => LoginMessage::Other(other),
    })
}

fn authentication(body: &[u8]) -> Result<LoginMessage<'_>, ProtocolError> {
    let (code, data) = int32(body)?;
    Ok(match code {
        AUTH_OK => LoginMessage::AuthenticationOk,
        AUTH_CLEARTEXT => LoginMessage::CleartextPassword,
        AUTH_MD5 => {
            let salt = data
                .first_chunk::<4>()
                .ok_or(ProtocolError::Malformed("md5 request without its salt"))?;
            LoginMessage::Md5Password { salt: *salt }
        }
        AUTH_SASL => LoginMessage::Sasl {
            mechanisms: mechanisms(data)?,
        },
        AUTH_SASL_CONTINUE => LoginMessage::SaslContinue(data),
        AUTH_SASL_FINAL => LoginMessage::SaslFinal(data),
        other => LoginMessage::OtherAuthentication(other),
    })
}

/// NUL-terminated names, the list ended by an empty one.
fn mechanisms(mut data: &[u8]) -> Result<Vec<&[u8]>, ProtocolError> {
    let mut names = Vec::new();
    loop {
        let (name, rest) = cstr(data)?;
        if name.is_empty() {
            return Ok(names);
        }
        names.push(name);
        data = rest;
    }
}

fn int32(body: &[u8]) -> Result<(i32, &[u8]), ProtocolError> {
    let (bytes, rest) = body
        .split_first_chunk::<4>()
        .ok_or(ProtocolError::Malformed("message too short for its Int32"))?;
    Ok((i32::from_be_bytes(*bytes), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_requests() {
        assert_eq!(
            decode(b'R', b"\0\0\0\0"),
            Ok(LoginMessage::AuthenticationOk)
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x03"),
            Ok(LoginMessage::CleartextPassword)
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x05abcd"),
            Ok(LoginMessage::Md5Password { salt: *b"abcd" })
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            Ok(LoginMessage::Sasl {
                mechanisms: vec![b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"]
            })
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x0br=x"),
            Ok(LoginMessage::SaslContinue(b"r=x"))
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x0cv=x"),
            Ok(LoginMessage::SaslFinal(b"v=x"))
        );
        assert_eq!(
            decode(b'R', b"\0\0\0\x07"),
            Ok(LoginMessage::OtherAuthentication(7))
        );
    }

    #[test]
    fn the_rest_of_a_login() {
        assert_eq!(
            decode(b'S', b"a\0b\0"),
            Ok(LoginMessage::ParameterStatus {
                name: b"a",
                value: b"b"
            })
        );
        assert_eq!(
            decode(b'K', b"\0\0\0\x01\xff\xff\xff\xfe"),
            Ok(LoginMessage::BackendKeyData { pid: 1, secret: -2 })
        );
        assert_eq!(decode(b'Z', b"I"), Ok(LoginMessage::ReadyForQuery));
        assert_eq!(decode(b'N', b"x"), Ok(LoginMessage::Other(b'N')));
    }

    #[test]
    fn short_bodies_are_errors() {
        for (t, body) in [
            (b'R', &b""[..]),
            (b'R', b"\0\0\0\x05ab"),
            (b'R', b"\0\0\0\x0aSCRAM"),
            (b'S', b"a\0b"),
            (b'K', b"\0\0\0\x01\0"),
        ] {
            assert!(decode(t, body).is_err(), "{:?} {body:?}", t as char);
        }
    }
}
