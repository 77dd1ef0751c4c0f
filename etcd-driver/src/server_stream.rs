//! The application side of server-streaming calls (Snapshot, Observe).

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::rpc::{decode_stream_message, Observe, ServerStreamingRpc, Snapshot};
use etcd_proto_core::{CallOptions, Error};
use tokio::sync::mpsc;

use crate::client::{Client, Inner};
use crate::driver::{Command, StartFn, StreamItem};

/// The messages of a server-streaming call, ending with `None` (success) or one
/// `Some(Err(..))`. Dropping it cancels the call.
pub struct ServerStream<R: ServerStreamingRpc> {
    inner: Arc<Inner>,
    token: u64,
    items: mpsc::UnboundedReceiver<StreamItem>,
    done: bool,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: ServerStreamingRpc> std::fmt::Debug for ServerStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStream")
            .field("method", &R::METHOD.path)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: ServerStreamingRpc> ServerStream<R> {
    /// The next message.
    pub async fn next(&mut self) -> Option<Result<R::Message, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next message (the `Stream::poll_next` shape).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R::Message, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.items.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(StreamItem::Message(body, size))) => {
                let _ = self.inner.commands.send(Command::StreamConsumed {
                    token: self.token,
                    bytes: size,
                });
                Poll::Ready(Some(decode_stream_message::<R>(body)))
            }
            Poll::Ready(Some(StreamItem::End(Ok(())))) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(StreamItem::End(Err(e)))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::ClientClosed)))
            }
        }
    }
}

impl<R: ServerStreamingRpc> Drop for ServerStream<R> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .inner
                .commands
                .send(Command::Cancel { token: self.token });
        }
    }
}

impl Client {
    /// Runs any server-streaming request.
    pub async fn server_stream<R>(&self, rpc: R) -> Result<ServerStream<R>, Error>
    where
        R: ServerStreamingRpc + Send + 'static,
    {
        self.server_stream_with(rpc, self.options.clone()).await
    }

    /// Runs any server-streaming request with explicit options.
    pub async fn server_stream_with<R>(
        &self,
        rpc: R,
        options: CallOptions,
    ) -> Result<ServerStream<R>, Error>
    where
        R: ServerStreamingRpc + Send + 'static,
    {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, items) = mpsc::unbounded_channel();
        let start: StartFn = Box::new(move |core, now| core.start_server_stream(rpc, options, now));
        self.inner
            .commands
            .send(Command::ServerStream {
                token,
                start,
                items: tx,
            })
            .map_err(|_| Error::ClientClosed)?;
        Ok(ServerStream {
            inner: self.inner.clone(),
            token,
            items,
            done: false,
            _rpc: PhantomData,
        })
    }

    /// Streams a snapshot of the backend of the member the call reaches (use
    /// [`Client::on_endpoint`] to choose it). The last chunk's `blob` is the SHA-256 of all
    /// earlier blob bytes.
    pub async fn snapshot(&self) -> Result<ServerStream<Snapshot>, Error> {
        self.server_stream(Snapshot).await
    }

    /// Every proclamation of election `name`, the current one first.
    pub async fn observe(&self, name: impl IntoBytes) -> Result<ServerStream<Observe>, Error> {
        self.server_stream(Observe::new(name)).await
    }
}

/// The message types, for naming streams.
pub type SnapshotStream = ServerStream<Snapshot>;
/// An observe stream.
pub type ObserveStream = ServerStream<Observe>;
