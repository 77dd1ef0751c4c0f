//! A lease-protected client-side cache (Go's `leasing` KV): a read of a key makes this client
//! its *owner* for as long as a session lease lives, and later reads of that key are answered
//! from memory, without a request. Writers that go through a [`LeasingKv`] of any process
//! first take the ownership away, so an owner never answers with a value another client has
//! since changed.
//!
//! ```no_run
//! # async fn demo<R: etcd_driver::Runtime>(rt: R, client: etcd_driver::Client) -> Result<(), etcd_driver::Error> {
//! use etcd_driver::leasing::LeasingKv;
//!
//! let kv = LeasingKv::new(rt, client, "leases/")?;
//! kv.get("config").await?; // acquires "leases/config", caches the answer
//! kv.get("config").await?; // served locally
//! kv.put(("config", "v2")).await?; // through the protocol: the cache stays right
//! # Ok(())
//! # }
//! ```
//!
//! # Protocol
//!
//! Every user key `k` has an *ownership key* `PREFIX + k`. It exists while some client owns
//! `k`, holds an empty value, and is attached to that client's session lease.
//!
//! * **Read** (a linearizable single-key get at the latest revision, served from memory when
//!   owned). Otherwise one transaction: if the ownership key does not exist *and* `k` has no
//!   lease of its own, read `k` and create the ownership key with the session lease; else
//!   read `k` and the ownership key. The answer is cached when the transaction created the
//!   ownership key, or when the existing one carries our lease (and is not being revoked).
//!   Keys attached to a lease are never cached (their value can vanish without a write).
//!   Serializable reads of keys not cached, range reads and reads at a revision go to the
//!   server without acquiring, as in Go.
//! * **Write** (put, delete, transaction) — the op is in exactly one place, the `then` branch
//!   of one guarded transaction: *if* for every written key the ownership key has the create
//!   revision this client expects (ours when we own it, otherwise none at all; for a written
//!   range: no ownership key in the range) *then* the op, *else* read those ownership keys.
//!   When the guard fails nothing was written; for each ownership key found:
//!   - ours (current session): adopt it (the guard then expects its revision), or, for a
//!     range, release it;
//!   - ours from an ended session: delete it;
//!   - another client's: *revoke* it — write `"REVOKE"` into it (keeping its lease), guarded
//!     by its create revision, then wait until it is deleted —
//!
//!   and try the guarded transaction again. So the op is applied at most once, and only when
//!   nobody else owns a written key.
//! * **Owner side**: every session watches the whole ownership prefix. On `"REVOKE"` in one
//!   of its keys it first drops the cache entry, then deletes the ownership key (guarded by
//!   its create revision); the waiting writer goes on only after that delete. When the
//!   session's lease is lost every entry is dropped; ownership keys of a lost lease vanish
//!   with it. After a revocation the key is not acquired again for a back-off (2 s, as
//!   Go's `revokeBackoff`), so a reader cannot starve a writer.
//!
//! Races inside one process are closed by *fences*: an answer read at revision `r` is cached
//! only if no revocation, ownership-key delete or own write of that key at a revision above
//! `r` was seen meanwhile.
//!
//! A cached answer is served only while the session lease is known to live: until 2/3 of
//! its TTL after the last renewal was received (so, assuming a round trip shorter than a
//! third of the TTL, before the server could expire it).
//!
//! # Limits
//!
//! The guarantee holds among writers that use `LeasingKv` with the same prefix. A plain
//! client writing a key directly bypasses the protocol (as in Go): an owner may then serve
//! the old value until it gives the key up.
//!
//! # Differences from Go
//!
//! * Go's non-owner write path runs the op in a first transaction and, when that fails or
//!   errs, again in the revoke transaction's `then` branch; reading the code, a put of a key
//!   nobody owns can be applied twice. Here the revoke transaction never carries the op: it
//!   only marks the ownership key, and the op is retried in the single guarded transaction.
//! * A transaction always goes to the server (Go evaluates it locally when every compare and
//!   op hits owned keys); it runs nested inside the guard transaction, and owned keys it
//!   writes are dropped from the cache (the ownership is kept).
//! * A session ends with the client's `LeaseLost` instead of Go's session `Done`, and a new
//!   one starts lazily on the next read; ownership keys of an ended session that are found by
//!   a write are deleted at once instead of waiting for the old lease to expire.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::{
    compare, request_op, response_op, Compare as PbCompare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use etcd_proto_core::proto::mvccpb::{event::EventType, Event, KeyValue};
use etcd_proto_core::rpc::kv::{Delete, Get, Put, Txn};
use etcd_proto_core::{Error, EtcdErrorKind, InvalidRequest, Watch, WatchResponse};
use tokio::sync::oneshot;

