//! Client authentication: trust, `cert` (the TLS client certificate's CN is
//! the user), and md5 and SCRAM-SHA-256(-PLUS) against the configured users
//! or those auth_query finds, as PostgreSQL runs them. The
//! exchange is chosen from the facts (`choose`), then run over the socket;
//! a user that cannot log in (unknown, or without a secret for the method)
//! runs a mock exchange and is refused at its end with the same
//! `28P01 password authentication failed`, so no answer tells an attacker
//! which users exist. What a client proves with a hash or verifier is kept
//! for the servers' logins (pass-through).

use super::io::{ClientError, ClientIo};
use super::scram::{self, ScramServer, Verdict};
use crate::app::credentials::Stored;
use crate::app::{App, Current};
use crate::config::AuthMethod;
use crate::protocol::error::sqlstate;
use crate::protocol::password::{self, PasswordMessageError};
use crate::protocol::{backend, PgError};
use crate::secret::{md5, ScramKeys, Verifier};
use crate::server::Credential;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// The exchange to run, and why it must fail if it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    pub exchange: Exchange<'a>,
    pub doom: Option<Doom>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange<'a> {
    /// An md5 challenge; the hash to check against (`None`: mock).
    Md5(Option<&'a str>),
    /// A SCRAM exchange; the verifier (`None`: a mock one).
    Scram(Option<&'a Verifier>),
}

/// Why a login cannot succeed whatever the client sends; PostgreSQL
/// logs these as the DETAIL of the refusal, and tells the client nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doom {
    UnknownUser,
    /// The user's secret cannot check this method (an md5 hash under
    /// `auth = "scram-sha-256"`).
    NoSecretForMethod,
}

/// PostgreSQL's choice (`CheckPWChallengeAuth`): md5 where asked and an md5
/// hash (or password) is at hand, SCRAM where asked or where only a
/// verifier is at hand; a mock exchange of the asked method otherwise.
pub fn choose(method: AuthMethod, stored: Option<&Stored>) -> Plan<'_> {
    let doomed = |exchange, doom| Plan {
        exchange,
        doom: Some(doom),
    };
    let Some(stored) = stored else {
        return match method {
            AuthMethod::Md5 => doomed(Exchange::Md5(None), Doom::UnknownUser),
            _ => doomed(Exchange::Scram(None), Doom::UnknownUser),
        };
    };
    let exchange = match (method, &stored.md5, &stored.scram) {
        (AuthMethod::Md5, Some(hash), _) => Exchange::Md5(Some(hash)),
        (_, _, Some(verifier)) => Exchange::Scram(Some(verifier)),
        (AuthMethod::Md5, None, None) => {
            return doomed(Exchange::Md5(None), Doom::NoSecretForMethod)
        }
        (_, _, None) => return doomed(Exchange::Scram(None), Doom::NoSecretForMethod),
    };
    Plan {
        exchange,
        doom: None,
    }
}

/// How an exchange ended that did not break the protocol.
enum Outcome {
    /// The client proved it; what logs in to the servers for it, when
    /// pgsplit has no password of its own (pass-through).
    Proved(Option<Credential>),
    Refused,
}

/// Checks the client's password as `auth` asks; `channel_binding` is the
/// TLS certificate hash when the connection is TLS (SCRAM-SHA-256-PLUS is
/// then offered). Returns once the client proved it (AuthenticationOk is
/// the caller's to send).
pub async fn authenticate(
    app: &App,
    current: &Current,
    io: &mut ClientIo,
    user: &str,
    channel_binding: Option<&[u8]>,
) -> Result<(), ClientError> {
    let method = current.config.auth;
    match method {
        AuthMethod::Trust => return Ok(()),
        AuthMethod::Cert => return certificate(io, user),
        AuthMethod::Md5 | AuthMethod::ScramSha256 => {}
    }
    let stored = find(app, current, user, method).await?;
    let plan = choose(method, stored.as_deref());
    let mut mechanism = match plan.exchange {
        Exchange::Md5(_) => "md5",
        Exchange::Scram(_) => "scram-sha-256",
    };
    let mock;
    let exchange = match plan.exchange {
        Exchange::Md5(hash) => md5_exchange(io, hash).await,
        Exchange::Scram(verifier) => {
            let verifier = match verifier {
                Some(v) => v,
                None => {
                    mock = current.credentials.mock_verifier(user);
                    &mock
                }
            };
            scram_exchange(
                io,
                verifier,
                plan.doom.is_some(),
                channel_binding,
                &mut mechanism,
            )
            .await
        }
    };
    let pass_through = stored.as_ref().is_some_and(|s| s.pass_through);
    conclude(app, user, &plan, mechanism, exchange, pass_through)
}

