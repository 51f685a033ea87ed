//! A minimal SQL scanner shared by the hint finder and the cache-key normaliser.
//!
//! It knows only what both need: where comments, string literals, quoted
//! identifiers, numbers and words begin and end, following PostgreSQL's lexer
//! (nested block comments, `E'...'` escapes, `$tag$...$tag$`, `$1` parameters,
//! `$` inside identifiers). Anything it is not sure about comes out as
//! [`Kind::Ambiguous`], and both callers then stop trusting their scan: it
//! never guesses.

/// What a token is; positions are byte offsets into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/* ... */`, nesting included.
    BlockComment,
    /// `-- ...` up to (not including) the newline.
    LineComment,
    /// `'...'` without any backslash inside.
    String,
    /// `'...'` with a backslash inside, scanned as PostgreSQL does by default
    /// (`standard_conforming_strings = on`: the backslash is a plain
    /// character). With that setting off the string would end elsewhere, so
    /// callers must not trust what follows it.
    BackslashString,
    /// `E'...'` with backslash escapes.
    EscapeString,
    /// `$tag$...$tag$` or `$$...$$`.
    DollarString,
    /// `"..."`.
    QuotedIdent,
    /// An unsigned numeric literal: `42`, `4.2`, `.5`, `1e-3`.
    Number,
    /// A keyword or identifier, or a `$1` parameter.
    Word,
    /// Anything else, one byte at a time (whitespace, punctuation, operators).
    Other,
    /// Unterminated literal or comment, a prefixed
    /// string such as `B'..'`/`X'..'`/`N'..'`, a number glued to letters
    /// (`0x1F`, `1_000`), or a stray `$`: the scan stops here.
    Ambiguous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Iterator over the tokens of a statement. After an `Ambiguous` token it ends.
pub(crate) struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        Lexer {
            bytes: sql.as_bytes(),
            pos: 0,
            done: false,
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    /// Scans one token starting at `self.pos`, returning its kind and end.
    fn scan_token(&self) -> (Kind, usize) {
        let b = self.bytes;
        let i = self.pos;
        let c = b[i];
        match c {
            b'-' if self.peek(1) == Some(b'-') => (Kind::LineComment, line_end(b, i)),
            b'/' if self.peek(1) == Some(b'*') => block_comment(b, i),
            b'\'' => quoted(b, i, b'\'', false),
            b'"' => quoted(b, i, b'"', false),
            b'$' => dollar(b, i),
            b'0'..=b'9' => number(b, i),
            b'.' if matches!(self.peek(1), Some(b'0'..=b'9')) => number(b, i),
            _ if is_ident_start(c) => word(b, i),
            // A run, not a byte: whitespace and punctuation are most of a
            // statement, and one token each made the lexer several times
            // slower for the cache key of every statement.
            _ => (Kind::Other, other_run(b, i + 1)),
        }
    }
}

/// The end of a run of bytes that start no token of their own.
fn other_run(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !starts_token(b, i) {
        i += 1;
    }
    i
}

fn starts_token(b: &[u8], i: usize) -> bool {
    let next = b.get(i + 1).copied();
    match b[i] {
        b'-' => next == Some(b'-'),
        b'/' => next == Some(b'*'),
        b'\'' | b'"' | b'$' | b'0'..=b'9' => true,
        b'.' => matches!(next, Some(b'0'..=b'9')),
        c => is_ident_start(c),
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if self.done || self.pos >= self.bytes.len() {
            return None;
        }
        let (kind, end) = self.scan_token();
        let token = Token {
            kind,
            start: self.pos,
            end,
        };
        self.pos = end;
        self.done = kind == Kind::Ambiguous;
        Some(token)
    }
}

pub(crate) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

pub(crate) fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p)
}

/// PostgreSQL block comments nest, so `/* a /* b */ c */` is one comment.
fn block_comment(b: &[u8], start: usize) -> (Kind, usize) {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return (Kind::BlockComment, i);
                }
            }
            _ => i += 1,
        }
    }
    (Kind::Ambiguous, b.len())
}

