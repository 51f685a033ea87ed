//! The frame decoder: any bytes a client sends are cut into frames
//! (`FrameHeader::peek`, as `ClientIo` does) and each frame's body is read
//! by the decoders that read client messages. Nothing may panic, and a
//! frame's body is exactly the length its header claims.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::protocol::{error, extended, frame, password, tag, FrameHeader};

/// Small, so that claimed lengths are refused as well as accepted.
const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(header)) = FrameHeader::peek(rest, MAX) {
        assert!(header.body_len <= MAX);
        let Some((whole, after)) = rest.split_at_checked(header.frame_len()) else {
            break;
        };
        let body = frame::body(whole);
        assert_eq!(body.len(), header.body_len);
        read(header.tag, body);
        rest = after;
    }
});

fn read(message: u8, body: &[u8]) {
    let _ = frame::cstr(body);
    match message {
        tag::QUERY => drop(extended::query_text(body)),
        tag::PARSE => drop(extended::parse(body)),
        tag::BIND => drop(extended::bind(body)),
        tag::EXECUTE => drop(extended::execute(body)),
        tag::DESCRIBE | tag::CLOSE => drop(extended::target(body)),
        tag::PASSWORD => {
            let _ = password::password(body);
            let _ = password::initial_response(body);
        }
        _ => {
            let _ = error::response_field(body, b'C');
        }
    }
}
