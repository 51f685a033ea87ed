//! A transaction begun by pgsplit alone, while it has reached no server
//! (`router::decision::Transaction::Lazy`), and pgsplit's answers for it,
//! worded as PostgreSQL words them.

use crate::protocol::error::sqlstate;
use crate::protocol::frame::put_frame;
use crate::protocol::{backend, status, tag, PgError};
use crate::router::decision::{self, Answer};
use bytes::BytesMut;

/// A transaction begun by pgsplit alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lazy {
    /// The client's BEGIN, sent as it is when the transaction opens on the
    /// primary: its options (isolation, access mode) are the client's.
    pub begin: String,
    /// What the decision knows of it (failed, ran a statement, read only).
    pub state: decision::Lazy,
}

/// Writes the answer's messages (before its ReadyForQuery) into `out`
/// and moves the transaction (`lazy`) on; returns the status it leaves.
pub(super) fn answer(
    lazy: &mut Option<Lazy>,
    answer: Answer,
    text: &str,
    out: &mut BytesMut,
) -> u8 {
    match answer {
        Answer::Begin { read_only } => {
            *lazy = Some(Lazy {
                begin: text.to_string(),
                state: decision::Lazy {
                    read_only,
                    ..Default::default()
                },
            });
            backend::command_complete(begin_tag(text), out);
            status::IN_TRANSACTION
        }
        Answer::AlreadyInTransaction => {
            warning(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "there is already a transaction in progress",
                out,
            );
            backend::command_complete(begin_tag(text), out);
            status::IN_TRANSACTION
        }
        Answer::Commit { chain } => {
            backend::command_complete("COMMIT", out);
            end(lazy, chain)
        }
        Answer::Rollback { chain } => {
            backend::command_complete("ROLLBACK", out);
            end(lazy, chain)
        }
        Answer::TooLate(what) => {
            if let Some(lazy) = lazy {
                lazy.state.failed = true;
            }
            PgError::error(sqlstate::ACTIVE_SQL_TRANSACTION, what.message()).encode(out);
            status::FAILED
        }
        Answer::Aborted => {
            PgError::error(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )
            .encode(out);
            status::FAILED
        }
        Answer::NoSavepoint => {
            if let Some(lazy) = lazy {
                lazy.state.failed = true;
            }
            PgError::error(
                sqlstate::INVALID_SAVEPOINT,
                format!("savepoint \"{}\" does not exist", savepoint_name(text)),
            )
            .encode(out);
            status::FAILED
        }
    }
}

/// The lazy transaction ends; AND CHAIN (`chain`) begins the next one
/// with its characteristics, as PostgreSQL does. The status it leaves.
fn end(lazy: &mut Option<Lazy>, chain: bool) -> u8 {
    match (chain, lazy.as_mut()) {
        (true, Some(lazy)) => {
            lazy.state = decision::Lazy {
                read_only: lazy.state.read_only,
                ..Default::default()
            };
            status::IN_TRANSACTION
        }
        _ => {
            *lazy = None;
            status::IDLE
        }
    }
}

/// A NoticeResponse of severity WARNING.
fn warning(code: &str, message: &str, out: &mut BytesMut) {
    put_frame(out, tag::NOTICE_RESPONSE, |b| {
        for (kind, value) in [
            (b'S', "WARNING"),
            (b'V', "WARNING"),
            (b'C', code),
            (b'M', message),
        ] {
            b.extend_from_slice(&[kind]);
            b.extend_from_slice(value.as_bytes());
            b.extend_from_slice(&[0]);
        }
        b.extend_from_slice(&[0]);
    });
}