/// The user's secret: configured, or looked up with auth_query.
async fn find(
    app: &App,
    current: &Current,
    user: &str,
    method: AuthMethod,
) -> Result<Option<Arc<Stored>>, ClientError> {
    if let Some(stored) = current.credentials.get(user) {
        return Ok(Some(stored));
    }
    let Some(auth_query) = &current.auth_query else {
        return Ok(None);
    };
    match auth_query.lookup(&current.pools, user).await {
        Ok((stored, answer)) => {
            app.metrics.auth_query(answer.label());
            tracing::debug!(user, answer = answer.label(), "auth_query");
            Ok(stored)
        }
        Err(error) => {
            app.metrics.auth_query("failed");
            let mechanism = if method == AuthMethod::Md5 {
                "md5"
            } else {
                "scram-sha-256"
            };
            app.metrics.client_auth(mechanism, "lookup_failed");
            tracing::error!(user, %error, "cannot check a client's password: auth_query failed");
            Err(ClientError::Refused(PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                "pgsplit could not look up the user's password (auth_query failed; see pgsplit's log)",
            )))
        }
    }
}

/// Logs and counts how the login ended, keeps what the client proved, and
/// tells the caller.
fn conclude(
    app: &App,
    user: &str,
    plan: &Plan,
    mechanism: &str,
    exchange: Result<Outcome, ClientError>,
    pass_through: bool,
) -> Result<(), ClientError> {
    let result = match &exchange {
        Ok(Outcome::Proved(_)) => "ok",
        Ok(Outcome::Refused) => match plan.doom {
            Some(Doom::UnknownUser) => "unknown_user",
            Some(Doom::NoSecretForMethod) => "unusable_secret",
            None => "wrong_password",
        },
        Err(ClientError::Refused(_) | ClientError::Protocol(_)) => "protocol_violation",
        // Gone mid-exchange: not a decision of pgsplit's.
        Err(_) => return exchange.map(|_| ()),
    };
    app.metrics.client_auth(mechanism, result);
    match exchange {
        Ok(Outcome::Proved(learned)) => {
            tracing::debug!(user, mechanism, pass_through, "client authenticated");
            if let (Some(credential), true) = (learned, pass_through) {
                app.keyring.learn(user, credential);
            }
            Ok(())
        }
        Ok(Outcome::Refused) => {
            let detail = match plan.doom {
                Some(Doom::UnknownUser) => "the role is neither in [[users]] nor found by auth_query",
                Some(Doom::NoSecretForMethod) => "the user has no secret that can check this method (an md5 hash under scram-sha-256?)",
                None => "the password does not match",
            };
            tracing::warn!(user, mechanism, detail, "password authentication failed");
            Err(ClientError::Refused(PgError::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )))
        }
        Err(error) => {
            tracing::warn!(user, mechanism, %error, "malformed authentication exchange");
            Err(error)
        }
    }
}

/// An md5 challenge with a fresh random salt (also when mock).
async fn md5_exchange(io: &mut ClientIo, hash: Option<&str>) -> Result<Outcome, ClientError> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    backend::authentication_md5(salt, &mut out);
    io.write(&out).await?;
    let body = password_message(io, "password").await?;
    let answer = password::password(&body).map_err(refused)?;
    Ok(match hash {
        Some(hash) if md5::matches(hash, salt, answer) => {
            Outcome::Proved(Some(Credential::Md5Hash(hash.to_string())))
        }
        _ => Outcome::Refused,
    })
}

/// A SCRAM exchange (see `client::scram`); `mechanism` is set to the one
/// the client chose.
async fn scram_exchange(
    io: &mut ClientIo,
    verifier: &Verifier,
    doomed: bool,
    channel_binding: Option<&[u8]>,
    mechanism: &mut &'static str,
) -> Result<Outcome, ClientError> {
    let mut out = BytesMut::new();
    backend::authentication_sasl(scram::mechanisms(channel_binding.is_some()), &mut out);
    io.write(&out).await?;
    let body = password_message(io, "SASL").await?;
    let initial = password::initial_response(&body).map_err(refused)?;
    let server = ScramServer::new(initial.mechanism, channel_binding, verifier.clone(), doomed)
        .map_err(|e| ClientError::Refused(e.to_pg()))?;
    if initial.mechanism == scram::SCRAM_SHA_256_PLUS.as_bytes() {
        *mechanism = "scram-sha-256-plus";
    }
    let later;
    let client_first = match initial.data {
        Some(data) => data,
        None => {
            // No initial response: an empty challenge asks for it.
            out.clear();
            backend::sasl_continue(&[], &mut out);
            io.write(&out).await?;
            later = password_message(io, "SASL").await?;
            password::response(&later)
        }
    };
    let challenged = server
        .first(client_first)
        .map_err(|e| ClientError::Refused(e.to_pg()))?;
    out.clear();
    backend::sasl_continue(challenged.message(), &mut out);
    io.write(&out).await?;
    let last = password_message(io, "SASL").await?;
    let verdict = challenged
        .finish(password::response(&last))
        .map_err(|e| ClientError::Refused(e.to_pg()))?;
    match verdict {
        Verdict::Proved {
            server_final,
            client_key,
        } => {
            out.clear();
            backend::sasl_final(server_final.as_bytes(), &mut out);
            io.write(&out).await?;
            let keys = ScramKeys {
                verifier: verifier.clone(),
                client_key,
            };
            Ok(Outcome::Proved(Some(Credential::Scram(keys))))
        }
        Verdict::Refused => Ok(Outcome::Refused),
    }
}

