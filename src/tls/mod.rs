//! TLS with rustls and its ring provider (no OpenSSL): what each
//! configuration generation loads from the `client_tls_*` and
//! `server_tls_*` files, and the handshakes made with it.
//!
//! Loaded when a generation starts (start-up, RELOAD, SIGHUP): a new
//! certificate or key is used by connections made after the reload, while
//! connections already up keep the TLS session they have. A file that
//! cannot be read refuses the reload (the running generation stays) and,
//! at start-up, exits before anything listens.
//!
//! The sessions and the server connections see only [`crate::socket::Stream`];
//! how a client asks for TLS is `client::encryption`'s, how pgsplit asks a
//! server is `server::encryption`'s.

mod cert;
mod verify;

pub use cert::{common_name, tls_server_end_point};

use crate::config::{ClientTlsMode, Config, ServerTlsMode, TlsVersions};
use crate::socket::Stream;
use cert::KeyFile;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use std::sync::Arc;
use tokio::net::TcpStream;

/// The ALPN protocol name of PostgreSQL (PostgreSQL 17): required on a
/// direct TLS connection, offered to servers.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// What became of one TLS negotiation: the `outcome` label of
/// `pgsplit_tls_negotiations_total`, and the word in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake succeeded.
    Encrypted,
    /// The handshake failed (no common version or cipher, a certificate
    /// that does not verify, the peer went away).
    HandshakeFailed,
    /// A client connected with TLS directly but without ALPN `postgresql`.
    NoAlpn,
    /// A plain client, refused by `client_tls_sslmode` require or above.
    PlainRefused,
    /// A server without TLS, under `server_tls_sslmode` require or above.
    TlsRefused,
    /// A server without TLS under `prefer`: the connection stays plain.
    PlainFallback,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Encrypted => "encrypted",
            Outcome::HandshakeFailed => "handshake_failed",
            Outcome::NoAlpn => "no_alpn",
            Outcome::PlainRefused => "plain_refused",
            Outcome::TlsRefused => "tls_refused",
            Outcome::PlainFallback => "plain_fallback",
        }
    }

    /// Every (side, outcome) pair that can happen, for the metrics to
    /// declare at 0.
    pub const PAIRS: [(&'static str, Outcome); 8] = [
        ("client", Outcome::Encrypted),
        ("client", Outcome::HandshakeFailed),
        ("client", Outcome::NoAlpn),
        ("client", Outcome::PlainRefused),
        ("server", Outcome::Encrypted),
        ("server", Outcome::HandshakeFailed),
        ("server", Outcome::TlsRefused),
        ("server", Outcome::PlainFallback),
    ];
}

/// Why the TLS files could not be used; names the config key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path}: {message}")]
    Invalid {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("{key}: {message}")]
    Setting { key: &'static str, message: String },
}

fn setting(key: &'static str, message: impl std::fmt::Display) -> TlsError {
    TlsError::Setting {
        key,
        message: message.to_string(),
    }
}

/// One generation's TLS, each side `None` when its sslmode is `disable`.
#[derive(Default)]
pub struct Tls {
    pub clients: Option<Arc<ClientTls>>,
    pub servers: Option<Arc<ServerTls>>,
}

impl Tls {
    /// Reads the files `config` names and builds both sides.
    pub fn load(config: &Config) -> Result<Tls, TlsError> {
        Ok(Tls {
            clients: ClientTls::load(config)?.map(Arc::new),
            servers: ServerTls::load(config)?.map(Arc::new),
        })
    }
}

