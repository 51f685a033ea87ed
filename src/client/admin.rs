//! A client of the admin console (the virtual database `pgsplit`): log in
//! (who may, and for what: `admin::access`), then answer simple queries
//! with [`crate::admin::answer`].

use super::io::{ClientError, ClientIo};
use super::startup::StartupParams;
use crate::admin::{self, access, Access, Caller, Reply};
use crate::app::App;
use crate::metrics::Refusal;
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, extended, status, tag, PgError};
use bytes::BytesMut;
use std::net::SocketAddr;

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

/// Authenticates the user as the configured method asks, then decides
/// whether it may use the console (`admin::access`) and greets it. Users
/// refused get FATAL 28000 "not allowed", as PgBouncer words it, after
/// their password was checked: an unknown user, a wrong password and a
/// user who is no admin are told apart only by a client that knows the
/// password.
pub async fn log_in(
    app: &App,
    io: &mut ClientIo,
    params: &StartupParams,
    peer: &SocketAddr,
) -> Result<Access, ClientError> {
    let current = app.current();
    let config = &current.config;
    // SCRAM-SHA-256-PLUS binds to this (TLS connections only).
    let channel_binding = io.server_end_point.clone();
    super::auth::authenticate(app, &current, io, &params.user, channel_binding.as_deref()).await?;
    let facts = access::Facts {
        user: &params.user,
        auth: config.auth,
        admin_users: &config.admin_users,
        stats_users: &config.stats_users,
        local_peer: access::is_local(peer),
    };
    let access = match access::decide(&facts) {
        Ok(access) => access,
        Err(denied) => {
            tracing::warn!(user = %params.user, reason = denied.as_str(), "admin console login refused");
            app.metrics.refused(Refusal::AdminLogin);
            return Err(ClientError::Refused(PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "not allowed",
            )));
        }
    };
    io.set_max_message(config.max_message_size);
    let access_label = match access {
        access::Access::All => "all",
        access::Access::Show => "show",
    };
    tracing::info!(user = %params.user, access = access_label, "admin console session");
    let mut out = BytesMut::new();
    backend::authentication_ok(&mut out);
    for (name, value) in PARAMETERS {
        backend::parameter_status(name, value, &mut out);
    }
    backend::backend_key_data(0, 0, &mut out);
    backend::ready_for_query(status::IDLE, &mut out);
    io.write(&out).await?;
    Ok(access)
}

/// Answers the console user's commands until it leaves.
pub async fn serve(app: &App, io: &mut ClientIo, caller: &Caller<'_>) -> Result<(), ClientError> {
    let mut out = BytesMut::new();
    let mut failed_batch = false;
    while let Some((tag, frame)) = io.read_frame().await? {
        out.clear();
        match tag {
            tag::QUERY => {
                let text = extended::query_text(crate::protocol::body(&frame))?;
                let text = String::from_utf8_lossy(text);
                let reply = admin::answer(app, caller, &text).await;
                if reply == Reply::Denied {
                    app.metrics.refused(Refusal::AdminCommand);
                }
                encode(reply, &mut out);
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
        Reply::Rows(table) => {
            let columns: Vec<_> = table
                .columns
                .iter()
                .map(|c| (c.name, c.kind.oid()))
                .collect();
            backend::typed_row_description(&columns, out);
            for row in &table.rows {
                let text: Vec<Option<String>> = row.iter().map(|v| v.as_text()).collect();
                let values: Vec<Option<&str>> = text.iter().map(|v| v.as_deref()).collect();
                backend::data_row(&values, out);
            }
            // PgBouncer's tag: SHOW alone, no row count.
            backend::command_complete("SHOW", out);
        }
        Reply::Done { tag, notice } => {
            if let Some(message) = notice {
                backend::notice(&message, out);
            }
            backend::command_complete(tag, out);
        }
        Reply::Empty => backend::empty(b'I', out),
        Reply::Error(code, message) => PgError::error(code, message).encode(out),
        Reply::Denied => {
            PgError::error(sqlstate::INSUFFICIENT_PRIVILEGE, admin::DENIED).encode(out)
        }
    }
}
