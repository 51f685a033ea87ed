//! A server login after the StartupMessage, as a state machine without
//! I/O: each message the server sends goes in, and out comes what to send
//! back or what was learned (a parameter, the cancel key, the end). The
//! server's authentication requests are answered from the user's
//! credential: a password (SCRAM through postgres-protocol), an md5 hash
//! (answered directly), or a client's proved SCRAM keys (`scram`). `login`
//! moves the bytes.

use super::credential::Credential;
use super::scram::KeyedScram;
use super::ServerError;
use crate::protocol::login::{self, LoginMessage};
use crate::protocol::scram::CbindFlag;
use crate::secret::md5;
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::frontend;
use std::sync::Arc;

/// What to do after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes to the server.
    Send(BytesMut),
    /// Nothing to do: read on.
    Read,
    /// A ParameterStatus of the login.
    Parameter(String, String),
    /// The BackendKeyData, for cancel requests.
    CancelKey { pid: i32, secret: i32 },
    /// ReadyForQuery: logged in.
    Ready,
}

/// One login's exchange.
pub struct Handshake {
    user: String,
    credential: Option<Arc<Credential>>,
    channel: Channel,
    sasl: Sasl,
}

/// Where a SASL exchange stands.
enum Sasl {
    NotStarted,
    Password(Box<ScramSha256>),
    Keys(Box<KeyedScram>),
    /// The server proved itself (SASLFinal checked).
    Done,
    /// A step failed: the exchange cannot succeed any more.
    Failed,
}

impl Handshake {
    pub fn new(user: &str, credential: Option<Arc<Credential>>, channel: Channel) -> Handshake {
        Handshake {
            user: user.to_string(),
            credential,
            channel,
            sasl: Sasl::NotStarted,
        }
    }

    /// Takes the server's message `tag` with `body`; an ErrorResponse
    /// becomes `ServerError::Refused`.
    pub fn on_message(&mut self, tag: u8, body: &[u8]) -> Result<Step, ServerError> {
        Ok(match login::decode(tag, body)? {
            LoginMessage::AuthenticationOk => {
                if matches!(self.sasl, Sasl::Password(_) | Sasl::Keys(_) | Sasl::Failed) {
                    // A server that skips SCRAM's last step never proved
                    // it knows the verifier.
                    return Err(ServerError::Protocol(
                        "the server ended SCRAM without its signature".into(),
                    ));
                }
                Step::Read
            }
            LoginMessage::CleartextPassword => Step::Send(self.cleartext()?),
            LoginMessage::Md5Password { salt } => Step::Send(self.md5(salt)?),
            LoginMessage::Sasl { mechanisms } => Step::Send(self.start_sasl(&mechanisms)?),
            LoginMessage::SaslContinue(data) => Step::Send(self.continue_sasl(data)?),
            LoginMessage::SaslFinal(data) => {
                self.finish_sasl(data)?;
                Step::Read
            }
            LoginMessage::OtherAuthentication(_) => {
                return Err(ServerError::UnsupportedAuth("Kerberos, GSS or SSPI"))
            }
            LoginMessage::ParameterStatus { name, value } => Step::Parameter(
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ),
            LoginMessage::BackendKeyData { pid, secret } => Step::CancelKey { pid, secret },
            LoginMessage::ReadyForQuery => Step::Ready,
            LoginMessage::Error(body) => return Err(ServerError::from_error_body(body)),
            LoginMessage::Other(_) => Step::Read,
        })
    }

    fn credential(&self) -> Result<&Credential, ServerError> {
        self.credential
            .as_deref()
            .ok_or_else(|| ServerError::NoPassword(self.user.clone()))
    }

    fn cannot(&self, method: &'static str) -> ServerError {
        ServerError::CannotAnswer {
            user: self.user.clone(),
            method,
            have: self
                .credential
                .as_deref()
                .map_or("nothing", Credential::kind),
        }
    }

    fn cleartext(&self) -> Result<BytesMut, ServerError> {
        let Credential::Password(password) = self.credential()? else {
            return Err(self.cannot("a cleartext password"));
        };
        let mut out = BytesMut::new();
        frontend::password_message(password.as_bytes(), &mut out)?;
        Ok(out)
    }

    fn md5(&self, salt: [u8; 4]) -> Result<BytesMut, ServerError> {
        let answer = match self.credential()? {
            Credential::Password(password) => md5::answer(&md5::hash(password, &self.user), salt),
            Credential::Md5Hash(hash) => md5::answer(hash, salt),
            Credential::Scram(_) => return Err(self.cannot("md5")),
        };
        let mut out = BytesMut::new();
        frontend::password_message(answer.as_bytes(), &mut out)?;
        Ok(out)
    }

