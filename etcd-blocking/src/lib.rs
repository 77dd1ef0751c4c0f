//! Synchronous etcd v3 client for scripts, CLIs and plain threads.
//!
//! ```no_run
//! # fn main() -> Result<(), etcd_blocking::Error> {
//! use std::time::Duration;
//! use etcd_blocking::{Client, Get};
//!
//! let client = Client::connect(["http://127.0.0.1:2379"])?.with_timeout(Duration::from_secs(5));
//! client.put(("greeting", "hello"))?;
//! let resp = client.get(Get::new("greet").prefix())?;
//! assert_eq!(resp.count, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Each [`Client`] starts one background I/O thread running a private executor, which drives
//! the runtime-agnostic driver of `etcd-driver` (with `etcd-smol`'s sockets, TLS and timers).
//! A call blocks the calling thread until its result arrives or its deadline passes (the
//! configuration's `default_timeout`, or [`Client::with_timeout`]; without either a call
//! waits as long as it takes). Waiting starts no async runtime, so calls work from plain
//! threads and from inside a tokio or smol runtime alike (where they block that worker, as any
//! blocking call does).
//!
//! Streams are iterators whose `next` blocks the same way: [`Handle::watch`] gives a
//! [`Watcher`] of watch responses, [`Handle::keep_alive`] a [`LeaseKeeper`] of renewals,
//! [`Handle::snapshot`] and [`Handle::observe`] a [`ServerStream`] of messages;
//! [`Handle::snapshot_save`] writes a verified snapshot file.
//!
//! Clones of a [`Client`] share the thread; when the last one is dropped the thread stops and
//! every call still in flight returns [`Error::ClientClosed`] at once. A [`Handle`] makes the
//! same calls without keeping the thread alive: give handles to worker threads that should
//! not outlive the client.
//!
//! No protocol logic lives here: the core is `etcd-proto-core`, the HTTP/2 driver
//! `etcd-driver`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use etcd_driver::core::rpc::auth::Permission;
use etcd_driver::core::rpc::maintenance::AlarmType;
use etcd_driver::core::rpc::{IntoBytes, Observe, ServerStreamingRpc, Snapshot, UnaryRpc};
use etcd_driver::proto::etcdserverpb as pb;
use etcd_driver::proto::v3electionpb::{self as election, LeaderKey};
use etcd_driver::proto::v3lockpb as lock;
use etcd_smol::Smol;
use smol::channel::Sender;
use smol::Executor;

pub use etcd_smol::{
    core, prefix_range_end, proto, rpc, CallOptions, Code, Compact, Compare, CompareOp, Config,
    Credentials, Delete, Direction, Endpoint, Error, EtcdError, EtcdErrorKind, Get, InvalidRequest,
    KeepAliveResponse, KeepAliveTarget, LeaseLostReason, Put, SavedSnapshot, SortOrder, SortTarget,
    Status, TlsConfig, Txn, TxnOp, Watch, WatchId, WatchResponse, WatchResponseKind,
};

