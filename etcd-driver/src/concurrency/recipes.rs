//! Coordination recipes (Go's `client/v3/experimental/recipes`): [`Barrier`],
//! [`DoubleBarrier`], [`Queue`], [`PriorityQueue`] and [`RwMutex`]. The key layouts are Go's,
//! so Go programs share them; the waits do not fail on a compacted watch (they read the state
//! again), and watch errors are returned (Go swallows them and, in the queues, then
//! dereferences a nil event).

use bytes::Bytes;
use etcd_proto_core::proto::mvccpb::KeyValue;
use etcd_proto_core::rpc::kv::{Compare, CompareOp, Get, Put, SortOrder, SortTarget, Txn};
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::Watch;

use super::mutex::DeleteOnDrop;
use super::{concat, is_delete, is_put, unix_nanos, wait_event, ConcurrencyError, Session, Waited};
use crate::Client;

/// Creates `key` with `value` unless it exists ([`ConcurrencyError::KeyExists`]); returns the
/// revision of the write (Go's `putNewKV`).
async fn put_new(
    client: &Client,
    key: Bytes,
    value: Bytes,
    lease: i64,
) -> Result<i64, ConcurrencyError> {
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then([Put::new(key, value).lease(lease)]);
    let resp = client
        .txn(txn)
        .await
        .map_err(ConcurrencyError::from_session_call)?;
    if !resp.succeeded {
        return Err(ConcurrencyError::KeyExists);
    }
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// Creates a new key `prefix/<unix nanos>` (Go's `newUniqueKV` / `newUniqueEphemeralKV`).
async fn put_unique(
    client: &Client,
    prefix: &[u8],
    value: Bytes,
    lease: i64,
) -> Result<(Bytes, i64), ConcurrencyError> {
    loop {
        let key = concat(prefix, format!("/{}", unix_nanos()).as_bytes());
        match put_new(client, key.clone(), value.clone(), lease).await {
            Ok(rev) => return Ok((key, rev)),
            Err(ConcurrencyError::KeyExists) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Deletes `key` if it is still at `mod_revision`; whether it was (Go's `deleteRevKey`).
async fn claim(client: &Client, kv: &KeyValue) -> Result<bool, ConcurrencyError> {
    let txn = Txn::new()
        .when([Compare::mod_revision(
            kv.key.clone(),
            CompareOp::Equal,
            kv.mod_revision,
        )])
        .and_then([etcd_proto_core::rpc::kv::Delete::new(kv.key.clone())]);
    Ok(client.txn(txn).await?.succeeded)
}

/// Waits until `key` is deleted at or after revision `from`. `false` when the watch's history
/// was compacted: the caller reads the state again.
async fn wait_delete(client: &Client, key: Bytes, from: i64) -> Result<bool, ConcurrencyError> {
    let watch = Watch::new(key).start_revision(from);
    Ok(matches!(
        wait_event(client, watch, is_delete).await?,
        Waited::Event(_)
    ))
}

/// Takes the first item of a queue: `first` reads the head under `scan`; waits for a put when
/// the queue is empty (Go's `Queue.Dequeue` / `PriorityQueue.Dequeue`).
async fn dequeue(client: &Client, scan: &Bytes, first: Get) -> Result<Bytes, ConcurrencyError> {
    loop {
        let resp = client.get(first.clone()).await?;
        if let Some(kv) = resp.kvs.first() {
            if claim(client, kv).await? {
                return Ok(kv.value.clone());
            }
            if resp.more {
                // Somebody else took the head; there are more items.
                continue;
            }
        }
        let from = resp.header.map_or(0, |h| h.revision) + 1;
        let watch = Watch::new(scan.clone()).prefix().start_revision(from);
        if let Waited::Event(event) = wait_event(client, watch, is_put).await? {
            if let Some(kv) = event.kv {
                if claim(client, &kv).await? {
                    return Ok(kv.value);
                }
            }
        }
    }
}

/// A barrier: while its key exists, [`Barrier::wait`] blocks (Go's `recipe.Barrier`).
#[derive(Debug, Clone)]
pub struct Barrier {
    client: Client,
    key: Bytes,
}

impl Barrier {
    /// The barrier at `key`.
    pub fn new(client: &Client, key: impl IntoBytes) -> Barrier {
        Barrier {
            client: client.clone(),
            key: key.into_bytes(),
        }
    }

    /// Raises the barrier by creating its key; [`ConcurrencyError::KeyExists`] if it is up
    /// already (Go's `Hold`).
    pub async fn hold(&self) -> Result<(), ConcurrencyError> {
        put_new(&self.client, self.key.clone(), Bytes::new(), 0).await?;
        Ok(())
    }

    /// Lowers the barrier, releasing every waiter (Go's `Release`).
    pub async fn release(&self) -> Result<(), ConcurrencyError> {
        self.client.delete(self.key.clone()).await?;
        Ok(())
    }

    /// Waits until the barrier is down; returns at once if it is (Go's `Wait`).
    pub async fn wait(&self) -> Result<(), ConcurrencyError> {
        loop {
            let resp = self.client.get(self.key.clone()).await?;
            if resp.kvs.is_empty() {
                return Ok(());
            }
            let from = resp.header.map_or(0, |h| h.revision) + 1;
            if wait_delete(&self.client, self.key.clone(), from).await? {
                return Ok(());
            }
        }
    }
}

/// A double barrier: [`DoubleBarrier::enter`] waits until `count` participants have entered,
/// [`DoubleBarrier::leave`] until all of them have left (Go's `recipe.DoubleBarrier`). Each
/// participant's key is attached to its session's lease, so a participant that dies frees
/// its place when its lease expires.
#[derive(Debug)]
pub struct DoubleBarrier {
    session: Session,
    key: Bytes,
    count: usize,
    my_key: Option<(Bytes, i64)>,
}

impl DoubleBarrier {
    /// The double barrier at `key` for `count` participants.
    pub fn new(session: &Session, key: impl IntoBytes, count: usize) -> DoubleBarrier {
        DoubleBarrier {
            session: session.clone(),
            key: key.into_bytes(),
            count,
            my_key: None,
        }
    }

    /// This participant's key, between enter and leave.
    pub fn key(&self) -> Option<&Bytes> {
        self.my_key.as_ref().map(|(k, _)| k)
    }

    fn waiters(&self) -> Bytes {
        concat(&self.key, b"/waiters")
    }

    fn ready(&self) -> Bytes {
        concat(&self.key, b"/ready")
    }

    async fn entered(&self) -> Result<Vec<KeyValue>, ConcurrencyError> {
        let scan = Get::new(concat(&self.waiters(), b"/"))
            .prefix()
            .sort(SortTarget::CreateRevision, SortOrder::Ascend);
        Ok(self.session.client().get(scan).await?.kvs)
    }

    /// Enters and waits until `count` participants have (Go's `Enter`). Fails with
    /// [`ConcurrencyError::TooManyClients`] when the barrier is full.
    pub async fn enter(&mut self) -> Result<(), ConcurrencyError> {
        let client = self.session.client().clone();
        if self.entered().await?.len() >= self.count {
            return Err(ConcurrencyError::TooManyClients);
        }
        let (key, rev) =
            put_unique(&client, &self.waiters(), Bytes::new(), self.session.lease()).await?;
        self.my_key = Some((key.clone(), rev));
        let entered = self.entered().await?;
        if entered.len() >= self.count {
            let last = &entered[self.count - 1];
            if rev > last.create_revision {
                // Too late: leave at once rather than make the others wait for the lease.
                let _ = client.delete(key).await;
                self.my_key = None;
                return Err(ConcurrencyError::TooManyClients);
            }
            if rev == last.create_revision {
                // The last to enter releases everybody.
                client.put((self.ready(), Bytes::new())).await?;
                return Ok(());
            }
        }
        let mut from = rev;
        loop {
            let watch = Watch::new(self.ready()).start_revision(from);
            if let Waited::Event(_) = wait_event(&client, watch, is_put).await? {
                return Ok(());
            }
            // The history is compacted: is the barrier open already?
            let resp = client.get(self.ready()).await?;
            if resp.kvs.first().is_some_and(|kv| kv.mod_revision >= rev) {
                return Ok(());
            }
            from = resp.header.map_or(0, |h| h.revision) + 1;
        }
    }

    /// Leaves and waits until every participant has (Go's `Leave`): the participant whose
    /// key is oldest waits for the others' keys to go, the others delete theirs and wait for
    /// the oldest.
    pub async fn leave(&mut self) -> Result<(), ConcurrencyError> {
        let client = self.session.client().clone();
        loop {
            let scan = Get::new(concat(&self.waiters(), b"/")).prefix();
            let kvs = client.get(scan).await?.kvs;
            let (Some(lowest), Some(highest)) = (
                kvs.iter().min_by_key(|kv| kv.mod_revision),
                kvs.iter().max_by_key(|kv| kv.mod_revision),
            ) else {
                self.my_key = None;
                return Ok(());
            };
            let is_lowest = self.my_key.as_ref().is_some_and(|(k, _)| *k == lowest.key);
            if kvs.len() == 1 && is_lowest {
                client.delete(self.ready()).await?;
                client.delete(lowest.key.clone()).await?;
                self.my_key = None;
                return Ok(());
            }
            if is_lowest {
                wait_delete(&client, highest.key.clone(), highest.mod_revision).await?;
            } else {
                if let Some((key, _)) = self.my_key.take() {
                    client.delete(key).await?;
                }
                wait_delete(&client, lowest.key.clone(), lowest.mod_revision).await?;
            }
        }
    }
}

/// A multi-reader, multi-writer FIFO queue: items are keys `prefix/<unix nanos>`, taken in
/// the order they were written (Go's `recipe.Queue`).
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    prefix: Bytes,
}

impl Queue {
    /// The queue under `prefix`.
    pub fn new(client: &Client, prefix: impl IntoBytes) -> Queue {
        Queue {
            client: client.clone(),
            prefix: prefix.into_bytes(),
        }
    }

    /// Appends an item (Go's `Enqueue`).
    pub async fn enqueue(&self, value: impl IntoBytes) -> Result<(), ConcurrencyError> {
        put_unique(&self.client, &self.prefix, value.into_bytes(), 0).await?;
        Ok(())
    }

    /// Takes the oldest item, waiting for one if the queue is empty (Go's `Dequeue`).
    pub async fn dequeue(&self) -> Result<Bytes, ConcurrencyError> {
        let scan = concat(&self.prefix, b"/");
        let first = Get::new(scan.clone()).first_rev();
        dequeue(&self.client, &scan, first).await
    }
}

/// A multi-reader, multi-writer priority queue: items are keys `key/<priority>/<sequence>`,
/// taken lowest priority number first, in order within a priority (Go's
/// `recipe.PriorityQueue`; each priority keeps a bookkeeping key `__key/<priority>`).
#[derive(Debug, Clone)]
pub struct PriorityQueue {
    client: Client,
    prefix: Bytes,
}

impl PriorityQueue {
    /// The priority queue at `key` (items under `key/`).
    pub fn new(client: &Client, key: impl IntoBytes) -> PriorityQueue {
        PriorityQueue {
            client: client.clone(),
            prefix: concat(&key.into_bytes(), b"/"),
        }
    }

    /// Adds an item with a priority; lower numbers come out first (Go's `Enqueue`).
    pub async fn enqueue(
        &self,
        value: impl IntoBytes,
        priority: u16,
    ) -> Result<(), ConcurrencyError> {
        let prefix = concat(&self.prefix, format!("{priority:05}").as_bytes());
        let value = value.into_bytes();
        let bookkeeping = concat(b"__", &prefix);
        // Go's `newSequentialKV`: the next sequence number after the last key, allocated
        // under a guard on the bookkeeping key so that two writers cannot take the same one.
        loop {
            let last = Get::new(concat(&prefix, b"/")).last_key();
            let resp = self.client.get(last).await?;
            let next = match resp.kvs.first() {
                None => 0,
                Some(kv) => {
                    let sequence = kv
                        .key
                        .rsplit(|b| *b == b'/')
                        .next()
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| ConcurrencyError::UnexpectedKey(kv.key.clone()))?;
                    sequence + 1
                }
            };
            let key = concat(&prefix, format!("/{next:016}").as_bytes());
            let revision = resp.header.map_or(0, |h| h.revision);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    bookkeeping.clone(),
                    CompareOp::Less,
                    revision + 1,
                )])
                .and_then([
                    Put::new(bookkeeping.clone(), Bytes::new()),
                    Put::new(key, value.clone()),
                ]);
            if self.client.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
    }

    /// Takes the item with the lowest priority number, waiting for one if the queue is
    /// empty (Go's `Dequeue`).
    pub async fn dequeue(&self) -> Result<Bytes, ConcurrencyError> {
        let first = Get::new(self.prefix.clone()).first_key();
        dequeue(&self.client, &self.prefix, first).await
    }
}

/// A readers-writer lock: readers share it, a writer excludes everybody; waiters are served
/// in the order they came (Go's `recipe.RWMutex`). Keys are `prefix/read/<nanos>` and
/// `prefix/write/<nanos>`, attached to the session's lease.
///
/// Unlike Go, a lock call that is dropped while waiting or fails deletes its key, and a lock
/// whose key vanished while waiting (the session expired) fails with
/// [`ConcurrencyError::SessionExpired`].
#[derive(Debug)]
pub struct RwMutex {
    session: Session,
    prefix: Bytes,
    my_key: Option<(Bytes, i64)>,
}

impl RwMutex {
    /// The lock named `name` (keys under `name/`).
    pub fn new(session: &Session, name: impl IntoBytes) -> RwMutex {
        RwMutex {
            session: session.clone(),
            prefix: concat(&name.into_bytes(), b"/"),
            my_key: None,
        }
    }

    /// This waiter's key while it holds or waits for the lock.
    pub fn key(&self) -> Option<&Bytes> {
        self.my_key.as_ref().map(|(k, _)| k)
    }

    /// Takes a shared lock: waits until no writer that came earlier holds or waits (Go's
    /// `RLock`).
    pub async fn read_lock(&mut self) -> Result<(), ConcurrencyError> {
        let blockers = concat(&self.prefix, b"write/");
        self.acquire(b"read", blockers).await
    }

    /// Takes the exclusive lock: waits until nobody that came earlier holds or waits (Go's
    /// `Lock`).
    pub async fn lock(&mut self) -> Result<(), ConcurrencyError> {
        let blockers = self.prefix.clone();
        self.acquire(b"write", blockers).await
    }

    async fn acquire(&mut self, kind: &[u8], blockers: Bytes) -> Result<(), ConcurrencyError> {
        let client = self.session.client().clone();
        let (key, rev) = put_unique(
            &client,
            &concat(&self.prefix, kind),
            Bytes::new(),
            self.session.lease(),
        )
        .await?;
        self.my_key = Some((key.clone(), rev));
        let mut guard = DeleteOnDrop {
            client: client.clone(),
            key: Some(key.clone()),
        };
        let waited = async {
            // Go's `waitOnLastRev`: wait for the newest blocker older than my key, again and
            // again until none is left.
            loop {
                let last = Get::new(blockers.clone())
                    .last_rev()
                    .max_mod_revision(rev - 1);
                let resp = client.get(last).await?;
                let Some(blocker) = resp.kvs.into_iter().next() else {
                    break;
                };
                wait_delete(&client, blocker.key, rev).await?;
            }
            if client.get(key.clone()).await?.kvs.is_empty() {
                return Err(ConcurrencyError::SessionExpired);
            }
            Ok(())
        }
        .await;
        guard.disarm();
        if waited.is_err() {
            let _ = client.delete(key).await;
            self.my_key = None;
        }
        waited
    }

    /// Releases a shared lock (Go's `RUnlock`).
    pub async fn read_unlock(&mut self) -> Result<(), ConcurrencyError> {
        self.unlock().await
    }

    /// Releases the lock (Go's `Unlock`).
    pub async fn unlock(&mut self) -> Result<(), ConcurrencyError> {
        if let Some((key, _)) = self.my_key.take() {
            self.session.client().delete(key).await?;
        }
        Ok(())
    }
}
