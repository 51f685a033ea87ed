//! The admin console's commands, parsed from a query string.

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    /// Where this statement would go, and why, for the clients of
    /// `database` (`None`: the first configured one).
    ShowRoute {
        database: Option<String>,
        sql: String,
    },
    Reload,
    /// `None`: every database.
    Pause(Option<String>),
    Resume(Option<String>),
    Reconnect(Option<String>),
    WaitClose(Option<String>),
    Kill(String),
    KillClient(u64),
    Disable(String),
    Enable(String),
    Shutdown,
    /// An empty query (psql sends them for `;`).
    Empty,
}

/// The tables SHOW lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Pools,
    Servers,
    Clients,
    Stats,
    Databases,
    Users,
    Lists,
    Config,
    Version,
    Help,
    /// pgsplit's own: each configured server's health and lag.
    Health,
    /// pgsplit's own: every Prometheus counter and histogram.
    Metrics,
}

impl Show {
    const ALL: [(&'static str, Show); 12] = [
        ("POOLS", Show::Pools),
        ("SERVERS", Show::Servers),
        ("CLIENTS", Show::Clients),
        ("STATS", Show::Stats),
        ("DATABASES", Show::Databases),
        ("USERS", Show::Users),
        ("LISTS", Show::Lists),
        ("CONFIG", Show::Config),
        ("VERSION", Show::Version),
        ("HELP", Show::Help),
        ("HEALTH", Show::Health),
        ("METRICS", Show::Metrics),
    ];

    fn named(word: &str) -> Option<Show> {
        Show::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|(_, s)| *s)
    }
}

impl Command {
    /// Whether it only shows something (what `stats_users` may run). An
    /// empty query changes nothing either.
    pub fn is_show(&self) -> bool {
        matches!(
            self,
            Command::Show(_) | Command::ShowRoute { .. } | Command::Empty
        )
    }

    /// Its name, as the command tag, the log line and the
    /// `pgsplit_admin_commands_total` label give it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Show(_) | Command::ShowRoute { .. } => "SHOW",
            Command::Reload => "RELOAD",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reconnect(_) => "RECONNECT",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Shutdown => "SHUTDOWN",
            Command::Empty => "EMPTY",
        }
    }

    /// Every name `name` gives, for metrics declared at zero.
    pub const NAMES: [&'static str; 12] = [
        "SHOW",
        "RELOAD",
        "PAUSE",
        "RESUME",
        "RECONNECT",
        "WAIT_CLOSE",
        "KILL",
        "KILL_CLIENT",
        "DISABLE",
        "ENABLE",
        "SHUTDOWN",
        "EMPTY",
    ];
}

pub const HELP: &str = "SHOW POOLS | SERVERS | CLIENTS | STATS | DATABASES | USERS | LISTS | CONFIG | VERSION | HELP, \
SHOW HEALTH | METRICS (pgsplit's own), SHOW ROUTE [IN database] <statement>, \
PAUSE [db], RESUME [db], RECONNECT [db], WAIT_CLOSE [db], KILL db, KILL_CLIENT id, \
DISABLE db, ENABLE db, RELOAD, SHUTDOWN";

/// Parses one command; the error says what is understood.
pub fn parse(text: &str) -> Result<Command, String> {
    let text = text.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default().to_ascii_uppercase();
    let second = words.next();
    if first == "SHOW" && second.is_some_and(|w| w.eq_ignore_ascii_case("ROUTE")) {
        return route(text);
    }
    let argument = second.map(unquote);
    let command = match (first.as_str(), argument) {
        ("SHOW", Some(what)) => match Show::named(&what.to_ascii_uppercase()) {
            Some(show) => Command::Show(show),
            None => return Err(unknown(text)),
        },
        ("RELOAD", None) => Command::Reload,
        ("SHUTDOWN", None) => Command::Shutdown,
        ("PAUSE", db) => Command::Pause(db),
        ("RESUME", db) => Command::Resume(db),
        ("RECONNECT", db) => Command::Reconnect(db),
        ("WAIT_CLOSE", db) => Command::WaitClose(db),
        ("KILL", db) => Command::Kill(required(db)?),
        ("DISABLE", db) => Command::Disable(required(db)?),
        ("ENABLE", db) => Command::Enable(required(db)?),
        ("KILL_CLIENT", Some(id)) => Command::KillClient(id.parse().map_err(|_| {
            format!("invalid client id \"{id}\": KILL_CLIENT takes the id SHOW CLIENTS lists")
        })?),
        ("KILL_CLIENT", None) => return Err("KILL_CLIENT needs the id SHOW CLIENTS lists".into()),
        _ => return Err(unknown(text)),
    };
    if words.next().is_some() {
        return Err(format!(
            "unexpected words after the command in \"{text}\"; commands: {HELP}"
        ));
    }
    Ok(command)
}

