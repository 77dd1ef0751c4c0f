//! Distributed coordination built on the KV, watch and lease primitives: the Go client's
//! `concurrency` package ([`Session`], [`Mutex`], [`Election`], [`stm`]) and its
//! `experimental/recipes` ([`recipes`]). Everything here is written once over [`Client`] and
//! runs on any runtime the client runs on.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::concurrency::ConcurrencyError> {
//! use etcd_driver::concurrency::{Election, Mutex, Session};
//!
//! let session = Session::new(&client).await?;
//! let mut lock = Mutex::new(&session, "/jobs/lock");
//! lock.lock().await?;
//! // ... critical section; `lock.is_owner()` guards writes in a transaction ...
//! lock.unlock().await?;
//!
//! let mut election = Election::new(&session, "/jobs/leader");
//! election.campaign("node-1").await?;
//! election.proclaim("node-1, busy").await?;
//! election.resign().await?;
//! session.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Keys
//!
//! The keys are the Go client's, so Go programs, `etcdctl lock`/`elect` and the server's
//! `v3lock`/`v3election` services interoperate with these types: a mutex or election named
//! `pfx` uses the prefix `pfx/` (a `/` is always appended, so `"/my-lock/"` becomes
//! `"/my-lock//"`, as in Go) and the key `pfx/<lease ID in lowercase hex>`.
//!
//! # Cancellation
//!
//! Every method is an `async fn` that can be dropped at any await point. Where Go cleans up
//! when the context is cancelled, dropping the future does the same without waiting: a
//! [`Mutex::lock`] that is dropped while waiting deletes the waiter key it created (Go's
//! `Unlock` on a cancelled `Lock`), and a dropped [`Election::campaign`] resigns (Go's
//! `Resign` on a cancelled `Campaign`). The clean-up request is handed to the driver and
//! runs even though nobody awaits it.
//!
//! # Differences from Go
//!
//! * Waiting for the lock or the leadership also ends as soon as the waiter's own key is
//!   deleted or the session's lease is lost: [`ConcurrencyError::SessionExpired`] comes at
//!   once instead of after every predecessor has gone (Go's `TODO: early termination`).
//!   [`Election::campaign`] checks for it too (Go's returns success with its key gone).
//! * A watch that fails because its start revision was compacted is not an error for the
//!   waiting helpers: they re-read the state and wait again. Go returns the error (or, in the
//!   recipes, swallows it and dereferences a nil event).
//! * [`Mutex::try_lock`] deletes its key on failure only if that call created it (Go also
//!   deletes the key another `Mutex` of the same session is waiting with).
//! * [`Election::proclaim`] that finds the leadership lost forgets it entirely (Go keeps the
//!   session and an empty key, so the next `Proclaim` sends an empty key).
//! * [`Election::resume`] appends `/` to the name like [`Election::new`] (Go's
//!   `ResumeElection` does not, so a resumed election's `Leader` and `Observe` scan a wider
//!   prefix).
//! * [`Observer`] (Go's `Observe`) ends with the error that stopped it instead of closing
//!   silently, and resynchronises by reading the leader again after a compaction.
//! * STM reads return `Option<Bytes>` (Go returns `""` for a missing key), and a multi-key
//!   read returns every key's value (Go returns the first key's value, or that of whichever
//!   key happens to be cached already). See [`stm`].
//! * A lock or campaign whose session's lease is already gone fails with
//!   [`ConcurrencyError::SessionExpired`] (Go returns the server's "lease not found").
//! * [`Session::done`] may be awaited by any number of tasks and says why the keepalive
//!   ended ([`SessionEnd`]); [`Session::close`] of a session whose lease is already gone is
//!   not an error. There is no `WithContext`: dropping a future cancels it.
//! * [`Election::header`] after a campaign is the header of the read that found no
//!   predecessor (Go keeps the header of the campaign's first transaction).
//! * The recipes scan their prefixes with the trailing `/` (Go's `Queue` scans `pfx`, so
//!   queue `q` also dequeues the items of queue `q2`; the double barrier likewise counts
//!   `key/waiters*`), and [`recipes::PriorityQueue`] takes a `u16` priority only (Go's
//!   `EnqueueUint64` formats wider values with more digits, which breaks the ordering).
//!   [`recipes::RwMutex`] cleans up after a failed or dropped wait and reports an expired
//!   session, like [`Mutex`].
//! * Not provided: Go's `NewLocker` (a `sync.Locker` that panics on errors) and the
//!   deprecated `NewSTMRepeatable`/`NewSTMSerializable`/`NewSTMReadCommitted` wrappers.

mod election;
mod error;
mod mutex;
pub mod recipes;
mod session;
pub mod stm;

pub use election::{Election, Observer, Proclamation};
pub use error::ConcurrencyError;
pub use mutex::Mutex;
pub use session::{Done, Session, SessionEnd, SessionOptions, DEFAULT_SESSION_TTL};
pub use stm::{Committed, Isolation, Stm, StmOptions};

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use etcd_proto_core::proto::etcdserverpb::{response_op, RangeResponse, TxnResponse};
use etcd_proto_core::proto::mvccpb::{event::EventType, Event};
use etcd_proto_core::rpc::kv::{Get, SortOrder, SortTarget};
use etcd_proto_core::rpc::UnaryRpc;
use etcd_proto_core::{Error, Watch};
use tokio::sync::oneshot;

use crate::driver::{Command, StartFn};
use crate::{Client, Watcher};