/// The savepoint a `ROLLBACK TO [SAVEPOINT] name` names, as PostgreSQL
/// folds it.
fn savepoint_name(text: &str) -> String {
    let word = text
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .last()
        .unwrap_or_default();
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => word.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::decision::TooLate;

    fn answered(lazy: &mut Option<Lazy>, a: Answer, text: &str) -> (u8, Vec<u8>) {
        let mut out = BytesMut::new();
        let status = answer(lazy, a, text, &mut out);
        (status, out.to_vec())
    }

    #[test]
    fn begin_then_commit_leaves_no_transaction() {
        let mut lazy = None;
        let (status, out) = answered(
            &mut lazy,
            Answer::Begin { read_only: true },
            "START TRANSACTION READ ONLY",
        );
        assert_eq!(status, status::IN_TRANSACTION);
        assert!(
            out.windows(18).any(|w| w == b"START TRANSACTION\0"),
            "{out:?}"
        );
        assert_eq!(
            lazy.as_ref().map(|l| l.begin.as_str()),
            Some("START TRANSACTION READ ONLY")
        );
        assert!(lazy.as_ref().is_some_and(|l| l.state.read_only));
        let (status, out) = answered(&mut lazy, Answer::Commit { chain: false }, "COMMIT");
        assert_eq!(status, status::IDLE);
        assert!(out.ends_with(b"COMMIT\0"));
        assert_eq!(lazy, None);
    }

    #[test]
    fn and_chain_begins_a_fresh_transaction_like_the_last() {
        let mut lazy = None;
        answered(
            &mut lazy,
            Answer::Begin { read_only: true },
            "BEGIN READ ONLY",
        );
        if let Some(l) = &mut lazy {
            l.state.ran = true;
            l.state.failed = true;
        }
        let (status, out) = answered(
            &mut lazy,
            Answer::Rollback { chain: true },
            "ROLLBACK AND CHAIN",
        );
        assert_eq!(status, status::IN_TRANSACTION);
        assert!(out.ends_with(b"ROLLBACK\0"));
        let state = lazy.expect("still in a transaction").state;
        assert!(state.read_only && !state.ran && !state.failed);
    }

    #[test]
    fn errors_fail_the_transaction_with_postgresql_codes() {
        let mut lazy = None;
        answered(&mut lazy, Answer::Begin { read_only: false }, "begin");
        let (status, out) = answered(
            &mut lazy,
            Answer::TooLate(TooLate::Isolation),
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        );
        assert_eq!(status, status::FAILED);
        assert!(out.windows(6).any(|w| w == b"C25001"));
        assert!(lazy.as_ref().is_some_and(|l| l.state.failed));
        let (status, out) = answered(&mut lazy, Answer::Aborted, "select 1");
        assert_eq!(status, status::FAILED);
        assert!(out.windows(6).any(|w| w == b"C25P02"));
        let (_, out) = answered(&mut lazy, Answer::NoSavepoint, "ROLLBACK TO a");
        assert!(out.windows(6).any(|w| w == b"C3B001"));
        assert!(out
            .windows(28)
            .any(|w| w == b"savepoint \"a\" does not exist"));
    }

    #[test]
    fn begin_inside_a_transaction_warns_and_keeps_it() {
        let mut lazy = None;
        answered(&mut lazy, Answer::Begin { read_only: false }, "BEGIN");
        let before = lazy.clone();
        let (status, out) = answered(&mut lazy, Answer::AlreadyInTransaction, "BEGIN");
        assert_eq!(status, status::IN_TRANSACTION);
        assert_eq!(out[0], b'N');
        assert_eq!(lazy, before);
    }

    #[test]
    fn savepoint_names_fold_as_postgresql_does() {
        assert_eq!(savepoint_name("ROLLBACK TO SAVEPOINT Sp1;"), "sp1");
        assert_eq!(savepoint_name("rollback to \"Sp1\""), "Sp1");
    }

    #[test]
    fn warnings_are_notices_of_severity_warning() {
        let mut out = BytesMut::new();
        warning(
            "25001",
            "there is already a transaction in progress",
            &mut out,
        );
        assert_eq!(out[0], b'N');
        assert!(crate::protocol::body(&out).starts_with(b"SWARNING\0VWARNING\0C25001\0M"));
        assert_eq!(
            out.len() - 1,
            u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize
        );
    }
}

/// The tag of a BEGIN: PostgreSQL answers START TRANSACTION with its own.
fn begin_tag(text: &str) -> &'static str {
    let first = text
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next();
    match first {
        Some(word) if word.eq_ignore_ascii_case("start") => "START TRANSACTION",
        _ => "BEGIN",
    }
}
