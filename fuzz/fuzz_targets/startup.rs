//! The startup packets (SSLRequest, GSSENCRequest, CancelRequest,
//! StartupMessage): bytes cut into packets as `client::startup` does, each
//! parsed. Nothing may panic, and no packet outside the length bounds is
//! handed on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::protocol::startup::{self, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    // Whatever it is given, also a packet cut short.
    let _ = startup::parse(data);
    let mut rest = data;
    while let Ok(Some(len)) = startup::packet_len(rest) {
        assert!((8..=MAX_STARTUP_PACKET).contains(&len));
        let Some((packet, after)) = rest.split_at_checked(len) else {
            break;
        };
        let _ = startup::parse(packet);
        rest = after;
    }
});
