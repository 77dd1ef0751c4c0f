//! What the driver needs from an async runtime: connect, sleep until an instant, spawn.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Instant;

use etcd_proto_core::Endpoint;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tls::TlsConnector;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A connected byte stream. The driver needs tokio's I/O traits only because `h2` does; no
/// tokio runtime is required to implement them.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connected stream, boxed.
pub type BoxIo = Box<dyn Io>;

/// A runtime the driver can run on. Implementations are a few lines per runtime; all protocol
/// logic stays in the core and the driver.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Opens a byte stream to the endpoint: TCP, then TLS with `tls` when it is given (the
    /// driver passes it for `https://` endpoints). The HTTP/2 handshake is the driver's.
    fn connect(
        &self,
        endpoint: &Endpoint,
        tls: Option<&TlsConnector>,
    ) -> BoxFuture<io::Result<BoxIo>>;

    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()>;

    /// Runs a task in the background.
    fn spawn(&self, task: BoxFuture<()>);

    /// The current time (the only clock read, and it happens here, not in the core).
    fn now(&self) -> Instant {
        Instant::now()
    }
}
