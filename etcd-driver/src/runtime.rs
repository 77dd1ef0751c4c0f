//! What the driver needs from an async runtime: connect, sleep until an instant, spawn.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Instant;

use etcd_proto_core::Endpoint;
use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A runtime the driver can run on. Implementations are a few lines per runtime; all protocol
/// logic stays in the core and the driver.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected byte stream (TCP, or TLS over TCP). The driver needs tokio's I/O traits
    /// only because `h2` does; no tokio runtime is required to implement them.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a byte stream to the endpoint (TLS when its scheme is `https`). The HTTP/2
    /// handshake is done by the driver.
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<io::Result<Self::Io>>;

    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()>;

    /// Runs a task in the background.
    fn spawn(&self, task: BoxFuture<()>);

    /// The current time (the only clock read, and it happens here, not in the core).
    fn now(&self) -> Instant {
        Instant::now()
    }
}
