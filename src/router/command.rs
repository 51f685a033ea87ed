//! Statements that make the session do something besides routing them:
//! `DEALLOCATE` (the client's prepared statements), `RESET` (its settings)
//! and `DISCARD ALL` (both) change what pgsplit keeps for a client; `DROP
//! DATABASE` and friends need the database free of pgsplit's idle
//! connections (`exclusive_database`); a read of `pg_prepared_statements`
//! must see the client's own statements. Read from the first words (or,
//! for the view, anywhere in the text) when a statement is classified, so
//! a statement the route memo or cache knows costs nothing here.

/// What the session does besides routing a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// DEALLOCATE, RESET, DISCARD ALL.
    Session(SessionCommand),
    /// Needs this database free of other sessions.
    Database(String),
}

/// The command in `sql`, if any.
pub(crate) fn command(sql: &str) -> Option<Command> {
    session_command(sql)
        .map(Command::Session)
        .or_else(|| exclusive_database(sql).map(Command::Database))
}

/// A command pgsplit must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub(crate) fn session_command(sql: &str) -> Option<SessionCommand> {
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

/// The database a statement needs free of other sessions, as PostgreSQL
/// folds its name (unquoted lower-cased, quoted kept): the one dropped by
/// `DROP DATABASE [IF EXISTS] x [[WITH] (FORCE)]`, renamed or moved by
/// `ALTER DATABASE x RENAME TO y` or `ALTER DATABASE x SET TABLESPACE t`,
/// or copied by `CREATE DATABASE y ... TEMPLATE [=] x` (its options in any
/// order; without TEMPLATE, or with `TEMPLATE DEFAULT`, `template1`).
/// PostgreSQL refuses those with 55006 while other sessions are connected
/// to it. `None` for anything else, and for a statement it cannot read
/// for sure (the statement then runs as it would have).
///
/// Runs for every query and Parse: the first letter rules out almost
/// all, and nothing is allocated before the first two words are a
/// `... DATABASE` command.
pub(crate) fn exclusive_database(sql: &str) -> Option<String> {
    let body = skip_comments(sql);
    if !matches!(
        body.as_bytes().first(),
        Some(b'd' | b'D' | b'a' | b'A' | b'c' | b'C')
    ) {
        return None;
    }
    let mut tokens = Tokens { rest: body };
    let verb = tokens.word()?;
    if !tokens
        .word()
        .is_some_and(|w| w.eq_ignore_ascii_case("database"))
    {
        return None;
    }
    if verb.eq_ignore_ascii_case("drop") {
        dropped_database(tokens)
    } else if verb.eq_ignore_ascii_case("alter") {
        altered_database(tokens)
    } else if verb.eq_ignore_ascii_case("create") {
        template_database(tokens)
    } else {
        None
    }
}

/// `DROP DATABASE` `[IF EXISTS] name ...`
fn dropped_database(mut tokens: Tokens<'_>) -> Option<String> {
    let first = tokens.next()?;
    if matches!(first, Token::Word(w) if w.eq_ignore_ascii_case("if")) {
        let mut after = tokens.clone();
        if after
            .word()
            .is_some_and(|w| w.eq_ignore_ascii_case("exists"))
        {
            return fold_token(after.next()?);
        }
    }
    fold_token(first)
}

/// `ALTER DATABASE` `name RENAME TO ...` or `name SET TABLESPACE ...`;
/// its other forms (OWNER TO, SET a setting, ...) need no exclusivity.
fn altered_database(mut tokens: Tokens<'_>) -> Option<String> {
    let name = fold_token(tokens.next()?)?;
    let (action, object) = (tokens.word()?, tokens.word()?);
    let exclusive = (action.eq_ignore_ascii_case("rename") && object.eq_ignore_ascii_case("to"))
        || (action.eq_ignore_ascii_case("set") && object.eq_ignore_ascii_case("tablespace"));
    exclusive.then_some(name)
}

/// `CREATE DATABASE` `name [WITH] [option [=] value] ...`: the TEMPLATE
/// option's value, else PostgreSQL's default template.
fn template_database(mut tokens: Tokens<'_>) -> Option<String> {
    fold_token(tokens.next()?)?;
    let mut option = tokens.next();
    if matches!(option, Some(Token::Word(w)) if w.eq_ignore_ascii_case("with")) {
        option = tokens.next();
    }
    let mut template = None;
    // Each round reads one option: `name [=] value`.
    loop {
        let name = match option {
            None | Some(Token::Punct(b';')) => break,
            Some(Token::Word(name)) => name,
            Some(_) => return None,
        };
        if name.eq_ignore_ascii_case("connection") && !tokens.word()?.eq_ignore_ascii_case("limit")
        {
            return None;
        }
        let mut value = tokens.next()?;
        if value == Token::Punct(b'=') {
            value = tokens.next()?;
        }
        if name.eq_ignore_ascii_case("template") {
            template = match value {
                Token::Word(w) if w.eq_ignore_ascii_case("default") => None,
                Token::Str(raw) => Some(raw.replace("''", "'")),
                other => Some(fold_token(other)?),
            };
        } else if matches!(value, Token::Punct(_)) {
            return None;
        }
        option = tokens.next();
    }
    Some(template.unwrap_or_else(|| "template1".to_string()))
}

