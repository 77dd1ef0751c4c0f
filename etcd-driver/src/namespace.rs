//! A namespaced view of a [`Client`] (Go's `namespace` package): every key, range, compare,
//! watch, lock name and election name is put under a prefix on the way out, and the prefix is
//! stripped from every key that comes back.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::Error> {
//! use etcd_driver::rpc::kv::Get;
//!
//! let app = client.namespaced("apps/billing/");
//! app.put(("config", "v1")).await?; // raw key: "apps/billing/config"
//! let all = app.get(Get::new("").prefix()).await?; // every key of the namespace
//! assert_eq!(&all.kvs[0].key[..], b"config"); // prefix stripped
//! # Ok(())
//! # }
//! ```
//!
//! # Ranges
//!
//! Ranges keep their meaning inside the namespace. A prefix range is the prefix range of the
//! namespaced key; a range end of `"\0"` (a from-key range, or a prefix range over the empty
//! key) means *the end of the namespace*, not the end of the keyspace, exactly as in Go: it
//! becomes the prefix's own prefix end.
//!
//! # Empty keys
//!
//! An empty key is refused before anything is sent, with the server's own error
//! ([`EtcdErrorKind::EmptyKey`], what Go's `rpctypes.ErrEmptyKey` is): in the namespace it
//! would silently address the prefix itself. Go checks this for `Get`, `Put` and `Delete`
//! only; here transaction operations and single-key compares are checked too.
//!
//! # Differences from Go
//!
//! * Transaction operations and compares with an empty key are refused (see above).
//! * Keys coming back that do not carry the prefix (which the server never sends) are left as
//!   they are instead of being cut blindly.
//! * Besides KV, Watch and Lease, the lock and election services are namespaced too (Go has no
//!   client wrapper for them).

use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use etcd_proto_core::proto::etcdserverpb::{
    request_op, response_op, CompactionResponse, Compare as PbCompare, DeleteRangeRequest,
    DeleteRangeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use etcd_proto_core::proto::mvccpb::{Event, KeyValue};
use etcd_proto_core::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use etcd_proto_core::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use etcd_proto_core::rpc::kv::{prefix_range_end, Compact, Delete, Get, Put, Txn};
use etcd_proto_core::rpc::{IntoBytes, Observe};
use etcd_proto_core::WatchResponse;
use etcd_proto_core::{Error, EtcdError, EtcdErrorKind, InvalidRequest, Watch, WatchId};

use crate::server_stream::ServerStream;
use crate::watch::Watcher;
use crate::Client;

/// The error Go's namespace returns for an empty key (`rpctypes.ErrEmptyKey`): the server's
/// own "key is not provided" error, raised before anything is sent.
pub fn empty_key_error() -> Error {
    let kind = EtcdErrorKind::EmptyKey;
    Error::Etcd(EtcdError {
        kind,
        code: kind.canonical_code(),
        message: kind.message().to_string(),
    })
}

/// The key mapping of a namespace, without a client: adds the prefix to requests and strips
/// it from responses. [`NamespacedClient`] uses it; it is public for code that builds its own
/// requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    prefix: Bytes,
}