use crate::lease::{KeepAliveResponse, LeaseKeeper};
use crate::namespace::{empty_key_error, Namespace};
use crate::runtime::{BoxFuture, Runtime};
use crate::watch::Watcher;
use crate::Client;

/// The value a writer puts into an ownership key to ask its owner to give it up.
pub const REVOKE: &[u8] = b"REVOKE";

/// Settings of a [`LeasingKv`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeasingOptions {
    /// TTL of the session lease, in seconds (default 60, as Go's `concurrency` sessions).
    pub session_ttl: i64,
    /// How long a revoked key is not acquired again (default 2 s, as Go).
    pub revoke_backoff: Duration,
}

impl Default for LeasingOptions {
    fn default() -> Self {
        LeasingOptions {
            session_ttl: 60,
            revoke_backoff: Duration::from_secs(2),
        }
    }
}

impl LeasingOptions {
    /// Sets the session lease TTL in seconds (at least 2).
    pub fn session_ttl(mut self, seconds: i64) -> Self {
        self.session_ttl = seconds.max(2);
        self
    }

    /// Sets the back-off after a revocation.
    pub fn revoke_backoff(mut self, backoff: Duration) -> Self {
        self.revoke_backoff = backoff;
        self
    }
}

/// What a [`LeasingKv`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeasingStats {
    /// Reads answered from the cache, without a request.
    pub cache_hits: u64,
    /// Reads that went to the server (acquiring or not).
    pub server_reads: u64,
    /// Ownership keys created by reads.
    pub acquired: u64,
    /// Ownership keys of other clients this client asked to give up.
    pub revokes_sent: u64,
    /// Ownership keys this client gave up because a writer asked.
    pub revokes_served: u64,
}

#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    server_reads: AtomicU64,
    acquired: AtomicU64,
    revokes_sent: AtomicU64,
    revokes_served: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Entry {
    /// Create revision of our ownership key.
    owner_rev: i64,
    /// The session the ownership belongs to.
    epoch: u64,
    /// The key as last read or written (`None`: absent).
    kv: Option<KeyValue>,
    header: Option<ResponseHeader>,
}

#[derive(Debug, Default)]
struct Fence {
    /// Answers read below this revision must not be cached.
    revision: i64,
    /// When the key was last revoked (for the back-off).
    revoked_at: Option<Instant>,
}

#[derive(Debug)]
struct Session {
    lease: i64,
    epoch: u64,
    valid_until: Instant,
    /// Dropping it stops the session's task.
    _stop: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    session: Option<Session>,
    epochs: u64,
    entries: HashMap<Bytes, Entry>,
    fences: HashMap<Bytes, Fence>,
    pending: HashMap<Bytes, usize>,
    old_leases: HashSet<i64>,
}

impl State {
    fn live_session(&self, now: Instant) -> Option<&Session> {
        self.session.as_ref().filter(|s| now < s.valid_until)
    }

    /// Records that answers of `key` read below `revision` are stale.
    fn fence(&mut self, key: &Bytes, revision: i64, revoked: bool, now: Instant) {
        if !revoked && !self.pending.contains_key(key) {
            return;
        }
        let fence = self.fences.entry(key.clone()).or_default();
        fence.revision = fence.revision.max(revision);
        if revoked {
            fence.revoked_at = Some(now);
        }
    }

    fn end_session(&mut self, epoch: u64) {
        if self.session.as_ref().is_some_and(|s| s.epoch == epoch) {
            if let Some(session) = self.session.take() {
                self.old_leases.insert(session.lease);
            }
            self.entries.clear();
        }
    }
}

type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;
type Sleeper = Arc<dyn Fn(Instant) -> BoxFuture<()> + Send + Sync>;

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    starting: tokio::sync::Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leasing KV; see the [module docs](self). Clones share the cache and the session.
#[derive(Clone)]
pub struct LeasingKv {
    shared: Arc<Shared>,
    client: Client,
    ns: Namespace,
    options: LeasingOptions,
    spawn: Spawner,
    sleep: Sleeper,
}

impl fmt::Debug for LeasingKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasingKv")
            .field("prefix", self.ns.prefix())
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Keeps an acquisition of `key` registered while it runs.
struct Pending<'a> {
    shared: &'a Shared,
    key: Bytes,
    backoff: Duration,
}

