//! A client's session settings from its StartupMessage: every parameter but
//! `user`, `database` and `replication` (client_encoding, DateStyle,
//! TimeZone, application_name, ...), and `-c name=value` in `options`.
//! Server connections log in without them, so they are set on whichever
//! connection runs the client's statements. A connection remembers whose
//! settings it has (a fingerprint); when it changes hands between clients
//! whose settings differ it gets `RESET ALL` and the new client's `SET`s
//! first, one round trip, and nothing when they match (LIFO pools and
//! clients of one application keep them matching).

use super::startup::StartupParams;
use crate::protocol::error::sqlstate;
use crate::protocol::PgError;
use crate::server::{Said, ServerConnection, ServerError};
use std::hash::{Hash, Hasher};

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

/// The setting that carries a consistency token (`SET pgsplit.min_lsn`).
pub const MIN_LSN: &str = "pgsplit.min_lsn";

/// The setting a client turns the `pgsplit.commit_lsn` report on or off
/// with, whatever `report_commit_lsn` says.
pub const REPORT_COMMIT_LSN: &str = "pgsplit.report_commit_lsn";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// From the StartupMessage, in the order the client sent them.
    startup: Vec<(String, String)>,
    /// The client's session SETs since (name lower-case, value as the
    /// server reported it after the SET), later ones replacing earlier.
    overrides: Vec<(String, String)>,
    /// `startup` then `overrides`: what a connection must have.
    pub list: Vec<(String, String)>,
    /// A setting that a hot standby refuses to run with (serializable as
    /// the default isolation): the client's reads go to the primary.
    pub primary_only: bool,
    /// 0 for no settings (a connection's login state), else a hash of `list`.
    pub fingerprint: u64,
    /// `pgsplit.min_lsn` (a consistency token, from the startup options or
    /// SET): the client's reads see at least this WAL position.
    pub min_lsn: crate::health::lsn::Lsn,
    /// `pgsplit.report_commit_lsn`, if the client set it.
    pub report_commit_lsn: Option<bool>,
    /// `RESET ALL; SET ...`: what makes a connection's settings these.
    sql: String,
}

