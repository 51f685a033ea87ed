//! SCRAM-SHA-256's keys (RFC 5802 section 3, RFC 7677) and the verifier
//! PostgreSQL keeps: HMAC and SHA-256 from the sha2/hmac crates, the
//! password's key derivation from postgres-protocol. Both sides of an
//! exchange use these: `client::scram` checks a client's proof and recovers
//! its ClientKey; `server::scram` proves that ClientKey to a server.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::SecretError;

/// SHA-256's output: every SCRAM key, signature and proof.
pub const KEY_LEN: usize = 32;
pub type Key = [u8; KEY_LEN];

pub const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";
/// PostgreSQL's default iteration count and salt length, which a mock
/// verifier copies so that it looks like a real one.
const DEFAULT_ITERATIONS: u32 = 4096;
const DEFAULT_SALT_LEN: usize = 16;

/// A SCRAM-SHA-256 verifier: checks a client's proof without the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Key,
    pub server_key: Key,
}

/// The keys a client proved in a SCRAM exchange: with its ClientKey pgsplit
/// can log in to a server holding the same verifier as that client would,
/// without its password (pass-through, as PgBouncer does).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub verifier: Verifier,
    pub client_key: Key,
}

impl Verifier {
    /// Reads `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (salt and keys in base64), as `pg_authid.rolpassword` has it.
    pub fn parse(text: &str) -> Result<Verifier, SecretError> {
        let bad = SecretError::BadVerifier;
        let rest = text
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or(bad("no SCRAM-SHA-256$ prefix"))?;
        let (iterations_salt, keys) = rest.split_once('$').ok_or(bad("no '$' before the keys"))?;
        let (iterations, salt) = iterations_salt
            .split_once(':')
            .ok_or(bad("no ':' between iterations and salt"))?;
        let (stored_key, server_key) =
            keys.split_once(':').ok_or(bad("no ':' between the keys"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .ok_or(bad("the iteration count is not a positive number"))?;
        let salt = BASE64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(bad("the salt is not base64"))?;
        Ok(Verifier {
            iterations,
            salt,
            stored_key: decode_key(stored_key).ok_or(bad("StoredKey is not 32 bytes of base64"))?,
            server_key: decode_key(server_key).ok_or(bad("ServerKey is not 32 bytes of base64"))?,
        })
    }

    /// The verifier of `password` with a fresh random salt, as PostgreSQL
    /// makes one for `ALTER ROLE ... PASSWORD` (SASLprep, 4096 iterations;
    /// postgres-protocol's).
    pub fn from_password(password: &str) -> Result<Verifier, SecretError> {
        Verifier::parse(&postgres_protocol::password::scram_sha_256(
            password.as_bytes(),
        ))
    }

    /// A verifier for a user that cannot log in (unknown, or no SCRAM
    /// secret), so that the exchange runs as for any user and fails only
    /// at the end, as PostgreSQL's mock authentication does. Its salt is
    /// derived from the user name and a per-process `secret`, so repeated
    /// attempts for one name see the same salt, as for a real user; no
    /// proof matches its keys.
    pub fn mock(user: &str, secret: &Key) -> Verifier {
        let salt = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update(secret)
            .finalize();
        Verifier {
            iterations: DEFAULT_ITERATIONS,
            salt: salt[..DEFAULT_SALT_LEN].to_vec(),
            stored_key: hmac(secret, &[b"mock StoredKey ", user.as_bytes()]),
            server_key: hmac(secret, &[b"mock ServerKey ", user.as_bytes()]),
        }
    }

    /// The salt as the server-first-message carries it.
    pub fn salt_base64(&self) -> String {
        BASE64.encode(&self.salt)
    }

    /// Whether `client_key` hashes to this StoredKey (in constant time).
    pub fn accepts(&self, client_key: &Key) -> bool {
        super::same(&sha256(client_key), &self.stored_key)
    }
}

/// Never prints keys.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier(iterations {})", self.iterations)
    }
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeys({:?})", self.verifier)
    }
}

/// The AuthMessage both signatures sign: client-first-message-bare,
/// server-first-message and client-final-message-without-proof, joined by
/// commas.
pub fn auth_message(
    client_first_bare: &[u8],
    server_first: &[u8],
    final_without_proof: &[u8],
) -> Vec<u8> {
    [client_first_bare, server_first, final_without_proof].join(&b","[..])
}

/// ClientSignature = HMAC(StoredKey, AuthMessage).
pub fn client_signature(stored_key: &Key, auth_message: &[u8]) -> Key {
    hmac(stored_key, &[auth_message])
}

/// ServerSignature = HMAC(ServerKey, AuthMessage).
pub fn server_signature(server_key: &Key, auth_message: &[u8]) -> Key {
    hmac(server_key, &[auth_message])
}

/// ClientProof = ClientKey XOR ClientSignature; and, the other way round,
/// the ClientKey a proof was made with = ClientProof XOR ClientSignature.
pub fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

fn decode_key(text: &str) -> Option<Key> {
    BASE64.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677's example, as PostgreSQL's verifier of password "pencil"
    // with salt W22ZaJ0SNY7soEsUEjb6gQ== would read.
    const PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
        wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn a_verifier_checks_the_rfc_7677_proof() {
        let v = Verifier::parse(PENCIL).unwrap();
        assert_eq!(v.iterations, 4096);
        let client_first_bare = b"n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let message = auth_message(client_first_bare, server_first, without_proof);
        let proof: Key = BASE64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap()
            .try_into()
            .unwrap();
        let client_key = xor(&proof, &client_signature(&v.stored_key, &message));
        assert!(v.accepts(&client_key));
        assert!(!v.accepts(&xor(&proof, &[1; KEY_LEN])));
        assert_eq!(
            BASE64.encode(server_signature(&v.server_key, &message)),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_password_makes_a_verifier_its_proofs_match() {
        let v = Verifier::from_password("secret").unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        assert_ne!(v, Verifier::from_password("secret").unwrap(), "fresh salt");
    }

    #[test]
    fn malformed_verifiers_say_what_is_wrong() {
        for (text, why) in [
            ("SCRAM-SHA-256$4096:c2FsdA==", "no '$' before the keys"),
            (
                "SCRAM-SHA-256$0:c2FsdA==$a:b",
                "the iteration count is not a positive number",
            ),
            ("SCRAM-SHA-256$4096:!!$a:b", "the salt is not base64"),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==",
                "StoredKey is not 32 bytes of base64",
            ),
        ] {
            assert_eq!(
                Verifier::parse(text),
                Err(SecretError::BadVerifier(why)),
                "{text}"
            );
        }
    }

    #[test]
    fn a_mock_verifier_is_the_same_for_a_name_and_differs_between_names() {
        let secret = [7; KEY_LEN];
        let a = Verifier::mock("ghost", &secret);
        assert_eq!(a, Verifier::mock("ghost", &secret));
        assert_ne!(a.salt, Verifier::mock("other", &secret).salt);
        assert_ne!(a.salt, Verifier::mock("ghost", &[8; KEY_LEN]).salt);
        assert_eq!((a.iterations, a.salt.len()), (4096, 16));
    }
}
