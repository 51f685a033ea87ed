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

#[cfg(test)]
mod tests {
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
