//! PostgreSQL's md5 password method: the stored hash is `md5` +
//! md5(password || user) in hex, and the answer to a challenge with a
//! 4-byte salt is `md5` + md5(hex digits of the hash || salt). So the hash
//! alone both checks a client and answers a server, as PgBouncer uses it.

use md5::{Digest, Md5};

const PREFIX: &str = "md5";
/// "md5" and 32 hex digits.
const HASH_LEN: usize = 35;

/// Whether `text` is an md5 hash as PostgreSQL recognises one (`md5` and 32
/// lower-case hex digits; anything else is a plain password).
pub fn is_hash(text: &str) -> bool {
    text.len() == HASH_LEN
        && text.starts_with(PREFIX)
        && text[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hash PostgreSQL stores for `password` of `user`.
pub fn hash(password: &str, user: &str) -> String {
    postgres_protocol::password::md5(password.as_bytes(), user)
}

/// What answers the challenge `salt` for the stored `hash`.
pub fn answer(hash: &str, salt: [u8; 4]) -> String {
    let digits = hash.strip_prefix(PREFIX).unwrap_or(hash);
    let mut md5 = Md5::new();
    md5.update(digits.as_bytes());
    md5.update(salt);
    format!("{PREFIX}{}", hex::encode(md5.finalize()))
}

/// Whether a client's `answer` to `salt` is right for `hash` (compared in
/// constant time).
pub fn matches(hash: &str, salt: [u8; 4], answer_sent: &[u8]) -> bool {
    super::same(answer(hash, salt).as_bytes(), answer_sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_libpq_computes_them_from_the_password() {
        let stored = hash("secret", "alice");
        assert!(is_hash(&stored));
        let salt = [1, 2, 3, 4];
        let libpq = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        assert_eq!(answer(&stored, salt), libpq);
        // "md5" + md5(md5(password + user) + salt), as libpq sends it.
        assert_eq!(libpq, "md598a0412b9c31436fc53776e863350083");
        assert!(matches(&stored, salt, libpq.as_bytes()));
        assert!(!matches(&stored, [4, 3, 2, 1], libpq.as_bytes()));
        assert!(!matches(&hash("secret", "bob"), salt, libpq.as_bytes()));
        assert!(!matches(&stored, salt, b""));
    }
}