impl Namespace {
    /// The namespace under `prefix` (usually ending in `/`; nothing is added).
    pub fn new(prefix: impl IntoBytes) -> Namespace {
        Namespace {
            prefix: prefix.into_bytes(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    fn join(&self, key: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.prefix.len() + key.len());
        out.put_slice(&self.prefix);
        out.put_slice(key);
        out.freeze()
    }

    /// The raw key of namespaced `key`; an empty key is refused.
    pub fn key(&self, key: &[u8]) -> Result<Bytes, Error> {
        if key.is_empty() {
            return Err(empty_key_error());
        }
        Ok(self.join(key))
    }

    /// The raw `(key, range_end)` of a namespaced interval (Go's `prefixInterval`): the key
    /// gets the prefix; an empty end stays empty (a single key); an end of `"\0"` becomes the
    /// end of the namespace; any other end gets the prefix.
    pub fn interval(&self, key: &[u8], end: &[u8]) -> (Bytes, Bytes) {
        let raw_key = self.join(key);
        let raw_end = if end == b"\0" {
            prefix_range_end(&self.prefix)
        } else if end.is_empty() {
            Bytes::new()
        } else {
            self.join(end)
        };
        (raw_key, raw_end)
    }

    /// The raw interval of a KV request's `(key, range_end)`: an empty key is refused (the
    /// builders turn the empty key of a prefix or from-key range into `"\0"`, which is
    /// accepted).
    pub fn request_interval(&self, key: &[u8], end: &[u8]) -> Result<(Bytes, Bytes), Error> {
        if key.is_empty() {
            return Err(empty_key_error());
        }
        Ok(self.interval(key, end))
    }

    /// `key` without the prefix (unchanged if it does not carry it).
    pub fn strip(&self, key: &Bytes) -> Bytes {
        if key.starts_with(&self.prefix) {
            key.slice(self.prefix.len()..)
        } else {
            key.clone()
        }
    }

    /// Whether a raw key lies in the namespace.
    pub fn contains(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix)
    }

    fn strip_kv(&self, kv: &mut KeyValue) {
        kv.key = self.strip(&kv.key);
    }

    /// Namespaces a Range request.
    pub fn range_request(&self, mut req: RangeRequest) -> Result<RangeRequest, Error> {
        (req.key, req.range_end) = self.request_interval(&req.key, &req.range_end)?;
        Ok(req)
    }

    /// Namespaces a Put request.
    pub fn put_request(&self, mut req: PutRequest) -> Result<PutRequest, Error> {
        req.key = self.key(&req.key)?;
        Ok(req)
    }

    /// Namespaces a DeleteRange request.
    pub fn delete_request(&self, mut req: DeleteRangeRequest) -> Result<DeleteRangeRequest, Error> {
        (req.key, req.range_end) = self.request_interval(&req.key, &req.range_end)?;
        Ok(req)
    }

    /// Namespaces a compare: its key, and its range end if it has one. A single-key compare
    /// with an empty key is refused.
    pub fn compare(&self, mut cmp: PbCompare) -> Result<PbCompare, Error> {
        if cmp.key.is_empty() && cmp.range_end.is_empty() {
            return Err(empty_key_error());
        }
        (cmp.key, cmp.range_end) = self.interval(&cmp.key, &cmp.range_end);
        Ok(cmp)
    }

    /// Namespaces a Txn request: compares and operations, nested transactions included.
    pub fn txn_request(&self, req: TxnRequest) -> Result<TxnRequest, Error> {
        let ops = |ops: Vec<RequestOp>| -> Result<Vec<RequestOp>, Error> {
            ops.into_iter().map(|op| self.request_op(op)).collect()
        };
        Ok(TxnRequest {
            compare: req
                .compare
                .into_iter()
                .map(|c| self.compare(c))
                .collect::<Result<_, _>>()?,
            success: ops(req.success)?,
            failure: ops(req.failure)?,
        })
    }

    fn request_op(&self, op: RequestOp) -> Result<RequestOp, Error> {
        use request_op::Request;
        let request = match op.request {
            Some(Request::RequestRange(r)) => Some(Request::RequestRange(self.range_request(r)?)),
            Some(Request::RequestPut(r)) => Some(Request::RequestPut(self.put_request(r)?)),
            Some(Request::RequestDeleteRange(r)) => {
                Some(Request::RequestDeleteRange(self.delete_request(r)?))
            }
            Some(Request::RequestTxn(r)) => Some(Request::RequestTxn(self.txn_request(r)?)),
            None => None,
        };
        Ok(RequestOp { request })
    }

    /// Strips the prefix from a Range response.
    pub fn range_response(&self, mut resp: RangeResponse) -> RangeResponse {
        resp.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
        resp
    }

    /// Strips the prefix from a Put response's previous key-value.
    pub fn put_response(&self, mut resp: PutResponse) -> PutResponse {
        if let Some(kv) = resp.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
        resp
    }

    /// Strips the prefix from a DeleteRange response's previous key-values.
    pub fn delete_response(&self, mut resp: DeleteRangeResponse) -> DeleteRangeResponse {
        resp.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
        resp
    }

    /// Strips the prefix from every response of a Txn, nested ones included.
    pub fn txn_response(&self, mut resp: TxnResponse) -> TxnResponse {
        use response_op::Response;
        for op in &mut resp.responses {
            op.response = op.response.take().map(|r| match r {
                Response::ResponseRange(r) => Response::ResponseRange(self.range_response(r)),
                Response::ResponsePut(r) => Response::ResponsePut(self.put_response(r)),
                Response::ResponseDeleteRange(r) => {
                    Response::ResponseDeleteRange(self.delete_response(r))
                }
                Response::ResponseTxn(r) => Response::ResponseTxn(self.txn_response(r)),
            });
        }
        resp
    }

    /// Strips the prefix from the events of a watch response (keys and previous keys).
    pub fn watch_response(&self, mut resp: WatchResponse) -> WatchResponse {
        resp.events
            .to_mut()
            .iter_mut()
            .for_each(|e| self.strip_event(e));
        resp
    }

    fn strip_event(&self, event: &mut Event) {
        if let Some(kv) = event.kv.as_mut() {
            self.strip_kv(kv);
        }
        if let Some(kv) = event.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
    }

    /// Keeps the keys of a TimeToLive response that lie in the namespace, stripped.
    pub fn time_to_live_response(
        &self,
        mut resp: LeaseTimeToLiveResponse,
    ) -> LeaseTimeToLiveResponse {
        resp.keys = resp
            .keys
            .iter()
            .filter(|k| self.contains(k))
            .map(|k| self.strip(k))
            .collect();
        resp
    }

    /// The raw leader key of a namespaced one (name and key prefixed).
    pub fn leader_key(&self, mut leader: LeaderKey) -> LeaderKey {
        leader.name = self.join(&leader.name);
        leader.key = self.join(&leader.key);
        leader
    }

    /// The namespaced leader key of a raw one (name and key stripped).
    pub fn strip_leader_key(&self, mut leader: LeaderKey) -> LeaderKey {
        leader.name = self.strip(&leader.name);
        leader.key = self.strip(&leader.key);
        leader
    }

    fn leader_response(&self, mut resp: LeaderResponse) -> LeaderResponse {
        if let Some(kv) = resp.kv.as_mut() {
            self.strip_kv(kv);
        }
        resp
    }
}

impl Client {
    /// A view of this client under key prefix `prefix` (Go's `namespace.NewKV`,
    /// `NewWatcher` and `NewLease` together); see [`NamespacedClient`].
    pub fn namespaced(&self, prefix: impl IntoBytes) -> NamespacedClient {
        NamespacedClient {
            client: self.clone(),
            ns: Namespace::new(prefix),
        }
    }
}

/// A client whose keys all live under a prefix; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct NamespacedClient {
    client: Client,
    ns: Namespace,
}

