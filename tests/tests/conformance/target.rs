//! Which server a scenario runs against, and the configuration that reaches it.

use std::time::Duration;

use etcd_driver::{Config, TlsConfig};
use etcd_tests::{shared_endpoint, unique_prefix, EtcdServer, EtcdVersion, TestCerts};

/// Every call is bounded, so a hung server fails the test instead of stalling the run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The server a scenario needs.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// The run's shared server of that version (keys under a prefix of the test's own).
    Shared,
    /// A server of the test's own (for what changes the whole keyspace, like compaction).
    Fresh,
    /// A server of the test's own speaking mutual TLS.
    Tls,
}

/// A server, a key prefix and a client configuration for one scenario run.
pub struct Target {
    pub version: EtcdVersion,
    pub prefix: String,
    pub endpoint: String,
    pub config: Config,
    _server: Option<EtcdServer>,
}

impl Target {
    pub fn new(version: EtcdVersion, server: Server, test: &str) -> Target {
        let (endpoint, tls, own) = match server {
            Server::Shared => (shared_endpoint(version), None, None),
            Server::Fresh => {
                let server = EtcdServer::builder(version).start().expect("etcd");
                (server.client_url(), None, Some(server))
            }
            Server::Tls => {
                let certs = TestCerts::generate_temp().expect("certificates");
                let server = EtcdServer::builder(version)
                    .tls(&certs, true)
                    .start()
                    .expect("etcd with TLS");
                let mut tls = TlsConfig::with_ca_pem(certs.ca_pem());
                tls.client_identity = Some((
                    certs.client_cert_pem().to_vec(),
                    certs.client_key_pem().to_vec(),
                ));
                (server.client_url(), Some(tls), Some(server))
            }
        };
        let mut config = Config::from_endpoints([endpoint.as_str()]).expect("config");
        config.default_timeout = Some(CALL_TIMEOUT);
        config.tls = tls;
        Target {
            version,
            prefix: unique_prefix(test),
            endpoint,
            config,
            _server: own,
        }
    }

    /// `prefix` + `rest`, the form of every key a scenario writes.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A name unique to this run (users, roles, locks, elections).
    pub fn name(&self, what: &str) -> String {
        format!("{}{what}", self.prefix.replace('/', "_"))
    }
}
