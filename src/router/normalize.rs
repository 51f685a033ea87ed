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

/// The cache key of a statement.
#[cfg(test)]
pub(crate) fn cache_key(sql: &str) -> String {
    let mut key = String::new();
    write_cache_key(sql, &mut key);
    key
}

/// Replaces `key` with the cache key of a statement; usually one pass, and
/// no allocation once `key` has grown to statement size.
pub(crate) fn write_cache_key(sql: &str, key: &mut String) {
    key.clear();
    key.push(NORMALISED_TAG);
    if fast::push_normalised(sql, key) {
        return;
    }
    key.truncate(1);
    if sql.contains(PLACEHOLDER) || !push_normalised(sql, key) {
        key.clear();
        key.push(RAW_TAG);
        key.push_str(sql);
    }
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

/// The common case in one tight loop: ASCII text with words, numbers,
/// punctuation and plain '...' strings. Anything else (comments, quoted
/// identifiers, dollar quotes, escape or prefixed strings, backslashes,
/// non-ASCII, NUL) makes it give up, and the lexer-based path decides. This
/// runs for every statement; the lexer was most of the routing cost.
mod fast {
    use super::super::lex::{self, Kind};
    use super::PLACEHOLDER;

    /// What a byte means at the start of a token.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        /// Whitespace and punctuation that start nothing.
        Plain,
        Word,
        Digit,
        /// `.`, `'`, `-`, `/`: depends on what follows.
        Check,
        /// `$1` is a parameter, kept; a dollar quote needs the lexer.
        Dollar,
        /// Needs the full lexer.
        Bail,
    }

    const CLASS: [Class; 256] = {
        let mut table = [Class::Plain; 256];
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            table[c] = match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => Class::Word,
                b'0'..=b'9' => Class::Digit,
                b'.' | b'\'' | b'-' | b'/' => Class::Check,
                b'$' => Class::Dollar,
                b'"' | b'\\' | 0 | 0x80..=0xff => Class::Bail,
                _ => Class::Plain,
            };
            c += 1;
        }
        table
    };

    const IDENT: [bool; 256] = {
        let mut table = [false; 256];
        let mut c = 0;
        while c < 256 {
            table[c] = matches!(c as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'$');
            c += 1;
        }
        table
    };

    /// Appends the normalised text; false (with `key` partly written) when
    /// the text needs the full lexer.
    pub(super) fn push_normalised(sql: &str, key: &mut String) -> bool {
        let b = sql.as_bytes();
        let mut kept_from = 0;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let literal_end = match CLASS[c as usize] {
                Class::Plain => {
                    i += 1;
                    continue;
                }
                Class::Word => {
                    i = word_end(b, i + 1);
                    if b.get(i) == Some(&b'\'') {
                        return false;
                    }
                    continue;
                }
                Class::Digit => number_end(b, i),
                Class::Dollar => {
                    let end = lex::digits(b, i + 1);
                    if end == i + 1 || b.get(end).is_some_and(|&c| IDENT[c as usize] || c >= 0x80) {
                        return false;
                    }
                    i = end;
                    continue;
                }
                Class::Bail => None,
                Class::Check => match (c, b.get(i + 1).copied()) {
                    (b'.', Some(b'0'..=b'9')) => number_end(b, i),
                    (b'\'', _) => string_end(b, i),
                    (b'-', Some(b'-')) | (b'/', Some(b'*')) => None,
                    _ => {
                        i += 1;
                        continue;
                    }
                },
            };
            let Some(end) = literal_end else { return false };
            // Slicing at ASCII positions of a str is always on a boundary.
            key.push_str(&sql[kept_from..i]);
            key.push(PLACEHOLDER);
            kept_from = end;
            i = end;
        }
        key.push_str(&sql[kept_from..]);
        true
    }

    fn word_end(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && IDENT[b[i] as usize] {
            i += 1;
        }
        i
    }

    /// The lexer's own number rule, so both paths agree; `None` where it
    /// would be unsure.
    fn number_end(b: &[u8], start: usize) -> Option<usize> {
        match lex::number(b, start) {
            (Kind::Number, end) => Some(end),
            _ => None,
        }
    }

    /// A plain string without backslashes; `None` otherwise.
    fn string_end(b: &[u8], start: usize) -> Option<usize> {
        let mut i = start + 1;
        while i < b.len() {
            match b[i] {
                b'\\' | 0 => return None,
                b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }
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

    /// The key built by the full lexer alone, for comparison.
    fn slow_key(sql: &str) -> String {
        let mut key = String::from(NORMALISED_TAG);
        if sql.contains(PLACEHOLDER) || !push_normalised(sql, &mut key) {
            key.clear();
            key.push(RAW_TAG);
            key.push_str(sql);
        }
        key
    }

    #[test]
    fn fast_path_agrees_with_the_lexer() {
        // Every string over a small alphabet that covers each case, up to
        // length 5, plus realistic statements.
        let alphabet = [
            "a", "E", "1", ".", "'", "-", "/", "*", " ", "$", "\\", "\"", "e", "_", "x", "$1",
        ];
        let mut texts = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..5 {
            let mut longer = Vec::new();
            for t in &texts {
                for a in alphabet {
                    longer.push(format!("{t}{a}"));
                }
            }
            all.extend(longer.iter().cloned());
            texts = longer;
        }
        all.extend(
            [
                "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
                "select * from t where a = 'x''y' and b >= 1.5e-3 or c < .5",
                "update t set v = v + 1 where id = 7 returning *",
                "select 1e, 1e+, 2.x, 3_0, 0x1f, a1 + 1a",
                "select naïve from t",
                "select * from t where a = $1 and b = $23 and c = $1x and d = $$",
            ]
            .map(String::from),
        );
        for sql in &all {
            let mut fast_key = String::from(NORMALISED_TAG);
            if super::fast::push_normalised(sql, &mut fast_key) {
                assert_eq!(fast_key, slow_key(sql), "{sql:?}");
            }
            assert_eq!(cache_key(sql), slow_key(sql), "{sql:?}");
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