impl NamespacedClient {
    /// The view of `client` under `prefix`.
    pub fn new(client: Client, prefix: impl IntoBytes) -> NamespacedClient {
        client.namespaced(prefix)
    }

    /// The namespace's key mapping.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The prefix.
    pub fn prefix(&self) -> &Bytes {
        self.ns.prefix()
    }

    /// The underlying (un-namespaced) client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same namespace over another handle of the client (e.g. one with a timeout).
    pub fn with_client(&self, client: Client) -> NamespacedClient {
        NamespacedClient {
            client,
            ns: self.ns.clone(),
        }
    }

    /// The same namespace whose calls have this deadline.
    pub fn with_timeout(&self, timeout: std::time::Duration) -> NamespacedClient {
        self.with_client(self.client.with_timeout(timeout))
    }

    /// Reads a key or range of the namespace; see [`Client::get`].
    pub async fn get(&self, get: impl Into<Get>) -> Result<RangeResponse, Error> {
        let req = self.ns.range_request(get.into().build()?)?;
        Ok(self.ns.range_response(self.client.call(req).await?))
    }

    /// Writes a key of the namespace; see [`Client::put`].
    pub async fn put(&self, put: impl Into<Put>) -> Result<PutResponse, Error> {
        let req = self.ns.put_request(put.into().build()?)?;
        Ok(self.ns.put_response(self.client.call(req).await?))
    }

