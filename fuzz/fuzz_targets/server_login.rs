//! What a server sends while pgsplit logs in (`server::handshake`): any
//! frames, answered from each kind of credential (none, a password, an md5
//! hash, a client's SCRAM keys), with or without TLS channel binding.
//! Nothing may panic, also when messages keep coming after an error.
//!
//! Input: one byte of options (bits 0-1: the credential; bit 2: TLS; bit
//! 3: the certificate has a tls-server-end-point hash), then server frames. In a frame's body `@NONCE@` stands for the nonce pgsplit
//! last sent, so SCRAM exchanges reach their later steps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::protocol::{frame, FrameHeader};
use pgsplit::secret::{md5, ScramKeys, Verifier};
use pgsplit::server::handshake::{Channel, Handshake, Step};
use pgsplit::server::Credential;
use std::sync::Arc;

/// RFC 7677's verifier ("pencil") and the ClientKey of that password.
const VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
    WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
const CLIENT_KEY: &str = "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=";

fuzz_target!(|data: &[u8]| {
    let Some((&options, mut rest)) = data.split_first() else {
        return;
    };
    let channel = Channel {
        tls: options & 4 != 0,
        end_point: (options & 8 != 0).then(|| vec![0xab; 32]),
    };
    let mut handshake = Handshake::new("user", credential(options).map(Arc::new), channel);
    let mut nonce = Vec::new();
    while let Ok(Some(header)) = FrameHeader::peek(rest, 1 << 20) {
        let Some((whole, after)) = rest.split_at_checked(header.frame_len()) else {
            break;
        };
        rest = after;
        let body = replace(frame::body(whole), b"@NONCE@", &nonce);
        match handshake.on_message(header.tag, &body) {
            Ok(Step::Send(out)) => {
                if let Some(sent) = nonce_in(&out) {
                    nonce = sent;
                }
            }
            Ok(Step::Ready) => break,
            Ok(_) | Err(_) => {}
        }
    }
});

fn credential(options: u8) -> Option<Credential> {
    match options & 3 {
        0 => None,
        1 => Some(Credential::Password("pencil".into())),
        2 => Some(Credential::Md5Hash(md5::hash("pencil", "user"))),
        _ => {
            use base64::Engine;
            let client_key = base64::engine::general_purpose::STANDARD
                .decode(CLIENT_KEY)
                .ok()?
                .try_into()
                .ok()?;
            let verifier = Verifier::parse(VERIFIER).ok()?;
            Some(Credential::Scram(ScramKeys {
                verifier,
                client_key,
            }))
        }
    }
}

/// The `r=` attribute of a SASL message pgsplit sent.
fn nonce_in(sent: &[u8]) -> Option<Vec<u8>> {
    let at = sent.windows(2).position(|w| w == b"r=")? + 2;
    let nonce = &sent[at..];
    let end = nonce.iter().position(|&b| b == b',').unwrap_or(nonce.len());
    Some(nonce[..end].to_vec())
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match text.windows(from.len()).position(|w| w == from) {
        Some(at) => [&text[..at], to, &text[at + from.len()..]].concat(),
        None => text.to_vec(),
    }
}
