//! WAL positions as PostgreSQL prints them (`16/B374D848`).

/// A WAL position as a byte offset.
pub type Lsn = u64;

/// Parses `HI/LO` (hex halves); `None` for anything else.
pub fn parse(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

pub fn format(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// WAL page size (XLOG_BLCKSZ, fixed at PostgreSQL build time; 8 kB unless
/// built otherwise).
const WAL_PAGE: u64 = 8192;
/// Size of a page's short header (SizeOfXLogShortPHD), and of the long one
/// that starts each WAL segment (SizeOfXLogLongPHD).
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// The primary's insert position when the last record ended exactly at a
/// page boundary points past the next page's header, a position a replica
/// never reports as replayed (it reports the boundary). Mapped back to the
/// boundary, a replica that has replayed everything counts as caught up.
/// No record can end right after a header, so nothing replayable is skipped.
/// `segment_offset` (the position's offset in its WAL segment, when known)
/// tells a segment's first page, whose header is the long one.
pub fn normalize_insert_position(lsn: Lsn, segment_offset: Option<u64>) -> Lsn {
    if segment_offset == Some(LONG_PAGE_HEADER) {
        lsn - LONG_PAGE_HEADER
    } else if lsn % WAL_PAGE == SHORT_PAGE_HEADER {
        lsn - SHORT_PAGE_HEADER
    } else {
        lsn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("0/3000060"), Some(0x3000060));
        assert_eq!(parse("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse("nope"), None);
        assert_eq!(parse("1/"), None);
    }

    #[test]
    fn page_header_positions_map_to_the_boundary() {
        assert_eq!(normalize_insert_position(0x4000 + 24, None), 0x4000);
        assert_eq!(normalize_insert_position(0x4000 + 25, None), 0x4000 + 25);
        assert_eq!(normalize_insert_position(0x4000, None), 0x4000);
        // A segment's first page has the long header.
        assert_eq!(normalize_insert_position(0x300_0028, Some(40)), 0x300_0000);
        // Offset 40 on a page with the short header is a real position.
        assert_eq!(
            normalize_insert_position(0x300_2028, Some(0x2028)),
            0x300_2028
        );
    }
}
