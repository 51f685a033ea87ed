//! pgsplit as the server of a SCRAM-SHA-256 exchange, with channel binding
//! (SCRAM-SHA-256-PLUS, `tls-server-end-point`: RFC 5802, 5929, 7677) as
//! PostgreSQL runs it (`auth-scram.c`): fed the client's messages, it
//! answers with pgsplit's and ends with a verdict. No I/O; `auth` moves the
//! bytes. Written here rather than taken from pgwire, whose exchange panics
//! on malformed messages and cannot bind to a TLS channel.

use crate::protocol::error::sqlstate;
use crate::protocol::scram::{self as message, CbindFlag, ClientFinal, ClientFirst, ScramError};
use crate::protocol::PgError;
use crate::secret::scram::{self as keys, Key, Verifier};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Bytes of randomness in pgsplit's half of the nonce (PostgreSQL's 18,
/// 24 characters in base64).
const SERVER_NONCE_LEN: usize = 18;

/// The mechanisms to offer: with a TLS connection (channel binding data at
/// hand) SCRAM-SHA-256-PLUS first, then SCRAM-SHA-256, as PostgreSQL.
pub fn mechanisms(can_bind: bool) -> &'static [&'static str] {
    if can_bind {
        &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
    } else {
        &[SCRAM_SHA_256]
    }
}

/// Why an exchange ended before its verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Message(#[from] ScramError),
    #[error("client selected an invalid SASL authentication mechanism")]
    InvalidMechanism,
    /// `y` over TLS: the client would bind, and thinks pgsplit cannot. A
    /// man in the middle who stripped SCRAM-SHA-256-PLUS from the offer
    /// looks exactly like this.
    #[error("SCRAM channel binding negotiation error")]
    Downgrade,
    #[error("malformed SCRAM message")]
    BindingMissing,
    #[error("malformed SCRAM message")]
    BindingUnexpected,
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    #[error("unexpected SCRAM channel-binding attribute in client-final-message")]
    BadBindingAttribute,
    #[error("invalid SCRAM response")]
    NonceMismatch,
}

impl ExchangeError {
    /// The FATAL error the client gets, as PostgreSQL words it.
    pub fn to_pg(&self) -> PgError {
        let (code, detail) = match self {
            ExchangeError::Message(e) => return e.to_pg(),
            ExchangeError::Downgrade => (
                sqlstate::INVALID_AUTHORIZATION,
                "The client supports SCRAM channel binding but thinks the server does not.  \
                 However, this server does support channel binding.",
            ),
            ExchangeError::BindingMissing => (
                sqlstate::PROTOCOL_VIOLATION,
                "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                 include channel binding data.",
            ),
            ExchangeError::BindingUnexpected => (
                sqlstate::PROTOCOL_VIOLATION,
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM \
                 message includes channel binding data.",
            ),
            ExchangeError::NonceMismatch => (sqlstate::PROTOCOL_VIOLATION, "Nonce does not match."),
            ExchangeError::BindingMismatch => (sqlstate::INVALID_AUTHORIZATION, ""),
            ExchangeError::InvalidMechanism | ExchangeError::BadBindingAttribute => {
                (sqlstate::PROTOCOL_VIOLATION, "")
            }
        };
        let mut error = PgError::fatal(code, self.to_string());
        if !detail.is_empty() {
            error.more.push((b'D', detail));
        }
        error
    }
}

/// How the exchange is bound to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// Plain TCP: nothing to bind to.
    Unavailable,
    /// TLS, and the client chose SCRAM-SHA-256: it must not say `y`.
    Declined,
    /// SCRAM-SHA-256-PLUS: the client binds to this certificate hash.
    Required(Vec<u8>),
}

/// An exchange waiting for the client-first-message.
#[derive(Debug)]
pub struct ScramServer {
    verifier: Verifier,
    /// The verdict will be "refused" whatever the client sends (an unknown
    /// user, or one without a SCRAM secret): the exchange still runs to
    /// its end, so a client cannot tell.
    doomed: bool,
    binding: Binding,
}

/// An exchange that sent its server-first-message and waits for the
/// client-final-message.
#[derive(Debug)]
pub struct Challenged {
    verifier: Verifier,
    doomed: bool,
    binding: Binding,
    cbind: CbindFlag,
    client_first_bare: Vec<u8>,
    nonce: String,
    server_first: String,
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The proof is right: send `server_final`. `client_key` logs in to
    /// servers with the same verifier (pass-through).
    Proved {
        server_final: String,
        client_key: Key,
    },
    /// A wrong password, or a doomed exchange.
    Refused,
}

