//! pgsplit as the client of a SCRAM-SHA-256 exchange with a server, proving
//! the ClientKey a client proved to pgsplit (pass-through) instead of
//! deriving it from a password: postgres-protocol's client needs the
//! password, which pgsplit then never has. The server must hold the same
//! verifier (salt and iteration count) the client was checked against, as
//! it does when the verifier came from its own pg_authid. No I/O.

use crate::protocol::scram::{self as message, CbindFlag, ServerFinal, ServerFirst};
use crate::secret::scram::{self as keys, ScramKeys};

use super::ServerError;

/// Bytes of randomness in the client nonce (libpq's 18).
const NONCE_LEN: usize = 18;

/// An exchange in progress.
#[derive(Debug)]
pub struct KeyedScram {
    keys: ScramKeys,
    cbind: CbindFlag,
    binding_data: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    /// The AuthMessage once the server's challenge came, for checking its
    /// signature.
    auth_message: Option<Vec<u8>>,
}

impl KeyedScram {
    /// Starts an exchange with the channel binding `handshake` chose
    /// (`binding_data`: the server certificate's hash, with
    /// `CbindFlag::TlsServerEndPoint`).
    pub fn new(keys: ScramKeys, cbind: CbindFlag, binding_data: Vec<u8>) -> KeyedScram {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let client_nonce = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(nonce)
        };
        KeyedScram {
            keys,
            cbind,
            binding_data,
            client_first_bare: format!("n=,r={client_nonce}"),
            client_nonce,
            auth_message: None,
        }
    }

    /// The client-first-message.
    pub fn client_first(&self) -> String {
        format!(
            "{}{}",
            message::gs2_header(self.cbind),
            self.client_first_bare
        )
    }

    /// Answers the server-first-message with the client-final-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ServerError> {
        let first = ServerFirst::parse(server_first).map_err(scram_error)?;
        if !first.nonce.starts_with(self.client_nonce.as_bytes()) {
            return Err(ServerError::Protocol(
                "the server's SCRAM nonce does not extend pgsplit's".into(),
            ));
        }
        let verifier = &self.keys.verifier;
        if first.salt != verifier.salt || first.iterations != verifier.iterations {
            // The server's verifier is not the one the client proved its
            // key against: its password changed since, or differs here.
            return Err(ServerError::PassThrough(
                "the server's SCRAM salt differs from the verifier the client was checked against (has the password changed?)",
            ));
        }
        let binding = message::channel_binding_attr(self.cbind, &self.binding_data);
        let mut last = message::client_final_without_proof(&binding, first.nonce);
        let auth_message =
            keys::auth_message(self.client_first_bare.as_bytes(), server_first, &last);
        let signature = keys::client_signature(&verifier.stored_key, &auth_message);
        let proof = keys::xor(&self.keys.client_key, &signature);
        last.extend_from_slice(message::proof_attr(&proof).as_bytes());
        self.auth_message = Some(auth_message);
        Ok(last)
    }

    /// Checks the server-final-message: the server proves it knows the
    /// ServerKey, so it holds the verifier and is no impostor.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ServerError> {
        let auth_message = self.auth_message.as_deref().ok_or_else(|| {
            ServerError::Protocol("SCRAM final message before the challenge".into())
        })?;
        match ServerFinal::parse(server_final).map_err(scram_error)? {
            ServerFinal::Error(e) => Err(ServerError::Protocol(format!(
                "the server refused the SCRAM proof: {}",
                String::from_utf8_lossy(e)
            ))),
            ServerFinal::Verifier(signature) => {
                let expected = keys::server_signature(&self.keys.verifier.server_key, auth_message);
                if crate::secret::same(&signature, &expected) {
                    Ok(())
                } else {
                    Err(ServerError::Protocol(
                        "the server's SCRAM signature is wrong".into(),
                    ))
                }
            }
        }
    }
}

