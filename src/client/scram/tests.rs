//! The exchange against postgres-protocol's client (what tokio-postgres
//! runs), in every channel-binding case PostgreSQL distinguishes.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// RFC 7677's password, and its verifier as PostgreSQL stores it.
const PASSWORD: &str = "pencil";
const VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
    WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
    wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
/// A TLS server certificate's hash, as the connection would give it.
const CERT_HASH: &[u8] = &[0xab; 32];

fn verifier() -> Verifier {
    Verifier::parse(VERIFIER).unwrap()
}

/// Runs a whole exchange: the client's password and channel binding, the
/// mechanism it picks, and the server's certificate hash (TLS) if any.
fn exchange(
    password: &str,
    client_binding: ChannelBinding,
    mechanism: &str,
    server_hash: Option<&[u8]>,
    doomed: bool,
) -> Result<Verdict, ExchangeError> {
    let mut client = ScramSha256::new(password.as_bytes(), client_binding);
    let server = ScramServer::new(mechanism.as_bytes(), server_hash, verifier(), doomed)?;
    let challenged = server.first(client.message())?;
    client
        .update(challenged.message())
        .expect("client takes the challenge");
    let verdict = challenged.finish(client.message())?;
    if let Verdict::Proved { server_final, .. } = &verdict {
        // The client checks pgsplit's signature: the server knew the keys.
        client
            .finish(server_final.as_bytes())
            .expect("client accepts the server");
    }
    Ok(verdict)
}

fn proved(result: Result<Verdict, ExchangeError>) -> bool {
    matches!(result, Ok(Verdict::Proved { .. }))
}

#[test]
fn without_tls_scram_sha_256_logs_in_and_a_wrong_password_is_refused() {
    assert_eq!(mechanisms(false), [SCRAM_SHA_256]);
    let right = exchange(
        PASSWORD,
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        None,
        false,
    );
    assert!(proved(right));
    // `y`: a client that could bind but sees no PLUS; fine without TLS.
    let y = exchange(
        PASSWORD,
        ChannelBinding::unrequested(),
        SCRAM_SHA_256,
        None,
        false,
    );
    assert!(proved(y));
    let wrong = exchange(
        "wrong",
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        None,
        false,
    );
    assert_eq!(wrong, Ok(Verdict::Refused));
}

/// What pass-through logs in to servers with: the key the client's
/// password gives, recovered from its proof alone.
#[test]
fn the_recovered_client_key_is_the_one_the_password_gives() {
    let Ok(Verdict::Proved { client_key, .. }) = exchange(
        PASSWORD,
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        None,
        false,
    ) else {
        panic!("not proved");
    };
    assert!(verifier().accepts(&client_key));
    // HMAC(SaltedPassword, "Client Key") for "pencil" and RFC 7677's salt.
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD
        .decode("pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=")
        .unwrap();
    assert_eq!(client_key.to_vec(), expected);
}

#[test]
fn a_doomed_exchange_is_refused_even_with_the_right_password() {
    let doomed = exchange(
        PASSWORD,
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        None,
        true,
    );
    assert_eq!(doomed, Ok(Verdict::Refused));
}

