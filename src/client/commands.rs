//! SQL commands that change what pgsplit keeps for a client:
//! `DEALLOCATE` (its prepared statements), `RESET` (its settings), and
//! `DISCARD ALL` (both). One look at the first words of every query.

/// A command pgsplit must follow.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCommand {
    /// `DEALLOCATE [PREPARE] name`, with the name as PostgreSQL folds it.
    Deallocate(String),
    /// `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
    /// `DISCARD ALL`: statements and settings.
    DiscardAll,
    /// `RESET name` (`Some(name)`, lower-case) or `RESET ALL` (`None`).
    Reset(Option<String>),
}

impl SessionCommand {
    /// Whether it drops all of the client's prepared statements.
    pub fn drops_statements(&self) -> bool {
        matches!(
            self,
            SessionCommand::DeallocateAll | SessionCommand::DiscardAll
        )
    }

    /// The setting it puts back to the session's start value (`Some(None)`:
    /// all of them), which on a pooled connection is not the client's.
    pub fn resets_settings(&self) -> Option<Option<&str>> {
        match self {
            SessionCommand::Reset(name) => Some(name.as_deref()),
            SessionCommand::DiscardAll => Some(None),
            _ => None,
        }
    }
}

/// Recognises `sql` as one of the commands. DEALLOCATE must be the whole
/// query; RESET and DISCARD ALL count at its start (what follows them runs
/// after the reset).
pub fn session_command(sql: &str) -> Option<SessionCommand> {
    let body = skip_comments(sql);
    // Runs for every query: most are no command, so rule them out by their
    // first letter, and without allocating.
    if !matches!(body.as_bytes().first(), Some(b'd' | b'D' | b'r' | b'R')) {
        return None;
    }
    let starts = |word: &str| {
        body.get(..word.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(word))
    };
    if starts("deallocate") {
        deallocate(body)
    } else if starts("reset") || starts("discard") {
        reset(body)
    } else {
        None
    }
}

fn deallocate(body: &str) -> Option<SessionCommand> {
    let body = body.trim_end().trim_end_matches(';').trim_end();
    if body.len() > 200 {
        return None;
    }
    let words: Vec<&str> = body.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match lower.as_slice() {
        ["deallocate", "all"] | ["deallocate", "prepare", "all"] => {
            Some(SessionCommand::DeallocateAll)
        }
        ["deallocate", _] | ["deallocate", "prepare", _] => words
            .last()
            .and_then(|w| fold_name(w))
            .map(SessionCommand::Deallocate),
        _ => None,
    }
}

fn reset(body: &str) -> Option<SessionCommand> {
    let mut words = body
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    let second = words.next().map(|w| w.to_lowercase());
    if first.eq_ignore_ascii_case("reset") {
        return Some(SessionCommand::Reset(
            second.filter(|w| w != "all").map(|w| w.replace('"', "")),
        ));
    }
    (first.eq_ignore_ascii_case("discard") && second.as_deref() == Some("all"))
        .then_some(SessionCommand::DiscardAll)
}

/// An identifier as PostgreSQL reads it: quoted kept, unquoted lower-cased.
fn fold_name(word: &str) -> Option<String> {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) if !quoted.contains('"') => Some(quoted.to_string()),
        Some(_) => None,
        None if word.chars().all(|c| c.is_alphanumeric() || c == '_') => Some(word.to_lowercase()),
        None => None,
    }
}

/// `sql` after leading whitespace and comments.
fn skip_comments(mut sql: &str) -> &str {
    // Each round strips one comment.
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return sql;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SessionCommand::*;
    use super::*;

    #[test]
    fn recognises_deallocate() {
        assert_eq!(session_command("DEALLOCATE ALL"), Some(DeallocateAll));
        assert_eq!(
            session_command("deallocate prepare all"),
            Some(DeallocateAll)
        );
        assert_eq!(
            session_command("DEALLOCATE P_0"),
            Some(Deallocate("p_0".into()))
        );
        assert_eq!(
            session_command("deallocate \"P_0\""),
            Some(Deallocate("P_0".into()))
        );
        assert_eq!(
            session_command("deallocate prepare s1 ;"),
            Some(Deallocate("s1".into()))
        );
        assert_eq!(session_command("select 1; deallocate all"), None);
        assert_eq!(session_command("deallocate a b"), None);
    }

    #[test]
    fn recognises_resets() {
        assert_eq!(session_command("RESET ALL"), Some(Reset(None)));
        assert_eq!(session_command("discard all;"), Some(DiscardAll));
        assert_eq!(
            session_command("/* c */ reset Statement_Timeout"),
            Some(Reset(Some("statement_timeout".into())))
        );
        assert_eq!(
            session_command("-- x\nreset search_path;"),
            Some(Reset(Some("search_path".into())))
        );
        assert_eq!(session_command("discard plans"), None);
        assert_eq!(session_command("select 1"), None);
    }

    #[test]
    fn discard_all_drops_statements_and_resets_settings() {
        let discard = session_command("discard all").unwrap();
        assert!(discard.drops_statements());
        assert_eq!(discard.resets_settings(), Some(None));
        assert!(!Reset(None).drops_statements());
    }
}