/// The background thread. Dropping it stops the executor and drops every task on it (the
/// driver, its connections and streams), so pending calls see their reply channel close.
struct IoThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl IoThread {
    fn start(executor: Arc<Executor<'static>>) -> Result<IoThread, Error> {
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let thread = thread::Builder::new()
            .name("etcd-blocking-io".into())
            .spawn(move || {
                // Runs until every sender of `stop` is gone, then drops the executor (the
                // only strong reference: the runtime holds a weak one) with its tasks.
                smol::block_on(executor.run(async {
                    let _ = stopped.recv().await;
                }));
            })
            .map_err(|e| Error::Transport {
                message: format!("could not start the etcd I/O thread: {e}"),
                request_sent: false,
            })?;
        Ok(IoThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A synchronous etcd client. Clones share one background thread, one driver and its
/// connections; dropping the last clone closes them, failing calls in flight on any
/// [`Handle`] with [`Error::ClientClosed`]. Every call method comes from [`Handle`] (through
/// `Deref`).
#[derive(Clone)]
pub struct Client {
    handle: Handle,
    io: Arc<IoThread>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for these endpoints (`http://host:port`, `https://host:port`, `host:port`)
    /// with the default configuration. Connections open lazily, on the first call.
    pub fn connect(endpoints: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Client, Error> {
        Client::with_config(Config::from_endpoints(endpoints)?)
    }

    /// A client with a full configuration; starts its background thread.
    pub fn with_config(config: Config) -> Result<Client, Error> {
        let executor = Arc::new(Executor::new());
        // Queued on the executor until the thread runs it.
        let driver = etcd_driver::Client::new(Smol::on(&executor), config)?;
        let io = Arc::new(IoThread::start(executor)?);
        Ok(Client {
            handle: Handle { driver },
            io,
        })
    }

    /// A handle making the same calls, with the same options, that does not keep the client
    /// open: `client.with_timeout(t).handle()` for one with a deadline.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    fn map(&self, driver: etcd_driver::Client) -> Client {
        Client {
            handle: Handle { driver },
            io: self.io.clone(),
        }
    }

    /// A client sharing these connections whose calls use these options.
    pub fn with_options(&self, options: CallOptions) -> Client {
        self.map(self.handle.driver.with_options(options))
    }

    /// A client sharing these connections whose calls have this deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        self.map(self.handle.driver.with_timeout(timeout))
    }

    /// A client whose calls all go to this one endpoint, for per-member calls such as
    /// Status, Defragment and HashKV (see [`etcd_driver::Client::on_endpoint`]).
    pub fn on_endpoint(&self, endpoint: &str) -> Result<Client, Error> {
        Ok(self.map(self.handle.driver.on_endpoint(endpoint)?))
    }

    /// A client whose calls require the member to have a leader (`hasleader`).
    pub fn with_require_leader(&self) -> Client {
        self.map(self.handle.driver.with_require_leader())
    }
}

impl std::ops::Deref for Client {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

/// Makes the calls of a [`Client`], with its options, without keeping it open: once every
/// `Client` clone is dropped, calls in flight and new calls fail with [`Error::ClientClosed`].
/// Set options on the client, then take the handle (`client.with_timeout(t).handle()`).
#[derive(Debug, Clone)]
pub struct Handle {
    driver: etcd_driver::Client,
}

/// Defines blocking forms of `etcd_driver::Client` methods.
macro_rules! blocking {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {$(
        #[doc = concat!("Blocking form of [`etcd_driver::Client::", stringify!($name), "`].")]
        pub fn $name(&self, $($arg: $ty),*) -> Result<$out, Error> {
            self.block(self.driver.$name($($arg),*))
        }
    )*};
}

impl Handle {
    /// Waits on the calling thread; no runtime is entered, the I/O thread does the work.
    fn block<F: Future>(&self, call: F) -> F::Output {
        smol::future::block_on(call)
    }

    /// Runs any unary request: a typed builder ([`Get`], [`Put`], [`Txn`], ...) or a raw
    /// protobuf request message.
    pub fn call<R: UnaryRpc + Send + 'static>(&self, rpc: R) -> Result<R::Response, Error> {
        self.block(self.driver.call(rpc))
    }

    /// Runs any unary request with explicit options.
    pub fn call_with<R: UnaryRpc + Send + 'static>(
        &self,
        rpc: R,
        options: CallOptions,
    ) -> Result<R::Response, Error> {
        self.block(self.driver.call_with(rpc, options))
    }

    blocking! {
        get(get: impl Into<Get>) -> pb::RangeResponse;
        put(put: impl Into<Put>) -> pb::PutResponse;
        delete(delete: impl Into<Delete>) -> pb::DeleteRangeResponse;
        txn(txn: Txn) -> pb::TxnResponse;
        compact(compact: impl Into<Compact>) -> pb::CompactionResponse;
        endpoints() -> Vec<Endpoint>;
        set_endpoints(endpoints: impl IntoIterator<Item = impl AsRef<str>>) -> ();
        sync() -> Vec<Endpoint>;
        lease_grant(ttl: i64) -> pb::LeaseGrantResponse;
        lease_revoke(id: i64) -> pb::LeaseRevokeResponse;
        lease_time_to_live(id: i64, keys: bool) -> pb::LeaseTimeToLiveResponse;
        lease_leases() -> pb::LeaseLeasesResponse;
        member_list() -> pb::MemberListResponse;
        member_add(peer_urls: impl IntoIterator<Item = impl AsRef<str>>) -> pb::MemberAddResponse;
        member_add_as_learner(peer_urls: impl IntoIterator<Item = impl AsRef<str>>)
            -> pb::MemberAddResponse;
        member_remove(id: u64) -> pb::MemberRemoveResponse;
        member_update(id: u64, peer_urls: impl IntoIterator<Item = impl AsRef<str>>)
            -> pb::MemberUpdateResponse;
        member_promote(id: u64) -> pb::MemberPromoteResponse;
        alarm_list() -> pb::AlarmResponse;
        alarm_disarm(member_id: u64, alarm: AlarmType) -> pb::AlarmResponse;
        status() -> pb::StatusResponse;
        defragment() -> pb::DefragmentResponse;
        hash_kv(revision: i64) -> pb::HashKvResponse;
        move_leader(target_id: u64) -> pb::MoveLeaderResponse;
        auth_enable() -> pb::AuthEnableResponse;
        auth_disable() -> pb::AuthDisableResponse;
        auth_status() -> pb::AuthStatusResponse;
        user_add(name: impl Into<String>, password: impl Into<String>) -> pb::AuthUserAddResponse;
        user_add_no_password(name: impl Into<String>) -> pb::AuthUserAddResponse;
        user_get(name: impl Into<String>) -> pb::AuthUserGetResponse;
        user_list() -> pb::AuthUserListResponse;
        user_delete(name: impl Into<String>) -> pb::AuthUserDeleteResponse;
        user_change_password(name: impl Into<String>, password: impl Into<String>)
            -> pb::AuthUserChangePasswordResponse;
        user_grant_role(user: impl Into<String>, role: impl Into<String>)
            -> pb::AuthUserGrantRoleResponse;
        user_revoke_role(user: impl Into<String>, role: impl Into<String>)
            -> pb::AuthUserRevokeRoleResponse;
        role_add(name: impl Into<String>) -> pb::AuthRoleAddResponse;
        role_get(name: impl Into<String>) -> pb::AuthRoleGetResponse;
        role_list() -> pb::AuthRoleListResponse;
        role_delete(name: impl Into<String>) -> pb::AuthRoleDeleteResponse;
        role_grant_permission(role: impl Into<String>, perm: Permission)
            -> pb::AuthRoleGrantPermissionResponse;
        role_revoke_permission(role: impl Into<String>, key: impl IntoBytes, range_end: impl IntoBytes)
            -> pb::AuthRoleRevokePermissionResponse;
        request_progress() -> ();
        keep_alive_once(lease: i64) -> KeepAliveResponse;
        snapshot_save(endpoint: &Endpoint, path: impl AsRef<Path>) -> SavedSnapshot;
        lock(name: impl IntoBytes, lease: i64) -> lock::LockResponse;
        unlock(key: impl IntoBytes) -> lock::UnlockResponse;
        campaign(name: impl IntoBytes, lease: i64, value: impl IntoBytes) -> election::CampaignResponse;
        proclaim(leader: LeaderKey, value: impl IntoBytes) -> election::ProclaimResponse;
        leader(name: impl IntoBytes) -> election::LeaderResponse;
        resign(leader: LeaderKey) -> election::ResignResponse;
    }
}

/// Blocking forms of the streaming calls: each returns an iterator whose `next` blocks the
/// calling thread until the next item arrives.
impl Handle {
    /// Starts a watcher and waits until the server created it (every change after this
    /// returns is seen); iterate it for the responses (see [`Watcher`]).
    pub fn watch(&self, watch: impl Into<Watch>) -> Result<Watcher, Error> {
        let inner = self.block(self.driver.watch(watch))?;
        Ok(Watcher { inner })
    }

