//! The cache key: statement text with literal values replaced.
//!
//! pgbench -S and most applications send the same statement with different
//! literals; keying the cache on the raw text would make every one a miss.
//! Numbers and string literals (`'..'`, `E'..'`, `$tag$..$tag$`) become one
//! placeholder byte; comments (hints live there), identifiers, quoted
//! identifiers, parameters and whitespace are kept as they are.
//!
//! The key must never join two statements whose routes could differ. So:
//! * the placeholder is NUL, which cannot occur in a PostgreSQL query string;
//!   a text that contains one is keyed raw;
//! * whenever the lexer is unsure (unterminated literal or comment, backslash
//!   in a plain string, `X'..'`, `0x1F`, ...) the raw text is the key;
//! * normalised and raw keys start with different tag bytes, so one can never
//!   equal the other.
//!
//! Routing decisions that read a literal's value (`current_setting('...')`)
//! are not cached under a normalised key at all; see `classify`.

use super::lex::{Kind, Lexer};

const PLACEHOLDER: char = '\0';
const NORMALISED_TAG: char = 'N';
const RAW_TAG: char = 'R';

/// The cache key of a statement. One allocation, one pass.
pub(crate) fn cache_key(sql: &str) -> String {
    let mut key = String::with_capacity(sql.len() + 1);
    key.push(NORMALISED_TAG);
    if sql.contains(PLACEHOLDER) || !push_normalised(sql, &mut key) {
        key.clear();
        key.push(RAW_TAG);
        key.push_str(sql);
    }
    key
}

/// Appends `sql` with literals replaced; false if the text is ambiguous.
fn push_normalised(sql: &str, key: &mut String) -> bool {
    // Copy runs of kept text in one go rather than token by token.
    let mut kept_from = 0;
    for token in Lexer::new(sql) {
        let text = sql.get(token.start..token.end).unwrap_or_default();
        match token.kind {
            // A backslash in a plain string means different things with
            // standard_conforming_strings on and off.
            Kind::Ambiguous | Kind::BackslashString => return false,
            // Unicode escapes can be invalid, and an invalid one fails the
            // parse: their value matters.
            Kind::EscapeString if text.contains("\\u") || text.contains("\\U") => return false,
            Kind::String | Kind::EscapeString | Kind::DollarString | Kind::Number => {
                key.push_str(sql.get(kept_from..token.start).unwrap_or_default());
                key.push(PLACEHOLDER);
                kept_from = token.end;
            }
            _ => {}
        }
    }
    key.push_str(sql.get(kept_from..).unwrap_or_default());
    true
}

/// Whether a key was normalised (as opposed to the raw-text fallback).
#[cfg(test)]
fn is_normalised(key: &str) -> bool {
    key.starts_with(NORMALISED_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_do_not_change_the_key() {
        let pairs = [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
            ),
            (
                "select * from t where a = 'x' and b = 1.5",
                "select * from t where a = 'it''s' and b = 2e10",
            ),
            ("select E'a\\'b' from t", "select E'zz' from t"),
            ("select $$a$$, $q$ ' $q$", "select $$bbb$$, $q$ x $q$"),
            ("select -1", "select -22"),
            ("select .5 + 1.", "select .25 + 7."),
        ];
        for (a, b) in pairs {
            let (ka, kb) = (cache_key(a), cache_key(b));
            assert!(is_normalised(&ka), "{a}");
            assert_eq!(ka, kb, "{a} / {b}");
        }
    }

    #[test]
    fn structure_changes_the_key() {
        let pairs = [
            ("select * from t1", "select * from t2"),
            ("select x2y from t", "select x3y from t"),
            ("select \"a1\" from t", "select \"a2\" from t"),
            ("select $1", "select $2"),
            (
                "select 1 /* pgsplit:replica */",
                "select 1 /* pgsplit:primary */",
            ),
            ("select 1 -- a", "select 1 -- b"),
            ("select 1", "SELECT 1"),
            ("select 1", "select  1"),
            ("select 1", "select '1'::int"),
            ("select 1 .5", "select 1.5"),
        ];
        for (a, b) in pairs {
            assert_ne!(cache_key(a), cache_key(b), "{a} / {b}");
        }
    }

    #[test]
    fn ambiguous_text_is_keyed_raw() {
        for sql in [
            "select 'unterminated",
            "select 'back\\slash'",
            "select /* unterminated",
            "select X'1F'",
            "select 0x1F",
            "select 1_000",
            "select $q$ open",
            "select \"open",
            "select E'\\u0041'",
            "select 'a\0b'",
        ] {
            let key = cache_key(sql);
            assert!(!is_normalised(&key), "{sql}");
            assert_eq!(&key[1..], sql);
        }
    }

    #[test]
    fn raw_and_normalised_keys_never_meet() {
        // The placeholder written literally is keyed raw, so it cannot collide
        // with the normalised form of a statement with a literal there.
        assert_ne!(cache_key("select \0"), cache_key("select 1"));
        assert_ne!(cache_key("Nselect \0"), cache_key("select 1"));
    }
}
