//! A distributed mutex (Go's `concurrency.Mutex`).

use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::ResponseHeader;
use etcd_proto_core::rpc::kv::{Compare, CompareOp, Delete, Get, Put, Txn, TxnOp};
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::{Error, Watch};

use super::{
    concat, fire_and_forget, is_delete, join, lease_key, newest_created, poll_event, range_at,
    start_watch, ConcurrencyError, Session, SessionEnd, Waited,
};
use crate::{Client, Watcher};

/// Deletes a key from `Drop` unless disarmed: the clean-up of a cancelled wait.
pub(crate) struct DeleteOnDrop {
    pub(crate) client: Client,
    pub(crate) key: Option<Bytes>,
}

impl DeleteOnDrop {
    /// Disarms, returning the key it would have deleted.
    pub(crate) fn disarm(&mut self) -> Option<Bytes> {
        self.key.take()
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            fire_and_forget(&self.client, Delete::new(key));
        }
    }
}

/// Waits until no key under `prefix` created before `my_rev` is left, watching only the
/// newest of them (the immediate predecessor) at a time (Go's `waitDeletes`). Ends with
/// [`ConcurrencyError::SessionExpired`] as soon as `own_key` (created at `my_rev`) is deleted
/// or the session's lease is lost. Returns the header of the read that found no predecessor.
pub(crate) async fn wait_predecessors(
    session: &Session,
    prefix: &Bytes,
    own_key: &Bytes,
    my_rev: i64,
) -> Result<ResponseHeader, ConcurrencyError> {
    let client = session.client();
    let mut own_watch: Option<Watcher> = None;
    let mut session_live = true;
    loop {
        // One read answers both questions: is my key still there, and who is just before it?
        let resp = client.get(newest_created(prefix, my_rev, 2)).await?;
        let header = resp.header.unwrap_or_default();
        let mut kvs = resp.kvs.into_iter();
        match kvs.next() {
            Some(kv) if kv.key == *own_key && kv.create_revision == my_rev => {}
            _ => return Err(ConcurrencyError::SessionExpired),
        }
        let Some(predecessor) = kvs.next() else {
            return Ok(header);
        };
        let from = header.revision + 1;
        let predecessor_watch = Watch::new(predecessor.key).start_revision(from);
        let mut predecessor_watch = if own_watch.is_none() {
            let own = Watch::new(own_key.clone()).start_revision(from);
            let (p, o) = join(
                start_watch(client, predecessor_watch),
                start_watch(client, own),
            )
            .await;
            own_watch = o?;
            p?
        } else {
            start_watch(client, predecessor_watch).await?
        };
        // Each way out but an error means "read again": the predecessor went, or a watch lost
        // its history.
        let mut own_compacted = false;
        poll_fn(|cx| {
            let Some(watcher) = predecessor_watch.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match poll_event(watcher, cx, &mut is_delete) {
                Poll::Ready(Ok(Waited::Event(_) | Waited::Compacted)) => {
                    return Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ConcurrencyError::from(e))),
                Poll::Pending => {}
            }
            if let Some(watcher) = own_watch.as_mut() {
                match poll_event(watcher, cx, &mut is_delete) {
                    Poll::Ready(Ok(Waited::Event(_))) => {
                        return Poll::Ready(Err(ConcurrencyError::SessionExpired))
                    }
                    Poll::Ready(Ok(Waited::Compacted)) => {
                        own_compacted = true;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ConcurrencyError::from(e))),
                    Poll::Pending => {}
                }
            }
            if session_live {
                match session.poll_done(cx) {
                    Poll::Ready(SessionEnd::Lost(_)) => {
                        return Poll::Ready(Err(ConcurrencyError::SessionExpired))
                    }
                    // Orphaned or closed on purpose: the key lives until the lease goes,
                    // which the watch on it reports.
                    Poll::Ready(_) => session_live = false,
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await?;
        if own_compacted {
            own_watch = None;
        }
    }
}

/// A distributed mutex: the holder is the session whose key under the prefix was created
/// first (Go's `concurrency.Mutex`).
///
/// Locking creates the key `name/<lease hex>` attached to the session's lease, in one
/// transaction that also reads the current holder, so an uncontended lock is one round trip.
/// A waiter watches only its immediate predecessor (the key created just before its own), so
/// an unlock wakes one waiter, not all. The lock is re-entrant per session: a second `Mutex`
/// of the same session and name (or a second [`Mutex::lock`]) finds the session's key and
/// holds the lock at once; the first [`Mutex::unlock`] releases it for all of them, as in Go.
///
/// A `Mutex` is one waiter's handle, like Go's; tasks that contend for the lock each need
/// their own `Mutex` and their own [`Session`].
#[derive(Debug)]
pub struct Mutex {
    session: Session,
    prefix: Bytes,
    my_key: Option<Bytes>,
    my_rev: i64,
    header: Option<ResponseHeader>,
}

struct Acquired {
    held: bool,
    created: bool,
    header: ResponseHeader,
}

impl Mutex {
    /// A mutex named `name` (its keys are under `name/`; Go's `NewMutex`).
    pub fn new(session: &Session, name: impl IntoBytes) -> Mutex {
        Mutex {
            session: session.clone(),
            prefix: concat(&name.into_bytes(), b"/"),
            my_key: None,
            my_rev: -1,
            header: None,
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The prefix of the waiter keys (`name/`).
    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    /// This waiter's key while it holds or waits for the lock (Go's `Key`).
    pub fn key(&self) -> Option<&Bytes> {
        self.my_key.as_ref()
    }

    /// The create revision of this waiter's key (`-1` when there is none).
    pub fn revision(&self) -> i64 {
        self.my_rev
    }

    /// The header of the response that confirmed the lock (Go's `Header`).
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }

    /// A guard that holds while this waiter holds the lock, for transactions that must only
    /// apply under it (Go's `IsOwner`). Without a key it never holds.
    pub fn is_owner(&self) -> Compare {
        match &self.my_key {
            Some(key) => Compare::create_revision(key.clone(), CompareOp::Equal, self.my_rev),
            None => Compare::create_revision("\0", CompareOp::Equal, -1),
        }
    }

    fn forget(&mut self) {
        self.my_key = None;
        self.my_rev = -1;
    }

    /// Creates this session's key unless it exists, reading the holder in the same
    /// transaction (Go's `tryAcquire`).
    async fn try_acquire(&mut self) -> Result<Acquired, ConcurrencyError> {
        let lease = self.session.lease();
        let key = lease_key(&self.prefix, lease);
        let holder = Get::new(self.prefix.clone()).first_create();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::Put(Put::new(key.clone(), Bytes::new()).lease(lease)),
                TxnOp::Get(holder.clone()),
            ])
            .or_else([TxnOp::Get(Get::new(key.clone())), TxnOp::Get(holder)]);
        let resp = self
            .session
            .client()
            .txn(txn)
            .await
            .map_err(ConcurrencyError::from_session_call)?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .map(|kv| kv.create_revision)
                .ok_or_else(|| {
                    Error::Protocol("lock transaction: the existing key was not returned".into())
                })?
        };
        self.my_key = Some(key);
        self.my_rev = my_rev;
        let held = range_at(&resp, 1)
            .and_then(|r| r.kvs.first())
            .is_none_or(|holder| holder.create_revision == my_rev);
        Ok(Acquired {
            held,
            created: resp.succeeded,
            header,
        })
    }

    /// Takes the lock if it is free, else fails with [`ConcurrencyError::Locked`] without
    /// waiting (Go's `TryLock`).
    pub async fn try_lock(&mut self) -> Result<(), ConcurrencyError> {
        let acquired = self.try_acquire().await?;
        if acquired.held {
            self.header = Some(acquired.header);
            return Ok(());
        }
        if acquired.created {
            let key = self.my_key.clone().expect("set by try_acquire");
            let mut guard = DeleteOnDrop {
                client: self.session.client().clone(),
                key: Some(key.clone()),
            };
            let deleted = self.session.client().delete(key).await;
            guard.disarm();
            self.forget();
            deleted?;
        } else {
            self.forget();
        }
        Err(ConcurrencyError::Locked)
    }

    /// Waits until the lock is held (Go's `Lock`). Fails with
    /// [`ConcurrencyError::SessionExpired`] when the session's key is deleted (its lease
    /// expired or was revoked) or the session reports its lease lost, at once rather than
    /// after the predecessors. On any other failure, and when the future is dropped while
    /// waiting, the key this call created is deleted, so nobody waits behind it.
    pub async fn lock(&mut self) -> Result<(), ConcurrencyError> {
        let acquired = self.try_acquire().await?;
        if acquired.held {
            self.header = Some(acquired.header);
            return Ok(());
        }
        let key = self.my_key.clone().expect("set by try_acquire");
        let mut guard = DeleteOnDrop {
            client: self.session.client().clone(),
            key: acquired.created.then(|| key.clone()),
        };
        let waited = wait_predecessors(&self.session, &self.prefix, &key, self.my_rev).await;
        let created = guard.disarm();
        match waited {
            Ok(header) => {
                self.header = Some(header);
                Ok(())
            }
            Err(e) => {
                if let Some(key) = created {
                    let _ = self.session.client().delete(key).await;
                }
                self.forget();
                Err(e)
            }
        }
    }

    /// Releases the lock (or stops waiting) by deleting this session's key (Go's `Unlock`).
    pub async fn unlock(&mut self) -> Result<(), ConcurrencyError> {
        if let Some(key) = self.my_key.clone() {
            self.session.client().delete(key).await?;
        }
        self.forget();
        Ok(())
    }
}
