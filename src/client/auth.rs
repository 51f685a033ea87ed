//! Client authentication against the configured users: trust, md5 and
//! SCRAM-SHA-256 (pgwire's server-side SCRAM state machine), and `cert`
//! (the TLS client certificate's CN is the user).

use super::io::{ClientError, ClientIo};
use crate::app::credentials::{Credentials, UserSecrets};
use crate::config::AuthMethod;
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, tag, PgError};
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use pgwire::messages::startup::PasswordMessageFamily;

/// Runs the exchange the configured method asks for. Unknown roles and
/// wrong passwords are refused as PostgreSQL words it.
pub async fn authenticate(
    io: &mut ClientIo,
    method: AuthMethod,
    credentials: &Credentials,
    user: &str,
) -> Result<(), ClientError> {
    match method {
        AuthMethod::Trust => return Ok(()),
        AuthMethod::Cert => return certificate(io, user),
        AuthMethod::Md5 | AuthMethod::ScramSha256 => {}
    }
    let secrets = credentials.get(user).ok_or_else(|| {
        ClientError::Refused(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{user}\" does not exist"),
        ))
    })?;
    let ok = match method {
        AuthMethod::Md5 => md5(io, secrets, user).await?,
        AuthMethod::ScramSha256 => scram(io, secrets).await?,
        AuthMethod::Trust | AuthMethod::Cert => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ClientError::Refused(PgError::fatal(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        )))
    }
}

async fn md5(io: &mut ClientIo, secrets: &UserSecrets, user: &str) -> Result<bool, ClientError> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    backend::authentication_md5(salt, &mut out);
    io.write(&out).await?;
    let answer = password_message(io)
        .await?
        .into_password()
        .map_err(malformed)?;
    Ok(secrets.md5_matches(user, salt, &answer.password))
}

async fn scram(io: &mut ClientIo, secrets: &UserSecrets) -> Result<bool, ClientError> {
    // TODO(issue 19, SCRAM-SHA-256-PLUS): when `io.server_end_point` is
    // Some (a TLS connection whose certificate has a tls-server-end-point
    // hash), offer SCRAM-SHA-256-PLUS before SCRAM-SHA-256 in the
    // AuthenticationSASL message, and hand the end point to the SCRAM
    // exchange (the auth-fuzz branch's own SCRAM, which takes the channel
    // binding data as a parameter) so that a client choosing PLUS is
    // checked against it ("p=tls-server-end-point" in its GS2 header, the
    // hash in c=). Plain connections keep offering SCRAM-SHA-256 alone.
    let mut out = BytesMut::new();
    backend::authentication_sasl(&mut out);
    io.write(&out).await?;
    let first = password_message(io)
        .await?
        .into_sasl_initial_response()
        .map_err(malformed)?;
    if first.auth_method != "SCRAM-SHA-256" {
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "invalid SASL authentication mechanism",
        )));
    }
    let (server_first, waiting) = ScramServerAuth::new()
        .on_client_first_message_with_secret(
            first.data.as_deref().unwrap_or_default(),
            secrets.scram_secret(),
        )
        .map_err(malformed)?;
    out.clear();
    backend::sasl_continue(&server_first, &mut out);
    io.write(&out).await?;
    let last = password_message(io)
        .await?
        .into_sasl_response()
        .map_err(malformed)?;
    match waiting.on_client_final_message(&last.data) {
        Ok(server_final) => {
            out.clear();
            backend::sasl_final(&server_final, &mut out);
            io.write(&out).await?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
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

async fn password_message(io: &mut ClientIo) -> Result<PasswordMessageFamily, ClientError> {
    match io.read_frame().await? {
        Some((tag::PASSWORD, frame)) => Ok(PasswordMessageFamily::Raw(BytesMut::from(crate::protocol::body(&frame)))),
        Some((other, _)) => Err(crate::protocol::ProtocolError::Unexpected(other).into()),
        None => Err(ClientError::Gone),
    }
}

fn malformed(e: pgwire::error::PgWireError) -> ClientError {
    ClientError::Refused(PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("malformed authentication message: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(none.message, "connection requires a valid client certificate");
    }
}
