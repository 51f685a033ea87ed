//! What pgsplit checks client passwords against: per configured user, an
//! md5 hash and a SCRAM verifier derived once per configuration generation
//! (SCRAM's key derivation is deliberately slow), or the hash or verifier
//! the configuration gives; and the mock verifiers that make an unknown
//! user's exchange look like any other. No I/O: the exchange with the
//! client is `client::auth`'s, lookups on the primary `auth_query`'s.

use crate::config::{Config, User};
use crate::secret::scram::Key;
use crate::secret::{md5, Secret, SecretError, Verifier};
use crate::server::Credential;
use std::collections::HashMap;
use std::sync::Arc;

/// The configured users' secrets, by user name.
pub struct Credentials {
    users: HashMap<String, Arc<Stored>>,
    /// The per-process secret mock verifiers are derived from.
    mock_secret: Key,
}

/// One user's secret as client authentication checks it.
pub struct Stored {
    /// Checks md5 answers.
    pub md5: Option<String>,
    /// Checks SCRAM proofs.
    pub scram: Option<Verifier>,
    /// pgsplit has no password of this user, only a hash or verifier: what
    /// the client proves is what logs in to the servers (pass-through).
    pub pass_through: bool,
}

impl Stored {
    /// What checks `user`'s clients against `secret`: a password checks
    /// both methods (its verifier gets a fresh salt), a hash or verifier
    /// its own method only.
    pub fn new(user: &str, secret: &Secret) -> Result<Stored, SecretError> {
        Ok(match secret {
            Secret::Plain(password) => Stored {
                md5: Some(md5::hash(password, user)),
                scram: Some(Verifier::from_password(password)?),
                pass_through: false,
            },
            Secret::Md5(hash) => Stored {
                md5: Some(hash.clone()),
                scram: None,
                pass_through: true,
            },
            Secret::Scram(verifier) => Stored {
                md5: None,
                scram: Some(verifier.clone()),
                pass_through: true,
            },
        })
    }
}

impl Credentials {
    /// The secrets of `users` (validated: an entry that does not parse is
    /// left out, and its clients are refused as unknown).
    pub fn new(users: &[User], mock_secret: Key) -> Credentials {
        let users = users
            .iter()
            .filter_map(|u| {
                let stored = Secret::parse(&u.password).and_then(|s| Stored::new(&u.name, &s));
                match stored {
                    Ok(stored) => Some((u.name.clone(), Arc::new(stored))),
                    Err(error) => {
                        tracing::error!(user = %u.name, %error, "user left out: its password cannot be used");
                        None
                    }
                }
            })
            .collect();
        Credentials { users, mock_secret }
    }

    /// The secret of `user`; `None` when no such user is configured.
    pub fn get(&self, user: &str) -> Option<Arc<Stored>> {
        self.users.get(user).cloned()
    }

    /// The verifier an exchange that must fail runs with (see
    /// `Verifier::mock`).
    pub fn mock_verifier(&self, user: &str) -> Verifier {
        Verifier::mock(user, &self.mock_secret)
    }
}

/// What the configuration gives for logging in to the servers, per user:
/// passwords and md5 hashes of `[[users]]`, and auth_user's. (A verifier
/// logs in with the keys its clients prove: nothing to give here.)
pub fn configured_logins(config: &Config) -> Vec<(String, Credential)> {
    let credential = |secret: Secret| match secret {
        Secret::Plain(password) => Some(Credential::Password(password)),
        Secret::Md5(hash) => Some(Credential::Md5Hash(hash)),
        Secret::Scram(_) => None,
    };
    let users = config.users.iter().filter_map(|u| {
        let secret = Secret::parse(&u.password).ok()?;
        Some((u.name.clone(), credential(secret)?))
    });
    let auth_user = config
        .auth_user
        .clone()
        .zip(config.auth_user_secret().and_then(credential));
    users.chain(auth_user).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str) -> User {
        User {
            name: name.into(),
            password: password.into(),
        }
    }

    #[test]
    fn a_password_checks_both_methods_a_hash_or_verifier_its_own() {
        let hash = md5::hash("secret", "hashed");
        let verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
            WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
            wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
        let credentials = Credentials::new(
            &[
                user("plain", "secret"),
                user("hashed", &hash),
                user("verified", verifier),
            ],
            [0; 32],
        );
        assert!(credentials.get("bob").is_none());
        let plain = credentials.get("plain").unwrap();
        assert_eq!(
            plain.md5.as_deref(),
            Some(md5::hash("secret", "plain").as_str())
        );
        assert!(plain.scram.is_some() && !plain.pass_through);
        let hashed = credentials.get("hashed").unwrap();
        assert_eq!(
            (hashed.md5.as_deref(), hashed.scram.is_none()),
            (Some(hash.as_str()), true)
        );
        assert!(hashed.pass_through);
        let verified = credentials.get("verified").unwrap();
        assert!(verified.md5.is_none() && verified.scram.is_some() && verified.pass_through);
    }

    #[test]
    fn servers_are_logged_in_to_with_passwords_and_hashes_from_the_config() {
        let config = Config {
            users: vec![
                user("plain", "secret"),
                user("hashed", "md5a3556571e93b0d20722ba62be61e8c2d"),
                user("verified", "SCRAM-SHA-256$4096:c2FsdA==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="),
            ],
            auth_user: Some("lookup".into()),
            auth_password: Some("pw".into()),
            ..Config::default()
        };
        assert_eq!(
            configured_logins(&config),
            vec![
                ("plain".into(), Credential::Password("secret".into())),
                (
                    "hashed".into(),
                    Credential::Md5Hash("md5a3556571e93b0d20722ba62be61e8c2d".into())
                ),
                ("lookup".into(), Credential::Password("pw".into())),
            ]
        );
    }
}
