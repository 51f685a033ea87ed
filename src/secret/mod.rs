//! What a user's password is kept as (a `[[users]]` password, or the
//! `passwd` auth_query returns), and the md5 and SCRAM-SHA-256 computations
//! that check a client against it or log in to a server with it. No I/O:
//! the exchanges are `client::auth` (pgsplit as the server) and
//! `server::handshake` (pgsplit as the client).

pub mod md5;
pub mod scram;

pub use scram::{ScramKeys, Verifier};

/// A password as pgsplit keeps it, told apart as PostgreSQL tells apart
/// what `pg_authid.rolpassword` holds.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself: checks md5 and SCRAM clients, and logs in to
    /// servers with any method.
    Plain(String),
    /// `md5` and 32 hex digits: md5(password || user), as PostgreSQL stores
    /// it. Checks md5 clients, and answers a server's md5 request.
    Md5(String),
    /// A SCRAM-SHA-256 verifier: checks SCRAM clients; servers are then
    /// logged in to with the keys the client proved (pass-through).
    Scram(Verifier),
}

/// Why a configured password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the password is empty")]
    Empty,
    #[error(
        "not a valid SCRAM-SHA-256 verifier ({0}); the form is \
         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as pg_authid keeps it"
    )]
    BadVerifier(&'static str),
}

impl Secret {
    /// Reads a password as PostgreSQL reads `rolpassword`: a verifier
    /// (`SCRAM-SHA-256$...`), an md5 hash (`md5` and 32 lower-case hex
    /// digits), otherwise plain text. Unlike PostgreSQL, a text that starts
    /// like a verifier but is not one is refused rather than taken as a
    /// password: it is a verifier pasted wrong.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        if text.is_empty() {
            Err(SecretError::Empty)
        } else if text.starts_with(scram::VERIFIER_PREFIX) {
            Verifier::parse(text).map(Secret::Scram)
        } else if md5::is_hash(text) {
            Ok(Secret::Md5(text.to_string()))
        } else {
            Ok(Secret::Plain(text.to_string()))
        }
    }

    /// The password itself, when this is one.
    pub fn plain(&self) -> Option<&str> {
        match self {
            Secret::Plain(password) => Some(password),
            _ => None,
        }
    }

    /// Its kind, for logs: never the secret itself.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Plain(_) => "password",
            Secret::Md5(_) => "md5 hash",
            Secret::Scram(_) => "SCRAM verifier",
        }
    }
}

/// Never prints the secret: configurations and errors are logged.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.kind())
    }
}

/// Equality in constant time, for answers and keys a client sends.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_told_apart_as_postgresql_does() {
        assert_eq!(Secret::parse(""), Err(SecretError::Empty));
        assert_eq!(Secret::parse("secret"), Ok(Secret::Plain("secret".into())));
        let hash = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(Secret::parse(hash), Ok(Secret::Md5(hash.into())));
        // Upper case or the wrong length: a password, as in PostgreSQL.
        for plain in ["md5A3556571E93B0D20722BA62BE61E8C2D", "md5abc"] {
            assert_eq!(Secret::parse(plain), Ok(Secret::Plain(plain.into())));
        }
        let verifier = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
                        9Ky+4m9ht0UyjhDQE0H8D9R0s/sp0Vd8Ubuck5BSIUg=:\
                        s2IVN9EsgSBD4qyZBuSdNP2YEkpqjIe5o3tA1Sk2Z6I=";
        assert!(matches!(Secret::parse(verifier), Ok(Secret::Scram(_))));
        assert!(matches!(
            Secret::parse("SCRAM-SHA-256$4096:salt"),
            Err(SecretError::BadVerifier(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Secret::parse("hunter2").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
