//! Software transactional memory over etcd (Go's `concurrency.NewSTM`): run a function that
//! reads and writes keys, commit its writes in one transaction guarded by what it read, and
//! run it again when the guard fails.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::Error> {
//! use etcd_driver::concurrency::stm::{self, Isolation, Stm};
//!
//! // Move 10 from account a to account b.
//! let done = stm::run(&client, Isolation::RepeatableReads, async |stm: &mut Stm| {
//!     let parse = |v: Option<bytes::Bytes>| -> i64 {
//!         v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()).unwrap_or(0)
//!     };
//!     let a = parse(stm.get("a").await?);
//!     let b = parse(stm.get("b").await?);
//!     stm.put("a", (a - 10).to_string());
//!     stm.put("b", (b + 10).to_string());
//!     Ok::<_, etcd_driver::Error>(a - 10)
//! })
//! .await?;
//! println!("a is now {} (after {} attempts)", done.value, done.attempts);
//! # Ok(())
//! # }
//! ```
//!
//! # The apply function
//!
//! Reads are round trips, so the function is async: an async closure taking `&mut Stm`
//! ([`AsyncFnMut`], stable since Rust 1.85), which [`run`] calls again for every attempt; it
//! should have no effects besides the [`Stm`]'s (or be idempotent), since a conflicting
//! attempt is thrown away. Its error type is the caller's, convertible from [`Error`] so that
//! `?` works on reads; an `Err` aborts without committing. Without closures, drive a [`Stm`]
//! directly: [`Stm::reset`], reads and writes, [`Stm::commit`], again while it returns `None`.
//!
//! When the future of [`run`] must be `Send` (spawned on a multi-threaded runtime), write the
//! closure as `async move |stm: &mut Stm| ...` over owned (cloned) data. A closure that
//! borrows its environment compiles, but its future is not `Send` today: the compiler cannot
//! yet prove `Send` for borrows held across the closure's higher-ranked `&mut Stm` lifetime
//! ("implementation of `Send` is not general enough").
//!
//! # Isolation levels (Go's semantics)
//!
//! * [`Isolation::SerializableSnapshot`] (the default): the first read fixes the snapshot
//!   revision; later reads are served at that revision (serializable reads). The commit
//!   requires every key read to be unmodified since it was read, **and** every key written
//!   to be unmodified since the snapshot: write-write conflicts abort too.
//! * [`Isolation::Serializable`]: reads as above; the commit checks only the keys read.
//! * [`Isolation::RepeatableReads`]: each key is read once (member-local serializable reads,
//!   at whatever revision the member has); the commit checks the keys read.
//! * [`Isolation::ReadCommitted`]: each key is read once (member-local); no check: the
//!   writes always commit.
//!
//! A failed commit of the two serializable levels reads the keys read again in its `else`
//! branch, and the next attempt starts from those values (Go's prefetch on conflict).
//! Attempts go on until one commits or the function or a call fails, as in Go.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::TxnResponse;
use etcd_proto_core::proto::mvccpb::KeyValue;
use etcd_proto_core::rpc::kv::{Compare, CompareOp, Delete, Get, Put, Txn, TxnOp};
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::Error;

use super::range_at;
use crate::Client;

/// How a transaction is isolated from concurrent ones (Go's `Isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// Reads from one snapshot; aborts on read and write conflicts (the default).
    #[default]
    SerializableSnapshot,
    /// Reads from one snapshot; aborts on read conflicts.
    Serializable,
    /// Reads each key once; aborts on read conflicts.
    RepeatableReads,
    /// Reads each key once; never aborts.
    ReadCommitted,
}

impl Isolation {
    fn snapshot_reads(self) -> bool {
        matches!(
            self,
            Isolation::SerializableSnapshot | Isolation::Serializable
        )
    }
}

/// Options of [`run`]: the isolation level and keys to read before every attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct StmOptions {
    isolation: Isolation,
    prefetch: Vec<Bytes>,
}

impl StmOptions {
    /// The default: [`Isolation::SerializableSnapshot`], no prefetch.
    pub fn new() -> StmOptions {
        StmOptions::default()
    }

    /// The isolation level (Go's `WithIsolation`).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Keys read in one request before every attempt (Go's `WithPrefetch`).
    pub fn prefetch<I>(mut self, keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: IntoBytes,
    {
        self.prefetch = keys.into_iter().map(IntoBytes::into_bytes).collect();
        self
    }
}

impl From<Isolation> for StmOptions {
    fn from(isolation: Isolation) -> Self {
        StmOptions::new().isolation(isolation)
    }
}

/// What a committed transaction returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    /// What the apply function returned in the attempt that committed.
    pub value: T,
    /// The commit's response.
    pub response: TxnResponse,
    /// How many attempts ran, the committed one included.
    pub attempts: u32,
}

