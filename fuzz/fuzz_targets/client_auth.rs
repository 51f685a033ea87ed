//! A client's side of authentication as pgsplit reads it: the md5
//! PasswordMessage, and a SCRAM-SHA-256(-PLUS) exchange (SASLInitialResponse,
//! client-first-message, client-final-message) run through pgsplit's
//! exchange (`client::scram`), with or without TLS channel binding, for a
//! real or a doomed (unknown) user. Nothing may panic.
//!
//! Input: one byte of options (bit 0: TLS; bit 1: doomed; bit 2: md5
//! instead), then the client's messages separated by 0xff bytes. In the
//! final message `@NONCE@` stands for the nonce of pgsplit's challenge, so
//! the exchange reaches the proof.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::client::scram::{ScramServer, Verdict};
use pgsplit::protocol::password;
use pgsplit::protocol::scram::{ClientFinal, ClientFirst, ServerFirst};
use pgsplit::secret::{md5, Verifier};

/// RFC 7677's verifier ("pencil").
const VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
    WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
/// The TLS certificate hash of the connection, when TLS.
const CERT_HASH: [u8; 32] = [0xab; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let messages: Vec<&[u8]> = rest.split(|&b| b == 0xff).collect();
    for message in &messages {
        let _ = ClientFirst::parse(message);
        let _ = ClientFinal::parse(message);
    }
    if options & 4 != 0 {
        md5_answer(messages[0]);
    } else {
        scram(&messages, options & 1 != 0, options & 2 != 0);
    }
});

fn md5_answer(body: &[u8]) {
    if let Ok(answer) = password::password(body) {
        let hash = md5::hash("pencil", "user");
        let _ = md5::matches(&hash, [1, 2, 3, 4], answer);
    }
}

fn scram(messages: &[&[u8]], tls: bool, doomed: bool) {
    let Ok(verifier) = Verifier::parse(VERIFIER) else {
        return;
    };
    let binding = tls.then_some(&CERT_HASH[..]);
    let mut next = messages.iter();
    let Some(Ok(initial)) = next.next().map(|m| password::initial_response(m)) else {
        return;
    };
    let Ok(server) = ScramServer::new(initial.mechanism, binding, verifier, doomed) else {
        return;
    };
    let first = match (initial.data, next.next()) {
        (Some(data), _) => data,
        (None, Some(message)) => password::response(message),
        (None, None) => return,
    };
    let Ok(challenged) = server.first(first) else {
        return;
    };
    let nonce = ServerFirst::parse(challenged.message())
        .expect("pgsplit's own challenge parses")
        .nonce
        .to_vec();
    let Some(last) = next.next() else {
        return;
    };
    let last = replace(last, b"@NONCE@", &nonce);
    if let Ok(Verdict::Proved { .. }) = challenged.finish(&last) {
        assert!(!doomed, "a doomed exchange was proved");
    }
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match text.windows(from.len()).position(|w| w == from) {
        Some(at) => [&text[..at], to, &text[at + from.len()..]].concat(),
        None => text.to_vec(),
    }
}
