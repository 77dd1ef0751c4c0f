//! The application side of a watch: a stream of responses that ends with the reason.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use etcd_proto_core::{Error, Watch, WatchId, WatchResponse};

use crate::client::{start_watch, Inner};
use crate::driver::{Command, SeqHashMap, WatchFlow, WatchUpdate};
use crate::inbox;

/// A running watcher. Read it with [`Watcher::next`] (or as a `futures` `Stream` through
/// [`Watcher::poll_next`]). It yields every event exactly once, in revision order, across
/// reconnects; it ends with `Some(Err(..))` when the watcher cannot go on (compaction, a
/// rejected create, no leader with `require_leader`, client closed) and then `None`.
/// Dropping it cancels the watcher on the server.
pub struct Watcher {
    inner: Arc<Inner>,
    id: WatchId,
    revision: i64,
    updates: inbox::Receiver<(WatchId, WatchUpdate)>,
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
        updates: inbox::Receiver<(WatchId, WatchUpdate)>,
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
            Poll::Ready(Some((_, WatchUpdate::Response(response, size)))) => {
                self.flow.consumed(&self.inner.commands, self.id, size);
                Poll::Ready(Some(Ok(response)))
            }
            Poll::Ready(Some((_, WatchUpdate::Ended(error)))) => {
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

/// Many watchers read through one receiver: `set.add(watch)` starts a watcher, `set.next()`
/// yields `(watcher, response)` for all of them, in the order they arrived. For an
/// application that watches many keys or ranges, one task reading one set costs far less
/// than a task per [`Watcher`]: one channel and one wake-up for whatever arrived together.
/// Each watcher keeps every guarantee of a [`Watcher`] (every event once, in order, across
/// reconnects; its own flow control). A watcher that ends with an error yields
/// `(id, Err(..))` once and leaves the set; [`WatchSet::cancel`] removes one quietly; dropping
/// the set cancels them all.
pub struct WatchSet {
    inner: Arc<Inner>,
    tx: inbox::Sender<(WatchId, WatchUpdate)>,
    rx: inbox::Receiver<(WatchId, WatchUpdate)>,
    members: SeqHashMap<WatchId, Member>,
    /// Resolves when the driver is gone (its watchers can no longer report their end);
    /// `None` once it has.
    driver_gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

struct Member {
    flow: Arc<WatchFlow>,
    revision: i64,
}

impl std::fmt::Debug for WatchSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSet")
            .field("watchers", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl WatchSet {
    pub(crate) fn new(inner: Arc<Inner>) -> WatchSet {
        let (tx, rx) = inbox::channel();
        let commands = inner.commands.clone();
        WatchSet {
            inner,
            tx,
            rx,
            members: SeqHashMap::default(),
            driver_gone: Some(Box::pin(async move { commands.closed().await })),
        }
    }

    /// Starts a watcher in this set and waits until the server created it; returns its ID.
    pub async fn add(&mut self, watch: impl Into<Watch>) -> Result<WatchId, Error> {
        let (id, revision, flow) = start_watch(&self.inner, watch.into(), self.tx.clone()).await?;
        self.members.insert(id, Member { flow, revision });
        Ok(id)
    }

    /// The store revision when the server created watcher `id` (events after it follow).
    pub fn created_revision(&self, id: WatchId) -> Option<i64> {
        self.members.get(&id).map(|m| m.revision)
    }

    /// Whether watcher `id` is still in the set.
    pub fn contains(&self, id: WatchId) -> bool {
        self.members.contains_key(&id)
    }

    /// Number of watchers in the set.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set has no watcher.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Stops watcher `id`: nothing more is yielded for it.
    pub fn cancel(&mut self, id: WatchId) {
        if self.members.remove(&id).is_some() {
            let _ = self.inner.commands.send(Command::CancelWatch { watch: id });
        }
    }

    /// The next response of any watcher of the set, with the watcher's ID; `(id, Err(..))`
    /// when that watcher ended with an error (it has left the set); `None` once the set has
    /// no watcher left.
    pub async fn next(&mut self) -> Option<(WatchId, Result<WatchResponse, Error>)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next response if one is already here, without waiting: `None` when nothing is
    /// ready (or the set is empty). After [`WatchSet::next`] returned, this drains the rest of
    /// what arrived with it, in one wake-up.
    pub fn try_next(&mut self) -> Option<(WatchId, Result<WatchResponse, Error>)> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_next(&mut cx) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// Polls for the next response (the `Stream::poll_next` shape).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(WatchId, Result<WatchResponse, Error>)>> {
        loop {
            if self.members.is_empty() {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some((id, WatchUpdate::Response(response, size)))) => {
                    // Late responses of a cancelled watcher are dropped.
                    let Some(member) = self.members.get(&id) else {
                        continue;
                    };
                    member.flow.consumed(&self.inner.commands, id, size);
                    return Poll::Ready(Some((id, Ok(response))));
                }
                Poll::Ready(Some((id, WatchUpdate::Ended(error)))) => {
                    if self.members.remove(&id).is_some() {
                        if let Some(error) = error {
                            return Poll::Ready(Some((id, Err(error))));
                        }
                    }
                }
                // The set holds a sender itself, so the channel never closes.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if let Some(gone) = &mut self.driver_gone {
                        if gone.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        self.driver_gone = None;
                    }
                    let id = *self.members.keys().next().expect("not empty");
                    self.members.remove(&id);
                    return Poll::Ready(Some((id, Err(Error::ClientClosed))));
                }
            }
        }
    }
}

impl Drop for WatchSet {
    fn drop(&mut self) {
        for id in self.members.keys() {
            let _ = self
                .inner
                .commands
                .send(Command::CancelWatch { watch: *id });
        }
    }
}
