//! Messages pgsplit itself sends to clients, encoded with pgwire.
//! Encoding into a `BytesMut` only fails for messages over pgwire's size
//! limits, which none of these approach, so the results are ignored.

use super::status;
use bytes::{Bytes, BytesMut};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

pub fn authentication_ok(out: &mut BytesMut) {
    let _ = Authentication::Ok.encode(out);
}

pub fn authentication_md5(salt: [u8; 4], out: &mut BytesMut) {
    let _ = Authentication::MD5Password(salt.to_vec()).encode(out);
}

/// AuthenticationSASL offering `mechanisms`, in the order given.
pub fn authentication_sasl(mechanisms: &[&str], out: &mut BytesMut) {
    let names = mechanisms.iter().map(|m| m.to_string()).collect();
    let _ = Authentication::SASL(names).encode(out);
}

pub fn sasl_continue(data: &[u8], out: &mut BytesMut) {
    let _ = Authentication::SASLContinue(Bytes::copy_from_slice(data)).encode(out);
}

pub fn sasl_final(data: &[u8], out: &mut BytesMut) {
    let _ = Authentication::SASLFinal(Bytes::copy_from_slice(data)).encode(out);
}

pub fn parameter_status(name: &str, value: &str, out: &mut BytesMut) {
    let _ = ParameterStatus::new(name.to_string(), value.to_string()).encode(out);
}

pub fn backend_key_data(pid: i32, secret: i32, out: &mut BytesMut) {
    let _ = BackendKeyData::new(pid, SecretKey::I32(secret)).encode(out);
}

/// Sent when the client asked for a newer minor version or `_pq_` options.
pub fn negotiate_protocol_version(options: Vec<String>, out: &mut BytesMut) {
    let _ = NegotiateProtocolVersion::new(0, options).encode(out);
}

pub fn ready_for_query(status: u8, out: &mut BytesMut) {
    let status = match status {
        status::IN_TRANSACTION => TransactionStatus::Transaction,
        status::FAILED => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    let _ = ReadyForQuery::new(status).encode(out);
}

pub fn command_complete(tag: &str, out: &mut BytesMut) {
    let _ = pgwire::messages::response::CommandComplete::new(tag.to_string()).encode(out);
}

/// A NoticeResponse (severity NOTICE, SQLSTATE 00000).
pub fn notice(message: &str, out: &mut BytesMut) {
    use pgwire::messages::response::NoticeResponse;
    let fields = vec![
        (b'S', "NOTICE".to_string()),
        (b'V', "NOTICE".to_string()),
        (b'C', "00000".to_string()),
        (b'M', message.to_string()),
    ];
    let _ = NoticeResponse::new(fields).encode(out);
}

/// A RowDescription of text columns (type text, oid 25).
pub fn row_description(columns: &[&str], out: &mut BytesMut) {
    let fields = columns
        .iter()
        .map(|name| FieldDescription::new(name.to_string(), 0, 0, 25, -1, -1, 0))
        .collect();
    let _ = RowDescription::new(fields).encode(out);
}

/// A RowDescription of (name, type OID) columns, all in text format.
pub fn typed_row_description(columns: &[(&str, u32)], out: &mut BytesMut) {
    let fields = columns
        .iter()
        .map(|(name, oid)| {
            let size = if *oid == 20 { 8 } else { -1 };
            FieldDescription::new(name.to_string(), 0, 0, *oid, size, -1, 0)
        })
        .collect();
    let _ = RowDescription::new(fields).encode(out);
}

/// A DataRow of text values; `None` is NULL.
pub fn data_row(values: &[Option<&str>], out: &mut BytesMut) {
    let mut data = BytesMut::new();
    for value in values {
        match value {
            Some(v) => {
                data.extend_from_slice(&(v.len() as i32).to_be_bytes());
                data.extend_from_slice(v.as_bytes());
            }
            None => data.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let _ = DataRow::new(data, values.len() as i16).encode(out);
}

/// ParseComplete, CloseComplete and friends: a tag and no body.
pub fn empty(tag: u8, out: &mut BytesMut) {
    out.extend_from_slice(&[tag, 0, 0, 0, 4]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query_bytes() {
        let mut out = BytesMut::new();
        ready_for_query(b'T', &mut out);
        assert_eq!(&out[..], b"Z\0\0\0\x05T");
    }

    #[test]
    fn auth_ok_bytes() {
        let mut out = BytesMut::new();
        authentication_ok(&mut out);
        assert_eq!(&out[..], b"R\0\0\0\x08\0\0\0\0");
    }

    #[test]
    fn sasl_offers_mechanisms_in_order() {
        let mut out = BytesMut::new();
        authentication_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], &mut out);
        assert_eq!(
            &out[..],
            b"R\0\0\0\x2a\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
        );
    }

    #[test]
    fn key_data_bytes() {
        let mut out = BytesMut::new();
        backend_key_data(1, 2, &mut out);
        assert_eq!(&out[..], b"K\0\0\0\x0c\0\0\0\x01\0\0\0\x02");
    }
}