    /// Deletes a key or range of the namespace; see [`Client::delete`].
    pub async fn delete(&self, delete: impl Into<Delete>) -> Result<DeleteRangeResponse, Error> {
        let req = self.ns.delete_request(delete.into().build()?)?;
        Ok(self.ns.delete_response(self.client.call(req).await?))
    }

    /// Runs a transaction inside the namespace: compares and operations (nested transactions
    /// too) are namespaced, every response is stripped.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let req = self.ns.txn_request(txn.build()?)?;
        Ok(self.ns.txn_response(self.client.call(req).await?))
    }

    /// Compacts the (whole, shared) history: revisions are not namespaced, as in Go.
    pub async fn compact(&self, compact: impl Into<Compact>) -> Result<CompactionResponse, Error> {
        self.client.compact(compact).await
    }

    /// Watches a key or range of the namespace; events come back with the prefix stripped.
    pub async fn watch(
        &self,
        watch: impl Into<NamespacedWatch>,
    ) -> Result<NamespacedWatcher, Error> {
        let watch = watch.into().build(&self.ns)?;
        let watcher = self.client.watch(watch).await?;
        Ok(NamespacedWatcher {
            watcher,
            ns: self.ns.clone(),
        })
    }

    /// The TTL of lease `id`; with `keys`, only its keys inside the namespace, stripped (Go's
    /// `namespace.NewLease`).
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        let resp = self
            .client
            .call(LeaseTimeToLiveRequest { id, keys })
            .await?;
        Ok(self.ns.time_to_live_response(resp))
    }

    /// Acquires lock `name` of the namespace (see [`Client::lock`]); the returned key is
    /// stripped and is what [`NamespacedClient::unlock`] takes.
    pub async fn lock(&self, name: impl IntoBytes, lease: i64) -> Result<LockResponse, Error> {
        let name = self.ns.join(&name.into_bytes());
        let mut resp = self.client.call(LockRequest { name, lease }).await?;
        resp.key = self.ns.strip(&resp.key);
        Ok(resp)
    }

    /// Releases the lock whose (namespaced) key is `key`.
    pub async fn unlock(&self, key: impl IntoBytes) -> Result<UnlockResponse, Error> {
        let key = self.ns.key(&key.into_bytes())?;
        self.client.call(UnlockRequest { key }).await
    }

    /// Campaigns in election `name` of the namespace (see [`Client::campaign`]); the leader
    /// key comes back namespaced.
    pub async fn campaign(
        &self,
        name: impl IntoBytes,
        lease: i64,
        value: impl IntoBytes,
    ) -> Result<CampaignResponse, Error> {
        let req = CampaignRequest {
            name: self.ns.join(&name.into_bytes()),
            lease,
            value: value.into_bytes(),
        };
        let mut resp = self.client.call(req).await?;
        resp.leader = resp.leader.map(|l| self.ns.strip_leader_key(l));
        Ok(resp)
    }

    /// Announces `value` as the leader holding (namespaced) `leader`.
    pub async fn proclaim(
        &self,
        leader: LeaderKey,
        value: impl IntoBytes,
    ) -> Result<ProclaimResponse, Error> {
        let req = ProclaimRequest {
            leader: Some(self.ns.leader_key(leader)),
            value: value.into_bytes(),
        };
        self.client.call(req).await
    }

    /// The current proclamation of election `name` of the namespace, its key stripped.
    pub async fn leader(&self, name: impl IntoBytes) -> Result<LeaderResponse, Error> {
        let name = self.ns.join(&name.into_bytes());
        let resp = self.client.call(LeaderRequest { name }).await?;
        Ok(self.ns.leader_response(resp))
    }

    /// Gives up the leadership held by (namespaced) `leader`.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse, Error> {
        let req = ResignRequest {
            leader: Some(self.ns.leader_key(leader)),
        };
        self.client.call(req).await
    }

    /// Every proclamation of election `name` of the namespace, keys stripped.
    pub async fn observe(&self, name: impl IntoBytes) -> Result<NamespacedObserve, Error> {
        let stream = self
            .client
            .server_stream(Observe::new(self.ns.join(&name.into_bytes())))
            .await?;
        Ok(NamespacedObserve {
            stream,
            ns: self.ns.clone(),
        })
    }
}