fn unknown(text: &str) -> String {
    format!("unknown admin command \"{text}\"; commands: {HELP}")
}

/// A database name, as written or in double quotes.
fn unquote(word: &str) -> String {
    let inner = word.strip_prefix('"').and_then(|w| w.strip_suffix('"'));
    inner.unwrap_or(word).to_string()
}

/// PgBouncer's words when KILL, DISABLE or ENABLE lack their database.
fn required(db: Option<String>) -> Result<String, String> {
    db.ok_or_else(|| "a database is required".to_string())
}

/// SHOW ROUTE [IN database] takes the rest of the text, as written (case
/// kept). No statement starts with IN, so the word is unambiguous.
fn route(text: &str) -> Result<Command, String> {
    let rest = after_word(after_word(text));
    let (database, sql) = match rest.split_once(char::is_whitespace) {
        Some((word, tail)) if word.eq_ignore_ascii_case("IN") => {
            let (database, sql) = tail
                .trim_start()
                .split_once(char::is_whitespace)
                .unwrap_or((tail.trim(), ""));
            (Some(database.trim_matches('"').to_string()), sql.trim())
        }
        _ => (None, rest),
    };
    if sql.is_empty() {
        return Err(
            "SHOW ROUTE needs a statement, e.g. SHOW ROUTE SELECT 1 or SHOW ROUTE IN mydb SELECT 1"
                .into(),
        );
    }
    Ok(Command::ShowRoute {
        database,
        sql: sql.to_string(),
    })
}

/// `text` without its first word and the blanks around it.
fn after_word(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    text[end..].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_in_any_case() {
        assert_eq!(parse("show pools;"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("  SHOW   Servers "), Ok(Command::Show(Show::Servers)));
        assert_eq!(parse("pause"), Ok(Command::Pause(None)));
        assert_eq!(parse("PAUSE app;"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(
            parse("resume \"app\""),
            Ok(Command::Resume(Some("app".into())))
        );
        assert_eq!(parse("kill_client 42"), Ok(Command::KillClient(42)));
        assert_eq!(parse("disable app"), Ok(Command::Disable("app".into())));
        assert_eq!(parse("WAIT_CLOSE"), Ok(Command::WaitClose(None)));
        assert_eq!(
            parse("reconnect app"),
            Ok(Command::Reconnect(Some("app".into())))
        );
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(parse(";"), Ok(Command::Empty));
        assert_eq!(
            parse("show route SELECT nextval('s')"),
            Ok(Command::ShowRoute {
                database: None,
                sql: "SELECT nextval('s')".into()
            })
        );
        assert_eq!(
            parse("SHOW ROUTE in app  select 1;"),
            Ok(Command::ShowRoute {
                database: Some("app".into()),
                sql: "select 1".into()
            })
        );
    }

    #[test]
    fn unknown_commands_are_refused_with_the_list() {
        let e = parse("DROP TABLE t").unwrap_err();
        assert!(e.contains("SHOW POOLS"), "{e}");
        assert!(parse("SHOW ROUTE").is_err());
        assert!(parse("SHOW ROUTE IN app").is_err());
        assert!(parse("PAUSE app now").is_err());
        assert_eq!(parse("KILL"), Err("a database is required".into()));
        assert_eq!(parse("DISABLE"), Err("a database is required".into()));
        assert!(parse("KILL_CLIENT x")
            .unwrap_err()
            .contains("invalid client id"));
        assert!(parse("SHOW NOTHING")
            .unwrap_err()
            .contains("unknown admin command"));
    }
}
