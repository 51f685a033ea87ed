//! Client authentication against the configured users: trust, md5 and
//! SCRAM-SHA-256 (pgwire's server-side SCRAM state machine).

use super::io::{ClientError, ClientIo};
use crate::config::{AuthMethod, User};
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, tag, PgError};
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};
use pgwire::messages::startup::PasswordMessageFamily;
use std::collections::HashMap;

const SCRAM_ITERATIONS: usize = 4096;

/// What pgsplit checks passwords against, derived once at start-up (SCRAM's
/// key derivation is deliberately slow).
pub struct Credentials {
    users: HashMap<String, UserSecrets>,
}

struct UserSecrets {
    password: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

impl Credentials {
    pub fn new(users: &[User]) -> Credentials {
        let users = users
            .iter()
            .map(|u| {
                let salt: [u8; 16] = rand::random();
                let salted_password = gen_salted_password(&u.password, &salt, SCRAM_ITERATIONS);
                let secrets = UserSecrets {
                    password: u.password.clone(),
                    salt: salt.to_vec(),
                    salted_password,
                };
                (u.name.clone(), secrets)
            })
            .collect();
        Credentials { users }
    }
}

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
    let secrets = credentials.users.get(user).ok_or_else(|| {
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
    let expected = postgres_protocol::authentication::md5_hash(
        user.as_bytes(),
        secrets.password.as_bytes(),
        salt,
    );
    Ok(answer.password == expected)
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
    let secret = ScramSecret::SaltedPassword {
        salt: secrets.salt.clone(),
        salted_password: secrets.salted_password.clone(),
    };
    let (server_first, waiting) = ScramServerAuth::new()
        .on_client_first_message_with_secret(first.data.as_deref().unwrap_or_default(), secret)
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
        Some((tag::PASSWORD, frame)) => Ok(PasswordMessageFamily::Raw(BytesMut::from(&frame[5..]))),
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
