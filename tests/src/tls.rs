//! Test certificates, generated at test time with `rcgen`.
//!
//! [`TestCerts::generate`] writes a CA, a server certificate valid for
//! `127.0.0.1`, `::1`, `localhost` and `etcd.test`, a client certificate with
//! CN `root` (usable as etcd's `root` user through `--client-cert-auth`), and
//! an unrelated second CA with a client certificate of its own, for tests of
//! rejected peers. Keys are ECDSA P-256, in PKCS#8 PEM.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// DNS names and IPs the server certificate is valid for.
pub const SERVER_NAMES: [&str; 4] = ["127.0.0.1", "::1", "localhost", "etcd.test"];

/// The common name of the default client certificate.
pub const CLIENT_CN: &str = "root";

fn cert_err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("certificate generation failed: {e}"))
}

/// A certificate and its private key, as files and as PEM text.
#[derive(Clone)]
pub struct CertKey {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl CertKey {
    /// The certificate file (PEM).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key file (PKCS#8 PEM).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        self.cert_pem.as_bytes()
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &[u8] {
        self.key_pem.as_bytes()
    }

    fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String) -> io::Result<CertKey> {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        write_file(&cert_path, &cert_pem, 0o644)?;
        write_file(&key_path, &key_pem, 0o600)?;
        Ok(CertKey {
            cert_path,
            key_path,
            cert_pem,
            key_pem,
        })
    }
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

struct Ca {
    cert: CertKey,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn generate(dir: &Path, name: &str, cn: &str) -> io::Result<Ca> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(cert_err)?;
        let cert = CertKey::write(dir, name, cert.pem(), key.serialize_pem())?;
        Ok(Ca {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a leaf certificate for `names` (SANs; IPs become IP SANs).
    fn issue(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        names: &[&str],
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> io::Result<CertKey> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        CertKey::write(dir, file, cert.pem(), key.serialize_pem())
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "etcd-tests");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA, a server and a client certificate, and an unrelated CA, written to
/// a directory. Keys are ECDSA P-256, in PKCS#8 PEM.
///
/// ```no_run
/// use etcd_tests::{EtcdServer, EtcdVersion, TestCerts};
///
/// let certs = TestCerts::generate_temp().unwrap();
/// let server = EtcdServer::builder(EtcdVersion::V3_5)
///     .tls(&certs, true)
///     .start()
///     .unwrap();
/// assert!(server.client_url().starts_with("https://"));
/// // a client trusts certs.ca_pem() and presents certs.client_cert_pem()
/// ```
///
/// | file | what |
/// | --- | --- |
/// | `ca.pem`, `ca-key.pem` | the CA that signed everything below but `other-*` |
/// | `server.pem`, `server-key.pem` | server cert, SANs [`SERVER_NAMES`], EKU server and client auth (etcd's gateway dials itself with it) |
/// | `client.pem`, `client-key.pem` | client cert, CN [`CLIENT_CN`] (`root`), EKU client auth |
/// | `other-ca.pem`, `other-ca-key.pem` | a second, unrelated CA |
/// | `other-client.pem`, `other-client-key.pem` | client cert (CN `root`) signed by the other CA |
/// | `client-NAME.pem`, `client-NAME-key.pem` | from [`TestCerts::issue_client`] |
pub struct TestCerts {
    dir: PathBuf,
    remove_on_drop: bool,
    ca: Ca,
    server: CertKey,
    client: CertKey,
    other_ca: Ca,
    other_client: CertKey,
}

impl TestCerts {
    /// Generates fresh certificates into `dir` (created if missing;
    /// existing files of the same names are overwritten). The files stay
    /// after drop.
    pub fn generate(dir: impl AsRef<Path>) -> io::Result<TestCerts> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let ca = Ca::generate(&dir, "ca", "etcd-tests CA")?;
        let server = ca.issue(
            &dir,
            "server",
            "etcd-tests server",
            &SERVER_NAMES,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let client = ca.issue(
            &dir,
            "client",
            CLIENT_CN,
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let other_ca = Ca::generate(&dir, "other-ca", "etcd-tests other CA")?;
        let other_client = other_ca.issue(
            &dir,
            "other-client",
            CLIENT_CN,
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        Ok(TestCerts {
            dir,
            remove_on_drop: false,
            ca,
            server,
            client,
            other_ca,
            other_client,
        })
    }

    /// Like [`TestCerts::generate`], into a fresh temp directory that is
    /// removed on drop. (A server started with [`crate::EtcdServerBuilder::tls`]
    /// keeps copies of its files, so it may outlive these.)
    pub fn generate_temp() -> io::Result<TestCerts> {
        let dir = crate::server::make_base_dir("certs")?;
        match TestCerts::generate(&dir) {
            Ok(mut certs) => {
                certs.remove_on_drop = true;
                Ok(certs)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Issues another client certificate, with CN `cn`, signed by the CA,
    /// into `client-CN.pem` / `client-CN-key.pem` (characters other than
    /// ASCII alphanumerics, `-` and `_` become `_` in the file name).
    pub fn issue_client(&self, cn: &str) -> io::Result<CertKey> {
        let safe: String = cn
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.ca.issue(
            &self.dir,
            &format!("client-{safe}"),
            cn,
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> &CertKey {
        &self.ca.cert
    }

    /// The server certificate and key.
    pub fn server(&self) -> &CertKey {
        &self.server
    }

    /// The client certificate (CN `root`) and key.
    pub fn client(&self) -> &CertKey {
        &self.client
    }

    /// The unrelated CA's certificate and key.
    pub fn other_ca(&self) -> &CertKey {
        &self.other_ca.cert
    }

    /// A client certificate (CN `root`) signed by the unrelated CA.
    pub fn other_client(&self) -> &CertKey {
        &self.other_client
    }

    /// `ca.pem`.
    pub fn ca_path(&self) -> &Path {
        self.ca.cert.cert_path()
    }

    /// `server.pem`.
    pub fn server_cert_path(&self) -> &Path {
        self.server.cert_path()
    }

    /// `server-key.pem`.
    pub fn server_key_path(&self) -> &Path {
        self.server.key_path()
    }

    /// `client.pem`.
    pub fn client_cert_path(&self) -> &Path {
        self.client.cert_path()
    }

    /// `client-key.pem`.
    pub fn client_key_path(&self) -> &Path {
        self.client.key_path()
    }

    /// `other-ca.pem`.
    pub fn other_ca_path(&self) -> &Path {
        self.other_ca.cert.cert_path()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &[u8] {
        self.ca.cert.cert_pem()
    }

    /// The server certificate, PEM.
    pub fn server_cert_pem(&self) -> &[u8] {
        self.server.cert_pem()
    }

    /// The server key, PEM.
    pub fn server_key_pem(&self) -> &[u8] {
        self.server.key_pem()
    }

    /// The client certificate (CN `root`), PEM.
    pub fn client_cert_pem(&self) -> &[u8] {
        self.client.cert_pem()
    }

    /// The client key, PEM.
    pub fn client_key_pem(&self) -> &[u8] {
        self.client.key_pem()
    }

    /// The unrelated CA's certificate, PEM.
    pub fn other_ca_pem(&self) -> &[u8] {
        self.other_ca.cert.cert_pem()
    }

    /// What a server needs (copied into its own directory at start).
    pub(crate) fn server_material(&self, client_cert_auth: bool) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.ca.cert.cert_pem.clone(),
            cert_pem: self.server.cert_pem.clone(),
            key_pem: self.server.key_pem.clone(),
            client_cert_pem: self.client.cert_pem.clone(),
            client_key_pem: self.client.key_pem.clone(),
            client_cert_auth,
        }
    }
}

impl fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCerts")
            .field("dir", &self.dir)
            .field("remove_on_drop", &self.remove_on_drop)
            .finish_non_exhaustive()
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// PEM texts a TLS server is started with (kept by the builders, written
/// into the server's directory at each launch).
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) client_cert_pem: String,
    pub(crate) client_key_pem: String,
    pub(crate) client_cert_auth: bool,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

/// The TLS files of a running server, in its own directory (`BASE/tls/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The CA a client must trust (`--trusted-ca-file` too).
    pub ca: PathBuf,
    /// The server certificate (`--cert-file`).
    pub server_cert: PathBuf,
    /// The server key (`--key-file`).
    pub server_key: PathBuf,
    /// A client certificate the server accepts (CN `root`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// Whether the server requires client certificates
    /// (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

impl TlsMaterial {
    /// Writes the files into `dir` (created if missing).
    pub(crate) fn write(&self, dir: &Path) -> io::Result<ServerTlsFiles> {
        fs::create_dir_all(dir)?;
        let files = ServerTlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
            client_cert_auth: self.client_cert_auth,
        };
        write_file(&files.ca, &self.ca_pem, 0o644)?;
        write_file(&files.server_cert, &self.cert_pem, 0o644)?;
        write_file(&files.server_key, &self.key_pem, 0o600)?;
        write_file(&files.client_cert, &self.client_cert_pem, 0o644)?;
        write_file(&files.client_key, &self.client_key_pem, 0o600)?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http, EtcdCluster, EtcdServer, EtcdVersion, Etcdctl};
    use std::process::Command;
    use std::time::Duration;

    fn check_tls_server(version: EtcdVersion, client_cert_auth: bool) {
        let certs = TestCerts::generate_temp().unwrap();
        let server = EtcdServer::builder(version)
            .tls(&certs, client_cert_auth)
            .start()
            .unwrap_or_else(|e| panic!("{version} tls: {e}"));
        let url = server.client_url();
        assert_eq!(url, format!("https://127.0.0.1:{}", server.client_port()));
        let metrics = server
            .metrics_port()
            .expect("a TLS server has a metrics port");
        assert!(server.is_healthy());
        let r = http::get(metrics, "/health", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("\"health\":\"true\""), "{}", r.body);
        let files = server.tls_files().unwrap().clone();
        assert_eq!(files.client_cert_auth, client_cert_auth);
        assert!(files.server_cert.starts_with(server.base_dir()));
        assert_eq!(std::fs::read(&files.ca).unwrap(), certs.ca_pem());

        // the client port speaks TLS only
        assert!(
            http::get(server.client_port(), "/health", Duration::from_secs(2))
                .map(|r| r.status != 200)
                .unwrap_or(true)
        );
        let st = server.status().unwrap();
        assert!(st.is_leader(), "{st:?}");
        assert_eq!(st.version, version.label());
        let err = server.version_json().expect_err("no /version over TLS");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);

        let ctl = Etcdctl::for_server(&server);
        ctl.run(["put", "k", "v"]).unwrap();
        // failures are only reported at the command timeout
        let failing = ctl.clone().command_timeout(Duration::from_secs(2));
        let err = failing
            .clone()
            .cacert(certs.other_ca_path())
            .run(["get", "k"])
            .expect_err("wrong CA must fail");
        assert!(err.to_string().contains("unknown authority"), "{err}");
        let no_cert = failing.clone().no_cert().run(["get", "k"]);
        match (&no_cert, client_cert_auth) {
            (Err(e), true) => assert!(e.to_string().contains("bad certificate"), "{e}"),
            (Ok(_), false) => {}
            _ => panic!("client_cert_auth={client_cert_auth}: {no_cert:?}"),
        }
        if client_cert_auth {
            let other = certs.other_client();
            let err = failing
                .clone()
                .cert(other.cert_path(), other.key_path())
                .run(["get", "k"])
                .expect_err("foreign client cert accepted");
            assert!(err.to_string().contains("bad certificate"), "{err}");
        }

        // restart keeps TLS
        server.restart().unwrap();
        assert!(server.status().unwrap().is_leader());
    }

    #[test]
    fn tls_server_3_5_client_cert_auth() {
        check_tls_server(EtcdVersion::V3_5, true);
    }

    #[test]
    fn tls_server_3_5_server_auth_only() {
        check_tls_server(EtcdVersion::V3_5, false);
    }

    #[test]
    fn tls_server_3_4_client_cert_auth() {
        check_tls_server(EtcdVersion::V3_4, true);
    }

    #[test]
    fn tls_server_3_4_server_auth_only() {
        check_tls_server(EtcdVersion::V3_4, false);
    }

    #[test]
    fn tls_cluster() {
        let certs = TestCerts::generate_temp().unwrap();
        let cluster = EtcdCluster::builder(EtcdVersion::V3_5)
            .members(3)
            .tls(&certs, true)
            .start()
            .unwrap();
        for url in cluster.client_urls() {
            assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        }
        for m in cluster.members() {
            assert!(m.peer_url().starts_with("http://"));
        }
        let leader = cluster.leader().unwrap();
        assert!(leader < 3);
        Etcdctl::for_cluster(&cluster)
            .run(["put", "k", "v"])
            .unwrap();
    }

    fn openssl(args: &[&str]) -> Option<String> {
        let out = Command::new("openssl").args(args).output().ok()?;
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    #[test]
    fn writes_every_file() {
        let certs = TestCerts::generate_temp().unwrap();
        let dir = certs.dir().to_path_buf();
        for f in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "client.pem",
            "client-key.pem",
            "other-ca.pem",
            "other-client.pem",
            "other-client-key.pem",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        assert_eq!(certs.ca_path(), dir.join("ca.pem"));
        assert_eq!(fs::read(certs.ca_path()).unwrap(), certs.ca_pem());
        assert_eq!(
            fs::read(certs.client_key_path()).unwrap(),
            certs.client_key_pem()
        );
        assert!(certs
            .server_key_pem()
            .starts_with(b"-----BEGIN PRIVATE KEY-----"));
        assert_ne!(certs.ca_pem(), certs.other_ca_pem());
        let extra = certs.issue_client("alice").unwrap();
        assert_eq!(extra.cert_path(), dir.join("client-alice.pem"));
        drop(certs);
        assert!(!dir.exists(), "temp certs dir not removed");
    }

    /// Checks the chain and SANs with the openssl CLI when it is installed.
    #[test]
    fn chain_verifies_with_openssl() {
        let certs = TestCerts::generate_temp().unwrap();
        let ca = certs.ca_path().to_str().unwrap();
        let Some(v) = openssl(&["version"]) else {
            eprintln!("openssl not installed; skipping");
            return;
        };
        assert!(!v.is_empty());
        let server = certs.server_cert_path().to_str().unwrap();
        let client = certs.client_cert_path().to_str().unwrap();
        let out = openssl(&["verify", "-CAfile", ca, "-purpose", "sslserver", server]).unwrap();
        assert!(out.contains(": OK"), "{out}");
        let out = openssl(&["verify", "-CAfile", ca, "-purpose", "sslclient", client]).unwrap();
        assert!(out.contains(": OK"), "{out}");
        let other = certs.other_ca_path().to_str().unwrap();
        let out = openssl(&["verify", "-CAfile", other, server]).unwrap();
        assert!(!out.contains(": OK"), "{out}");
        let text = openssl(&["x509", "-in", server, "-noout", "-text"]).unwrap();
        for san in [
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
            "DNS:localhost",
            "DNS:etcd.test",
        ] {
            assert!(text.contains(san), "server cert lacks {san}: {text}");
        }
        let text = openssl(&["x509", "-in", client, "-noout", "-subject"]).unwrap();
        assert!(
            text.contains("CN = root") || text.contains("CN=root"),
            "{text}"
        );
    }
}
