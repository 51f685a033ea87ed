//! Bodies of the frontend messages that carry statement text or statement
//! names (Query, Parse, Bind, Describe, Close), and rewriting them with
//! another statement name. Other fields stay as the client sent them.

use super::frame::{cstr, put_frame};
use super::{tag, ProtocolError};
use bytes::BytesMut;

/// The statement text of a Query message (`text\0`).
pub fn query_text(body: &[u8]) -> Result<&[u8], ProtocolError> {
    Ok(cstr(body)?.0)
}

/// A Parse message: statement name, then text and parameter types.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Everything after the name (text, NUL, parameter type count and OIDs):
    /// what a rewritten Parse carries unchanged.
    pub after_name: &'a [u8],
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let (name, after_name) = cstr(body)?;
    let (query, types) = cstr(after_name)?;
    if types.len() < 2 || (types.len() - 2) % 4 != 0 {
        return Err(ProtocolError::Malformed("bad parameter type list in Parse"));
    }
    Ok(Parse {
        name,
        query,
        after_name,
    })
}

/// A Bind message: portal, statement, then formats and values.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, ProtocolError> {
    let (portal, rest) = cstr(body)?;
    let (statement, rest) = cstr(rest)?;
    Ok(Bind {
        portal,
        statement,
        rest,
    })
}

/// An Execute message: the portal and how many rows to return (0: all).
pub fn execute(body: &[u8]) -> Result<(&[u8], i32), ProtocolError> {
    let (portal, rest) = cstr(body)?;
    let rows = rest
        .get(..4)
        .ok_or(ProtocolError::Malformed("Execute without a row limit"))?;
    Ok((
        portal,
        i32::from_be_bytes([rows[0], rows[1], rows[2], rows[3]]),
    ))
}

/// Describe and Close: `S` (statement) or `P` (portal) and a name.
pub fn target(body: &[u8]) -> Result<(u8, &[u8]), ProtocolError> {
    let (&kind, rest) = body
        .split_first()
        .ok_or(ProtocolError::Malformed("empty Describe or Close"))?;
    if kind != b'S' && kind != b'P' {
        return Err(ProtocolError::Malformed(
            "Describe or Close of neither S nor P",
        ));
    }
    Ok((kind, cstr(rest)?.0))
}

pub fn write_parse(out: &mut BytesMut, name: impl AsRef<[u8]>, after_name: &[u8]) {
    put_frame(out, tag::PARSE, |b| {
        b.extend_from_slice(name.as_ref());
        b.extend_from_slice(&[0]);
        b.extend_from_slice(after_name);
    });
}

pub fn write_bind(out: &mut BytesMut, portal: &[u8], statement: impl AsRef<[u8]>, rest: &[u8]) {
    put_frame(out, tag::BIND, |b| {
        b.extend_from_slice(portal);
        b.extend_from_slice(&[0]);
        b.extend_from_slice(statement.as_ref());
        b.extend_from_slice(&[0]);
        b.extend_from_slice(rest);
    });
}

/// Describe or Close (`msg_tag`) of a statement or portal.
pub fn write_target(out: &mut BytesMut, msg_tag: u8, kind: u8, name: impl AsRef<[u8]>) {
    put_frame(out, msg_tag, |b| {
        b.extend_from_slice(&[kind]);
        b.extend_from_slice(name.as_ref());
        b.extend_from_slice(&[0]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_name_and_text() {
        let body = b"s1\0select $1\0\0\x01\0\0\0\x17";
        let p = parse(body).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.query, b"select $1");
        let mut out = BytesMut::new();
        write_parse(&mut out, "pgsplit_x", p.after_name);
        assert_eq!(&out[5..], b"pgsplit_x\0select $1\0\0\x01\0\0\0\x17");
    }

    #[test]
    fn parse_refuses_truncated_types() {
        assert!(parse(b"s\0select 1\0\0\x01\0\0").is_err());
        assert!(parse(b"s\0select 1").is_err());
    }

    #[test]
    fn bind_rewrite_keeps_values() {
        let body = b"p\0s1\0\0\0\0\x01\0\0\0\x011\0\0";
        let b = bind(body).unwrap();
        assert_eq!((b.portal, b.statement), (&b"p"[..], &b"s1"[..]));
        let mut out = BytesMut::new();
        write_bind(&mut out, b.portal, "pgsplit_y", b.rest);
        assert_eq!(&out[5..], b"p\0pgsplit_y\0\0\0\0\x01\0\0\0\x011\0\0");
    }

    #[test]
    fn describe_target() {
        assert_eq!(target(b"Sname\0").unwrap(), (b'S', &b"name"[..]));
        assert!(target(b"Xname\0").is_err());
        assert!(target(b"").is_err());
    }
}