impl<'a> Pending<'a> {
    fn new(shared: &'a Shared, key: Bytes, backoff: Duration) -> Pending<'a> {
        *shared.lock().pending.entry(key.clone()).or_default() += 1;
        Pending {
            shared,
            key,
            backoff,
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let left = match state.pending.get_mut(&self.key) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if left == 0 {
            state.pending.remove(&self.key);
            let now = Instant::now();
            let backoff = self.backoff;
            if let Some(fence) = state.fences.get(&self.key) {
                if fence.revoked_at.is_none_or(|t| now >= t + backoff) {
                    state.fences.remove(&self.key);
                }
            }
        }
    }
}

fn range_op(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(req)),
    }
}

fn single(key: Bytes) -> RangeRequest {
    RangeRequest {
        key,
        ..Default::default()
    }
}

fn create_is(key: Bytes, range_end: Bytes, revision: i64) -> PbCompare {
    PbCompare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key,
        range_end,
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
    }
}

fn lease_is(key: Bytes, lease: i64) -> PbCompare {
    PbCompare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Lease as i32,
        key,
        range_end: Bytes::new(),
        target_union: Some(compare::TargetUnion::Lease(lease)),
    }
}

fn range_kvs(op: Option<&response_op::Response>) -> &[KeyValue] {
    match op {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

fn protocol(what: &str) -> Error {
    Error::Protocol(format!("leasing: unexpected transaction response ({what})"))
}

/// The answer a server would give to `req` for a single key whose state is `kv`.
fn respond(
    req: &RangeRequest,
    kv: Option<&KeyValue>,
    header: Option<ResponseHeader>,
) -> RangeResponse {
    let passes = |kv: &KeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    let kvs = match kv {
        Some(kv) if !req.count_only && passes(kv) => {
            let mut kv = kv.clone();
            if req.keys_only {
                kv.value = Bytes::new();
            }
            vec![kv]
        }
        _ => Vec::new(),
    };
    RangeResponse {
        header,
        kvs,
        more: false,
        count: i64::from(kv.is_some()),
    }
}

/// A key or range a write touches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    Key(Bytes),
    Range(Bytes, Bytes),
}

fn writes_of(txn: &TxnRequest, out: &mut Vec<Written>) {
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.push(Written::Key(p.key.clone())),
            Some(request_op::Request::RequestDeleteRange(d)) if d.range_end.is_empty() => {
                out.push(Written::Key(d.key.clone()))
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push(Written::Range(d.key.clone(), d.range_end.clone()))
            }
            Some(request_op::Request::RequestTxn(t)) => writes_of(t, out),
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
}

impl LeasingKv {
    /// A leasing KV over `client` whose ownership keys live under `prefix` (which must not be
    /// empty, and should be used for nothing else). `runtime` runs the session's background
    /// task (renewals are the driver's; the task watches the ownership keys).
    pub fn new<R: Runtime>(
        runtime: R,
        client: Client,
        prefix: impl etcd_proto_core::rpc::IntoBytes,
    ) -> Result<LeasingKv, Error> {
        LeasingKv::with_options(runtime, client, prefix, LeasingOptions::default())
    }

    /// With explicit options.
    pub fn with_options<R: Runtime>(
        runtime: R,
        client: Client,
        prefix: impl etcd_proto_core::rpc::IntoBytes,
        options: LeasingOptions,
    ) -> Result<LeasingKv, Error> {
        let ns = Namespace::new(prefix);
        if ns.prefix().is_empty() {
            return Err(
                InvalidRequest::Invalid("leasing: the prefix must not be empty".into()).into(),
            );
        }
        let spawner = runtime.clone();
        let sleeper = runtime;
        Ok(LeasingKv {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                counters: Counters::default(),
                starting: tokio::sync::Mutex::new(()),
            }),
            client,
            ns,
            options,
            spawn: Arc::new(move |task| spawner.spawn(task)),
            sleep: Arc::new(move |deadline| sleeper.sleep_until(deadline)),
        })
    }

    /// The ownership-key prefix.
    pub fn prefix(&self) -> &Bytes {
        self.ns.prefix()
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Counters of what was done so far.
    pub fn stats(&self) -> LeasingStats {
        let c = &self.shared.counters;
        LeasingStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            server_reads: c.server_reads.load(Ordering::Relaxed),
            acquired: c.acquired.load(Ordering::Relaxed),
            revokes_sent: c.revokes_sent.load(Ordering::Relaxed),
            revokes_served: c.revokes_served.load(Ordering::Relaxed),
        }
    }

    /// Whether `key` is cached (owned by this client and answerable locally) right now.
    pub fn is_cached(&self, key: &[u8]) -> bool {
        let state = self.shared.lock();
        let Some(session) = state.live_session(Instant::now()) else {
            return false;
        };
        state
            .entries
            .get(key)
            .is_some_and(|e| e.epoch == session.epoch)
    }

    /// Gives up every ownership (by revoking the session lease, which deletes the ownership
    /// keys) and empties the cache. The next read starts a new session.
    pub async fn close(&self) -> Result<(), Error> {
        let session = {
            let mut state = self.shared.lock();
            state.entries.clear();
            state.session.take()
        };
        if let Some(session) = session {
            let revoked = self.client.lease_revoke(session.lease).await;
            // The session's task revokes the lease too once `session` is dropped; if it was
            // lost already, there is nothing left to give up.
            drop(session);
            match revoked {
                Err(e) if e.etcd_kind() != Some(EtcdErrorKind::LeaseNotFound) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn owner_key(&self, key: &[u8]) -> Bytes {
        self.ns.interval(key, b"").0
    }

    async fn server_read(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        bump(&self.shared.counters.server_reads);
        self.client.call(req).await
    }

    fn in_backoff(&self, key: &Bytes) -> bool {
        let mut state = self.shared.lock();
        let now = Instant::now();
        let backoff = self.options.revoke_backoff;
        match state.fences.get(key).and_then(|f| f.revoked_at) {
            Some(at) if now < at + backoff => true,
            Some(_) => {
                if !state.pending.contains_key(key) {
                    state.fences.remove(key);
                }
                false
            }
            None => false,
        }
    }

    /// Reads a key: from the cache when this client owns it, else from the server, acquiring
    /// it when the read is a linearizable single-key read at the latest revision.
    pub async fn get(&self, get: impl Into<Get>) -> Result<RangeResponse, Error> {
        let req = get.into().build()?;
        if !req.range_end.is_empty() || req.revision > 0 || req.key.is_empty() {
            return self.server_read(req).await;
        }
        let hit = {
            let state = self.shared.lock();
            state.live_session(Instant::now()).and_then(|session| {
                let entry = state.entries.get(&req.key)?;
                (entry.epoch == session.epoch)
                    .then(|| respond(&req, entry.kv.as_ref(), entry.header))
            })
        };
        if let Some(resp) = hit {
            let hits = self
                .shared
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if hits & (HITS_PER_YIELD - 1) == 0 {
                // A local answer is ready at once; a loop of them must still let the session's
                // task (and everything else on a single-threaded executor) run now and then.
                yield_now().await;
            }
            return Ok(resp);
        }
        if req.serializable || self.in_backoff(&req.key) {
            return self.server_read(req).await;
        }
        let Ok((lease, epoch)) = self.session().await else {
            return self.server_read(req).await;
        };
        let key = req.key.clone();
        let _pending = Pending::new(&self.shared, key.clone(), self.options.revoke_backoff);
        let owner = self.owner_key(&key);
        let txn = TxnRequest {
            compare: vec![
                create_is(owner.clone(), Bytes::new(), 0),
                lease_is(key.clone(), 0),
            ],
            success: vec![
                range_op(single(key.clone())),
                RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: owner.clone(),
                        lease,
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![range_op(single(key.clone())), range_op(single(owner))],
        };
        bump(&self.shared.counters.server_reads);
        let resp = match self.client.call(txn).await {
            Ok(resp) => resp,
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::LeaseNotFound) => {
                // The session lease is gone before its task noticed: end the session and read
                // without acquiring.
                self.shared.lock().end_session(epoch);
                return self.server_read(req).await;
            }
            Err(e) => return Err(e),
        };
        let read_at = resp.header.as_ref().map(|h| h.revision).unwrap_or_default();
        let kv = range_kvs(resp.responses.first().and_then(|r| r.response.as_ref()))
            .first()
            .cloned();
        let owner_rev = if resp.succeeded {
            bump(&self.shared.counters.acquired);
            read_at
        } else {
            match range_kvs(resp.responses.get(1).and_then(|r| r.response.as_ref())).first() {
                Some(o) if o.lease == lease && o.value.as_ref() != REVOKE => o.create_revision,
                _ => 0,
            }
        };
        if owner_rev > 0 && kv.as_ref().is_none_or(|kv| kv.lease == 0) {
            let mut state = self.shared.lock();
            let fresh = state.fences.get(&key).is_none_or(|f| read_at >= f.revision);
            let same_session = state
                .live_session(Instant::now())
                .is_some_and(|s| s.epoch == epoch);
            if fresh && same_session {
                state.entries.insert(
                    key,
                    Entry {
                        owner_rev,
                        epoch,
                        kv: kv.clone(),
                        header: resp.header,
                    },
                );
            }
        }
        Ok(respond(&req, kv.as_ref(), resp.header))
    }

    /// Writes a key through the protocol (see the module docs): applied at most once (exactly
    /// once when this returns `Ok`), and only after any other owner gave the key up.
    pub async fn put(&self, put: impl Into<Put>) -> Result<PutResponse, Error> {
        let req = put.into().build()?;
        if req.key.is_empty() {
            return Err(empty_key_error());
        }
        let written = [Written::Key(req.key.clone())];
        let (resp, header) = self
            .write(request_op::Request::RequestPut(req), &written)
            .await?;
        match resp {
            response_op::Response::ResponsePut(mut r) => {
                r.header = r.header.or(header);
                Ok(r)
            }
            _ => Err(protocol("put")),
        }
    }

    /// Deletes a key or range through the protocol.
    pub async fn delete(&self, delete: impl Into<Delete>) -> Result<DeleteRangeResponse, Error> {
        let req = delete.into().build()?;
        if req.key.is_empty() {
            return Err(empty_key_error());
        }
        let written = if req.range_end.is_empty() {
            Written::Key(req.key.clone())
        } else {
            Written::Range(req.key.clone(), req.range_end.clone())
        };
        let (resp, header) = self
            .write(request_op::Request::RequestDeleteRange(req), &[written])
            .await?;
        match resp {
            response_op::Response::ResponseDeleteRange(mut r) => {
                r.header = r.header.or(header);
                Ok(r)
            }
            _ => Err(protocol("delete")),
        }
    }

    /// Runs a transaction on the server, guarded by the protocol for every key it may write
    /// (both branches); owned keys it writes are dropped from the cache.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let req = txn.build()?;
        let mut written = Vec::new();
        writes_of(&req, &mut written);
        if written.is_empty() {
            bump(&self.shared.counters.server_reads);
            return self.client.call(req).await;
        }
        let (resp, header) = self
            .write(request_op::Request::RequestTxn(req), &written)
            .await?;
        match resp {
            response_op::Response::ResponseTxn(mut r) => {
                r.header = r.header.or(header);
                Ok(r)
            }
            _ => Err(protocol("txn")),
        }
    }

    /// The write path: one guarded transaction carrying the op, repeated after clearing the
    /// way until the guard holds.
    async fn write(
        &self,
        op: request_op::Request,
        written: &[Written],
    ) -> Result<(response_op::Response, Option<ResponseHeader>), Error> {
        // Per written key, the ownership-key create revision the guard expects, as last seen
        // by a failed guard (0: none); keys not in it fall back to the cache entry.
        let mut adopted: HashMap<Bytes, i64> = HashMap::new();
        loop {
            let (lease, owned) = {
                let state = self.shared.lock();
                let session = state.live_session(Instant::now());
                let owned: HashMap<Bytes, i64> = written
                    .iter()
                    .filter_map(|w| match w {
                        Written::Key(k) => adopted
                            .get(k)
                            .copied()
                            .or_else(|| {
                                let entry = state.entries.get(k)?;
                                (Some(entry.epoch) == session.map(|s| s.epoch))
                                    .then_some(entry.owner_rev)
                            })
                            .map(|rev| (k.clone(), rev)),
                        Written::Range(..) => None,
                    })
                    .collect();
                (session.map(|s| s.lease), owned)
            };
            let mut compare = Vec::new();
            let mut failure = Vec::new();
            let mut success = vec![RequestOp {
                request: Some(op.clone()),
            }];
            let mut refresh = Vec::new();
            for w in written {
                match w {
                    Written::Key(k) => {
                        let owner = self.owner_key(k);
                        let expected = owned.get(k).copied().unwrap_or(0);
                        compare.push(create_is(owner.clone(), Bytes::new(), expected));
                        failure.push(range_op(single(owner)));
                        if expected > 0
                            && matches!(
                                op,
                                request_op::Request::RequestPut(_)
                                    | request_op::Request::RequestDeleteRange(_)
                            )
                        {
                            success.push(range_op(single(k.clone())));
                            refresh.push((k.clone(), expected));
                        }
                    }
                    Written::Range(k, e) => {
                        let (start, end) = self.ns.interval(k, e);
                        compare.push(create_is(start.clone(), end.clone(), 0));
                        failure.push(range_op(RangeRequest {
                            key: start,
                            range_end: end,
                            keys_only: true,
                            ..Default::default()
                        }));
                    }
                }
            }
            let resp = self
                .client
                .call(TxnRequest {
                    compare,
                    success,
                    failure,
                })
                .await;
            let resp = match resp {
                Ok(resp) => resp,
                Err(e) => {
                    // The op may have been applied: forget what we cached of these keys.
                    self.forget(written, i64::MAX);
                    return Err(e);
                }
            };
            let revision = resp.header.as_ref().map(|h| h.revision).unwrap_or_default();
            if resp.succeeded {
                let mut responses = resp.responses.into_iter().map(|r| r.response);
                let first = responses
                    .next()
                    .flatten()
                    .ok_or_else(|| protocol("no op response"))?;
                let refreshed: Vec<Option<KeyValue>> = responses
                    .map(|r| range_kvs(r.as_ref()).first().cloned())
                    .collect();
                let now = Instant::now();
                let mut state = self.shared.lock();
                for w in written {
                    let (Written::Key(k) | Written::Range(k, _)) = w;
                    state.fence(k, revision, false, now);
                }
                let mut kept = HashSet::new();
                for ((k, rev), kv) in refresh.into_iter().zip(refreshed) {
                    if let Some(entry) = state.entries.get_mut(&k) {
                        if entry.owner_rev == rev && kv.as_ref().is_none_or(|kv| kv.lease == 0) {
                            entry.kv = kv;
                            entry.header = resp.header;
                            kept.insert(k);
                        }
                    }
                }
                for w in written {
                    match w {
                        Written::Key(k) if !kept.contains(k) => {
                            state.entries.remove(k);
                        }
                        Written::Key(_) => {}
                        Written::Range(k, e) => {
                            let (k, e) = (k.clone(), e.clone());
                            state
                                .entries
                                .retain(|key, _| !(key >= &k && (e.as_ref() == b"\0" || key < &e)));
                        }
                    }
                }
                return Ok((first, resp.header));
            }
            // Nothing was written: clear the way, then try again.
            let owners: Vec<KeyValue> = resp
                .responses
                .iter()
                .flat_map(|r| range_kvs(r.response.as_ref()).iter().cloned())
                .collect();
            // What the next guard expects comes from what was just seen: 0 (no ownership key)
            // unless one of ours is found below. A cache entry whose ownership key is gone is
            // dropped.
            let found: HashSet<Bytes> = owners.iter().map(|o| self.ns.strip(&o.key)).collect();
            {
                let mut state = self.shared.lock();
                let now = Instant::now();
                for w in written {
                    if let Written::Key(k) = w {
                        adopted.insert(k.clone(), 0);
                        if !found.contains(k) && state.entries.remove(k).is_some() {
                            state.fence(k, revision, false, now);
                        }
                    }
                }
            }
            for o in owners {
                let user_key = self.ns.strip(&o.key);
                let single_write = written.contains(&Written::Key(user_key.clone()));
                let old = self.shared.lock().old_leases.contains(&o.lease);
                if Some(o.lease) == lease && single_write {
                    adopted.insert(user_key, o.create_revision);
                } else if Some(o.lease) == lease || old {
                    {
                        let mut state = self.shared.lock();
                        state.entries.remove(&user_key);
                        state.fence(&user_key, revision, false, Instant::now());
                    }
                    release(&self.client, &self.sleep, o.key.clone(), o.create_revision).await;
                } else {
                    self.revoke(&o).await?;
                }
            }
        }
    }

    fn forget(&self, written: &[Written], revision: i64) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        for w in written {
            match w {
                Written::Key(k) => {
                    state.entries.remove(k);
                    state.fence(k, revision, false, now);
                }
                Written::Range(..) => state.entries.clear(),
            }
        }
    }

    /// Asks the owner of `owner_kv` to give it up and waits until the ownership key is gone.
    async fn revoke(&self, owner_kv: &KeyValue) -> Result<(), Error> {
        bump(&self.shared.counters.revokes_sent);
        let key = owner_kv.key.clone();
        let txn = TxnRequest {
            compare: vec![create_is(
                key.clone(),
                Bytes::new(),
                owner_kv.create_revision,
            )],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: Bytes::from_static(REVOKE),
                    ignore_lease: true,
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        let resp = self.client.call(txn).await?;
        if !resp.succeeded {
            return Ok(()); // it changed meanwhile: look again
        }
        let revision = resp.header.map(|h| h.revision).unwrap_or_default();
        let mut watcher = self
            .client
            .watch(Watch::new(key).start_revision(revision + 1))
            .await?;
        loop {
            match watcher.next().await {
                Some(Ok(r)) => {
                    let gone = r.events.iter().any(|e| {
                        e.r#type == EventType::Delete as i32
                            || e.kv
                                .as_ref()
                                .is_some_and(|kv| kv.create_revision != owner_kv.create_revision)
                    });
                    if gone {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::ClientClosed),
            }
        }
    }

    /// The live session `(lease, epoch)`, starting one if needed.
    async fn session(&self) -> Result<(i64, u64), Error> {
        let live = |shared: &Shared| {
            let state = shared.lock();
            state
                .live_session(Instant::now())
                .map(|s| (s.lease, s.epoch))
        };
        if let Some(s) = live(&self.shared) {
            return Ok(s);
        }
        let _starting = self.shared.starting.lock().await;
        if let Some(s) = live(&self.shared) {
            return Ok(s);
        }
        let ttl = self.options.session_ttl;
        let sent = Instant::now();
        let granted = self.client.lease_grant(ttl).await?;
        let lease = granted.id;
        let started = async {
            // Watch first, so every event of an ownership key created later is seen.
            let watcher = self
                .client
                .watch(Watch::new(self.ns.prefix().clone()).prefix())
                .await?;
            let keeper = self.client.keep_alive(&granted).await?;
            Ok::<_, Error>((watcher, keeper))
        }
        .await;
        let (watcher, keeper) = match started {
            Ok(parts) => parts,
            Err(e) => {
                let _ = self.client.lease_revoke(lease).await;
                return Err(e);
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let epoch = {
            let mut state = self.shared.lock();
            state.epochs += 1;
            let epoch = state.epochs;
            if let Some(old) = state.session.take() {
                state.old_leases.insert(old.lease);
            }
            state.entries.clear();
            state.session = Some(Session {
                lease,
                epoch,
                valid_until: sent + valid_for(granted.ttl),
                _stop: stop_tx,
            });
            epoch
        };
        let task = SessionTask {
            shared: Arc::downgrade(&self.shared),
            client: self.client.clone(),
            ns: self.ns.clone(),
            sleep: self.sleep.clone(),
            lease,
            epoch,
            backoff: self.options.revoke_backoff,
        };
        (self.spawn)(Box::pin(task.run(watcher, keeper, stop_rx)));
        Ok((lease, epoch))
    }
}

/// A cache hit yields to the executor once in this many (a power of two), so a tight loop of local reads
/// cannot starve the session's task on a single-threaded executor.
const HITS_PER_YIELD: u64 = 16;

/// Returns `Pending` once (waking itself), like `tokio::task::yield_now`, on any executor.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// How long after a confirmation a lease of `ttl` seconds is surely alive (2/3 of the TTL).
fn valid_for(ttl: i64) -> Duration {
    Duration::from_millis((ttl.max(0) as u64) * 2000 / 3)
}

/// Deletes an ownership key if it is still the one created at `create_revision`; a few tries.
/// False if every try failed.
async fn release(client: &Client, sleep: &Sleeper, key: Bytes, create_revision: i64) -> bool {
    let txn = TxnRequest {
        compare: vec![create_is(key.clone(), Bytes::new(), create_revision)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key,
                    ..Default::default()
                },
            )),
        }],
        failure: Vec::new(),
    };
    let mut delay = Duration::from_millis(50);
    for _ in 0..5 {
        if client.call(txn.clone()).await.is_ok() {
            return true;
        }
        sleep(Instant::now() + delay).await;
        delay *= 2;
    }
    false
}

