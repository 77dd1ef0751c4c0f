//! Which server a scenario runs against, and the configuration that reaches it.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use etcd_driver::{Config, TlsConfig};
use etcd_tests::{
    shared_endpoint, unique_prefix, EtcdServer, EtcdVersion, ProxyMode, TcpProxy, TestCerts,
};

/// Every call is bounded, so a hung server fails the test instead of stalling the run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The server a scenario needs.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// The run's shared server of that version (keys under a prefix of the test's own).
    Shared,
    /// A server of the test's own (for what changes the whole keyspace, like compaction, or
    /// what stops the server).
    Fresh,
    /// A server of the test's own speaking mutual TLS.
    Tls,
    /// The shared server behind a [`TcpProxy`] of the test's own: the client knows only the
    /// proxy, so [`Target::cut`] breaks every connection it has.
    Proxied,
    /// The shared server behind two proxies, both configured as endpoints: one can fail
    /// while the other still reaches the server.
    TwoProxies,
}

/// A server, a key prefix and a client configuration for one scenario run.
pub struct Target {
    pub version: EtcdVersion,
    pub prefix: String,
    /// The first configured endpoint.
    pub endpoint: String,
    /// The server itself, past any proxy: what a scenario checks the server's state through.
    pub direct: String,
    pub config: Config,
    proxies: Vec<Arc<TcpProxy>>,
    server: Option<EtcdServer>,
}

impl Target {
    pub fn new(version: EtcdVersion, server: Server, test: &str) -> Target {
        let mut proxies = Vec::new();
        let (endpoints, direct, tls, own) = match server {
            Server::Shared => {
                let shared = shared_endpoint(version);
                (vec![shared.clone()], shared, None, None)
            }
            Server::Fresh => {
                let server = EtcdServer::builder(version).start().expect("etcd");
                (
                    vec![server.client_url()],
                    server.client_url(),
                    None,
                    Some(server),
                )
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
                let url = server.client_url();
                (vec![url.clone()], url, Some(tls), Some(server))
            }
            Server::Proxied | Server::TwoProxies => {
                let shared = shared_endpoint(version);
                let n = if matches!(server, Server::Proxied) {
                    1
                } else {
                    2
                };
                for _ in 0..n {
                    proxies.push(Arc::new(TcpProxy::start(shared.as_str()).expect("proxy")));
                }
                let urls = proxies.iter().map(|p| p.url()).collect();
                (urls, shared, None, None)
            }
        };
        let mut config = Config::from_endpoints(&endpoints).expect("config");
        config.default_timeout = Some(CALL_TIMEOUT);
        config.tls = tls;
        if !proxies.is_empty() {
            // Reconnect at once after a cut, as a test of a few seconds needs.
            config.reconnect_backoff_min = Duration::from_millis(10);
            config.reconnect_backoff_max = Duration::from_millis(200);
        }
        Target {
            version,
            prefix: unique_prefix(test),
            endpoint: endpoints[0].clone(),
            direct,
            config,
            proxies,
            server: own,
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

    /// Proxy `i` of a proxied target.
    pub fn proxy(&self, i: usize) -> &TcpProxy {
        self.proxies.get(i).expect("a proxied target")
    }

    /// Cuts every connection through every proxy; returns how many were cut.
    pub fn cut(&self) -> usize {
        self.proxies.iter().map(|p| p.cut_all()).sum()
    }

    /// After `delay`, on a thread of its own (so it also happens while a blocking call
    /// holds the scenario's thread): cuts every connection through the first proxy, then
    /// switches it to `then`. The handle answers how many connections were cut.
    pub fn cut_after(&self, delay: Duration, then: ProxyMode) -> JoinHandle<usize> {
        let proxy = Arc::clone(&self.proxies[0]);
        thread::spawn(move || {
            thread::sleep(delay);
            let cut = proxy.cut_all();
            proxy.set_mode(then);
            cut
        })
    }

    /// The test's own server (of a `Fresh` target), to pause, resume or kill.
    pub fn server(&self) -> &EtcdServer {
        self.server.as_ref().expect("a server of the test's own")
    }
}