/// A token of the statements `exclusive_database` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A keyword, an unquoted identifier or a number (`-1` included).
    Word(&'a str),
    /// `"..."`: what is between the quotes, doubled quotes still doubled.
    Quoted(&'a str),
    /// `'...'`: likewise.
    Str(&'a str),
    /// One of `= , ( ) ;`.
    Punct(u8),
}

/// The tokens of a statement, scanned as they are asked for. Anything it
/// cannot scan for sure (an unterminated quote) ends it.
#[derive(Clone)]
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn word(&mut self) -> Option<&'a str> {
        match self.next()? {
            Token::Word(w) => Some(w),
            _ => None,
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let rest = skip_comments(self.rest);
        let (token, len) = match *rest.as_bytes().first()? {
            quote @ (b'"' | b'\'') => {
                let end = quoted_end(rest, quote)?;
                let inner = &rest[1..end - 1];
                let token = match quote {
                    b'"' => Token::Quoted(inner),
                    _ => Token::Str(inner),
                };
                (token, end)
            }
            punct @ (b'=' | b',' | b'(' | b')' | b';') => (Token::Punct(punct), 1),
            _ => {
                let len = rest
                    .char_indices()
                    .find(|&(i, c)| {
                        c.is_whitespace()
                            || "\"'=,();".contains(c)
                            || rest[i..].starts_with("--")
                            || rest[i..].starts_with("/*")
                    })
                    .map_or(rest.len(), |(i, _)| i);
                (Token::Word(&rest[..len]), len)
            }
        };
        self.rest = &rest[len..];
        Some(token)
    }
}

/// The end (past the closing quote) of the quoted text `s` starts with;
/// a doubled quote inside is part of it.
fn quoted_end(s: &str, quote: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut at = 1;
    loop {
        let found = at + bytes.get(at..)?.iter().position(|&b| b == quote)?;
        if bytes.get(found + 1) == Some(&quote) {
            at = found + 2;
        } else {
            return Some(found + 1);
        }
    }
}

/// A database name token as PostgreSQL reads it: unquoted lower-cased
/// (ASCII letters only, as PostgreSQL does in UTF-8), quoted kept with
/// its doubled quotes undone. Not a name: `None`.
fn fold_token(token: Token<'_>) -> Option<String> {
    match token {
        Token::Word(w)
            if w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80) =>
        {
            Some(w.to_ascii_lowercase())
        }
        Token::Quoted(q) if !q.is_empty() => Some(q.replace("\"\"", "\"")),
        _ => None,
    }
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

/// Whether statement text reads `pg_prepared_statements` (in any case:
/// unquoted names fold).
pub(crate) fn lists_statements(text: &str) -> bool {
    const VIEW: &[u8] = b"pg_prepared_statements";
    let text = text.as_bytes();
    memchr::memchr2_iter(b'p', b'P', text).any(|at| {
        text.get(at..at + VIEW.len())
            .is_some_and(|word| word.eq_ignore_ascii_case(VIEW))
    })
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
    fn recognises_statements_that_need_a_database_free() {
        for (sql, database) in [
            ("DROP DATABASE x", Some("x")),
            ("drop database IF EXISTS Shop;", Some("shop")),
            ("DROP DATABASE \"Shop\" WITH (FORCE)", Some("Shop")),
            ("drop database x (force)", Some("x")),
            ("/* c */ -- d\n  DROP\n  DATABASE\tx", Some("x")),
            ("DROP DATABASE if", Some("if")),
            ("DROP DATABASE \"a \"\"b\"\"\"", Some("a \"b\"")),
            ("DROP DATABASE x; select 1", Some("x")),
            ("DROP DATABASE x--gone", Some("x")),
            ("ALTER DATABASE x RENAME TO y", Some("x")),
            ("alter database \"X\" rename to y", Some("X")),
            ("ALTER DATABASE x SET TABLESPACE t", Some("x")),
            ("ALTER DATABASE x SET search_path = a", None),
            ("ALTER DATABASE x OWNER TO bob", None),
            ("ALTER DATABASE x RESET ALL", None),
            ("ALTER DATABASE x WITH CONNECTION LIMIT 5", None),
            ("CREATE DATABASE y TEMPLATE x", Some("x")),
            ("create database y template = X", Some("x")),
            ("CREATE DATABASE y TEMPLATE=\"X\"", Some("X")),
            ("CREATE DATABASE y TEMPLATE 'My''db'", Some("My'db")),
            (
                "CREATE DATABASE y WITH OWNER = bob ENCODING 'UTF8' CONNECTION LIMIT = -1 TEMPLATE x LOCALE_PROVIDER icu",
                Some("x"),
            ),
            ("CREATE DATABASE y OWNER template", Some("template1")),
            ("CREATE DATABASE y", Some("template1")),
            ("CREATE DATABASE y TEMPLATE DEFAULT;", Some("template1")),
            ("CREATE DATABASE y TEMPLATE template0", Some("template0")),
            ("CREATE DATABASE y TEMPLATE", None),
            ("CREATE DATABASE y TEMPLATE 'x", None),
            ("CREATE TABLE database (x int)", None),
            ("create index on t(x)", None),
            ("DROP TABLE x", None),
            ("DROP DATABASE", None),
            ("DROP DATABASE 'x'", None),
            ("DELETE FROM database", None),
            ("analyze", None),
            ("select 'DROP DATABASE x'", None),
            ("", None),
        ] {
            assert_eq!(
                exclusive_database(sql).as_deref(),
                database,
                "{sql}"
            );
        }
    }

    #[test]
    fn discard_all_drops_statements_and_resets_settings() {
        let discard = session_command("discard all").unwrap();
        assert!(discard.drops_statements());
        assert_eq!(discard.resets_settings(), Some(None));
        assert!(!Reset(None).drops_statements());
    }
}
