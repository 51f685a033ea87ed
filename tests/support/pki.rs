//! A test CA made with rcgen, and the certificates and keys tests hand to
//! PostgreSQL, pgsplit and clients, written as PEM files in a temp dir.
//!
//! Keys are written 0600 and, when the tests run as root, owned by the
//! server OS user: PostgreSQL (and libpq for a walreceiver) refuse a key
//! others can read, and the servers run as that user.
//!
//! ```ignore
//! let pki = Pki::new("test CA");
//! let server = pki.server("server", &["127.0.0.1"]);
//! let alice = pki.client("alice", "alice");
//! ```

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use super::cluster;

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and the files it issued. Dropping it removes them.
pub struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its certificate written to `ca_file()`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("pgsplit-pki-")
            .tempdir()
            .expect("pki temp dir");
        // The servers (another OS user) read their files from here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Pki { dir, ca, ca_file }
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A server certificate for `names` (host names or IP addresses),
    /// written as `<stem>.pem` and `<stem>.key`.
    pub fn server(&self, stem: &str, names: &[&str]) -> CertFiles {
        let files = self.files(stem);
        self.issue_to(&files, "server", names, ExtendedKeyUsagePurpose::ServerAuth);
        files
    }

    /// A client certificate whose CN is `common_name`.
    pub fn client(&self, stem: &str, common_name: &str) -> CertFiles {
        let files = self.files(stem);
        self.issue_to(
            &files,
            common_name,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        files
    }

    /// Issues a certificate into existing paths (replacing what is there),
    /// for tests that swap certificates under a running process.
    pub fn issue_to(
        &self,
        files: &CertFiles,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        write_key(&files.key, &key.serialize_pem());
    }

    fn files(&self, stem: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
        }
    }
}

fn write_key(path: &Path, pem: &str) {
    // Replaced whole: a key swapped under a running process is never
    // read half-written.
    let tmp = path.with_extension("key.new");
    std::fs::write(&tmp, pem).expect("write key");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    if cluster::is_root() {
        cluster::ensure_os_user(cluster::SERVER_OS_USER);
        cluster::chown_to(&tmp, cluster::SERVER_OS_USER);
    }
    std::fs::rename(&tmp, path).expect("rename key");
}
