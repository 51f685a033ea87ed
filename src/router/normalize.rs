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
/// no allocation once `key` has grown to statement size. True when the
/// fast path made it, so that a [`Template`] can be learnt from it.
pub(crate) fn write_cache_key(sql: &str, key: &mut String) -> bool {
    key.clear();
    key.push(NORMALISED_TAG);
    if fast::push_normalised(sql, key) {
        return true;
    }
    key.truncate(1);
    if sql.contains(PLACEHOLDER) || !push_normalised(sql, key) {
        key.clear();
        key.push(RAW_TAG);
        key.push_str(sql);
    }
    false
}

/// A key the fast path made, taken apart so that a statement can be checked
/// against it without being normalised: the stretches of kept text, and how
/// each literal between them begins.
///
/// A text matches exactly when the fast path would give it this key. The
/// kept stretches are equal byte for byte; each literal begins with the same
/// kind of byte (a digit, a dot before a digit, a quote) and is measured by
/// the rule the fast path uses. The fast path decides from the byte at hand
/// and the next (and, in a word, the bytes up to the word's end), so on such
/// a text it takes every decision it took on the text the key came from.
/// `memo_never_joins_what_the_normaliser_keeps_apart` checks it over every
/// short text of the tricky bytes.
pub(crate) struct Template {
    /// The kept stretches, one after the other.
    kept: Box<[u8]>,
    /// Each stretch's length in `kept`, and how the literal after it
    /// begins (none after the last).
    parts: Box<[(usize, Option<fast::Start>)]>,
    /// The shortest text that can match: the kept text and a byte per
    /// literal.
    shortest: usize,
}

impl Template {
    /// The template of `key` (without its tag), which the fast path made
    /// from `sql`.
    pub(crate) fn learn(sql: &str, key: &str) -> Option<Template> {
        let b = sql.as_bytes();
        let (mut kept, mut parts, mut at) = (Vec::new(), Vec::new(), 0);
        let mut runs = key.as_bytes().split(|&c| c == PLACEHOLDER as u8).peekable();
        while let Some(run) = runs.next() {
            if b.get(at..at + run.len()) != Some(run) {
                return None;
            }
            at += run.len();
            kept.extend_from_slice(run);
            if runs.peek().is_none() {
                parts.push((run.len(), None));
                break;
            }
            let start = fast::start_at(b, at)?;
            at = fast::literal_end(b, at, start)?;
            parts.push((run.len(), Some(start)));
        }
        let literals = parts
            .iter()
            .filter(|(_, literal)| literal.is_some())
            .count();
        let template = Template {
            shortest: kept.len() + literals,
            kept: kept.into(),
            parts: parts.into(),
        };
        (at == b.len()).then_some(template)
    }

    /// Whether the fast path would key `sql` as this template's key.
    pub(crate) fn matches(&self, sql: &str) -> bool {
        let b = sql.as_bytes();
        if self.rules_out(b) {
            return false;
        }
        let (mut at, mut from) = (0, 0);
        for &(len, literal) in self.parts.iter() {
            let (Some(run), Some(text)) = (self.kept.get(from..from + len), b.get(at..at + len))
            else {
                return false;
            };
            if run != text {
                return false;
            }
            at += len;
            from += len;
            let Some(start) = literal else {
                return at == b.len();
            };
            match fast::start_at(b, at) {
                Some(found) if found == start => {}
                _ => return false,
            }
            match fast::literal_end(b, at, start) {
                Some(end) => at = end,
                None => return false,
            }
        }
        false
    }

    /// A quick look that tells most other statements apart (a memo tries
    /// several templates per statement): the length, and the eight bytes
    /// before the first literal, where statements of one table that differ
    /// (`+ 1` against `+ -1`, `aid =` against `bid =`) usually do.
    fn rules_out(&self, b: &[u8]) -> bool {
        if b.len() < self.shortest {
            return true;
        }
        let first = self.parts.first().map_or(0, |&(len, _)| len);
        match (first.checked_sub(8), first <= b.len()) {
            (Some(from), true) => b.get(from..first) != self.kept.get(from..first),
            _ => false,
        }
    }

    /// The size of the text kept, for bounding what a memo holds.
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
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