/// The cipher suites `client_tls_ciphers` allows, in a ring provider.
/// `default` (and PgBouncer's other shortcuts) keeps rustls's list,
/// which has only forward-secret AEAD suites; otherwise a list of suite
/// names as rustls and IANA spell them (`TLS13_AES_256_GCM_SHA384` or
/// `TLS_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
/// OpenSSL's cipher-string syntax (`HIGH:!aNULL`) is not understood.
fn provider(ciphers: &str) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let shortcut = ["", "default", "secure", "fast", "normal", "all"];
    if shortcut.contains(&ciphers.trim().to_ascii_lowercase().as_str()) {
        return Ok(Arc::new(provider));
    }
    let canonical = |name: &str| name.to_ascii_uppercase().replace("TLS13_", "TLS_");
    let known: Vec<String> = provider
        .cipher_suites
        .iter()
        .map(|s| canonical(&format!("{:?}", s.suite())))
        .collect();
    let mut wanted = Vec::new();
    for name in ciphers.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
        let name = canonical(name);
        if !known.contains(&name) {
            return Err(setting(
                "client_tls_ciphers",
                format!("unknown cipher suite {name}; known: {}", known.join(", ")),
            ));
        }
        wanted.push(name);
    }
    provider
        .cipher_suites
        .retain(|s| wanted.contains(&canonical(&format!("{:?}", s.suite()))));
    Ok(Arc::new(provider))
}

fn versions(v: TlsVersions) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::new();
    if v.v1_3 {
        out.push(&rustls::version::TLS13);
    }
    if v.v1_2 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The CA certificates in `path`.
fn roots(key: &'static str, path: &str) -> Result<(RootCertStore, KeyFile), TlsError> {
    let file = KeyFile::read(key, path)?;
    let mut roots = RootCertStore::empty();
    for cert in file.certificates()? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            key,
            path: path.to_string(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((roots, file))
}

/// TLS towards clients: pgsplit's certificate, and the CA client
/// certificates are checked against under verify-ca and verify-full.
pub struct ClientTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// RFC 5929 `tls-server-end-point` of pgsplit's certificate, worked
    /// out once per generation; what SCRAM-SHA-256-PLUS binds to.
    end_point: Option<Arc<[u8]>>,
}

impl ClientTls {
    fn load(config: &Config) -> Result<Option<ClientTls>, TlsError> {
        let mode = config.client_tls_sslmode;
        if mode == ClientTlsMode::Disable {
            return Ok(None);
        }
        // Both are there from allow up (`Config::validate`).
        let (Some(cert_path), Some(key_path)) =
            (&config.client_tls_cert_file, &config.client_tls_key_file)
        else {
            return Err(setting(
                "client_tls_cert_file",
                "client_tls_sslmode needs client_tls_cert_file and client_tls_key_file",
            ));
        };
        let cert_file = KeyFile::read("client_tls_cert_file", cert_path)?;
        let key_file = KeyFile::read("client_tls_key_file", key_path)?;
        let chain = cert_file.certificates()?;
        let key = key_file.private_key()?;
        let provider = provider(&config.client_tls_ciphers)?;
        let protocols = TlsVersions::parse(&config.client_tls_protocols)
            .map_err(|m| setting("client_tls_protocols", m))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(protocols))
            .map_err(|e| {
                setting(
                    "client_tls_ciphers",
                    format!("{e} for client_tls_protocols"),
                )
            })?;
        let builder = match (&config.client_tls_ca_file, mode.verifies_clients()) {
            (Some(ca), true) => {
                let (roots, _) = roots("client_tls_ca_file", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| setting("client_tls_ca_file", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            // PgBouncer does not validate a certificate a client offers
            // below verify-ca; pgsplit does not ask for one.
            _ => builder.with_no_client_auth(),
        };
        let end_point = chain
            .first()
            .and_then(|c| tls_server_end_point(c))
            .map(Arc::from);
        let mut server = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Invalid {
                key: "client_tls_key_file",
                path: key_path.clone(),
                message: format!("does not go with client_tls_cert_file: {e}"),
            })?;
        server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(Some(ClientTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            end_point,
        }))
    }

    /// The TLS handshake with a client whose first bytes are a TLS
    /// ClientHello (after pgsplit's `S`, or directly).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let tls = self.acceptor.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }

