//! Client authentication against the configured users: trust, md5 and
//! SCRAM-SHA-256 (pgwire's server-side SCRAM state machine).

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
    if method == AuthMethod::Trust {
        return Ok(());
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
        AuthMethod::Trust => true,
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
