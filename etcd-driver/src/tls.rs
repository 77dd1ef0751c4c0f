//! TLS settings turned into a rustls client configuration, once for every adapter: ALPN `h2`,
//! the given CA bundle (or the Mozilla roots), an optional client identity, and the name to
//! verify (an IP address endpoint verifies against the certificate's IP SANs).
//!
//! With [`TlsConfig::insecure_skip_verify`] the server's certificate chain and name are not
//! verified at all (`AcceptAnyServerCert`); the handshake signatures still are.

use std::io;
use std::sync::Arc;

use etcd_proto_core::{Endpoint, Error, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A ready TLS client configuration.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish_non_exhaustive()
    }
}

/// The verifier of [`TlsConfig::insecure_skip_verify`]: **no server authentication**. Any
/// certificate chain is accepted for any name, at any time (Go's `InsecureSkipVerify`), but
/// the handshake signatures are still checked with the crypto provider's algorithms, so the
/// server must hold the key of the certificate it shows and the key exchange is not
/// tampered with.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("TLS {what}: {e}"))
}

impl TlsConnector {
    /// Builds the rustls configuration; bad PEM data is a typed configuration error.
    pub fn new(tls: &TlsConfig) -> Result<TlsConnector, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &tls.ca_pem {
            Some(pem) => {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| invalid("CA bundle", e))?;
                    roots.add(cert).map_err(|e| invalid("CA certificate", e))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(invalid("CA bundle", "no certificate found in the PEM data"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?;
        // The CA bundle is still read above (bad PEM stays an error), but not used when
        // verification is off.
        let builder = if tls.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { algorithms }))
        } else {
            builder.with_root_certificates(roots)
        };
        let mut config = match &tls.client_identity {
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("client certificate", e))?;
                if chain.is_empty() {
                    return Err(invalid(
                        "client certificate",
                        "no certificate found in the PEM data",
                    ));
                }
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("client key", e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid("client identity", e))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = match &tls.server_name {
            Some(name) => {
                Some(ServerName::try_from(name.clone()).map_err(|e| invalid("server name", e))?)
            }
            None => None,
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name,
            insecure_skip_verify: tls.insecure_skip_verify,
        })
    }

    /// The rustls configuration (ALPN `h2` set).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name to verify for this endpoint: the override, else the endpoint's host (a DNS
    /// name or an IP address).
    pub fn server_name(&self, endpoint: &Endpoint) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        ServerName::try_from(endpoint.host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{endpoint}: not a valid TLS server name: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use rustls::{ClientConnection, ServerConfig, ServerConnection};

    /// A self-signed P-256 certificate for `unit.test`, made for these tests only.
    const CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBkzCCATigAwIBAgIUJsmr2u7vQU45jEjbOC3WYjXzHTIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdW5pdC50ZXN0MCAXDTI2MTEyNjA1NDUyM1oYDzIxMjYxMTAy
MDU0NTIzWjAUMRIwEAYDVQQDDAl1bml0LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASkINoDFt4bJpA9Vf1olbss88sV7wsBVSFwO55fUUf9Qe+Oaxn4ISrh
xr7T4khv9nJxOOdw+FLZ2vr2enBvYgFDo2YwZDAdBgNVHQ4EFgQUtfMHvi94GCoD
IDteQ1LUeMIN6u4wHwYDVR0jBBgwFoAUtfMHvi94GCoDIDteQ1LUeMIN6u4wFAYD
VR0RBA0wC4IJdW5pdC50ZXN0MAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0EAwIDSQAw
RgIhAO0WjYZWI8X5j0Vf59FHkNcBHZ+r7Q0RxqH/qS7GnZfvAiEAoa8jGClHLTSJ
EvaXcB+4Q++/oAS2yS3YZ780/X47QEw=
-----END CERTIFICATE-----
";
    /// Its key (PKCS#8).
    const KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoFHDBrnwd1tHnkau
sb0RICF/c0TZO08Puh+kYWf01s+hRANCAASkINoDFt4bJpA9Vf1olbss88sV7wsB
VSFwO55fUUf9Qe+Oaxn4ISrhxr7T4khv9nJxOOdw+FLZ2vr2enBvYgFD
-----END PRIVATE KEY-----
";
    /// An unrelated P-256 key.
    const OTHER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgp4+8mlE6B5Ujv2e6
RHfzOBW3+GUBL0whHt+JpbutQUKhRANCAATN1ZxeXFayp5jQu1ybQJl0w2ok9zi/
AW3LxSKm15300d4/sjBFc9wXQE/4xYDWyi7VhWlCn/AwA9VmjT6R5Td7
-----END PRIVATE KEY-----
";

    /// Always shows `CERT`, and signs the handshake with the key given.
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    fn server(key_pem: &str, tls12_only: bool) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let key = provider.key_provider.load_private_key(key).unwrap();
        let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let builder = ServerConfig::builder_with_provider(provider);
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_protocol_versions(&[&rustls::version::TLS13])
        };
        builder
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(
                vec![cert],
                key,
            )))))
    }

    /// Runs a handshake in memory; the error says which side gave up.
    fn handshake(client: &TlsConfig, name: &str, server: ServerConfig) -> Result<(), String> {
        let connector = TlsConnector::new(client).unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = ClientConnection::new(connector.config(), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            let mut flight = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut flight).unwrap();
            }
            let mut rest = &flight[..];
            while !rest.is_empty() {
                s.read_tls(&mut rest).unwrap();
                s.process_new_packets()
                    .map_err(|e| format!("server: {e}"))?;
            }
            let mut flight = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut flight).unwrap();
            }
            let mut rest = &flight[..];
            while !rest.is_empty() {
                c.read_tls(&mut rest).unwrap();
                c.process_new_packets()
                    .map_err(|e| format!("client: {e}"))?;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn verification_is_on_by_default() {
        for tls12 in [false, true] {
            let err =
                handshake(&TlsConfig::default(), "unit.test", server(KEY, tls12)).unwrap_err();
            // UnknownIssuer (the certificate is self-signed and not among the roots).
            assert!(err.starts_with("client: invalid peer certificate"), "{err}");
        }
    }

    #[test]
    fn skip_verify_accepts_any_certificate_for_any_name() {
        let insecure = TlsConfig::default().insecure_skip_verify();
        for tls12 in [false, true] {
            handshake(&insecure, "unit.test", server(KEY, tls12)).unwrap();
            handshake(&insecure, "somewhere-else.test", server(KEY, tls12)).unwrap();
        }
    }

    #[test]
    fn skip_verify_still_checks_the_handshake_signatures() {
        // The server shows CERT but signs with a key that is not CERT's: refused.
        let insecure = TlsConfig::default().insecure_skip_verify();
        for tls12 in [false, true] {
            let err = handshake(&insecure, "unit.test", server(OTHER_KEY, tls12)).unwrap_err();
            assert!(err.starts_with("client:"), "{err}");
            assert!(err.contains("BadSignature"), "{err}");
        }
    }

    #[test]
    fn skip_verify_keeps_the_other_settings() {
        // Bad PEM stays a configuration error, even if the CA bundle is not used.
        let bad = TlsConfig::with_ca_pem(b"not a pem".to_vec()).insecure_skip_verify();
        assert!(matches!(
            TlsConnector::new(&bad),
            Err(Error::InvalidConfig(_))
        ));
        // A client identity is still offered.
        let with_identity = TlsConfig::default()
            .identity(CERT.as_bytes(), KEY.as_bytes())
            .insecure_skip_verify();
        let connector = TlsConnector::new(&with_identity).unwrap();
        assert!(connector.config().client_auth_cert_resolver.has_certs());
        assert_eq!(connector.config().alpn_protocols, vec![b"h2".to_vec()]);
        assert!(format!("{connector:?}").contains("insecure_skip_verify: true"));
    }
}
