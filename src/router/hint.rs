//! Routing hints written by the application in a block comment:
//! `/* pgsplit:primary */` or `/* pgsplit:replica */`.
//!
//! The text is scanned with the lexer rather than searched, so a hint inside a
//! string literal (`insert ... values ('/* pgsplit:replica */')`) is data, not
//! a hint. If both appear, the primary wins.

use super::lex::{Kind, Lexer};
use super::Destination;

const MARKER: &str = "pgsplit:";
const PRIMARY: &str = "pgsplit:primary";
const REPLICA: &str = "pgsplit:replica";
const MIN_LSN: &str = "pgsplit:min_lsn=";

/// The destination a hint forces, if the statement carries one.
pub(crate) fn find(sql: &str) -> Option<Destination> {
    // Nearly every statement has no hint: a substring search avoids the scan.
    if !sql.contains(MARKER) {
        return None;
    }
    let mut found = None;
    // After a string with a backslash, text that looks like a comment may be
    // string content (standard_conforming_strings = off): only a primary hint
    // is safe to believe there.
    let mut after_backslash = false;
    for token in Lexer::new(sql) {
        if token.kind == Kind::BackslashString {
            after_backslash = true;
        }
        if token.kind != Kind::BlockComment {
            continue;
        }
        let comment = sql.get(token.start..token.end).unwrap_or_default();
        if comment.contains(PRIMARY) {
            return Some(Destination::Primary);
        }
        if comment.contains(REPLICA) && !after_backslash {
            found = Some(Destination::Replica);
        }
    }
    found
}

/// The WAL position a `/* pgsplit:min_lsn=0/16B3748 */` comment asks
/// this statement's read to see (a consistency token from another
/// instance or request). The highest if several.
pub fn min_lsn(sql: &str) -> Option<crate::health::lsn::Lsn> {
    // Asked of every statement a session routes: a prebuilt SIMD searcher
    // (str::contains builds its searcher per call, about 100 instructions
    // for a pgbench select).
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(MIN_LSN));
    FINDER.find(sql.as_bytes())?;
    Lexer::new(sql)
        .filter(|token| token.kind == Kind::BlockComment)
        .filter_map(|token| {
            let comment = sql.get(token.start..token.end)?;
            let (_, rest) = comment.split_once(MIN_LSN)?;
            let value = rest.split(|c: char| c.is_whitespace() || c == '*').next()?;
            crate::health::lsn::parse(value)
        })
        .max()
}

#[cfg(test)]
mod tests {
    #[test]
    fn min_lsn_hints() {
        use super::min_lsn;
        assert_eq!(min_lsn("select 1"), None);
        assert_eq!(
            min_lsn("/* pgsplit:min_lsn=0/16B3748 */ select 1"),
            Some(0x16B3748)
        );
        assert_eq!(min_lsn("select 1 /*pgsplit:min_lsn=1/0*/"), Some(1 << 32));
        assert_eq!(min_lsn("select '/* pgsplit:min_lsn=1/0 */'"), None);
        assert_eq!(min_lsn("/* pgsplit:min_lsn=bad */ select 1"), None);
    }

    use super::*;

    #[test]
    fn finds_hints_only_in_block_comments() {
        let cases = [
            ("/* pgsplit:primary */ select 1", Some(Destination::Primary)),
            ("select 1 /* pgsplit:replica */", Some(Destination::Replica)),
            (
                "/* app=web pgsplit:replica user=1 */ select 1",
                Some(Destination::Replica),
            ),
            (
                "/* pgsplit:replica */ select /* pgsplit:primary */ 1",
                Some(Destination::Primary),
            ),
            ("select 1 -- pgsplit:replica", None),
            ("select '/* pgsplit:replica */'", None),
            ("select $$ /* pgsplit:replica */ $$", None),
            ("select \"/* pgsplit:replica */\"", None),
            ("/* pgsplit:replica", None),
            (
                "select 'a\\' /* pgsplit:primary */",
                Some(Destination::Primary),
            ),
            ("select 'a\\' /* pgsplit:replica */ '", None),
            (
                "/* pgsplit:replica */ select 'a\\'",
                Some(Destination::Replica),
            ),
            ("select 1", None),
            ("/* PGSPLIT:REPLICA */ select 1", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(find(sql), expected, "{sql}");
        }
    }
}