/// A `'...'` string or `"..."` identifier, where a doubled quote is an escaped
/// quote. With `escapes`, a backslash escapes the next byte (`E'...'`).
/// Without, a backslash is an ordinary character but marks the token.
fn quoted(b: &[u8], start: usize, quote: u8, escapes: bool) -> (Kind, usize) {
    let mut kind = match (quote, escapes) {
        (b'"', _) => Kind::QuotedIdent,
        (_, true) => Kind::EscapeString,
        (_, false) => Kind::String,
    };
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && kind == Kind::EscapeString {
            i += 2;
        } else if c == b'\\' && kind == Kind::String {
            kind = Kind::BackslashString;
            i += 1;
        } else if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return (kind, i + 1);
            }
        } else {
            i += 1;
        }
    }
    (Kind::Ambiguous, b.len())
}

/// `$1` (parameter), `$tag$...$tag$` or `$$...$$` (string).
fn dollar(b: &[u8], start: usize) -> (Kind, usize) {
    let mut i = start + 1;
    if matches!(b.get(i), Some(b'0'..=b'9')) {
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        return match b.get(i) {
            Some(&c) if is_ident_char(c) => (Kind::Ambiguous, b.len()),
            _ => (Kind::Word, i),
        };
    }
    while matches!(b.get(i), Some(&c) if is_ident_char(c) && c != b'$') {
        i += 1;
    }
    if b.get(i) != Some(&b'$') {
        return (Kind::Ambiguous, b.len());
    }
    let delimiter = &b[start..=i];
    let body = i + 1;
    match b[body..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
    {
        Some(p) => (Kind::DollarString, body + p + delimiter.len()),
        None => (Kind::Ambiguous, b.len()),
    }
}

pub(crate) fn digits(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b'0'..=b'9')) {
        i += 1;
    }
    i
}

/// A number must end cleanly: `0x1F`, `1_000`, `1e`, `1.2.3` or `12abc` are
/// ambiguous rather than guessed at.
pub(crate) fn number(b: &[u8], start: usize) -> (Kind, usize) {
    let mut i = digits(b, start);
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if matches!(b.get(j), Some(b'0'..=b'9')) {
            i = digits(b, j);
        }
    }
    match b.get(i) {
        Some(&c) if is_ident_char(c) || c == b'.' => (Kind::Ambiguous, b.len()),
        _ => (Kind::Number, i),
    }
}

/// A word, or `E'...'` when the word is just `E`. Other letters glued to a
/// quote (`B'..'`, `X'..'`, `N'..'`, `U&` is handled as a plain string) are
/// ambiguous.
fn word(b: &[u8], start: usize) -> (Kind, usize) {
    let mut i = start + 1;
    while matches!(b.get(i), Some(&c) if is_ident_char(c)) {
        i += 1;
    }
    if b.get(i) == Some(&b'\'') {
        if i - start == 1 && matches!(b[start], b'e' | b'E') {
            return quoted(b, i, b'\'', true);
        }
        return (Kind::Ambiguous, b.len());
    }
    (Kind::Word, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        Lexer::new(sql)
            .filter(|t| t.kind != Kind::Other)
            .map(|t| (t.kind, &sql[t.start..t.end]))
            .collect()
    }

    #[test]
    fn scans_literals_and_words() {
        use Kind::*;
        assert_eq!(
            kinds("select t1, 'a''b', 'c\\', E'x\\'y', $q$ ' $q$, \"C\"\"d\", 1.5e3, .5, $1 -- c"),
            vec![
                (Word, "select"),
                (Word, "t1"),
                (String, "'a''b'"),
                (BackslashString, "'c\\'"),
                (EscapeString, "E'x\\'y'"),
                (DollarString, "$q$ ' $q$"),
                (QuotedIdent, "\"C\"\"d\""),
                (Number, "1.5e3"),
                (Number, ".5"),
                (Word, "$1"),
                (LineComment, "-- c"),
            ]
        );
    }

    #[test]
    fn nested_block_comments() {
        assert_eq!(
            kinds("/* a /* b */ c */ x"),
            vec![(Kind::BlockComment, "/* a /* b */ c */"), (Kind::Word, "x")]
        );
    }

    #[test]
    fn ambiguous_inputs_end_the_scan() {
        for sql in [
            "'open", "'a\\", "/* open", "\"open", "$q$ open", "0x1F", "1_000", "X'1F'", "1.2.3",
            "$ 1", "$1a",
        ] {
            let last = Lexer::new(sql).last().map(|t| t.kind);
            assert_eq!(last, Some(Kind::Ambiguous), "{sql}");
        }
    }
}
