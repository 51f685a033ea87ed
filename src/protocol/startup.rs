//! The untyped packets a client may open with: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage. Hand-written rather than pgwire's
//! `Startup` because pgsplit must tell these apart, answer each protocol
//! version precisely, and keep parameter bytes exact.

use super::frame::cstr;
use super::ProtocolError;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
/// A CancelRequest one pgsplit instance forwards to another (`fleet`):
/// the same body under a code of pgsplit's own (1234.5699), so that the
/// peer cancels only its own statements and never forwards it again.
pub const FORWARDED_CANCEL: u32 = (1234 << 16) | 5699;
/// Startup packets are small; anything larger is an attack or a mistake.
/// PostgreSQL's limit (MAX_STARTUP_PACKET_LENGTH): a client PostgreSQL
/// accepts is not refused here.
pub const MAX_STARTUP_PACKET: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: i32,
        /// From a peer instance (`FORWARDED_CANCEL`).
        forwarded: bool,
    },
    Startup {
        /// Minor protocol version the client asked for (major is always 3).
        minor: u16,
        /// `user`, `database`, `application_name`, ... in the client's order.
        params: Vec<(String, String)>,
        /// `_pq_.` protocol options pgsplit does not support.
        protocol_options: Vec<String>,
    },
}

/// Length of the packet at the start of `buf` (the length field counts
/// itself), or `None` if four bytes are not there yet.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProtocolError::StartupLength {
            len,
            max: MAX_STARTUP_PACKET,
        });
    }
    Ok(Some(len))
}

/// Parses a whole packet, length field included.
pub fn parse(packet: &[u8]) -> Result<StartupPacket, ProtocolError> {
    // `packet_len` lets no shorter packet through; checked again so that
    // this never indexes past what it was given.
    let Some((code, body)) = packet.get(4..).and_then(|p| p.split_first_chunk::<4>()) else {
        return Err(ProtocolError::BadStartup("bad packet length"));
    };
    let code = u32::from_be_bytes(*code);
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => parse_cancel(body, false),
        FORWARDED_CANCEL => parse_cancel(body, true),
        _ => parse_startup((code >> 16) as u16, (code & 0xffff) as u16, body),
    }
}

fn parse_cancel(body: &[u8], forwarded: bool) -> Result<StartupPacket, ProtocolError> {
    if body.len() != 8 {
        return Err(ProtocolError::BadStartup("bad cancel request length"));
    }
    Ok(StartupPacket::Cancel {
        pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
        secret: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        forwarded,
    })
}

fn parse_startup(major: u16, minor: u16, mut body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    if major != 3 {
        return Err(ProtocolError::UnsupportedVersion { major, minor });
    }
    let mut params = Vec::new();
    let mut protocol_options = Vec::new();
    loop {
        let (name, rest) =
            cstr(body).map_err(|_| ProtocolError::BadStartup("missing terminator"))?;
        if name.is_empty() {
            break;
        }
        let (value, rest) = cstr(rest).map_err(|_| ProtocolError::BadStartup("missing value"))?;
        body = rest;
        let name = String::from_utf8_lossy(name).into_owned();
        let value = String::from_utf8_lossy(value).into_owned();
        if name.starts_with("_pq_.") {
            protocol_options.push(name);
        } else {
            params.push((name, value));
        }
    }
    Ok(StartupPacket::Startup {
        minor,
        params,
        protocol_options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut p = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn ssl_and_gss_requests() {
        assert_eq!(
            parse(&packet(SSL_REQUEST, b"")).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            parse(&packet(GSSENC_REQUEST, b"")).unwrap(),
            StartupPacket::GssEncRequest
        );
    }

    #[test]
    fn cancel_request() {
        let p = packet(CANCEL_REQUEST, &[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(
            parse(&p).unwrap(),
            StartupPacket::Cancel {
                pid: 7,
                secret: -2,
                forwarded: false
            }
        );
        let p = packet(FORWARDED_CANCEL, &[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(
            parse(&p).unwrap(),
            StartupPacket::Cancel {
                pid: 7,
                secret: -2,
                forwarded: true
            }
        );
        assert!(parse(&packet(CANCEL_REQUEST, &[1, 2])).is_err());
    }

    #[test]
    fn startup_with_params() {
        let p = packet(196608, b"user\0alice\0database\0db\0_pq_.x\0y\0\0");
        match parse(&p).unwrap() {
            StartupPacket::Startup {
                minor,
                params,
                protocol_options,
            } => {
                assert_eq!(minor, 0);
                assert_eq!(
                    params,
                    vec![
                        ("user".into(), "alice".into()),
                        ("database".into(), "db".into())
                    ]
                );
                assert_eq!(protocol_options, vec!["_pq_.x".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_protocol_refused() {
        let p = packet(2 << 16, b"user\0a\0\0");
        assert_eq!(
            parse(&p),
            Err(ProtocolError::UnsupportedVersion { major: 2, minor: 0 })
        );
    }

    #[test]
    fn short_packets_are_refused() {
        for short in [&b""[..], b"\0\0\0\x08", b"\0\0\0\x08\x04\xd2"] {
            assert_eq!(
                parse(short),
                Err(ProtocolError::BadStartup("bad packet length"))
            );
        }
    }

    #[test]
    fn truncated_startup_refused() {
        assert!(parse(&packet(196608, b"user\0alice")).is_err());
    }

    #[test]
    fn packet_len_bounds() {
        assert_eq!(packet_len(b"\0\0").unwrap(), None);
        assert!(packet_len(&[0, 0, 0, 4]).is_err());
        assert!(packet_len(&[0x7f, 0, 0, 0]).is_err());
        assert_eq!(packet_len(&[0, 0, 0, 8]).unwrap(), Some(8));
    }
}