    /// Many watchers read through one blocking iterator (see [`WatchSet`]).
    pub fn watch_set(&self) -> WatchSet {
        WatchSet {
            inner: self.driver.watch_set(),
        }
    }

    /// Keeps a lease alive: `client.keep_alive(&granted)` or `client.keep_alive(id)`;
    /// iterate it for the renewals (see [`LeaseKeeper`]).
    pub fn keep_alive(&self, lease: impl Into<KeepAliveTarget>) -> Result<LeaseKeeper, Error> {
        let inner = self.block(self.driver.keep_alive(lease))?;
        Ok(LeaseKeeper { inner })
    }

    /// Runs any server-streaming request; iterate the result for its messages.
    pub fn server_stream<R>(&self, rpc: R) -> Result<ServerStream<R>, Error>
    where
        R: ServerStreamingRpc + Send + 'static,
    {
        let inner = self.block(self.driver.server_stream(rpc))?;
        Ok(ServerStream { inner })
    }

    /// Streams a snapshot of the backend of the member the call reaches (choose it with
    /// [`Client::on_endpoint`]); [`Handle::snapshot_save`] writes and verifies one.
    pub fn snapshot(&self) -> Result<ServerStream<Snapshot>, Error> {
        self.server_stream(Snapshot)
    }

    /// Every proclamation of election `name`, the current one first.
    pub fn observe(&self, name: impl IntoBytes) -> Result<ServerStream<Observe>, Error> {
        self.server_stream(Observe::new(name))
    }
}

/// A running watcher (from [`Handle::watch`]): an iterator of responses that blocks for each.
/// It yields every event exactly once, in revision order, across reconnects, and ends with
/// one `Err` when the watcher cannot go on (compaction, a rejected create, no leader with
/// `require_leader`, client closed). Dropping it cancels the watcher on the server.
#[derive(Debug)]
pub struct Watcher {
    inner: etcd_driver::Watcher,
}

impl Watcher {
    /// The store revision when the server created the watcher: events after it follow.
    pub fn created_revision(&self) -> i64 {
        self.inner.created_revision()
    }
}

impl Iterator for Watcher {
    type Item = Result<WatchResponse, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        smol::future::block_on(self.inner.next())
    }
}