    fn start_sasl(&mut self, mechanisms: &[&[u8]]) -> Result<BytesMut, ServerError> {
        if !matches!(self.sasl, Sasl::NotStarted) {
            return Err(ServerError::Protocol("a second SASL request".into()));
        }
        let offers = |name: &str| mechanisms.iter().any(|m| *m == name.as_bytes());
        let binding = Binding::choose(&self.channel, offers(SCRAM_SHA_256_PLUS));
        if !offers(SCRAM_SHA_256) && binding.mechanism() != SCRAM_SHA_256_PLUS {
            return Err(ServerError::UnsupportedAuth("SASL without SCRAM-SHA-256"));
        }
        let mechanism = binding.mechanism();
        let mut out = BytesMut::new();
        match self.credential()? {
            Credential::Password(password) => {
                let scram = ScramSha256::new(password.as_bytes(), binding.for_password());
                frontend::sasl_initial_response(mechanism, scram.message(), &mut out)?;
                self.sasl = Sasl::Password(Box::new(scram));
            }
            Credential::Scram(keys) => {
                let (flag, data) = binding.for_keys();
                let scram = KeyedScram::new(keys.clone(), flag, data);
                let first = scram.client_first();
                frontend::sasl_initial_response(mechanism, first.as_bytes(), &mut out)?;
                self.sasl = Sasl::Keys(Box::new(scram));
            }
            Credential::Md5Hash(_) => return Err(self.cannot("SCRAM-SHA-256")),
        }
        Ok(out)
    }

    fn continue_sasl(&mut self, data: &[u8]) -> Result<BytesMut, ServerError> {
        let mut out = BytesMut::new();
        // Taken out while it runs: after an error the exchange has failed
        // (postgres-protocol's client panics if asked for its message then).
        match std::mem::replace(&mut self.sasl, Sasl::Failed) {
            Sasl::Password(mut scram) => {
                scram.update(data)?;
                frontend::sasl_response(scram.message(), &mut out)?;
                self.sasl = Sasl::Password(scram);
            }
            Sasl::Keys(mut scram) => {
                frontend::sasl_response(&scram.client_final(data)?, &mut out)?;
                self.sasl = Sasl::Keys(scram);
            }
            other @ (Sasl::NotStarted | Sasl::Done | Sasl::Failed) => {
                self.sasl = other;
                return Err(ServerError::Protocol(
                    "SASL continue outside an exchange".into(),
                ));
            }
        }
        Ok(out)
    }

    fn finish_sasl(&mut self, data: &[u8]) -> Result<(), ServerError> {
        match std::mem::replace(&mut self.sasl, Sasl::Failed) {
            Sasl::Password(mut scram) => scram.finish(data)?,
            Sasl::Keys(scram) => scram.verify(data)?,
            other @ (Sasl::NotStarted | Sasl::Done | Sasl::Failed) => {
                self.sasl = other;
                return Err(ServerError::Protocol(
                    "SASL final outside an exchange".into(),
                ));
            }
        }
        self.sasl = Sasl::Done;
        Ok(())
    }
}

/// What the connection can bind a SCRAM exchange to.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    /// The connection is TLS.
    pub tls: bool,
    /// Its `tls-server-end-point` data (RFC 5929: the hash of the server's
    /// certificate); `None` over plain TCP, or for a certificate whose
    /// signature algorithm has none.
    pub end_point: Option<Vec<u8>>,
}

/// The channel binding pgsplit offers a server, as libpq chooses it.
#[derive(Debug, PartialEq, Eq)]
enum Binding {
    /// SCRAM-SHA-256-PLUS bound to the server's certificate.
    EndPoint(Vec<u8>),
    /// TLS, but the server offered no PLUS: "y", so a server that does
    /// support it can tell that a man in the middle removed it.
    Unrequested,
    /// Plain TCP, or a PLUS pgsplit cannot compute (a certificate whose
    /// signature has no tls-server-end-point hash): "n".
    Unsupported,
}

impl Binding {
    fn choose(channel: &Channel, plus_offered: bool) -> Binding {
        match (channel.tls, plus_offered, &channel.end_point) {
            (true, true, Some(hash)) => Binding::EndPoint(hash.clone()),
            (true, false, _) => Binding::Unrequested,
            _ => Binding::Unsupported,
        }
    }

