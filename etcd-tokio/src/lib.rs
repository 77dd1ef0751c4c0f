//! etcd v3 client for tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_tokio::Error> {
//! use etcd_tokio::{Client, Compare, CompareOp, Get, Put, Txn};
//!
//! let client = Client::connect(["http://127.0.0.1:2379"])?;
//! client.put(("greeting", "hello")).await?;
//! let resp = client.get(Get::new("greet").prefix()).await?;
//! for kv in &resp.kvs {
//!     println!("{:?} = {:?}", kv.key, kv.value);
//! }
//! let txn = Txn::new()
//!     .when([Compare::value("greeting", CompareOp::Equal, "hello")])
//!     .and_then([Put::new("greeting", "hi")])
//!     .or_else([Get::new("greeting")]);
//! let resp = client.txn(txn).await?;
//! assert!(resp.succeeded);
//! # Ok(())
//! # }
//! ```
//!
//! This crate only says how to connect, sleep and spawn on tokio; the protocol lives in
//! `etcd-proto-core` and the HTTP/2 driver in `etcd-driver`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::Instant;

use etcd_driver::{BoxFuture, BoxIo, Runtime, TlsConnector};
use tokio::net::TcpStream;

pub use etcd_driver::concurrency;
pub use etcd_driver::core::rpc::kv::{
    prefix_range_end, Compact, Compare, CompareOp, Delete, Get, Put, SortOrder, SortTarget, Txn,
    TxnOp,
};
pub use etcd_driver::core::{Direction, InvalidRequest};
pub use etcd_driver::{
    core, proto, rpc, CallOptions, Code, Config, Credentials, Endpoint, Error, EtcdError,
    EtcdErrorKind, KeepAliveResponse, KeepAliveTarget, LeaseKeeper, LeaseLostReason, ObserveStream,
    SavedSnapshot, ServerStream, SnapshotStream, Status, TlsConfig, Watch, WatchId, WatchResponse,
    WatchResponseKind, WatchSet, Watcher,
};

/// The tokio runtime for the driver. Tasks are spawned on the runtime that was current when
/// the client was created.
#[derive(Debug, Clone)]
pub struct Tokio {
    handle: tokio::runtime::Handle,
}

impl Tokio {
    /// Uses the current tokio runtime; a typed error when called outside of one.
    pub fn current() -> Result<Tokio, Error> {
        tokio::runtime::Handle::try_current()
            .map(|handle| Tokio { handle })
            .map_err(|_| {
                Error::InvalidConfig("etcd-tokio must be used inside a tokio runtime".into())
            })
    }
}

impl Runtime for Tokio {
    fn connect(
        &self,
        endpoint: &Endpoint,
        tls: Option<&TlsConnector>,
    ) -> BoxFuture<io::Result<BoxIo>> {
        let host = endpoint.host.clone();
        let port = endpoint.port;
        let tls = tls.map(|t| (t.config(), t.server_name(endpoint)));
        Box::pin(async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            match tls {
                None => Ok(Box::new(tcp) as BoxIo),
                Some((config, name)) => {
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name?, tcp)
                        .await?;
                    Ok(Box::new(stream) as BoxIo)
                }
            }
        })
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        self.handle.spawn(task);
    }
}

/// The etcd client on tokio. Every call method comes from [`etcd_driver::Client`] (through
/// `Deref`); this type adds the constructors that need tokio.
#[derive(Debug, Clone)]
pub struct Client(etcd_driver::Client);

impl Client {
    /// A client for these endpoints (`http://host:port`, `https://host:port`, `host:port`)
    /// with the default configuration. Connections open lazily, on the first call. Must be
    /// called inside a tokio runtime.
    pub fn connect<I, S>(endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_config(Config::from_endpoints(endpoints)?)
    }

    /// A client with a full configuration.
    pub fn with_config(config: Config) -> Result<Client, Error> {
        Ok(Client(etcd_driver::Client::new(Tokio::current()?, config)?))
    }

    /// The runtime-agnostic handle.
    pub fn inner(&self) -> &etcd_driver::Client {
        &self.0
    }
}

impl std::ops::Deref for Client {
    type Target = etcd_driver::Client;
    fn deref(&self) -> &etcd_driver::Client {
        &self.0
    }
}
