//! What pgsplit reads out of certificates and key files: PEM loading (the
//! error names the config key), the subject's common name (`cert`
//! authentication) and RFC 5929's `tls-server-end-point` (SCRAM channel
//! binding). No I/O besides reading the named files.

use super::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::Decode;
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

/// A file named by a config key, read whole.
pub struct KeyFile {
    pub key: &'static str,
    pub path: String,
    pub bytes: Vec<u8>,
}

impl KeyFile {
    pub fn read(key: &'static str, path: &str) -> Result<KeyFile, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            key,
            path: path.to_string(),
            source,
        })?;
        Ok(KeyFile {
            key,
            path: path.to_string(),
            bytes,
        })
    }

    fn invalid(&self, message: impl Into<String>) -> TlsError {
        TlsError::Invalid {
            key: self.key,
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Every certificate in the file, in order; at least one.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(self.invalid("no certificate (-----BEGIN CERTIFICATE-----) in the file"));
        }
        Ok(certs)
    }

    /// The private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.bytes)
            .map_err(|e| self.invalid(format!("no PEM private key in the file: {e}")))
    }
}

const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The subject's common name, which `cert` authentication compares with
/// the user name as PostgreSQL does. `None` when there is none, several
/// (PostgreSQL takes the first; pgsplit does not guess) or one with a NUL
/// in it (PostgreSQL refuses those too).
pub fn common_name(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let mut names = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == COMMON_NAME)
        .map(|atv| {
            let value = &atv.value;
            value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    value
                        .decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        });
    let first = names.next()??;
    match names.next() {
        None if !first.contains('\0') => Some(first),
        _ => None,
    }
}

/// The hash RFC 5929 section 4.1 prescribes for a certificate signed with
/// `algorithm`: the signature's own hash, with MD5 and SHA-1 raised to
/// SHA-256. `None` for algorithms with no single hash (Ed25519, RSA-PSS,
/// whose hash sits in parameters): PostgreSQL has no channel binding for
/// them either.
fn end_point_digest(algorithm: &ObjectIdentifier) -> Option<&'static ring::digest::Algorithm> {
    const SHA256: &[&str] = &[
        "1.2.840.113549.1.1.4",   // md5WithRSAEncryption
        "1.2.840.113549.1.1.5",   // sha1WithRSAEncryption
        "1.2.840.113549.1.1.11",  // sha256WithRSAEncryption
        "1.2.840.10045.4.1",      // ecdsa-with-SHA1
        "1.2.840.10045.4.3.2",    // ecdsa-with-SHA256
        "1.2.840.10040.4.3",      // dsa-with-sha1
        "2.16.840.1.101.3.4.3.2", // dsa-with-sha256
    ];
    const SHA384: &[&str] = &["1.2.840.113549.1.1.12", "1.2.840.10045.4.3.3"];
    const SHA512: &[&str] = &["1.2.840.113549.1.1.13", "1.2.840.10045.4.3.4"];
    let dotted = algorithm.to_string();
    let is = |list: &[&str]| list.contains(&dotted.as_str());
    if is(SHA256) {
        Some(&ring::digest::SHA256)
    } else if is(SHA384) {
        Some(&ring::digest::SHA384)
    } else if is(SHA512) {
        Some(&ring::digest::SHA512)
    } else {
        None
    }
}

/// RFC 5929 `tls-server-end-point` channel binding data of the server
/// certificate `der`: its hash with its signature's hash function (see
/// [`end_point_digest`]). What SCRAM-SHA-256-PLUS binds to on both sides:
/// pgsplit's own certificate towards clients, the server's towards servers.
/// `None` when the certificate cannot be parsed or its algorithm has no
/// binding.
pub fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(der).ok()?;
    let digest = end_point_digest(&cert.signature_algorithm.oid)?;
    Some(ring::digest::digest(digest, der).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn end_point_is_the_sha256_of_an_ecdsa_sha256_certificate() {
        let der = certificate("pgsplit", &rcgen::PKCS_ECDSA_P256_SHA256);
        let expected = ring::digest::digest(&ring::digest::SHA256, &der);
        assert_eq!(tls_server_end_point(&der).unwrap(), expected.as_ref());
    }

    #[test]
    fn end_point_follows_the_signature_hash() {
        let der = certificate("pgsplit", &rcgen::PKCS_ECDSA_P384_SHA384);
        let expected = ring::digest::digest(&ring::digest::SHA384, &der);
        assert_eq!(tls_server_end_point(&der).unwrap(), expected.as_ref());
    }

    #[test]
    fn end_point_of_sha1_and_md5_signatures_is_sha256() {
        for dotted in [
            "1.2.840.113549.1.1.5",
            "1.2.840.113549.1.1.4",
            "1.2.840.10045.4.1",
        ] {
            let oid = ObjectIdentifier::new_unwrap(dotted);
            assert_eq!(
                end_point_digest(&oid),
                Some(&ring::digest::SHA256),
                "{dotted}"
            );
        }
    }

    #[test]
    fn ed25519_and_garbage_have_no_end_point() {
        let der = certificate("pgsplit", &rcgen::PKCS_ED25519);
        assert_eq!(tls_server_end_point(&der), None);
        assert_eq!(tls_server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let der = certificate("alice", &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
        assert_eq!(common_name(b"\x30\x03garbage"), None);
    }

    #[test]
    fn a_key_file_without_pem_is_refused_naming_the_key() {
        let file = KeyFile {
            key: "client_tls_cert_file",
            path: "/x.pem".into(),
            bytes: b"hello".to_vec(),
        };
        let error = file.certificates().unwrap_err().to_string();
        assert!(error.contains("client_tls_cert_file"), "{error}");
        let error = file.private_key().unwrap_err().to_string();
        assert!(error.contains("client_tls_cert_file"), "{error}");
    }
}