    fn mechanism(&self) -> &'static str {
        match self {
            Binding::EndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    /// For postgres-protocol's client (a password).
    fn for_password(self) -> ChannelBinding {
        match self {
            Binding::EndPoint(hash) => ChannelBinding::tls_server_end_point(hash),
            Binding::Unrequested => ChannelBinding::unrequested(),
            Binding::Unsupported => ChannelBinding::unsupported(),
        }
    }

    /// For pgsplit's own client (a client's keys).
    fn for_keys(self) -> (CbindFlag, Vec<u8>) {
        match self {
            Binding::EndPoint(hash) => (CbindFlag::TlsServerEndPoint, hash),
            Binding::Unrequested => (CbindFlag::ClientOnly, Vec::new()),
            Binding::Unsupported => (CbindFlag::No, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[5..]
    }

    fn handshake(credential: Option<Credential>) -> Handshake {
        Handshake::new("alice", credential.map(Arc::new), Channel::default())
    }

    #[test]
    fn channel_binding_is_chosen_as_libpq_chooses_it() {
        let hash = vec![7u8; 32];
        let channel = |tls, end_point: Option<&Vec<u8>>| Channel {
            tls,
            end_point: end_point.cloned(),
        };
        let choose = |tls, plus, end_point| Binding::choose(&channel(tls, end_point), plus);
        assert_eq!(
            choose(true, true, Some(&hash)),
            Binding::EndPoint(hash.clone())
        );
        assert_eq!(choose(true, false, Some(&hash)), Binding::Unrequested);
        // Saying "y" to a server that offered PLUS would read as a downgrade.
        assert_eq!(choose(true, true, None), Binding::Unsupported);
        assert_eq!(choose(false, true, Some(&hash)), Binding::Unsupported);
        assert_eq!(choose(false, false, None), Binding::Unsupported);
        assert_eq!(Binding::EndPoint(vec![]).mechanism(), SCRAM_SHA_256_PLUS);
        assert_eq!(Binding::Unrequested.mechanism(), SCRAM_SHA_256);
        assert_eq!(Binding::Unrequested.for_keys().0, CbindFlag::ClientOnly);
    }

    #[test]
    fn md5_is_answered_from_a_password_or_its_hash() {
        let salt = [1, 2, 3, 4];
        let mut request = BytesMut::new();
        backend::authentication_md5(salt, &mut request);
        let expected = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        for credential in [
            Credential::Password("secret".into()),
            Credential::Md5Hash(md5::hash("secret", "alice")),
        ] {
            let step = handshake(Some(credential))
                .on_message(b'R', body(&request))
                .unwrap();
            let Step::Send(out) = step else {
                panic!("{step:?}")
            };
            assert_eq!(&out[5..out.len() - 1], expected.as_bytes());
        }
    }

    #[test]
    fn what_a_credential_cannot_answer_is_named() {
        let keys = crate::secret::ScramKeys {
            verifier: crate::secret::Verifier::mock("alice", &[0; 32]),
            client_key: [0; 32],
        };
        let cleartext = b"\0\0\0\x03";
        let md5_request = b"\0\0\0\x05abcd";
        let sasl = b"\0\0\0\x0aSCRAM-SHA-256\0\0";
        for (credential, request, method) in [
            (
                Credential::Md5Hash("md5x".into()),
                &cleartext[..],
                "a cleartext password",
            ),
            (Credential::Scram(keys.clone()), &md5_request[..], "md5"),
            (
                Credential::Md5Hash("md5x".into()),
                &sasl[..],
                "SCRAM-SHA-256",
            ),
        ] {
            let e = handshake(Some(credential))
                .on_message(b'R', request)
                .unwrap_err();
            assert!(e.to_string().contains(method), "{e}");
        }
        let e = handshake(None).on_message(b'R', cleartext).unwrap_err();
        assert!(matches!(e, ServerError::NoPassword(_)), "{e}");
    }

    #[test]
    fn the_login_goes_on_to_ready_for_query() {
        let mut h = handshake(None);
        assert_eq!(h.on_message(b'R', b"\0\0\0\0").unwrap(), Step::Read);
        assert_eq!(
            h.on_message(b'S', b"a\0b\0").unwrap(),
            Step::Parameter("a".into(), "b".into())
        );
        assert_eq!(
            h.on_message(b'K', b"\0\0\0\x01\0\0\0\x02").unwrap(),
            Step::CancelKey { pid: 1, secret: 2 }
        );
        assert_eq!(h.on_message(b'N', b"x\0").unwrap(), Step::Read);
        assert_eq!(h.on_message(b'Z', b"I").unwrap(), Step::Ready);
        let e = h.on_message(b'E', b"SFATAL\0C28P01\0Mno\0\0").unwrap_err();
        assert!(matches!(e, ServerError::Refused { .. }));
    }

    #[test]
    fn a_server_skipping_scrams_last_step_is_refused() {
        let mut h = handshake(Some(Credential::Password("secret".into())));
        let Step::Send(_) = h.on_message(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0").unwrap() else {
            panic!()
        };
        assert!(h.on_message(b'R', b"\0\0\0\0").is_err());
        // A challenge it cannot take, then AuthenticationOk: still refused.
        let mut h = handshake(Some(Credential::Password("secret".into())));
        h.on_message(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0").unwrap();
        assert!(h.on_message(b'R', b"\0\0\0\x0bgarbage").is_err());
        assert!(
            h.on_message(b'R', b"\0\0\0\x0bgarbage").is_err(),
            "no panic either"
        );
        assert!(h.on_message(b'R', b"\0\0\0\0").is_err());
        let mut h = handshake(Some(Credential::Password("secret".into())));
        assert!(
            h.on_message(b'R', b"\0\0\0\x0bx").is_err(),
            "continue before start"
        );
    }
}