    /// The `tls-server-end-point` channel binding data of connections
    /// this generation accepts.
    pub fn server_end_point(&self) -> Option<Arc<[u8]>> {
        self.end_point.clone()
    }
}

/// TLS towards servers: how their certificates are checked, and
/// pgsplit's own client certificate if one is configured.
pub struct ServerTls {
    pub mode: ServerTlsMode,
    config: Arc<ClientConfig>,
    /// What was loaded (mode and file contents): pools whose TLS did not
    /// change keep their connections across a reload.
    identity: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mode", &self.mode)
            .finish()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &ServerTls) -> bool {
        self.identity == other.identity
    }
}

impl ServerTls {
    fn load(config: &Config) -> Result<Option<ServerTls>, TlsError> {
        let mode = config.server_tls_sslmode;
        if mode == ServerTlsMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut identity = format!("{mode:?}").into_bytes();
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
            match (&config.server_tls_ca_file, mode.verifies_servers()) {
                (Some(ca), true) => {
                    let (roots, file) = roots("server_tls_ca_file", ca)?;
                    identity.extend_from_slice(&file.bytes);
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| setting("server_tls_ca_file", e))?;
                    match mode {
                        ServerTlsMode::VerifyFull => webpki,
                        _ => Arc::new(verify::ChainOnly(webpki)),
                    }
                }
                _ => Arc::new(verify::AnyCertificate(provider.clone())),
            };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setting("server_tls_sslmode", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut client = match (&config.server_tls_cert_file, &config.server_tls_key_file) {
            (Some(cert_path), Some(key_path)) => {
                let cert_file = KeyFile::read("server_tls_cert_file", cert_path)?;
                let key_file = KeyFile::read("server_tls_key_file", key_path)?;
                let chain = cert_file.certificates()?;
                let key = key_file.private_key()?;
                identity.extend_from_slice(&cert_file.bytes);
                identity.extend_from_slice(&key_file.bytes);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Invalid {
                        key: "server_tls_key_file",
                        path: key_path.clone(),
                        message: format!("does not go with server_tls_cert_file: {e}"),
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        client.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        let identity = ring::digest::digest(&ring::digest::SHA256, &identity)
            .as_ref()
            .to_vec();
        Ok(Some(ServerTls {
            mode,
            config: Arc::new(client),
            identity,
        }))
    }

    /// The TLS handshake with a server that answered `S`; `addr` is the
    /// configured `HOST:PORT`, whose host the certificate must name under
    /// verify-full (and which is sent as SNI when it is a name).
    pub async fn connect(&self, tcp: TcpStream, addr: &str) -> std::io::Result<Stream> {
        let name = server_name(addr)?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector.connect(name, tcp).await?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
    }

    /// The rustls configuration, for the health monitor's tokio-postgres.
    pub fn client_config(&self) -> ClientConfig {
        (*self.config).clone()
    }

    /// A configuration for tokio-postgres connections that never use TLS
    /// (`sslmode` disable), which still want one: it trusts no server.
    pub fn unused_client_config() -> ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            // ring's own provider has suites for the default versions.
            .expect("rustls's default versions with ring's default provider")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }
}

/// The host of `HOST:PORT` (`[v6]:PORT` too), as TLS names it.
fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is neither a host name nor an IP address TLS can check"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_configured_address() {
        assert!(matches!(
            server_name("db.example.com:5432").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1:5432").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:5432").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad name:5432").is_err());
    }

    #[test]
    fn ciphers_are_chosen_by_rustls_or_iana_names() {
        assert_eq!(
            provider("default").unwrap().cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
        let one = provider("TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(one.cipher_suites.len(), 1);
        let two =
            provider("TLS13_AES_128_GCM_SHA256:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").unwrap();
        assert_eq!(two.cipher_suites.len(), 2);
        let error = provider("HIGH:!aNULL").unwrap_err().to_string();
        assert!(error.contains("client_tls_ciphers"), "{error}");
    }
}