#[test]
fn over_tls_plus_is_offered_first_and_binds_to_the_certificate() {
    assert_eq!(mechanisms(true), [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
    let bound = exchange(
        PASSWORD,
        ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
        SCRAM_SHA_256_PLUS,
        Some(CERT_HASH),
        false,
    );
    assert!(proved(bound));
    // A client that does not bind (`n`) may still use SCRAM-SHA-256.
    let unbound = exchange(
        PASSWORD,
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        Some(CERT_HASH),
        false,
    );
    assert!(proved(unbound));
}

/// A man in the middle terminates TLS with his own certificate: the
/// client binds to his certificate's hash, pgsplit sees its own.
#[test]
fn binding_to_another_certificate_fails() {
    let other = exchange(
        PASSWORD,
        ChannelBinding::tls_server_end_point(vec![0xcd; 32]),
        SCRAM_SHA_256_PLUS,
        Some(CERT_HASH),
        false,
    );
    assert_eq!(other, Err(ExchangeError::BindingMismatch));
    assert_eq!(ExchangeError::BindingMismatch.to_pg().code, "28000");
}

/// `y` over TLS: the client thinks pgsplit cannot bind, so someone removed
/// SCRAM-SHA-256-PLUS from the offer.
#[test]
fn y_over_tls_is_refused_as_a_downgrade() {
    let y = exchange(
        PASSWORD,
        ChannelBinding::unrequested(),
        SCRAM_SHA_256,
        Some(CERT_HASH),
        false,
    );
    assert_eq!(y, Err(ExchangeError::Downgrade));
    let pg = ExchangeError::Downgrade.to_pg();
    assert_eq!(
        (pg.code.as_str(), pg.message.as_str()),
        ("28000", "SCRAM channel binding negotiation error")
    );
}

#[test]
fn the_flag_must_agree_with_the_mechanism() {
    // PLUS chosen, but the client-first-message does not bind.
    for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
        let e = exchange(
            PASSWORD,
            binding,
            SCRAM_SHA_256_PLUS,
            Some(CERT_HASH),
            false,
        );
        assert_eq!(e, Err(ExchangeError::BindingMissing));
    }
    // SCRAM-SHA-256 chosen, but the client binds.
    let e = exchange(
        PASSWORD,
        ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
        SCRAM_SHA_256,
        Some(CERT_HASH),
        false,
    );
    assert_eq!(e, Err(ExchangeError::BindingUnexpected));
    let e = exchange(
        PASSWORD,
        ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
        SCRAM_SHA_256,
        None,
        false,
    );
    assert_eq!(e, Err(ExchangeError::BindingUnexpected));
}

#[test]
fn only_offered_mechanisms_are_accepted() {
    for (mechanism, hash) in [
        (SCRAM_SHA_256_PLUS, None),
        ("SCRAM-SHA-1", None),
        ("", Some(CERT_HASH)),
        ("scram-sha-256", None),
    ] {
        let e = ScramServer::new(mechanism.as_bytes(), hash, verifier(), false);
        assert_eq!(
            e.unwrap_err(),
            ExchangeError::InvalidMechanism,
            "{mechanism}"
        );
    }
}

/// The final message must repeat the first one's flag and echo the nonce.
#[test]
fn a_final_message_that_does_not_follow_the_first_is_refused() {
    let start = |first: &[u8]| {
        ScramServer::new(SCRAM_SHA_256.as_bytes(), None, verifier(), false)
            .unwrap()
            .first(first)
            .unwrap()
    };
    let proof = ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let challenged = start(b"n,,n=,r=abc");
    let nonce = String::from_utf8(
        challenged.message()[2..]
            .split(|&b| b == b',')
            .next()
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let flag_changed = format!("c=eSws,r={nonce}{proof}");
    assert_eq!(
        challenged.finish(flag_changed.as_bytes()),
        Err(ExchangeError::BadBindingAttribute)
    );
    let challenged = start(b"n,,n=,r=abc");
    assert_eq!(
        challenged.finish(format!("c=biws,r=abcother{proof}").as_bytes()),
        Err(ExchangeError::NonceMismatch)
    );
    let challenged = start(b"y,,n=,r=abc");
    let nonce = String::from_utf8(
        challenged.message()[2..]
            .split(|&b| b == b',')
            .next()
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(
        challenged.finish(format!("c=eSws,r={nonce}{proof}").as_bytes()),
        Ok(Verdict::Refused)
    );
}

#[test]
fn malformed_messages_are_errors_with_postgresqls_words() {
    let server = ScramServer::new(SCRAM_SHA_256.as_bytes(), None, verifier(), false).unwrap();
    let e = server.first(b"").unwrap_err();
    let pg = e.to_pg();
    assert_eq!(
        (pg.code.as_str(), pg.message.as_str()),
        ("08P01", "malformed SCRAM message")
    );
    let challenged = ScramServer::new(SCRAM_SHA_256.as_bytes(), None, verifier(), false)
        .unwrap()
        .first(b"n,,n=,r=abc")
        .unwrap();
    assert!(matches!(
        challenged.finish(b"c=biws"),
        Err(ExchangeError::Message(ScramError::Malformed(_)))
    ));
}

#[test]
fn the_challenge_carries_the_verifiers_salt_and_iterations() {
    let v = verifier();
    let challenged = ScramServer::new(SCRAM_SHA_256.as_bytes(), None, v.clone(), false)
        .unwrap()
        .first(b"n,,n=,r=clientnonce")
        .unwrap();
    let first = message::ServerFirst::parse(challenged.message()).unwrap();
    assert!(first.nonce.starts_with(b"clientnonce"));
    assert_eq!(first.nonce.len(), "clientnonce".len() + 24);
    assert_eq!((first.salt, first.iterations), (v.salt, v.iterations));
}