enum Wake {
    Stop,
    Renewed(KeepAliveResponse),
    SessionLost,
    Events(WatchResponse),
}

/// The background task of one session: follows renewals, serves revocations.
struct SessionTask {
    shared: Weak<Shared>,
    client: Client,
    ns: Namespace,
    sleep: Sleeper,
    lease: i64,
    epoch: u64,
    backoff: Duration,
}

impl SessionTask {
    async fn run(
        self,
        mut watcher: Watcher,
        mut keeper: LeaseKeeper,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            let wake = std::future::poll_fn(|cx| {
                if Pin::new(&mut stop).poll(cx).is_ready() {
                    return Poll::Ready(Wake::Stop);
                }
                match keeper.poll_next(cx) {
                    Poll::Ready(Some(Ok(renewed))) => return Poll::Ready(Wake::Renewed(renewed)),
                    Poll::Ready(_) => return Poll::Ready(Wake::SessionLost),
                    Poll::Pending => {}
                }
                match watcher.poll_next(cx) {
                    Poll::Ready(Some(Ok(resp))) => Poll::Ready(Wake::Events(resp)),
                    Poll::Ready(_) => Poll::Ready(Wake::SessionLost),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            let Some(shared) = self.shared.upgrade() else {
                let _ = self.client.lease_revoke(self.lease).await;
                return;
            };
            match wake {
                Wake::Stop => {
                    drop(shared);
                    let _ = self.client.lease_revoke(self.lease).await;
                    return;
                }
                Wake::Renewed(renewed) => {
                    let mut state = shared.lock();
                    if let Some(session) = state.session.as_mut().filter(|s| s.epoch == self.epoch)
                    {
                        let until = Instant::now() + valid_for(renewed.ttl);
                        session.valid_until = session.valid_until.max(until);
                    }
                }
                Wake::SessionLost => {
                    shared.lock().end_session(self.epoch);
                    drop(shared);
                    let _ = self.client.lease_revoke(self.lease).await;
                    return;
                }
                Wake::Events(resp) => {
                    for event in &resp.events {
                        if !self.handle(&shared, event).await {
                            // A revoked ownership key could not be deleted: give up the whole
                            // session, so the lease (and with it the key) goes away.
                            shared.lock().end_session(self.epoch);
                            drop(shared);
                            let _ = self.client.lease_revoke(self.lease).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Handles one event of the ownership prefix; false if a revocation could not be served.
    async fn handle(&self, shared: &Shared, event: &Event) -> bool {
        let Some(kv) = event.kv.as_ref() else {
            return true;
        };
        if !self.ns.contains(&kv.key) {
            return true;
        }
        let user_key = self.ns.strip(&kv.key);
        let now = Instant::now();
        if event.r#type == EventType::Delete as i32 {
            // The ownership ended (released, revoked or expired): whatever we cached is old.
            let mut state = shared.lock();
            state.entries.remove(&user_key);
            state.fence(&user_key, kv.mod_revision, false, now);
        } else if kv.lease == self.lease && kv.value.as_ref() == REVOKE {
            {
                let mut state = shared.lock();
                state.entries.remove(&user_key);
                state.fence(&user_key, kv.mod_revision, true, now);
                let backoff = self.backoff;
                if state.fences.len() > 1024 {
                    let pending: HashSet<Bytes> = state.pending.keys().cloned().collect();
                    state.fences.retain(|k, f| {
                        pending.contains(k) || f.revoked_at.is_some_and(|t| now < t + backoff)
                    });
                }
            }
            bump(&shared.counters.revokes_served);
            // Only now, with the entry gone, may the writer go on.
            return release(
                &self.client,
                &self.sleep,
                kv.key.clone(),
                kv.create_revision,
            )
            .await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, mod_rev: i64, create_rev: i64) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(value.to_string()),
            mod_revision: mod_rev,
            create_revision: create_rev,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn local_answers_honour_the_read_options() {
        let stored = kv("v", 10, 5);
        let req = |f: fn(&mut RangeRequest)| {
            let mut r = single(Bytes::from_static(b"k"));
            f(&mut r);
            r
        };
        let plain = respond(&req(|_| {}), Some(&stored), None);
        assert_eq!((plain.count, plain.kvs.len()), (1, 1));
        assert_eq!(&plain.kvs[0].value[..], b"v");
        let keys_only = respond(&req(|r| r.keys_only = true), Some(&stored), None);
        assert!(keys_only.kvs[0].value.is_empty());
        let count_only = respond(&req(|r| r.count_only = true), Some(&stored), None);
        assert_eq!((count_only.count, count_only.kvs.len()), (1, 0));
        let filtered = respond(&req(|r| r.min_mod_revision = 11), Some(&stored), None);
        assert_eq!((filtered.count, filtered.kvs.len()), (1, 0));
        let kept = respond(&req(|r| r.max_create_revision = 5), Some(&stored), None);
        assert_eq!(kept.kvs.len(), 1);
        let missing = respond(&req(|_| {}), None, None);
        assert_eq!((missing.count, missing.kvs.len()), (0, 0));
    }

    #[test]
    fn txn_writes_are_found_in_both_branches_and_nested() {
        let txn = Txn::new()
            .and_then([Put::new("a", "1")])
            .or_else([Txn::new().and_then([Delete::new("p/").prefix(), Delete::new("d")])])
            .build()
            .unwrap();
        let mut out = Vec::new();
        writes_of(&txn, &mut out);
        assert_eq!(
            out,
            [
                Written::Key(Bytes::from_static(b"a")),
                Written::Range(Bytes::from_static(b"p/"), Bytes::from_static(b"p0")),
                Written::Key(Bytes::from_static(b"d")),
            ]
        );
    }

    #[test]
    fn fences_only_matter_while_reads_are_in_flight() {
        let mut state = State::default();
        let key = Bytes::from_static(b"k");
        let now = Instant::now();
        state.fence(&key, 7, false, now);
        assert!(
            state.fences.is_empty(),
            "no read in flight, nothing to fence"
        );
        state.pending.insert(key.clone(), 1);
        state.fence(&key, 7, false, now);
        state.fence(&key, 5, false, now);
        assert_eq!(state.fences[&key].revision, 7);
        state.pending.clear();
        state.fence(&key, 9, true, now);
        assert_eq!(state.fences[&key].revision, 9);
        assert!(state.fences[&key].revoked_at.is_some());
    }
}
