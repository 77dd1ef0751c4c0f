//! etcd v3 client for smol, and for any executor that runs on the `async-io` reactor
//! (async-std included).
//!
//! ```no_run
//! # fn main() -> Result<(), etcd_smol::Error> {
//! use etcd_smol::{Client, Get};
//!
//! smol::block_on(async {
//!     let client = Client::connect(["http://127.0.0.1:2379"])?;
//!     client.put(("greeting", "hello")).await?;
//!     let resp = client.get(Get::new("greet").prefix()).await?;
//!     assert_eq!(resp.count, 1);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! The driver runs on smol's global executor (its own threads), so the client works under
//! whatever executor awaits its calls: smol, async-std, `futures::executor`, a plain
//! `block_on`. [`Client::with_runtime`] with [`Smol::on`] runs it on an executor of your own
//! instead. Sockets come from `async-net`, timers from `async-io`, TLS from `futures-rustls`;
//! `h2` reads and writes through `tokio-util`'s compat bridge, which starts no tokio runtime.
//!
//! This crate only says how to connect, sleep and spawn; the protocol lives in
//! `etcd-proto-core` and the HTTP/2 driver in `etcd-driver`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::sync::{Arc, Weak};
use std::time::Instant;

use smol::net::TcpStream;
use smol::{Executor, Timer};
use tokio_util::compat::FuturesAsyncReadCompatExt;

// Everything the driver exports (its `Client` is shadowed by the one below), so this list
// never lags behind it, plus the request builders at the crate root.
pub use etcd_driver::core::rpc::kv::*;
pub use etcd_driver::core::{Direction, InvalidRequest};
pub use etcd_driver::*;

/// Where the driver's tasks run.
#[derive(Debug, Clone)]
enum Spawner {
    /// smol's global executor.
    Global,
    /// A caller's executor, not kept alive by the driver.
    On(Weak<Executor<'static>>),
}

/// The smol runtime for the driver: `async-net` sockets, `async-io` timers, and an executor.
#[derive(Debug, Clone)]
pub struct Smol {
    spawner: Spawner,
}

impl Default for Smol {
    fn default() -> Smol {
        Smol::global()
    }
}

impl Smol {
    /// Runs the driver on smol's global executor, which has threads of its own: nothing else
    /// needs to run for the client to make progress.
    pub fn global() -> Smol {
        Smol {
            spawner: Spawner::Global,
        }
    }

    /// Runs the driver on `executor`; something must keep running it (`executor.run(..)`)
    /// while the client is used. The runtime does not keep the executor alive: once it is
    /// dropped, the driver's tasks are dropped with it and every call, in flight or new, fails
    /// with [`Error::ClientClosed`].
    pub fn on(executor: &Arc<Executor<'static>>) -> Smol {
        Smol {
            spawner: Spawner::On(Arc::downgrade(executor)),
        }
    }
}

impl Runtime for Smol {
    fn connect(&self, to: &Endpoint, tls: Option<&TlsConnector>) -> BoxFuture<io::Result<BoxIo>> {
        let addr = (to.host.clone(), to.port);
        let tls = tls.map(|t| {
            (
                futures_rustls::TlsConnector::from(t.config()),
                t.server_name(to),
            )
        });
        Box::pin(async move {
            let tcp = TcpStream::connect((addr.0.as_str(), addr.1)).await?;
            tcp.set_nodelay(true)?;
            let io: BoxIo = match tls {
                None => Box::new(tcp.compat()),
                Some((connector, name)) => Box::new(connector.connect(name?, tcp).await?.compat()),
            };
            Ok(io)
        })
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        let timer = Timer::at(deadline);
        Box::pin(async move {
            timer.await;
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        match &self.spawner {
            Spawner::Global => smol::spawn(task).detach(),
            Spawner::On(executor) => {
                // A dropped executor drops the task: the client is closed.
                if let Some(executor) = executor.upgrade() {
                    executor.spawn(task).detach();
                }
            }
        }
    }
}

/// The etcd client on smol. Every call method comes from [`etcd_driver::Client`] (through
/// `Deref`); this type adds the constructors. Unlike `etcd-tokio`, no runtime needs to be
/// current: a client can be built and used from any thread or executor.
#[derive(Debug, Clone)]
pub struct Client {
    driver: etcd_driver::Client,
}

impl Client {
    /// A client for these endpoints (`http://host:port`, `https://host:port`, `host:port`)
    /// with the default configuration, on smol's global executor. Connections open lazily,
    /// on the first call.
    pub fn connect(endpoints: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Client, Error> {
        Config::from_endpoints(endpoints).and_then(Client::with_config)
    }

    /// A client with a full configuration, on smol's global executor.
    pub fn with_config(config: Config) -> Result<Client, Error> {
        Client::with_runtime(Smol::global(), config)
    }

    /// A client whose driver runs on `runtime` (see [`Smol::on`]).
    pub fn with_runtime(runtime: Smol, config: Config) -> Result<Client, Error> {
        let driver = etcd_driver::Client::new(runtime, config)?;
        Ok(Client { driver })
    }

    /// The runtime-agnostic handle.
    pub fn inner(&self) -> &etcd_driver::Client {
        &self.driver
    }
}

impl std::ops::Deref for Client {
    type Target = etcd_driver::Client;
    fn deref(&self) -> &etcd_driver::Client {
        &self.driver
    }
}
