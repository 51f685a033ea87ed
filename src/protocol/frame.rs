//! Frame boundaries: a type byte and a big-endian length that counts itself.

use super::ProtocolError;

/// The five bytes in front of every typed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    /// Length of the body (the length field excluded).
    pub body_len: usize,
}

impl FrameHeader {
    pub const SIZE: usize = 5;

    /// Whole frame size: type byte, length field and body.
    pub fn frame_len(&self) -> usize {
        Self::SIZE + self.body_len
    }

    /// Reads the header at the start of `buf`; `Ok(None)` if fewer than five
    /// bytes are there yet. Lengths under 4 or over `max` are refused, so a
    /// peer cannot make pgsplit allocate what it claims.
    pub fn peek(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, ProtocolError> {
        if buf.len() < Self::SIZE {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len < 4 {
            return Err(ProtocolError::BadLength { tag: buf[0], len });
        }
        if len > max {
            return Err(ProtocolError::TooLarge {
                tag: buf[0],
                len,
                max,
            });
        }
        Ok(Some(FrameHeader {
            tag: buf[0],
            body_len: len - 4,
        }))
    }
}

/// The body of a whole frame (after its type byte and length); empty for a
/// frame too short to have one.
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(FrameHeader::SIZE..).unwrap_or_default()
}

/// Reads a NUL-terminated string at the start of `buf`: the string and the
/// rest after the NUL.
pub fn cstr(buf: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let end =
        memchr::memchr(0, buf).ok_or(ProtocolError::Malformed("missing string terminator"))?;
    Ok((&buf[..end], &buf[end + 1..]))
}

/// Appends a frame with `tag` whose body is written by `body`, fixing up the
/// length afterwards so callers need not compute it.
pub fn put_frame(out: &mut bytes::BytesMut, tag: u8, body: impl FnOnce(&mut bytes::BytesMut)) {
    use bytes::BufMut;
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(FrameHeader::peek(b"Q\0\0", 100).unwrap(), None);
    }

    #[test]
    fn header_reads_length() {
        let h = FrameHeader::peek(b"Q\0\0\0\x0dselect 1\0", 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            FrameHeader {
                tag: b'Q',
                body_len: 9
            }
        );
        assert_eq!(h.frame_len(), 14);
    }

    #[test]
    fn header_refuses_bad_and_huge_lengths() {
        assert!(matches!(
            FrameHeader::peek(b"Q\0\0\0\x02", 100),
            Err(ProtocolError::BadLength { .. })
        ));
        assert!(matches!(
            FrameHeader::peek(b"Q\x7f\xff\xff\xff", 1 << 20),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn put_frame_fixes_length() {
        let mut out = bytes::BytesMut::new();
        put_frame(&mut out, b'Q', |b| b.extend_from_slice(b"select 1\0"));
        assert_eq!(&out[..], b"Q\0\0\0\x0dselect 1\0");
    }

    #[test]
    fn cstr_splits() {
        assert_eq!(cstr(b"ab\0cd").unwrap(), (&b"ab"[..], &b"cd"[..]));
        assert!(cstr(b"abc").is_err());
    }
}