/// One flag of [`Watch`], applied when set.

#[derive(Debug, Clone, PartialEq, Eq)]
enum WatchEnd {
    Single,
    Range(Bytes),
    Prefix,
    FromKey,
}

/// A watch inside a namespace: the options of [`Watch`], with ranges meant inside the
/// namespace (a from-key watch, or a prefix watch of the empty key, ends at the end of the
/// namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct NamespacedWatch {
    key: Bytes,
    end: WatchEnd,
    prefix_and_from_key: bool,
    /// Every other option, kept in the core's own builder (its key range is replaced).
    options: Watch,
}

impl NamespacedWatch {
    /// Watches `key` of the namespace.
    pub fn new(key: impl IntoBytes) -> NamespacedWatch {
        NamespacedWatch {
            key: key.into_bytes(),
            end: WatchEnd::Single,
            prefix_and_from_key: false,
            options: Watch::new(Bytes::new()),
        }
    }

    /// Every key with the key as prefix (empty key: the whole namespace).
    pub fn prefix(mut self) -> Self {
        self.prefix_and_from_key |= self.end == WatchEnd::FromKey;
        self.end = WatchEnd::Prefix;
        self
    }

    /// Every key `>=` the key, up to the end of the namespace.
    pub fn from_key(mut self) -> Self {
        self.prefix_and_from_key |= self.end == WatchEnd::Prefix;
        self.end = WatchEnd::FromKey;
        self
    }

    /// `[key, end)` of the namespace.
    pub fn range_end(mut self, end: impl IntoBytes) -> Self {
        self.end = WatchEnd::Range(end.into_bytes());
        self
    }

    /// See [`Watch::start_revision`].
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.options = self.options.start_revision(revision);
        self
    }

    /// See [`Watch::progress_notify`].
    pub fn progress_notify(mut self) -> Self {
        self.options = self.options.progress_notify();
        self
    }

    /// See [`Watch::no_put`].
    pub fn no_put(mut self) -> Self {
        self.options = self.options.no_put();
        self
    }

    /// See [`Watch::no_delete`].
    pub fn no_delete(mut self) -> Self {
        self.options = self.options.no_delete();
        self
    }

    /// See [`Watch::prev_kv`].
    pub fn prev_kv(mut self) -> Self {
        self.options = self.options.prev_kv();
        self
    }

    /// See [`Watch::fragment`].
    pub fn fragment(mut self) -> Self {
        self.options = self.options.fragment();
        self
    }

    /// See [`Watch::created_notify`].
    pub fn created_notify(mut self) -> Self {
        self.options = self.options.created_notify();
        self
    }

    /// See [`Watch::require_leader`].
    pub fn require_leader(mut self) -> Self {
        self.options = self.options.require_leader();
        self
    }

    /// See [`Watch::own_stream`].
    pub fn own_stream(mut self) -> Self {
        self.options = self.options.own_stream();
        self
    }

    /// See [`Watch::buffer_bytes`].
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.options = self.options.buffer_bytes(bytes);
        self
    }

    /// See [`Watch::resync_on_compaction`].
    pub fn resync_on_compaction(mut self) -> Self {
        self.options = self.options.resync_on_compaction();
        self
    }

    /// The raw [`Watch`] of this namespaced watch.
    pub fn build(self, ns: &Namespace) -> Result<Watch, Error> {
        if self.prefix_and_from_key {
            return Err(InvalidRequest::PrefixAndFromKey.into());
        }
        let zero = || Bytes::from_static(b"\0");
        let (key, end) = match self.end {
            WatchEnd::Single => (self.key, Bytes::new()),
            WatchEnd::Range(end) => (self.key, end),
            WatchEnd::Prefix | WatchEnd::FromKey if self.key.is_empty() => (zero(), zero()),
            WatchEnd::Prefix => {
                let end = prefix_range_end(&self.key);
                (self.key, end)
            }
            WatchEnd::FromKey => (self.key, zero()),
        };
        let (key, end) = ns.request_interval(&key, &end)?;
        Ok(self.options.key_range(key, end))
    }
}

