//! TLS settings turned into a rustls client configuration, once for every adapter: ALPN `h2`,
//! the given CA bundle (or the Mozilla roots), an optional client identity, and the name to
//! verify (an IP address endpoint verifies against the certificate's IP SANs).

use std::io;
use std::sync::Arc;

use etcd_proto_core::{Endpoint, Error, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// A ready TLS client configuration.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
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
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?
            .with_root_certificates(roots);
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