    /// How a literal begins: what made the fast path start one there.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(crate) enum Start {
        Digit,
        /// A dot before a digit (`.5`).
        Dot,
        Quote,
    }

    /// The kind of literal that would begin at `i`, if one may.
    pub(super) fn start_at(b: &[u8], i: usize) -> Option<Start> {
        match (b.get(i), b.get(i + 1)) {
            (Some(b'0'..=b'9'), _) => Some(Start::Digit),
            (Some(b'.'), Some(b'0'..=b'9')) => Some(Start::Dot),
            (Some(b'\''), _) => Some(Start::Quote),
            _ => None,
        }
    }

    /// Where a literal that begins at `i` as `start` says ends, by the rules
    /// `push_normalised` uses; `None` where it would give up.
    pub(super) fn literal_end(b: &[u8], i: usize, start: Start) -> Option<usize> {
        match start {
            Start::Digit | Start::Dot => number_end(b, i),
            Start::Quote => string_end(b, i),
        }
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

    /// Every text of one to `len` pieces of `alphabet`.
    fn every_text(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut texts = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..len {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |a| format!("{t}{a}")))
                .collect();
            all.extend(longer.iter().cloned());
            texts = longer;
        }
        all
    }

    #[test]
    fn fast_path_agrees_with_the_lexer() {
        // Every string over a small alphabet that covers each case, up to
        // length 5, plus realistic statements.
        let alphabet = [
            "a", "E", "1", ".", "'", "-", "/", "*", " ", "$", "\\", "\"", "e", "_", "x", "$1",
        ];
        let mut all = every_text(&alphabet, 5);
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

    /// The fast path's key, if it makes one.
    fn fast_key(sql: &str) -> Option<String> {
        let mut key = String::new();
        super::fast::push_normalised(sql, &mut key).then_some(key)
    }

    #[test]
    fn memo_never_joins_what_the_normaliser_keeps_apart() {
        // Every pair of texts up to length 3 over the bytes where literals
        // begin, end or touch a word: a text matches another's template
        // only if the two have the same key.
        let alphabet = [
            "a", "1", ".", "'", "$1", " ", "-", "e", "$", "x'", "2.", "''", "/*", "_",
        ];
        let all = every_text(&alphabet, 3);
        let keyed: Vec<(&String, String)> =
            all.iter().filter_map(|t| Some((t, fast_key(t)?))).collect();
        let mut learnt = 0;
        for (text, key) in &keyed {
            let Some(template) = Template::learn(text, key) else {
                continue;
            };
            learnt += 1;
            assert!(template.matches(text), "{text:?}");
            for (other, other_key) in &keyed {
                if template.matches(other) {
                    assert_eq!(key, other_key, "{text:?} / {other:?}");
                }
            }
        }
        assert!(learnt * 10 > keyed.len() * 9, "{learnt} of {}", keyed.len());
    }

    #[test]
    fn memo_matches_other_literals_only() {
        let base = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";
        let key = fast_key(base).unwrap();
        let template = Template::learn(base, &key).unwrap();
        for same in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1.5e3;",
        ] {
            assert!(template.matches(same), "{same}");
        }
        for other in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 'x';",
            "SELECT abalance FROM pgbench_accounts WHERE aid = .5;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "SELECT abalance FROM pgbench_accounts WHERE aid = x1;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1a;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1 ;",
            "select abalance FROM pgbench_accounts WHERE aid = 1;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = ;",
            "",
        ] {
            assert!(!template.matches(other), "{other}");
        }
        let quoted = "select * from t where a = 'x''y' and b = $1";
        let template = Template::learn(quoted, &fast_key(quoted).unwrap()).unwrap();
        assert!(template.matches("select * from t where a = '' and b = $1"));
        assert!(!template.matches("select * from t where a = 'x' and b = $12"));
        assert!(!template.matches("select * from t where a = 'x\\' and b = $1"));
    }

    #[test]
    fn raw_and_normalised_keys_never_meet() {
        // The placeholder written literally is keyed raw, so it cannot collide
        // with the normalised form of a statement with a literal there.
        assert_ne!(cache_key("select \0"), cache_key("select 1"));
        assert_ne!(cache_key("Nselect \0"), cache_key("select 1"));
    }
}