fn scram_error(e: crate::protocol::scram::ScramError) -> ServerError {
    ServerError::Protocol(format!("{e} from the server"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::scram::{ScramServer, Verdict, SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
    use crate::secret::Verifier;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// A client logs in to pgsplit with its password; pgsplit recovers its
    /// key and logs in with it to a server holding the same verifier.
    fn keys_from_a_client_login(verifier: &Verifier) -> ScramKeys {
        let mut client = ScramSha256::new(b"secret", ChannelBinding::unsupported());
        let server =
            ScramServer::new(SCRAM_SHA_256.as_bytes(), None, verifier.clone(), false).unwrap();
        let challenged = server.first(client.message()).unwrap();
        client.update(challenged.message()).unwrap();
        match challenged.finish(client.message()).unwrap() {
            Verdict::Proved { client_key, .. } => ScramKeys {
                verifier: verifier.clone(),
                client_key,
            },
            Verdict::Refused => panic!("refused"),
        }
    }

    /// Runs pgsplit's keyed client against pgsplit's server (which checks
    /// as PostgreSQL does) holding `server_verifier`.
    fn log_in(
        keys: ScramKeys,
        server_verifier: Verifier,
        binding: Option<&[u8]>,
    ) -> Result<Verdict, String> {
        let (cbind, mechanism) = match binding {
            Some(_) => (CbindFlag::TlsServerEndPoint, SCRAM_SHA_256_PLUS),
            None => (CbindFlag::No, SCRAM_SHA_256),
        };
        let data = binding.map(<[u8]>::to_vec).unwrap_or_default();
        let mut client = KeyedScram::new(keys, cbind, data);
        let server = ScramServer::new(mechanism.as_bytes(), binding, server_verifier, false)
            .map_err(|e| e.to_string())?;
        let challenged = server
            .first(client.client_first().as_bytes())
            .map_err(|e| e.to_string())?;
        let last = client
            .client_final(challenged.message())
            .map_err(|e| e.to_string())?;
        let verdict = challenged.finish(&last).map_err(|e| e.to_string())?;
        if let Verdict::Proved { server_final, .. } = &verdict {
            client
                .verify(server_final.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(verdict)
    }

    #[test]
    fn a_proved_key_logs_in_without_the_password() {
        let verifier = Verifier::from_password("secret").unwrap();
        let keys = keys_from_a_client_login(&verifier);
        assert!(matches!(
            log_in(keys.clone(), verifier.clone(), None),
            Ok(Verdict::Proved { .. })
        ));
        // Over TLS it binds to the server's certificate.
        let hash = [5u8; 32];
        let client = KeyedScram::new(keys.clone(), CbindFlag::TlsServerEndPoint, hash.to_vec());
        assert!(client
            .client_first()
            .starts_with("p=tls-server-end-point,,"));
        assert!(matches!(
            log_in(keys, verifier, Some(&hash)),
            Ok(Verdict::Proved { .. })
        ));
    }

    #[test]
    fn a_server_with_another_verifier_is_not_tried() {
        let verifier = Verifier::from_password("secret").unwrap();
        let keys = keys_from_a_client_login(&verifier);
        // Same password, new salt: as after ALTER ROLE ... PASSWORD.
        let changed = Verifier::from_password("secret").unwrap();
        let e = log_in(keys, changed, None).unwrap_err();
        assert!(e.contains("salt differs"), "{e}");
    }

    #[test]
    fn an_impostor_server_is_found_out() {
        let verifier = Verifier::from_password("secret").unwrap();
        let keys = keys_from_a_client_login(&verifier);
        let mut client = KeyedScram::new(keys, CbindFlag::No, Vec::new());
        let nonce = client.client_first()["n,,n=,r=".len()..].to_string();
        let server_first = format!("r={nonce}xyz,s={},i=4096", verifier.salt_base64());
        client.client_final(server_first.as_bytes()).unwrap();
        let forged = message::server_final(&[0; 32]);
        assert!(client.verify(forged.as_bytes()).is_err());
        assert!(client.verify(b"e=other-error").is_err());
        // A nonce that is not an extension of pgsplit's.
        let keys = keys_from_a_client_login(&verifier);
        let mut client = KeyedScram::new(keys, CbindFlag::No, Vec::new());
        let other = format!("r=zzz,s={},i=4096", verifier.salt_base64());
        assert!(client.client_final(other.as_bytes()).is_err());
    }
}