impl ScramServer {
    /// An exchange for the mechanism the client's SASLInitialResponse
    /// names. `channel_binding`: the TLS server certificate's hash when the
    /// connection is TLS (then SCRAM-SHA-256-PLUS was offered).
    pub fn new(
        mechanism: &[u8],
        channel_binding: Option<&[u8]>,
        verifier: Verifier,
        doomed: bool,
    ) -> Result<ScramServer, ExchangeError> {
        let binding = match (mechanism, channel_binding) {
            (m, Some(data)) if m == SCRAM_SHA_256_PLUS.as_bytes() => {
                Binding::Required(data.to_vec())
            }
            (m, Some(_)) if m == SCRAM_SHA_256.as_bytes() => Binding::Declined,
            (m, None) if m == SCRAM_SHA_256.as_bytes() => Binding::Unavailable,
            _ => return Err(ExchangeError::InvalidMechanism),
        };
        Ok(ScramServer {
            verifier,
            doomed,
            binding,
        })
    }

    /// Reads the client-first-message; the challenge holds the
    /// server-first-message to send.
    pub fn first(self, client_first: &[u8]) -> Result<Challenged, ExchangeError> {
        let first = ClientFirst::parse(client_first)?;
        check_cbind_flag(first.cbind, &self.binding)?;
        let server_nonce: [u8; SERVER_NONCE_LEN] = rand::random();
        let nonce = format!("{}{}", first.nonce, base64_of(&server_nonce));
        let server_first = message::server_first(
            &nonce,
            &self.verifier.salt_base64(),
            self.verifier.iterations,
        );
        Ok(Challenged {
            cbind: first.cbind,
            client_first_bare: first.bare.to_vec(),
            nonce,
            server_first,
            verifier: self.verifier,
            doomed: self.doomed,
            binding: self.binding,
        })
    }
}

impl Challenged {
    /// The server-first-message, for AuthenticationSASLContinue.
    pub fn message(&self) -> &[u8] {
        self.server_first.as_bytes()
    }

    /// Reads the client-final-message and judges its proof.
    pub fn finish(self, client_final: &[u8]) -> Result<Verdict, ExchangeError> {
        let last = ClientFinal::parse(client_final)?;
        self.check_channel_binding(last.channel_binding)?;
        if last.nonce != self.nonce.as_bytes() {
            return Err(ExchangeError::NonceMismatch);
        }
        let auth_message = keys::auth_message(
            &self.client_first_bare,
            self.server_first.as_bytes(),
            last.without_proof,
        );
        let signature = keys::client_signature(&self.verifier.stored_key, &auth_message);
        let client_key = keys::xor(&last.proof, &signature);
        // Computed for doomed exchanges too, so they take as long.
        let proved = self.verifier.accepts(&client_key);
        if self.doomed || !proved {
            return Ok(Verdict::Refused);
        }
        let server_signature = keys::server_signature(&self.verifier.server_key, &auth_message);
        Ok(Verdict::Proved {
            server_final: message::server_final(&server_signature),
            client_key,
        })
    }

    /// The `c=` attribute must repeat the gs2 header, and with
    /// SCRAM-SHA-256-PLUS the certificate hash of this connection.
    fn check_channel_binding(&self, sent: &[u8]) -> Result<(), ExchangeError> {
        match &self.binding {
            Binding::Required(data) => {
                let expected = message::channel_binding_attr(CbindFlag::TlsServerEndPoint, data);
                if sent != expected.as_bytes() {
                    return Err(ExchangeError::BindingMismatch);
                }
            }
            Binding::Unavailable | Binding::Declined => {
                let expected = message::channel_binding_attr(self.cbind, &[]);
                if self.cbind == CbindFlag::TlsServerEndPoint || sent != expected.as_bytes() {
                    return Err(ExchangeError::BadBindingAttribute);
                }
            }
        }
        Ok(())
    }
}

/// PostgreSQL's rules for the gs2-cbind-flag against what was negotiated.
fn check_cbind_flag(flag: CbindFlag, binding: &Binding) -> Result<(), ExchangeError> {
    match (flag, binding) {
        (CbindFlag::TlsServerEndPoint, Binding::Required(_)) => Ok(()),
        (_, Binding::Required(_)) => Err(ExchangeError::BindingMissing),
        (CbindFlag::TlsServerEndPoint, _) => Err(ExchangeError::BindingUnexpected),
        (CbindFlag::ClientOnly, Binding::Declined) => Err(ExchangeError::Downgrade),
        (CbindFlag::No | CbindFlag::ClientOnly, _) => Ok(()),
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
