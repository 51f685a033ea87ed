//! The TLS keys: PgBouncer's names and meanings (`client_tls_*` towards
//! clients, `server_tls_*` towards the servers). The files they name are
//! read by `crate::tls` when a configuration generation starts; here only
//! what can be checked without them.

use super::{invalid, AuthMethod, Config, ConfigError};
use serde::{Deserialize, Serialize};

/// TLS towards clients, weakest first (PgBouncer's `client_tls_sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// Plain TCP; a client asking for TLS is told no.
    #[default]
    Disable,
    /// TLS if the client asks for it, else plain.
    Allow,
    /// Same as `allow`.
    Prefer,
    /// Clients must use TLS (cancel requests excepted).
    Require,
    /// Clients must use TLS with a certificate signed by `client_tls_ca_file`.
    VerifyCa,
    /// Same as `verify-ca` (a client's certificate has no host name to check).
    VerifyFull,
}

impl ClientTlsMode {
    /// Whether a client must use TLS at all.
    pub fn requires_tls(self) -> bool {
        self >= ClientTlsMode::Require
    }

    /// Whether a client must present a certificate signed by the CA.
    pub fn verifies_clients(self) -> bool {
        self >= ClientTlsMode::VerifyCa
    }
}

/// TLS towards the servers, weakest first (PgBouncer's `server_tls_sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP; TLS is not asked for.
    #[default]
    Disable,
    /// TLS if the server has it, else plain; its certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with a certificate signed by `server_tls_ca_file`, for any host name.
    VerifyCa,
    /// `verify-ca`, and the certificate names the host pgsplit connects to.
    VerifyFull,
}

impl ServerTlsMode {
    pub fn requires_tls(self) -> bool {
        self >= ServerTlsMode::Require
    }

    pub fn verifies_servers(self) -> bool {
        self >= ServerTlsMode::VerifyCa
    }
}

/// The TLS versions allowed (rustls has 1.2 and 1.3 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub v1_2: bool,
    pub v1_3: bool,
}

impl TlsVersions {
    /// Parses `client_tls_protocols`: PgBouncer's names separated by
    /// commas, colons or spaces. `all` and `legacy` mean every version
    /// rustls has; TLS 1.0 and 1.1 are refused rather than dropped
    /// silently, so a configuration that asks for them is seen to fail.
    pub fn parse(text: &str) -> Result<TlsVersions, String> {
        let mut versions = TlsVersions {
            v1_2: false,
            v1_3: false,
        };
        for name in text.split([',', ':', ' ', '\t']).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "tlsv1.2" => versions.v1_2 = true,
                "tlsv1.3" => versions.v1_3 = true,
                "secure" | "all" | "legacy" | "default" => {
                    versions.v1_2 = true;
                    versions.v1_3 = true;
                }
                "tlsv1" | "tlsv1.0" | "tlsv1.1" => {
                    return Err(format!(
                        "{name}: pgsplit's TLS (rustls) has only tlsv1.2 and tlsv1.3"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{name:?} is not a TLS version (tlsv1.2, tlsv1.3, secure, all)"
                    ))
                }
            }
        }
        if !versions.v1_2 && !versions.v1_3 {
            return Err("names no TLS version".into());
        }
        Ok(versions)
    }
}