/// Many watchers through one iterator (from [`Handle::watch_set`]): `add` starts a watcher
/// and blocks until it is created; iterating yields `(watcher, response)` for all of them,
/// `(watcher, Err(..))` once for a watcher that ended with an error, and ends (`None`) when no
/// watcher is left. Dropping it cancels every watcher in it.
#[derive(Debug)]
pub struct WatchSet {
    inner: etcd_driver::WatchSet,
}

impl WatchSet {
    /// Starts a watcher in the set; returns its ID once the server created it.
    pub fn add(&mut self, watch: impl Into<Watch>) -> Result<WatchId, Error> {
        smol::future::block_on(self.inner.add(watch))
    }

    /// Stops watcher `id`: nothing more is yielded for it.
    pub fn cancel(&mut self, id: WatchId) {
        self.inner.cancel(id)
    }

    /// The store revision when the server created watcher `id`.
    pub fn created_revision(&self, id: WatchId) -> Option<i64> {
        self.inner.created_revision(id)
    }

    /// Number of watchers in the set.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the set has no watcher.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl Iterator for WatchSet {
    type Item = (WatchId, Result<WatchResponse, Error>);
    fn next(&mut self) -> Option<Self::Item> {
        smol::future::block_on(self.inner.next())
    }
}

/// Keeps a lease alive while it exists (from [`Handle::keep_alive`]): an iterator of the
/// renewals that ends with one `Err(Error::LeaseLost { .. })` saying why the lease is gone.
/// Dropping it stops the renewals (the lease then expires on its own).
#[derive(Debug)]
pub struct LeaseKeeper {
    inner: etcd_driver::LeaseKeeper,
}

impl LeaseKeeper {
    /// The lease kept alive.
    pub fn lease(&self) -> i64 {
        self.inner.lease()
    }
}

impl Iterator for LeaseKeeper {
    type Item = Result<KeepAliveResponse, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        smol::future::block_on(self.inner.next())
    }
}

/// The messages of a server-streaming call (from [`Handle::server_stream`],
/// [`Handle::snapshot`], [`Handle::observe`]): an iterator that ends with `None` on success or
/// after one `Err`. Dropping it cancels the call.
pub struct ServerStream<R: ServerStreamingRpc> {
    inner: etcd_driver::ServerStream<R>,
}

impl<R: ServerStreamingRpc> std::fmt::Debug for ServerStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<R: ServerStreamingRpc> Iterator for ServerStream<R> {
    type Item = Result<R::Message, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        smol::future::block_on(self.inner.next())
    }
}