impl Settings {
    pub fn from_startup(params: &StartupParams) -> Result<Settings, PgError> {
        let mut list = Vec::new();
        for (name, value) in &params.params {
            if !NOT_SETTINGS.contains(&name.as_str()) {
                list.push((name.clone(), value.clone()));
            }
        }
        if let Some(options) = params.get("options") {
            list.extend(parse_options(options)?);
        }
        for (name, _) in &list {
            if !is_setting_name(name) {
                return Err(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid startup parameter name \"{name}\""),
                ));
            }
        }
        Ok(Settings::new(list, Vec::new()))
    }

    /// The client SET `name`, which now has `value` on the connection that
    /// ran it.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut overrides = std::mem::take(&mut self.overrides);
        overrides.retain(|(n, _)| n != name);
        overrides.push((name.to_string(), value.to_string()));
        *self = Settings::new(std::mem::take(&mut self.startup), overrides);
    }

    /// The client RESET `name` (`None`: RESET ALL or DISCARD ALL): back to
    /// its startup value.
    pub fn reset(&mut self, name: Option<&str>) {
        let mut overrides = std::mem::take(&mut self.overrides);
        match name {
            Some(name) => overrides.retain(|(n, _)| n != name),
            None => overrides.clear(),
        }
        *self = Settings::new(std::mem::take(&mut self.startup), overrides);
    }

    fn new(startup: Vec<(String, String)>, overrides: Vec<(String, String)>) -> Settings {
        let list: Vec<(String, String)> = startup.iter().chain(&overrides).cloned().collect();
        if list.is_empty() {
            return Settings::default();
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        list.hash(&mut hasher);
        // 0 means "login settings": keep it for the empty list.
        // 0 and u64::MAX mean "login settings" and "unknown".
        let fingerprint = hasher.finish().clamp(1, u64::MAX - 1);
        // set_config reads the value as a config file or `-c` would (a list
        // like search_path `a,b` stays a list; SET 'a,b' would be one name).
        let calls: Vec<String> = list
            .iter()
            .map(|(name, value)| {
                format!(
                    "set_config('{name}', '{}', false)",
                    value.replace('\'', "''")
                )
            })
            .collect();
        let sql = format!("RESET ALL; SELECT {}", calls.join(", "));
        let min_lsn = list
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(MIN_LSN))
            .filter_map(|(_, value)| crate::health::lsn::parse(value.trim()))
            .max()
            .unwrap_or(0);
        let report_commit_lsn = list
            .iter()
            .rev()
            .find(|(name, _)| name.eq_ignore_ascii_case(REPORT_COMMIT_LSN))
            .map(|(_, value)| is_on(value));
        let primary_only = list.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("default_transaction_isolation")
                && value.to_ascii_lowercase().contains("serializable")
        });
        Settings {
            startup,
            overrides,
            list,
            primary_only,
            min_lsn,
            report_commit_lsn,
            fingerprint,
            sql,
        }
    }

    /// The client's `default_transaction_isolation`, if it set one.
    pub fn default_isolation(&self) -> Option<crate::router::Isolation> {
        self.value("default_transaction_isolation")
            .and_then(crate::router::Isolation::from_setting)
    }

    /// The client's `default_transaction_read_only`, if it set one.
    pub fn default_read_only(&self) -> Option<bool> {
        self.value("default_transaction_read_only").map(is_on)
    }

    /// The value the client gave `name` last (names are case-insensitive).
    fn value(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Makes `conn`'s settings these, unless they already are.
    pub async fn apply(&self, conn: &mut ServerConnection) -> Result<(), ServerError> {
        if conn.settings != self.fingerprint {
            self.apply_sql(conn).await?;
        }
        Ok(())
    }

    /// After the client's RESET or DISCARD on a connection it keeps (it is
    /// pinned): its startup values again, without RESET ALL, which would
    /// undo its own SETs too.
    pub async fn reapply(&self, conn: &mut ServerConnection) -> Result<(), ServerError> {
        if self.fingerprint != 0 {
            let sets = self.sql.trim_start_matches("RESET ALL; ");
            conn.set(sets).await?;
        }
        conn.settings = self.fingerprint;
        Ok(())
    }

    async fn apply_sql(&self, conn: &mut ServerConnection) -> Result<Said, ServerError> {
        let sql = if self.fingerprint == 0 {
            "RESET ALL"
        } else {
            self.sql.as_str()
        };
        let said = conn.set(sql).await?;
        conn.settings = self.fingerprint;
        Ok(said)
    }

    /// Applies them even if `conn` has them, and reads back the values of
    /// `reported` (the parameters a server reports to its clients) as the
    /// server now has them: what the client is told at login. Read back,
    /// not taken from the ParameterStatus messages the apply caused: a
    /// server reports only values that differ from what it last reported
    /// on that connection, so a connection that served a client with the
    /// same settings before reports nothing (and the client would be told
    /// the login default, UTF8 for a client that asked for EUC_JP). One
    /// round trip. The server's notices come back in `Said`.
    pub async fn apply_reporting(
        &self,
        conn: &mut ServerConnection,
        reported: &[String],
    ) -> Result<(Vec<(String, String)>, Said), ServerError> {
        let reads: Vec<String> = reported
            .iter()
            .map(|name| format!("current_setting('{}')", name.replace('\'', "''")))
            .collect();
        let base = if self.fingerprint == 0 {
            "RESET ALL"
        } else {
            self.sql.as_str()
        };
        let sql = match reads.is_empty() {
            true => base.to_string(),
            false => format!("{base}; SELECT {}", reads.join(", ")),
        };
        let mut said = Said::default();
        let rows = conn.query_noting(&sql, &mut said).await?;
        conn.settings = self.fingerprint;
        let mut values = Vec::new();
        if let (false, Some(row)) = (reads.is_empty(), rows.last()) {
            for (name, value) in reported.iter().zip(row) {
                values.push((name.clone(), value.clone().unwrap_or_default()));
            }
        }
        Ok((values, said))
    }
}

