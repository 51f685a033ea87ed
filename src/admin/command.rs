//! The admin console's commands, parsed from a query string.

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowPools,
    ShowServers,
    ShowClients,
    ShowStats,
    ShowConfig,
    ShowVersion,
    ShowHelp,
    /// Where this statement would go, and why, for the clients of
    /// `database` (`None`: the first configured one).
    ShowRoute {
        database: Option<String>,
        sql: String,
    },
    Reload,
    Pause,
    Resume,
    Shutdown,
    /// An empty query (psql sends them for `;`).
    Empty,
}

impl Command {
    /// Whether it only shows something (what `stats_users` may run). An
    /// empty query changes nothing either.
    pub fn is_show(&self) -> bool {
        !matches!(
            self,
            Command::Reload | Command::Pause | Command::Resume | Command::Shutdown
        )
    }
}

pub const HELP: &str = "SHOW POOLS | SERVERS | CLIENTS | STATS | CONFIG | VERSION | HELP, \
SHOW ROUTE [IN database] <statement>, RELOAD, PAUSE, RESUME, SHUTDOWN";

/// Parses one command; the error says what is understood.
pub fn parse(text: &str) -> Result<Command, String> {
    let text = text.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default().to_ascii_uppercase();
    let second = words.next().map(str::to_ascii_uppercase);
    let command = match (first.as_str(), second.as_deref()) {
        ("SHOW", Some("POOLS")) => Command::ShowPools,
        ("SHOW", Some("SERVERS")) => Command::ShowServers,
        ("SHOW", Some("CLIENTS")) => Command::ShowClients,
        ("SHOW", Some("STATS")) => Command::ShowStats,
        ("SHOW", Some("CONFIG")) => Command::ShowConfig,
        ("SHOW", Some("VERSION")) => Command::ShowVersion,
        ("SHOW", Some("HELP")) => Command::ShowHelp,
        ("SHOW", Some("ROUTE")) => return route(text),
        ("RELOAD", None) => Command::Reload,
        ("PAUSE", None) => Command::Pause,
        ("RESUME", None) => Command::Resume,
        ("SHUTDOWN", None) => Command::Shutdown,
        _ => {
            return Err(format!(
                "unknown admin command \"{text}\"; commands: {HELP}"
            ))
        }
    };
    if words.next().is_some() {
        return Err(format!(
            "unexpected words after the command in \"{text}\"; commands: {HELP}"
        ));
    }
    Ok(command)
}

/// SHOW ROUTE [IN database] takes the rest of the text, as written (case
/// kept). No statement starts with IN, so the word is unambiguous.
fn route(text: &str) -> Result<Command, String> {
    let rest = after_word(after_word(text));
    let (database, sql) = match rest.split_once(char::is_whitespace) {
        Some((word, tail)) if word.eq_ignore_ascii_case("IN") => {
            let (database, sql) = tail.trim_start().split_once(char::is_whitespace).unwrap_or((tail.trim(), ""));
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
        assert_eq!(parse("show pools;"), Ok(Command::ShowPools));
        assert_eq!(parse("  SHOW   Servers "), Ok(Command::ShowServers));
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
        assert!(parse("PAUSE now").is_err());
    }
}
