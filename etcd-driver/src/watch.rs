//! The application side of a watch: a stream of responses that ends with the reason.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use etcd_proto_core::{Error, WatchId, WatchResponse};
use tokio::sync::mpsc;

use crate::client::Inner;
use crate::driver::{Command, WatchFlow, WatchUpdate};

/// A running watcher. Read it with [`Watcher::next`] (or as a `futures` `Stream` through
/// [`Watcher::poll_next`]). It yields every event exactly once, in revision order, across
/// reconnects; it ends with `Some(Err(..))` when the watcher cannot go on (compaction, a
/// rejected create, no leader with `require_leader`, client closed) and then `None`.
/// Dropping it cancels the watcher on the server.
pub struct Watcher {
    inner: Arc<Inner>,
    id: WatchId,
    revision: i64,
    updates: mpsc::UnboundedReceiver<WatchUpdate>,
    flow: Arc<WatchFlow>,
    done: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("id", &self.id)
            .field("revision", &self.revision)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub(crate) fn new(
        inner: Arc<Inner>,
        id: WatchId,
        revision: i64,
        updates: mpsc::UnboundedReceiver<WatchUpdate>,
        flow: Arc<WatchFlow>,
    ) -> Watcher {
        Watcher {
            inner,
            id,
            revision,
            updates,
            flow,
            done: false,
        }
    }

    /// The watcher's ID.
    pub fn id(&self) -> WatchId {
        self.id
    }

    /// The store revision when the server created the watcher: events after it follow.
    pub fn created_revision(&self) -> i64 {
        self.revision
    }

    /// The next response; `Some(Err(..))` once if the watcher ended with an error, then
    /// `None`.
    pub async fn next(&mut self) -> Option<Result<WatchResponse, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next response (the `Stream::poll_next` shape).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WatchResponse, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.updates.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(WatchUpdate::Response(response, size))) => {
                if size > 0 && self.flow.consumed(size) {
                    let _ = self
                        .inner
                        .commands
                        .send(Command::WatchConsumed { watch: self.id });
                }
                Poll::Ready(Some(Ok(response)))
            }
            Poll::Ready(Some(WatchUpdate::Ended(error))) => {
                self.done = true;
                Poll::Ready(error.map(Err))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::ClientClosed)))
            }
        }
    }

    /// Stops the watcher (the same as dropping it).
    pub fn cancel(self) {}
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .inner
                .commands
                .send(Command::CancelWatch { watch: self.id });
        }
    }
}

impl Unpin for Watcher {}

/// Lets `Pin<&mut Watcher>` be polled like a stream without depending on `futures`.
impl Watcher {
    /// Polls a pinned watcher.
    pub fn poll_next_pinned(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WatchResponse, Error>>> {
        self.get_mut().poll_next(cx)
    }
}
