//! SCRAM-SHA-256 messages (RFC 5802 section 7) as PostgreSQL reads and
//! writes them: parsed from the bytes of a SASL message, with PostgreSQL's
//! checks and wording (`auth-scram.c`), and formatted. Attribute values are
//! kept as bytes: what is signed is the bytes as sent. No keys here.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::error::sqlstate;
use super::PgError;
use crate::secret::scram::{Key, KEY_LEN};

/// The only channel binding type PostgreSQL (and pgsplit) supports.
pub const TLS_SERVER_END_POINT: &[u8] = b"tls-server-end-point";

/// A SCRAM message broke the grammar or asked for what PostgreSQL refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// PostgreSQL's "malformed SCRAM message", with its detail.
    #[error("malformed SCRAM message")]
    Malformed(&'static str),
    #[error("unsupported SCRAM channel-binding type \"{0}\"")]
    UnsupportedBinding(String),
    #[error("client uses authorization identity, but it is not supported")]
    AuthorizationIdentity,
    #[error("client requires an unsupported SCRAM extension")]
    Extension,
    #[error("non-printable characters in SCRAM nonce")]
    NonPrintableNonce,
}

impl ScramError {
    /// The FATAL error the client gets, as PostgreSQL words it.
    pub fn to_pg(&self) -> PgError {
        let code = match self {
            ScramError::AuthorizationIdentity | ScramError::Extension => {
                sqlstate::FEATURE_NOT_SUPPORTED
            }
            _ => sqlstate::PROTOCOL_VIOLATION,
        };
        let mut error = PgError::fatal(code, self.to_string());
        if let ScramError::Malformed(detail) = self {
            error.more.push((b'D', detail));
        }
        error
    }
}

/// The gs2-cbind-flag of a client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CbindFlag {
    /// `n`: the client does not support channel binding (or will not use it).
    No,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=tls-server-end-point`: the client binds to the server's certificate.
    TlsServerEndPoint,
}

/// A client-first-message: `gs2-header client-first-message-bare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    pub cbind: CbindFlag,
    /// What is signed: `n=user,r=nonce[,extensions]`.
    pub bare: &'a [u8],
    /// Printable ASCII, checked.
    pub nonce: &'a str,
}

/// A client-final-message: `c=...,r=...[,extensions],p=proof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The channel-binding attribute as sent (base64 of the gs2 header and,
    /// with `p`, the binding data).
    pub channel_binding: &'a [u8],
    pub nonce: &'a [u8],
    pub proof: Key,
    /// What is signed: the message up to the comma before `p=`.
    pub without_proof: &'a [u8],
}

/// A server-first-message: `r=nonce,s=salt,i=iterations[,extensions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst<'a> {
    pub nonce: &'a [u8],
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// A server-final-message: the ServerSignature, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFinal<'a> {
    Verifier(Key),
    Error(&'a [u8]),
}