/// What `Config::validate` checks of the TLS keys.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let mode = config.client_tls_sslmode;
    if mode != ClientTlsMode::Disable {
        for (key, value) in [
            ("client_tls_cert_file", &config.client_tls_cert_file),
            ("client_tls_key_file", &config.client_tls_key_file),
        ] {
            if value.is_none() {
                return Err(invalid(
                    key,
                    "client_tls_sslmode other than disable needs client_tls_cert_file and client_tls_key_file",
                ));
            }
        }
    }
    if mode.verifies_clients() && config.client_tls_ca_file.is_none() {
        return Err(invalid(
            "client_tls_ca_file",
            "client_tls_sslmode verify-ca and verify-full check client certificates against client_tls_ca_file: set it",
        ));
    }
    if config.auth == AuthMethod::Cert && !mode.verifies_clients() {
        return Err(invalid(
            "auth",
            "\"cert\" needs client_tls_sslmode = verify-ca or verify-full (the certificate's CN is the user)",
        ));
    }
    TlsVersions::parse(&config.client_tls_protocols)
        .map_err(|message| invalid("client_tls_protocols", message))?;
    if config.server_tls_sslmode.verifies_servers() && config.server_tls_ca_file.is_none() {
        return Err(invalid(
            "server_tls_ca_file",
            "server_tls_sslmode verify-ca and verify-full check the servers' certificates against server_tls_ca_file: set it",
        ));
    }
    if config.server_tls_cert_file.is_some() != config.server_tls_key_file.is_some() {
        let key = if config.server_tls_cert_file.is_none() {
            "server_tls_cert_file"
        } else {
            "server_tls_key_file"
        };
        return Err(invalid(
            key,
            "server_tls_cert_file and server_tls_key_file go together (pgsplit's client certificate to the servers)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::valid_for_tests as valid;

    #[test]
    fn protocols_parse_as_pgbouncer_names_them() {
        let both = TlsVersions {
            v1_2: true,
            v1_3: true,
        };
        assert_eq!(TlsVersions::parse("secure"), Ok(both));
        assert_eq!(TlsVersions::parse("tlsv1.2,tlsv1.3"), Ok(both));
        assert_eq!(TlsVersions::parse("all"), Ok(both));
        assert_eq!(
            TlsVersions::parse("TLSv1.3"),
            Ok(TlsVersions {
                v1_2: false,
                v1_3: true
            })
        );
        assert!(TlsVersions::parse("tlsv1.1")
            .unwrap_err()
            .contains("tlsv1.2"));
        assert!(TlsVersions::parse("sslv3").is_err());
        assert!(TlsVersions::parse("").is_err());
    }

    #[test]
    fn modes_parse_from_pgbouncer_names() {
        let c = Config::from_toml(
            "client_tls_sslmode = \"verify-full\"\nserver_tls_sslmode = \"verify-ca\"",
        )
        .unwrap();
        assert_eq!(c.client_tls_sslmode, ClientTlsMode::VerifyFull);
        assert_eq!(c.server_tls_sslmode, ServerTlsMode::VerifyCa);
        assert!(Config::from_toml("client_tls_sslmode = \"verify_full\"").is_err());
        assert!(ClientTlsMode::Require.requires_tls() && !ClientTlsMode::Prefer.requires_tls());
    }

    #[test]
    fn validation_names_the_missing_tls_key() {
        let error = |c: Config| c.validate().unwrap_err().to_string();
        let mut c = valid();
        c.client_tls_sslmode = ClientTlsMode::Require;
        assert!(error(c.clone()).contains("client_tls_cert_file"));
        c.client_tls_cert_file = Some("c.pem".into());
        assert!(error(c.clone()).contains("client_tls_key_file"));
        c.client_tls_key_file = Some("k.pem".into());
        c.validate().unwrap();
        c.client_tls_sslmode = ClientTlsMode::VerifyCa;
        assert!(error(c.clone()).contains("client_tls_ca_file"));
        let mut c = valid();
        c.auth = AuthMethod::Cert;
        assert!(error(c).contains("auth"));
        let mut c = valid();
        c.client_tls_protocols = "tlsv1.0".into();
        assert!(error(c).contains("client_tls_protocols"));
        let mut c = valid();
        c.server_tls_sslmode = ServerTlsMode::VerifyFull;
        assert!(error(c).contains("server_tls_ca_file"));
        let mut c = valid();
        c.server_tls_cert_file = Some("c.pem".into());
        assert!(error(c).contains("server_tls_key_file"));
    }

    #[test]
    fn cert_auth_needs_no_users() {
        let mut c = valid();
        c.auth = AuthMethod::Cert;
        c.client_tls_sslmode = ClientTlsMode::VerifyFull;
        c.client_tls_cert_file = Some("c.pem".into());
        c.client_tls_key_file = Some("k.pem".into());
        c.client_tls_ca_file = Some("ca.pem".into());
        c.validate().unwrap();
    }
}