/// The body of the next message, which must be of the password family.
async fn password_message(io: &mut ClientIo, expected: &'static str) -> Result<Bytes, ClientError> {
    let Some((tag, frame)) = io.read_frame().await? else {
        return Err(ClientError::Gone);
    };
    password::expect(tag, expected).map_err(refused)?;
    Ok(frame.slice(crate::protocol::frame::FrameHeader::SIZE.min(frame.len())..))
}

fn refused(e: PasswordMessageError) -> ClientError {
    ClientError::Refused(e.to_pg())
}

/// `cert`: the TLS client certificate (already verified against
/// `client_tls_ca_file` in the handshake) must name the user in its CN.
fn certificate(io: &ClientIo, user: &str) -> Result<(), ClientError> {
    let common_name = io
        .stream
        .tls()
        .and_then(|tls| tls.peer_certificates())
        .and_then(|certs| certs.first())
        .map(|cert| crate::tls::common_name(cert));
    certificate_verdict(common_name, user).map_err(|error| {
        tracing::info!(user, reason = %error.message, "certificate authentication failed");
        ClientError::Refused(error)
    })
}

/// The CN of the client's certificate (`None`: no certificate; `Some(None)`:
/// one without a single usable CN) against the user it logs in as,
/// worded as PostgreSQL words it.
fn certificate_verdict(common_name: Option<Option<String>>, user: &str) -> Result<(), PgError> {
    match common_name {
        None => Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "connection requires a valid client certificate",
        )),
        Some(Some(cn)) if cn == user => Ok(()),
        Some(_) => Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("certificate authentication failed for user \"{user}\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn stored(secret: &str) -> Stored {
        Stored::new("u", &Secret::parse(secret).unwrap()).unwrap()
    }

    #[test]
    fn the_certificate_must_name_the_user() {
        assert!(certificate_verdict(Some(Some("alice".into())), "alice").is_ok());
        let other = certificate_verdict(Some(Some("bob".into())), "alice").unwrap_err();
        assert_eq!(other.code, sqlstate::INVALID_AUTHORIZATION);
        assert_eq!(
            other.message,
            "certificate authentication failed for user \"alice\""
        );
        let unnamed = certificate_verdict(Some(None), "alice").unwrap_err();
        assert_eq!(unnamed.code, sqlstate::INVALID_AUTHORIZATION);
        let none = certificate_verdict(None, "alice").unwrap_err();
        assert_eq!(
            none.message,
            "connection requires a valid client certificate"
        );
    }

    #[test]
    fn the_exchange_is_chosen_as_postgresql_chooses_it() {
        use AuthMethod::*;
        let plain = stored("secret");
        let hash = stored("md5a3556571e93b0d20722ba62be61e8c2d");
        let verifier = stored(
            "SCRAM-SHA-256$4096:c2FsdA==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
             wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        );
        fn md5_of(s: &Stored) -> Exchange<'_> {
            Exchange::Md5(s.md5.as_deref())
        }
        fn scram_of(s: &Stored) -> Exchange<'_> {
            Exchange::Scram(s.scram.as_ref())
        }
        for (method, stored, exchange, doom) in [
            (Md5, Some(&plain), md5_of(&plain), None),
            (ScramSha256, Some(&plain), scram_of(&plain), None),
            (Md5, Some(&hash), md5_of(&hash), None),
            // md5 asked, only a verifier: SCRAM, as PostgreSQL does.
            (Md5, Some(&verifier), scram_of(&verifier), None),
            (ScramSha256, Some(&verifier), scram_of(&verifier), None),
            // SCRAM asked, only an md5 hash: a mock SCRAM exchange.
            (
                ScramSha256,
                Some(&hash),
                Exchange::Scram(None),
                Some(Doom::NoSecretForMethod),
            ),
            (Md5, None, Exchange::Md5(None), Some(Doom::UnknownUser)),
            (
                ScramSha256,
                None,
                Exchange::Scram(None),
                Some(Doom::UnknownUser),
            ),
        ] {
            assert_eq!(
                choose(method, stored),
                Plan { exchange, doom },
                "{method:?}"
            );
        }
    }
}