impl<'a> ClientFirst<'a> {
    pub fn parse(input: &'a [u8]) -> Result<ClientFirst<'a>, ScramError> {
        check_whole(input)?;
        let (cbind, rest) = gs2_cbind_flag(input)?;
        match rest.first() {
            Some(b'a') => return Err(ScramError::AuthorizationIdentity),
            Some(b',') => {}
            _ => {
                return Err(ScramError::Malformed(
                    "Unexpected attribute in client-first-message.",
                ))
            }
        }
        let bare = &rest[1..];
        if bare.first() == Some(&b'm') {
            return Err(ScramError::Extension);
        }
        // The user name is ignored, as PostgreSQL does: the startup
        // message's counts.
        let (_user, rest) = attr_value(bare, b'n')?;
        let (nonce, mut rest) = attr_value(rest, b'r')?;
        let nonce = printable(nonce).ok_or(ScramError::NonPrintableNonce)?;
        while !rest.is_empty() {
            rest = any_attr(rest)?.2;
        }
        Ok(ClientFirst { cbind, bare, nonce })
    }
}

impl<'a> ClientFinal<'a> {
    pub fn parse(input: &'a [u8]) -> Result<ClientFinal<'a>, ScramError> {
        check_whole(input)?;
        let (channel_binding, rest) = attr_value(input, b'c')?;
        let (nonce, mut rest) = attr_value(rest, b'r')?;
        // Extensions are ignored up to the proof, which comes last.
        let (proof_at, proof) = loop {
            let at = input.len() - rest.len();
            let (attr, value, after) = any_attr(rest)?;
            rest = after;
            if attr == b'p' {
                break (at, value);
            }
        };
        let proof = decode_key(proof).ok_or(ScramError::Malformed(
            "Malformed proof in client-final-message.",
        ))?;
        if !rest.is_empty() {
            return Err(ScramError::Malformed(
                "Garbage found at the end of client-final-message.",
            ));
        }
        Ok(ClientFinal {
            channel_binding,
            nonce,
            proof,
            // Up to the comma in front of `p=` (`c=` and `r=` come first,
            // so there is one).
            without_proof: &input[..proof_at.saturating_sub(1)],
        })
    }
}

impl<'a> ServerFirst<'a> {
    pub fn parse(input: &'a [u8]) -> Result<ServerFirst<'a>, ScramError> {
        check_whole(input)?;
        let (nonce, rest) = attr_value(input, b'r')?;
        let (salt, rest) = attr_value(rest, b's')?;
        let (iterations, mut rest) = attr_value(rest, b'i')?;
        while !rest.is_empty() {
            rest = any_attr(rest)?.2;
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("The salt is not valid base64."))?;
        let iterations = std::str::from_utf8(iterations)
            .ok()
            .and_then(|i| i.parse::<u32>().ok())
            .filter(|&i| i > 0)
            .ok_or(ScramError::Malformed(
                "The iteration count is not a positive number.",
            ))?;
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

impl<'a> ServerFinal<'a> {
    pub fn parse(input: &'a [u8]) -> Result<ServerFinal<'a>, ScramError> {
        check_whole(input)?;
        if input.first() == Some(&b'e') {
            return Ok(ServerFinal::Error(attr_value(input, b'e')?.0));
        }
        let (verifier, _extensions) = attr_value(input, b'v')?;
        decode_key(verifier)
            .map(ServerFinal::Verifier)
            .ok_or(ScramError::Malformed(
                "Malformed server signature in server-final-message.",
            ))
    }
}

/// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
pub fn server_first(nonce: &str, salt_base64: &str, iterations: u32) -> String {
    format!("r={nonce},s={salt_base64},i={iterations}")
}

/// `v=<ServerSignature>`.
pub fn server_final(signature: &Key) -> String {
    format!("v={}", BASE64.encode(signature))
}

/// The gs2 header a client sends for `cbind` (no authorization identity).
pub fn gs2_header(cbind: CbindFlag) -> &'static str {
    match cbind {
        CbindFlag::No => "n,,",
        CbindFlag::ClientOnly => "y,,",
        CbindFlag::TlsServerEndPoint => "p=tls-server-end-point,,",
    }
}

/// The `c=` attribute's value: base64 of the gs2 header and, when binding,
/// the binding data (RFC 5802 `cbind-input`).
pub fn channel_binding_attr(cbind: CbindFlag, data: &[u8]) -> String {
    let mut input = gs2_header(cbind).as_bytes().to_vec();
    if cbind == CbindFlag::TlsServerEndPoint {
        input.extend_from_slice(data);
    }
    BASE64.encode(input)
}

/// `c=...,r=...` (the client-final-message without its proof).
pub fn client_final_without_proof(channel_binding: &str, nonce: &[u8]) -> Vec<u8> {
    [b"c=", channel_binding.as_bytes(), b",r=", nonce].concat()
}

/// `,p=<proof>`, appended to the message without proof.
pub fn proof_attr(proof: &Key) -> String {
    format!(",p={}", BASE64.encode(proof))
}

/// PostgreSQL's checks on a whole SASL payload: not empty, and no NUL
/// (it reads it as a C string).
fn check_whole(input: &[u8]) -> Result<(), ScramError> {
    if input.is_empty() {
        return Err(ScramError::Malformed("The message is empty."));
    }
    if memchr::memchr(0, input).is_some() {
        return Err(ScramError::Malformed(
            "Message length does not match input length.",
        ));
    }
    Ok(())
}

fn gs2_cbind_flag(input: &[u8]) -> Result<(CbindFlag, &[u8]), ScramError> {
    let flag = match input.first() {
        Some(b'p') => {
            let (kind, rest) = attr_value(input, b'p')?;
            if kind != TLS_SERVER_END_POINT {
                return Err(ScramError::UnsupportedBinding(sanitize(kind)));
            }
            return Ok((CbindFlag::TlsServerEndPoint, rest));
        }
        Some(b'n') => CbindFlag::No,
        Some(b'y') => CbindFlag::ClientOnly,
        _ => return Err(ScramError::Malformed("Unexpected channel-binding flag.")),
    };
    match input.get(1) {
        Some(b',') => Ok((flag, &input[2..])),
        _ => Err(ScramError::Malformed(
            "Comma expected after the channel-binding flag.",
        )),
    }
}

/// Reads `attr=value` at the start of `input`: the value (up to the next
/// comma, or the end) and what follows that comma.
fn attr_value(input: &[u8], attr: u8) -> Result<(&[u8], &[u8]), ScramError> {
    if input.first() != Some(&attr) {
        return Err(ScramError::Malformed(expected(attr)));
    }
    if input.get(1) != Some(&b'=') {
        return Err(ScramError::Malformed(
            "Expected character \"=\" after the attribute.",
        ));
    }
    Ok(split_value(&input[2..]))
}

/// Reads any `x=value` (an extension): its letter, value and the rest.
fn any_attr(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ScramError> {
    let attr = match input.first() {
        Some(&a) if a.is_ascii_alphabetic() => a,
        Some(_) => {
            return Err(ScramError::Malformed(
                "Attribute expected, but found invalid character.",
            ))
        }
        None => {
            return Err(ScramError::Malformed(
                "Attribute expected, but found end of string.",
            ))
        }
    };
    let (value, rest) = attr_value(input, attr)?;
    Ok((attr, value, rest))
}

fn split_value(input: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b',', input) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[]),
    }
}

/// RFC 5802's `printable`: ASCII 0x21..=0x7e except the comma.
fn printable(nonce: &[u8]) -> Option<&str> {
    let ok = nonce
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b',');
    ok.then(|| std::str::from_utf8(nonce).ok()).flatten()
}

fn decode_key(text: &[u8]) -> Option<Key> {
    let bytes = BASE64.decode(text).ok()?;
    (bytes.len() == KEY_LEN)
        .then(|| bytes.try_into().ok())
        .flatten()
}

/// A client's text shown in an error: printable ASCII, at most 64 bytes.
fn sanitize(text: &[u8]) -> String {
    text.iter()
        .take(64)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// PostgreSQL's detail for a missing attribute, per attribute.
fn expected(attr: u8) -> &'static str {
    match attr {
        b'n' => "Expected attribute \"n\" (the user name).",
        b'r' => "Expected attribute \"r\" (the nonce).",
        b'c' => "Expected attribute \"c\" (the channel binding).",
        b'p' => "Expected attribute \"p\" (the channel binding type).",
        b's' => "Expected attribute \"s\" (the salt).",
        b'i' => "Expected attribute \"i\" (the iteration count).",
        b'v' => "Expected attribute \"v\" (the server signature).",
        b'e' => "Expected attribute \"e\" (the server error).",
        _ => "Expected another attribute.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(e: Result<impl std::fmt::Debug, ScramError>) -> &'static str {
        match e {
            Err(ScramError::Malformed(detail)) => detail,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn client_first_as_libpq_sends_it() {
        let first = ClientFirst::parse(b"n,,n=,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.cbind, CbindFlag::No);
        assert_eq!(first.bare, b"n=,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first.nonce, "rOprNGfwEbeRWgbNEkqO");
        let plus = ClientFirst::parse(b"p=tls-server-end-point,,n=,r=abc,x=ext").unwrap();
        assert_eq!(plus.cbind, CbindFlag::TlsServerEndPoint);
        assert_eq!(plus.bare, b"n=,r=abc,x=ext");
        assert_eq!(
            ClientFirst::parse(b"y,,n=u,r=abc").unwrap().cbind,
            CbindFlag::ClientOnly
        );
    }

    #[test]
    fn client_first_refusals_are_postgresqls() {
        assert_eq!(malformed(ClientFirst::parse(b"")), "The message is empty.");
        assert_eq!(
            malformed(ClientFirst::parse(b"n,,n=,r=a\0b")),
            "Message length does not match input length."
        );
        assert_eq!(
            malformed(ClientFirst::parse(b"q,,n=,r=a")),
            "Unexpected channel-binding flag."
        );
        assert_eq!(
            malformed(ClientFirst::parse(b"n")),
            "Comma expected after the channel-binding flag."
        );
        assert_eq!(
            ClientFirst::parse(b"p=tls-unique,,n=,r=a"),
            Err(ScramError::UnsupportedBinding("tls-unique".into()))
        );
        assert_eq!(
            ClientFirst::parse(b"n,a=admin,n=,r=a"),
            Err(ScramError::AuthorizationIdentity)
        );
        assert_eq!(
            ClientFirst::parse(b"n,,m=x,n=,r=a"),
            Err(ScramError::Extension)
        );
        assert_eq!(malformed(ClientFirst::parse(b"n,,r=a")), expected(b'n'));
        assert_eq!(malformed(ClientFirst::parse(b"n,,n=")), expected(b'r'));
        assert_eq!(
            ClientFirst::parse(b"n,,n=,r=a\x01"),
            Err(ScramError::NonPrintableNonce)
        );
        assert_eq!(
            malformed(ClientFirst::parse(b"n,,n=,r=a,,")),
            "Attribute expected, but found invalid character."
        );
        assert_eq!(
            ScramError::Extension.to_pg().code,
            sqlstate::FEATURE_NOT_SUPPORTED
        );
        let pg = ScramError::Malformed("The message is empty.").to_pg();
        assert_eq!(
            (pg.code.as_str(), pg.message.as_str()),
            ("08P01", "malformed SCRAM message")
        );
        assert_eq!(pg.more, vec![(b'D', "The message is empty.")]);
    }

    #[test]
    fn client_final_keeps_what_is_signed() {
        let proof = BASE64.encode([9u8; KEY_LEN]);
        let text = format!("c=biws,r=abcdef,x=1,p={proof}");
        let last = ClientFinal::parse(text.as_bytes()).unwrap();
        assert_eq!(last.channel_binding, b"biws");
        assert_eq!(last.nonce, b"abcdef");
        assert_eq!(last.proof, [9; KEY_LEN]);
        assert_eq!(last.without_proof, b"c=biws,r=abcdef,x=1");
    }

    #[test]
    fn client_final_refusals() {
        let proof = BASE64.encode([9u8; KEY_LEN]);
        assert_eq!(malformed(ClientFinal::parse(b"r=a,p=x")), expected(b'c'));
        assert_eq!(malformed(ClientFinal::parse(b"c=biws,p=x")), expected(b'r'));
        assert_eq!(
            malformed(ClientFinal::parse(b"c=biws,r=a")),
            "Attribute expected, but found end of string."
        );
        assert_eq!(
            malformed(ClientFinal::parse(b"c=biws,r=a,p=c2hvcnQ=")),
            "Malformed proof in client-final-message."
        );
        assert_eq!(
            malformed(ClientFinal::parse(
                format!("c=biws,r=a,p={proof},x=1").as_bytes()
            )),
            "Garbage found at the end of client-final-message."
        );
        assert_eq!(
            malformed(ClientFinal::parse(b"c=biws,r=a,1=x")),
            "Attribute expected, but found invalid character."
        );
    }

    #[test]
    fn server_messages_parse_and_format() {
        let text = server_first("abcXYZ", "c2FsdA==", 4096);
        assert_eq!(text, "r=abcXYZ,s=c2FsdA==,i=4096");
        let first = ServerFirst::parse(text.as_bytes()).unwrap();
        assert_eq!(
            (first.nonce, &first.salt[..], first.iterations),
            (&b"abcXYZ"[..], &b"salt"[..], 4096)
        );
        assert!(ServerFirst::parse(b"r=a,s=c2FsdA==,i=0").is_err());
        assert!(ServerFirst::parse(b"r=a,s=!,i=1").is_err());
        let last = server_final(&[3; KEY_LEN]);
        assert_eq!(
            ServerFinal::parse(last.as_bytes()),
            Ok(ServerFinal::Verifier([3; KEY_LEN]))
        );
        assert_eq!(
            ServerFinal::parse(b"e=invalid-proof"),
            Ok(ServerFinal::Error(&b"invalid-proof"[..]))
        );
        assert!(ServerFinal::parse(b"v=short").is_err());
    }

    #[test]
    fn channel_binding_attribute_is_base64_of_header_and_data() {
        assert_eq!(channel_binding_attr(CbindFlag::No, b"ignored"), "biws");
        assert_eq!(channel_binding_attr(CbindFlag::ClientOnly, b""), "eSws");
        let attr = channel_binding_attr(CbindFlag::TlsServerEndPoint, b"\x01\x02");
        assert_eq!(
            BASE64.decode(attr).unwrap(),
            b"p=tls-server-end-point,,\x01\x02"
        );
    }
}