impl<K: IntoBytes> From<K> for NamespacedWatch {
    fn from(key: K) -> NamespacedWatch {
        NamespacedWatch::new(key)
    }
}

/// A watcher inside a namespace: a [`Watcher`] whose events have the prefix stripped.
#[derive(Debug)]
pub struct NamespacedWatcher {
    watcher: Watcher,
    ns: Namespace,
}

impl NamespacedWatcher {
    /// The watcher's ID.
    pub fn id(&self) -> WatchId {
        self.watcher.id()
    }

    /// See [`Watcher::created_revision`].
    pub fn created_revision(&self) -> i64 {
        self.watcher.created_revision()
    }

    /// The next response, keys stripped; see [`Watcher::next`].
    pub async fn next(&mut self) -> Option<Result<WatchResponse, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next response (the `Stream::poll_next` shape).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WatchResponse, Error>>> {
        self.watcher
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(|resp| self.ns.watch_response(resp))))
    }

    /// Stops the watcher (the same as dropping it).
    pub fn cancel(self) {}
}

/// An election's proclamations inside a namespace, keys stripped.
#[derive(Debug)]
pub struct NamespacedObserve {
    stream: ServerStream<Observe>,
    ns: Namespace,
}

impl NamespacedObserve {
    /// The next proclamation; see [`ServerStream::next`].
    pub async fn next(&mut self) -> Option<Result<LeaderResponse, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next proclamation.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<LeaderResponse, Error>>> {
        self.stream
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(|resp| self.ns.leader_response(resp))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto_core::rpc::kv::{Compare, CompareOp};

    fn ns() -> Namespace {
        Namespace::new("ns/")
    }

    fn range(get: Get) -> (Bytes, Bytes) {
        let r = ns().range_request(get.build().unwrap()).unwrap();
        (r.key, r.range_end)
    }

    #[test]
    fn ranges_stay_inside_the_namespace() {
        assert_eq!(range(Get::new("k")), (Bytes::from("ns/k"), Bytes::new()));
        assert_eq!(
            range(Get::new("a").range_end("c")),
            (Bytes::from("ns/a"), Bytes::from("ns/c"))
        );
        assert_eq!(
            range(Get::new("dir/").prefix()),
            (Bytes::from("ns/dir/"), Bytes::from("ns/dir0"))
        );
        // From-key and whole-namespace forms end at the end of the namespace.
        assert_eq!(
            range(Get::new("m").from_key()),
            (Bytes::from("ns/m"), Bytes::from("ns0"))
        );
        assert_eq!(
            range(Get::new("").prefix()),
            (Bytes::from("ns/\0"), Bytes::from("ns0"))
        );
        assert_eq!(
            range(Get::new("").from_key()),
            (Bytes::from("ns/\0"), Bytes::from("ns0"))
        );
        // A prefix whose range end is "\0" (all 0xff) also means the end of the namespace.
        assert_eq!(
            range(Get::new(&[0xffu8][..]).prefix()),
            (Bytes::from(&b"ns/\xff"[..]), Bytes::from("ns0"))
        );
        // A namespace of 0xff bytes ends at the end of the keyspace.
        let top = Namespace::new(&[0xffu8, 0xff][..]);
        let r = top
            .range_request(Get::new("").prefix().build().unwrap())
            .unwrap();
        assert_eq!(r.range_end, Bytes::from_static(b"\0"));
    }

    #[test]
    fn empty_keys_are_refused() {
        let err = ns()
            .range_request(Get::new("").build().unwrap())
            .unwrap_err();
        assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey));
        assert!(ns()
            .put_request(Put::new("", "v").build().unwrap())
            .is_err());
        assert!(ns()
            .delete_request(Delete::new("").build().unwrap())
            .is_err());
        let txn = Txn::new().and_then([Put::new("", "v")]).build().unwrap();
        assert!(ns().txn_request(txn).is_err());
        let txn = Txn::new()
            .when([Compare::version("", CompareOp::Equal, 0)])
            .build()
            .unwrap();
        assert!(ns().txn_request(txn).is_err());
        // A range compare over the empty key is the whole namespace.
        let txn = Txn::new()
            .when([Compare::version("", CompareOp::Greater, 0).with_prefix()])
            .build()
            .unwrap();
        let mapped = ns().txn_request(txn).unwrap();
        assert_eq!(mapped.compare[0].key, Bytes::from("ns/"));
        assert_eq!(mapped.compare[0].range_end, Bytes::from("ns0"));
    }

    #[test]
    fn nested_txns_are_mapped_and_stripped() {
        let inner = Txn::new()
            .when([Compare::value("a", CompareOp::Equal, "1")])
            .and_then([Get::new("b").prefix()]);
        let txn = Txn::new()
            .when([Compare::version("x", CompareOp::Greater, 0).with_range("z")])
            .and_then([TxnOp::from(Put::new("p", "v")), TxnOp::from(inner)])
            .or_else([Delete::new("d").prefix()]);
        let req = ns().txn_request(txn.build().unwrap()).unwrap();
        assert_eq!(req.compare[0].key, Bytes::from("ns/x"));
        assert_eq!(req.compare[0].range_end, Bytes::from("ns/z"));
        match &req.success[1].request {
            Some(request_op::Request::RequestTxn(t)) => {
                assert_eq!(t.compare[0].key, Bytes::from("ns/a"));
                match &t.success[0].request {
                    Some(request_op::Request::RequestRange(r)) => {
                        assert_eq!(r.key, Bytes::from("ns/b"));
                        assert_eq!(r.range_end, Bytes::from("ns/c"));
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        let kv = |k: &str| KeyValue {
            key: Bytes::from(k.to_string()),
            ..Default::default()
        };
        let resp = TxnResponse {
            responses: vec![etcd_proto_core::proto::etcdserverpb::ResponseOp {
                response: Some(response_op::Response::ResponseTxn(TxnResponse {
                    responses: vec![etcd_proto_core::proto::etcdserverpb::ResponseOp {
                        response: Some(response_op::Response::ResponseRange(RangeResponse {
                            kvs: vec![kv("ns/b1")],
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let stripped = ns().txn_response(resp);
        let Some(response_op::Response::ResponseTxn(t)) = &stripped.responses[0].response else {
            panic!()
        };
        let Some(response_op::Response::ResponseRange(r)) = &t.responses[0].response else {
            panic!()
        };
        assert_eq!(r.kvs[0].key, Bytes::from("b1"));
    }

    #[test]
    fn watch_ranges() {
        let w = NamespacedWatch::new("").prefix().build(&ns()).unwrap();
        assert_eq!(w, Watch::new("ns/\0").range_end("ns0"));
        let w = NamespacedWatch::new("k").prev_kv().build(&ns()).unwrap();
        assert_eq!(w, Watch::new("ns/k").prev_kv());
        assert!(NamespacedWatch::new("").build(&ns()).is_err());
        assert!(NamespacedWatch::new("a")
            .prefix()
            .from_key()
            .build(&ns())
            .is_err());
    }

    use etcd_proto_core::rpc::kv::TxnOp;
}