/// A boolean setting's value as PostgreSQL reads it.
pub fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1" | "t" | "y"
    )
}

/// `-c name=value`, `-cname=value` and `--name=value`, separated by
/// whitespace; a backslash keeps the next character (a space) in the value,
/// as PostgreSQL reads `options`.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, PgError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next().unwrap_or_default()
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest.to_string()
        } else if let Some(rest) = word.strip_prefix("--") {
            rest.to_string()
        } else {
            return Err(unsupported_option(&word));
        };
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(unsupported_option(&assignment));
        };
        settings.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(settings)
}

fn unsupported_option(word: &str) -> PgError {
    PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("invalid command-line argument for server process: {word}"),
    )
}

/// Setting names are identifiers, possibly qualified (`app.user_id`).
fn is_setting_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> StartupParams {
        StartupParams {
            user: "u".into(),
            database: "d".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn report_commit_lsn_is_the_clients_latest_word() {
        let none = Settings::from_startup(&startup(&[])).unwrap();
        assert_eq!(none.report_commit_lsn, None);
        let mut on =
            Settings::from_startup(&startup(&[("options", "-c pgsplit.report_commit_lsn=on")]))
                .unwrap();
        assert_eq!(on.report_commit_lsn, Some(true));
        on.set(REPORT_COMMIT_LSN, "off");
        assert_eq!(on.report_commit_lsn, Some(false));
        on.reset(None);
        assert_eq!(on.report_commit_lsn, Some(true));
    }

    #[test]
    fn startup_parameters_and_options_become_settings() {
        let s = Settings::from_startup(&startup(&[
            ("user", "u"),
            ("database", "d"),
            ("application_name", "it's"),
            (
                "options",
                "-c search_path=app -cstatement_timeout=5s --lock-timeout=1s -c x.y=a\\ b",
            ),
        ]))
        .unwrap();
        assert_eq!(
            s.list,
            [
                ("application_name".to_string(), "it's".to_string()),
                ("search_path".into(), "app".into()),
                ("statement_timeout".into(), "5s".into()),
                ("lock_timeout".into(), "1s".into()),
                ("x.y".into(), "a b".into()),
            ]
        );
        assert_ne!(s.fingerprint, 0);
        assert!(s.sql.starts_with(
            "RESET ALL; SELECT set_config('application_name', 'it''s', false), set_config('search_path', 'app', false)"
        ));
    }

    #[test]
    fn sets_override_and_resets_restore_startup_values() {
        let mut s = Settings::from_startup(&startup(&[("TimeZone", "UTC")])).unwrap();
        let start = s.fingerprint;
        s.set("statement_timeout", "5s");
        s.set("statement_timeout", "6s");
        assert_eq!(s.list.len(), 2);
        assert_ne!(s.fingerprint, start);
        s.reset(Some("statement_timeout"));
        assert_eq!(s.fingerprint, start);
        s.set("search_path", "app");
        s.reset(None);
        assert_eq!(s.fingerprint, start);
        s.set("default_transaction_isolation", "serializable");
        assert!(s.primary_only);
        s.reset(Some("default_transaction_isolation"));
        assert!(!s.primary_only);
        let mut empty = Settings::default();
        empty.set("a.b", "1");
        empty.reset(None);
        assert_eq!(empty.fingerprint, 0);
    }

    #[test]
    fn no_settings_is_the_login_state() {
        let s = Settings::from_startup(&startup(&[("user", "u"), ("database", "d")])).unwrap();
        assert_eq!(s.fingerprint, 0);
    }

    #[test]
    fn bad_options_and_names_are_refused() {
        assert!(Settings::from_startup(&startup(&[("options", "-d 5")])).is_err());
        assert!(Settings::from_startup(&startup(&[("options", "-c nothing")])).is_err());
        assert!(Settings::from_startup(&startup(&[("bad name; drop", "x")])).is_err());
    }
}