/// A key as read: its key-value (none if missing) and the revision of the read.
#[derive(Debug, Clone)]
struct Read {
    kv: Option<KeyValue>,
    revision: i64,
}

#[derive(Debug, Clone)]
enum Write {
    Put { value: Bytes, op: Put },
    Delete,
}

/// One transaction's reads and buffered writes (Go's `STM`). Reads go to etcd the first
/// time a key is read and are remembered; writes are buffered until [`Stm::commit`].
#[derive(Debug)]
pub struct Stm {
    client: Client,
    isolation: Isolation,
    reads: BTreeMap<Bytes, Read>,
    writes: BTreeMap<Bytes, Write>,
    prefetched: HashMap<Bytes, Read>,
    /// The snapshot revision of the serializable levels, once the first read fixed it.
    pinned: Option<i64>,
}

impl Stm {
    /// An empty transaction on `client`.
    pub fn new(client: &Client, isolation: Isolation) -> Stm {
        Stm {
            client: client.clone(),
            isolation,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            prefetched: HashMap::new(),
            pinned: None,
        }
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Forgets the reads and writes, keeping what a failed commit prefetched (the start of
    /// every attempt).
    pub fn reset(&mut self) {
        self.reads.clear();
        self.writes.clear();
        self.pinned = None;
    }

    /// The value of `key`: what this transaction wrote, else what it read (reading it now if
    /// it has not yet). `None` for a missing or deleted key (Go reads `""`).
    pub async fn get(&mut self, key: impl IntoBytes) -> Result<Option<Bytes>, Error> {
        let mut values = self.get_many([key]).await?;
        Ok(values.pop().flatten())
    }

    /// The values of several keys; the ones not yet read are read in one request.
    pub async fn get_many<I>(&mut self, keys: I) -> Result<Vec<Option<Bytes>>, Error>
    where
        I: IntoIterator,
        I::Item: IntoBytes,
    {
        let keys: Vec<Bytes> = keys.into_iter().map(IntoBytes::into_bytes).collect();
        let unwritten: Vec<Bytes> = keys
            .iter()
            .filter(|k| !self.writes.contains_key(*k))
            .cloned()
            .collect();
        self.read(&unwritten).await?;
        Ok(keys
            .iter()
            .map(|k| match self.writes.get(k) {
                Some(Write::Put { value, .. }) => Some(value.clone()),
                Some(Write::Delete) => None,
                None => self
                    .reads
                    .get(k)
                    .and_then(|r| r.kv.as_ref())
                    .map(|kv| kv.value.clone()),
            })
            .collect())
    }

    /// The mod revision of `key` as read (reading it now if needed); 0 if it was missing
    /// (Go's `Rev`). Writes of this transaction do not count.
    pub async fn rev(&mut self, key: impl IntoBytes) -> Result<i64, Error> {
        let key = key.into_bytes();
        self.read(std::slice::from_ref(&key)).await?;
        Ok(self
            .reads
            .get(&key)
            .and_then(|r| r.kv.as_ref())
            .map_or(0, |kv| kv.mod_revision))
    }

    /// Buffers a write of `value` to `key`.
    pub fn put(&mut self, key: impl IntoBytes, value: impl IntoBytes) {
        self.put_with(Put::new(key, value));
    }

    /// Buffers a write with options, e.g. `Put::new(k, v).lease(id)` (Go's `Put` with
    /// options).
    pub fn put_with(&mut self, put: Put) {
        let request = put.clone().build().expect("a put always builds");
        self.writes.insert(
            request.key,
            Write::Put {
                value: request.value,
                op: put,
            },
        );
    }

    /// Buffers a delete of `key` (Go's `Del`).
    pub fn delete(&mut self, key: impl IntoBytes) {
        self.writes.insert(key.into_bytes(), Write::Delete);
    }

    /// Makes sure every key is in the read set, fetching the missing ones in one request,
    /// and fixes the snapshot with the first read of a serializable level.
    async fn read(&mut self, keys: &[Bytes]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let first_read = self.reads.is_empty();
        if self.isolation.snapshot_reads() {
            for key in keys {
                if let Some(read) = self.prefetched.remove(key) {
                    self.reads.insert(key.clone(), read);
                }
            }
        }
        let mut missing: Vec<Bytes> = Vec::new();
        for key in keys {
            if !self.reads.contains_key(key) && !missing.contains(key) {
                missing.push(key.clone());
            }
        }
        if !missing.is_empty() {
            self.fetch(missing).await?;
        }
        if first_read && self.isolation.snapshot_reads() {
            self.pinned = self.reads.get(&keys[0]).map(|r| r.revision);
        }
        Ok(())
    }

    fn read_op(&self, key: Bytes) -> Get {
        let get = Get::new(key);
        match (self.isolation.snapshot_reads(), self.pinned) {
            (true, Some(revision)) => get.revision(revision).serializable(),
            (true, None) => get,
            (false, _) => get.serializable(),
        }
    }

    async fn fetch(&mut self, keys: Vec<Bytes>) -> Result<(), Error> {
        if let [key] = &keys[..] {
            let resp = self.client.get(self.read_op(key.clone())).await?;
            let revision = resp.header.map_or(0, |h| h.revision);
            let kv = resp.kvs.into_iter().next();
            self.reads.insert(key.clone(), Read { kv, revision });
            return Ok(());
        }
        let ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::Get(self.read_op(k.clone())))
            .collect();
        let resp = self.client.txn(Txn::new().and_then(ops)).await?;
        self.record(&keys, &resp);
        Ok(())
    }

    /// Records the range responses of `resp`, one per key, in the read set.
    fn record(&mut self, keys: &[Bytes], resp: &TxnResponse) {
        let outer = resp.header.as_ref().map_or(0, |h| h.revision);
        for (i, key) in keys.iter().enumerate() {
            let range = range_at(resp, i);
            let revision = range
                .and_then(|r| r.header.as_ref())
                .map(|h| h.revision)
                .filter(|r| *r > 0)
                .unwrap_or(outer);
            let kv = range.and_then(|r| r.kvs.first()).cloned();
            self.reads.insert(key.clone(), Read { kv, revision });
        }
    }

    /// The guards of the commit for this isolation level.
    fn conflicts(&self) -> Vec<Compare> {
        let read_guards = || {
            self.reads.iter().map(|(key, read)| {
                let mod_revision = read.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                Compare::mod_revision(key.clone(), CompareOp::Equal, mod_revision)
            })
        };
        match self.isolation {
            Isolation::SerializableSnapshot => {
                let mut guards: Vec<Compare> = read_guards().collect();
                if let Some(first) = self.reads.values().map(|r| r.revision).min() {
                    guards.extend(
                        self.writes.keys().map(|key| {
                            Compare::mod_revision(key.clone(), CompareOp::Less, first + 1)
                        }),
                    );
                }
                guards
            }
            Isolation::Serializable | Isolation::RepeatableReads => read_guards().collect(),
            Isolation::ReadCommitted => Vec::new(),
        }
    }

    /// Commits the writes if the guards of the isolation level hold. `None` when they do
    /// not: run the transaction again (after [`Stm::reset`]).
    pub async fn commit(&mut self) -> Result<Option<TxnResponse>, Error> {
        let guards = self.conflicts();
        let writes: Vec<TxnOp> = self
            .writes
            .iter()
            .map(|(key, write)| match write {
                Write::Put { op, .. } => TxnOp::Put(op.clone()),
                Write::Delete => TxnOp::Delete(Delete::new(key.clone())),
            })
            .collect();
        let mut txn = Txn::new();
        if !guards.is_empty() {
            txn = txn.when(guards);
        }
        txn = txn.and_then(writes);
        let reread: Vec<Bytes> = if self.isolation.snapshot_reads() {
            self.reads.keys().cloned().collect()
        } else {
            Vec::new()
        };
        if !reread.is_empty() {
            txn = txn.or_else(reread.iter().map(|k| Get::new(k.clone())));
        }
        let resp = self.client.txn(txn).await?;
        if resp.succeeded {
            return Ok(Some(resp));
        }
        if !reread.is_empty() {
            self.reads.clear();
            self.record(&reread, &resp);
            self.prefetched = std::mem::take(&mut self.reads).into_iter().collect();
        }
        self.pinned = None;
        Ok(None)
    }
}

/// Runs `apply` in a transaction until a commit succeeds (Go's `NewSTM`): each attempt starts
/// with an empty [`Stm`] (after reading the prefetch keys), runs `apply`, and commits. An
/// error of `apply` or of a call ends it.
pub async fn run<T, E, F>(
    client: &Client,
    options: impl Into<StmOptions>,
    mut apply: F,
) -> Result<Committed<T>, E>
where
    F: AsyncFnMut(&mut Stm) -> Result<T, E>,
    E: From<Error>,
{
    let options = options.into();
    let mut stm = Stm::new(client, options.isolation);
    let mut attempts = 0;
    loop {
        attempts += 1;
        stm.reset();
        if !options.prefetch.is_empty() {
            stm.get_many(options.prefetch.iter().cloned()).await?;
        }
        let value = apply(&mut stm).await?;
        if let Some(response) = stm.commit().await? {
            return Ok(Committed {
                value,
                response,
                attempts,
            });
        }
    }
}
