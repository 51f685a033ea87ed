//! What pgsplit checks client passwords against: a verifier per configured
//! user, derived once per configuration generation (SCRAM's key derivation
//! is deliberately slow). No I/O: the exchange with the client is
//! `client::auth`'s.

use crate::config::User;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};
use std::collections::HashMap;

const SCRAM_ITERATIONS: usize = 4096;

/// The configured users' password verifiers, by user name.
pub struct Credentials {
    users: HashMap<String, UserSecrets>,
}

/// One user's password, and its SCRAM-SHA-256 salt and salted password.
pub struct UserSecrets {
    password: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

impl Credentials {
    pub fn new(users: &[User]) -> Credentials {
        let users = users
            .iter()
            .map(|u| {
                let salt: [u8; 16] = rand::random();
                let salted_password = gen_salted_password(&u.password, &salt, SCRAM_ITERATIONS);
                let secrets = UserSecrets {
                    password: u.password.clone(),
                    salt: salt.to_vec(),
                    salted_password,
                };
                (u.name.clone(), secrets)
            })
            .collect();
        Credentials { users }
    }

    /// The verifier of `user`; `None` when no such user is configured.
    pub fn get(&self, user: &str) -> Option<&UserSecrets> {
        self.users.get(user)
    }
}

impl UserSecrets {
    /// Whether `answer` is the md5 password message `user` must send for
    /// the challenge `salt`.
    pub fn md5_matches(&self, user: &str, salt: [u8; 4], answer: &str) -> bool {
        let expected = postgres_protocol::authentication::md5_hash(
            user.as_bytes(),
            self.password.as_bytes(),
            salt,
        );
        answer == expected
    }

    /// What pgwire's SCRAM server checks the client's proof against.
    pub fn scram_secret(&self) -> ScramSecret {
        ScramSecret::SaltedPassword {
            salt: self.salt.clone(),
            salted_password: self.salted_password.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_answers_are_checked_as_postgresql_computes_them() {
        let users = [User {
            name: "alice".into(),
            password: "secret".into(),
        }];
        let credentials = Credentials::new(&users);
        assert!(credentials.get("bob").is_none());
        let alice = credentials.get("alice").unwrap();
        // "md5" + md5(md5(password + user) + salt), as libpq sends it.
        let answer = "md598a0412b9c31436fc53776e863350083";
        assert!(alice.md5_matches("alice", [1, 2, 3, 4], answer));
        assert!(!alice.md5_matches("alice", [4, 3, 2, 1], answer));
        assert!(!alice.md5_matches("bob", [1, 2, 3, 4], answer));
    }
}