/// `prefix` + `suffix`.
pub(crate) fn concat(prefix: &[u8], suffix: &[u8]) -> Bytes {
    let mut key = BytesMut::with_capacity(prefix.len() + suffix.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(suffix);
    key.freeze()
}

/// The key of a lease's waiter under `prefix` (Go's `fmt.Sprintf("%s%x", pfx, lease)`).
pub(crate) fn lease_key(prefix: &[u8], lease: i64) -> Bytes {
    concat(prefix, format!("{lease:x}").as_bytes())
}

/// The range response of op `index` of a transaction.
pub(crate) fn range_at(resp: &TxnResponse, index: usize) -> Option<&RangeResponse> {
    match resp.responses.get(index)?.response.as_ref()? {
        response_op::Response::ResponseRange(range) => Some(range),
        _ => None,
    }
}

/// Whether an event deletes its key.
pub(crate) fn is_delete(event: &Event) -> bool {
    event.r#type == EventType::Delete as i32
}

/// Whether an event puts its key.
pub(crate) fn is_put(event: &Event) -> bool {
    event.r#type == EventType::Put as i32
}

/// Sends a unary request without waiting for its answer: clean-up from `Drop`, where nothing
/// can be awaited. The driver runs it like any call (with the handle's options); the answer
/// is dropped.
pub(crate) fn fire_and_forget<R>(client: &Client, rpc: R)
where
    R: UnaryRpc + Send + 'static,
{
    let token = client.inner.next_token.fetch_add(1, Ordering::Relaxed);
    let options = client.options.clone();
    let (reply, _) = oneshot::channel();
    let start: StartFn = Box::new(move |core, now| core.start_unary(rpc, options, now));
    let _ = client.inner.commands.send(Command::Unary {
        token,
        start,
        reply,
    });
}

/// Runs two futures concurrently and returns both outputs.
pub(crate) async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut out_a = None;
    let mut out_b = None;
    poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (
        out_a.expect("polled to completion"),
        out_b.expect("polled to completion"),
    )
}

/// How a wait on a watcher ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The awaited event came.
    Event(Event),
    /// The start revision was compacted: re-read the state and wait again.
    Compacted,
}

/// Polls `watcher` until an event matching `wanted`, a compaction, or an error.
pub(crate) fn poll_event(
    watcher: &mut Watcher,
    cx: &mut std::task::Context<'_>,
    wanted: &mut impl FnMut(&Event) -> bool,
) -> Poll<Result<Waited, Error>> {
    loop {
        match watcher.poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(resp))) => {
                if let Some(event) = resp.events.into_iter().find(|e| wanted(e)) {
                    return Poll::Ready(Ok(Waited::Event(event)));
                }
            }
            Poll::Ready(Some(Err(Error::WatchCompacted { .. }))) => {
                return Poll::Ready(Ok(Waited::Compacted))
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Err(Error::ClientClosed)),
        }
    }
}

/// Starts a watcher; a compacted start revision is [`Waited::Compacted`], as from the stream.
pub(crate) async fn start_watch(client: &Client, watch: Watch) -> Result<Option<Watcher>, Error> {
    match client.watch(watch).await {
        Ok(watcher) => Ok(Some(watcher)),
        Err(Error::WatchCompacted { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Watches `watch` until an event matching `wanted` (Go's recipe `WaitEvents` /
/// `WaitPrefixEvents` with one event type).
pub(crate) async fn wait_event(
    client: &Client,
    watch: Watch,
    mut wanted: impl FnMut(&Event) -> bool,
) -> Result<Waited, Error> {
    let Some(mut watcher) = start_watch(client, watch).await? else {
        return Ok(Waited::Compacted);
    };
    poll_fn(|cx| poll_event(&mut watcher, cx, &mut wanted)).await
}

/// The keys under `prefix` created at or before `max_create_rev`, newest first, at most
/// `limit`.
pub(crate) fn newest_created(prefix: &Bytes, max_create_rev: i64, limit: i64) -> Get {
    Get::new(prefix.clone())
        .prefix()
        .sort(SortTarget::CreateRevision, SortOrder::Descend)
        .max_create_revision(max_create_rev)
        .limit(limit)
}

/// Nanoseconds since the Unix epoch (the unique-key suffix of Go's recipes).
pub(crate) fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::recipes::{Barrier, DoubleBarrier, PriorityQueue, Queue, RwMutex};
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<Session>();
        send_sync::<Done>();
        send_sync::<Mutex>();
        send_sync::<Election>();
        send_sync::<Observer>();
        send_sync::<Stm>();
        send_sync::<Barrier>();
        send_sync::<DoubleBarrier>();
        send_sync::<Queue>();
        send_sync::<PriorityQueue>();
        send_sync::<RwMutex>();
        send_sync::<ConcurrencyError>();
    }

    /// Type-checked only: every future can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    async fn futures_are_send(
        client: &Client,
        session: &Session,
        mutex: &mut Mutex,
        election: &mut Election,
        observer: &mut Observer,
        rw: &mut RwMutex,
        double: &mut DoubleBarrier,
    ) {
        send(&Session::new(client));
        send(&session.close());
        send(&session.done());
        send(&mutex.lock());
        send(&mutex.try_lock());
        send(&mutex.unlock());
        send(&election.campaign("v"));
        send(&election.proclaim("v"));
        send(&election.resign());
        send(&election.leader());
        send(&observer.next());
        send(&rw.lock());
        send(&rw.read_lock());
        send(&double.enter());
        send(&double.leave());
        send(&Barrier::new(client, "b").wait());
        send(&Queue::new(client, "q").dequeue());
        send(&PriorityQueue::new(client, "p").enqueue("v", 1));
        send(&stm::run(
            client,
            stm::Isolation::default(),
            async move |stm: &mut Stm| -> Result<(), Error> {
                stm.get("k").await?;
                stm.put("k", "v");
                Ok(())
            },
        ));
    }
}
