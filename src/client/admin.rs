//! A client of the admin console (the virtual database `pgsplit`): log in,
//! then answer simple queries with [`crate::admin::answer`].

use super::io::{ClientError, ClientIo};
use super::startup::StartupParams;
use crate::admin::{self, Reply};
use crate::app::App;
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, extended, status, tag, PgError};
use bytes::BytesMut;

/// What the console reports as its server parameters: enough for psql and
/// drivers to be at ease.
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "15.0 (pgsplit admin console)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("application_name", "pgsplit"),
];

pub async fn serve(
    app: &App,
    io: &mut ClientIo,
    params: &StartupParams,
) -> Result<(), ClientError> {
    let current = app.current();
    // SCRAM-SHA-256-PLUS binds to this (TLS connections only).
    let channel_binding = io.server_end_point.clone();
    super::auth::authenticate(app, &current, io, &params.user, channel_binding.as_deref()).await?;
    if !current.config.is_admin(&params.user) {
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied for the pgsplit admin console: user \"{}\" is not in admin_users",
                params.user
            ),
        )));
    }
    tracing::info!(user = %params.user, "admin console session");
    let mut out = BytesMut::new();
    backend::authentication_ok(&mut out);
    for (name, value) in PARAMETERS {
        backend::parameter_status(name, value, &mut out);
    }
    backend::backend_key_data(0, 0, &mut out);
    backend::ready_for_query(status::IDLE, &mut out);
    io.write(&out).await?;
    let mut failed_batch = false;
    while let Some((tag, frame)) = io.read_frame().await? {
        out.clear();
        match tag {
            tag::QUERY => {
                let text = extended::query_text(crate::protocol::body(&frame))?;
                let text = String::from_utf8_lossy(text);
                encode(admin::answer(app, &text).await, &mut out);
                backend::ready_for_query(status::IDLE, &mut out);
            }
            tag::TERMINATE => return Ok(()),
            tag::SYNC => {
                failed_batch = false;
                backend::ready_for_query(status::IDLE, &mut out);
            }
            _ if !failed_batch => {
                failed_batch = true;
                PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "the pgsplit admin console speaks the simple query protocol only",
                )
                .encode(&mut out);
            }
            _ => {}
        }
        io.write(&out).await?;
    }
    Ok(())
}

fn encode(reply: Reply, out: &mut BytesMut) {
    match reply {
        Reply::Rows { columns, rows } => {
            backend::row_description(&columns, out);
            for row in &rows {
                let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
                backend::data_row(&values, out);
            }
            backend::command_complete(&format!("SHOW {}", rows.len()), out);
        }
        Reply::Done { tag, notice } => {
            if let Some(message) = notice {
                backend::notice(&message, out);
            }
            backend::command_complete(&tag, out);
        }
        Reply::Empty => backend::empty(b'I', out),
        Reply::Error(code, message) => PgError::error(code, message).encode(out),
    }
}
