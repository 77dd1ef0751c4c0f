//! The client surface the scenarios use, implemented once for the async client (tokio, smol
//! and async-std all hand out `etcd_driver::Client` through `Deref`) and once for the blocking
//! client (its synchronous calls and iterators, wrapped in `async fn`s so the scenarios are
//! written once).

use etcd_driver::core::rpc::auth::Permission;
use etcd_driver::core::rpc::UnaryRpc;
use etcd_driver::proto::etcdserverpb as pb;
use etcd_driver::proto::v3electionpb::{self as election, LeaderKey};
use etcd_driver::proto::v3lockpb as lock;
use etcd_driver::rpc::kv::{Compact, Delete, Get, Put, Txn};
use etcd_driver::{
    CallOptions, Endpoint, Error, KeepAliveResponse, KeepAliveTarget, Watch, WatchResponse,
};

/// A stream of a scenario's: a watcher or a lease keeper, async or blocking.
#[allow(async_fn_in_trait)]
pub trait Stream {
    type Item;
    /// The next item; `None` once the stream ended.
    async fn next(&mut self) -> Option<Result<Self::Item, Error>>;
}

/// Implements [`Stream`] for the async streams (by awaiting) and the blocking ones (by
/// iterating, which blocks the scenario's own thread).
macro_rules! streams {
    ($($stream:ty => $item:ty, |$s:ident| $next:expr;)*) => {$(
        impl Stream for $stream {
            type Item = $item;
            async fn next(&mut self) -> Option<Result<$item, Error>> {
                let $s = self;
                $next
            }
        }
    )*};
}

streams! {
    etcd_driver::Watcher => WatchResponse, |s| s.next().await;
    etcd_driver::LeaseKeeper => KeepAliveResponse, |s| s.next().await;
    etcd_blocking::Watcher => WatchResponse, |s| Iterator::next(s);
    etcd_blocking::LeaseKeeper => KeepAliveResponse, |s| Iterator::next(s);
}

/// Declares the trait and both implementations from one list of methods.
macro_rules! etcd_surface {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        /// What a conformance scenario may call.
        #[allow(async_fn_in_trait)]
        pub trait Etcd: Sized {
            type Watcher: Stream<Item = WatchResponse>;
            type Keeper: Stream<Item = KeepAliveResponse>;
            async fn call<R: UnaryRpc + Send + 'static>(&self, rpc: R) -> Result<R::Response, Error>;
            async fn call_with<R: UnaryRpc + Send + 'static>(
                &self,
                rpc: R,
                options: CallOptions,
            ) -> Result<R::Response, Error>;
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$out, Error>;)*
            /// Starts a watcher (the server has created it when this returns).
            async fn watch(&self, watch: Watch) -> Result<Self::Watcher, Error>;
            /// Keeps a lease alive.
            async fn keep_alive(&self, lease: KeepAliveTarget) -> Result<Self::Keeper, Error>;
            /// A client on the same driver whose calls all go to `endpoint`.
            fn on_endpoint(&self, endpoint: &str) -> Result<Self, Error>;
        }

        impl Etcd for etcd_driver::Client {
            type Watcher = etcd_driver::Watcher;
            type Keeper = etcd_driver::LeaseKeeper;
            async fn call<R: UnaryRpc + Send + 'static>(&self, rpc: R) -> Result<R::Response, Error> {
                etcd_driver::Client::call(self, rpc).await
            }
            async fn call_with<R: UnaryRpc + Send + 'static>(
                &self,
                rpc: R,
                options: CallOptions,
            ) -> Result<R::Response, Error> {
                etcd_driver::Client::call_with(self, rpc, options).await
            }
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$out, Error> {
                etcd_driver::Client::$name(self, $($arg),*).await
            })*
            async fn watch(&self, watch: Watch) -> Result<Self::Watcher, Error> {
                etcd_driver::Client::watch(self, watch).await
            }
            async fn keep_alive(&self, lease: KeepAliveTarget) -> Result<Self::Keeper, Error> {
                etcd_driver::Client::keep_alive(self, lease).await
            }
            fn on_endpoint(&self, endpoint: &str) -> Result<Self, Error> {
                etcd_driver::Client::on_endpoint(self, endpoint)
            }
        }

        impl Etcd for etcd_blocking::Client {
            type Watcher = etcd_blocking::Watcher;
            type Keeper = etcd_blocking::LeaseKeeper;
            async fn call<R: UnaryRpc + Send + 'static>(&self, rpc: R) -> Result<R::Response, Error> {
                etcd_blocking::Handle::call(self, rpc)
            }
            async fn call_with<R: UnaryRpc + Send + 'static>(
                &self,
                rpc: R,
                options: CallOptions,
            ) -> Result<R::Response, Error> {
                etcd_blocking::Handle::call_with(self, rpc, options)
            }
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$out, Error> {
                etcd_blocking::Handle::$name(self, $($arg),*)
            })*
            async fn watch(&self, watch: Watch) -> Result<Self::Watcher, Error> {
                etcd_blocking::Handle::watch(self, watch)
            }
            async fn keep_alive(&self, lease: KeepAliveTarget) -> Result<Self::Keeper, Error> {
                etcd_blocking::Handle::keep_alive(self, lease)
            }
            fn on_endpoint(&self, endpoint: &str) -> Result<Self, Error> {
                etcd_blocking::Client::on_endpoint(self, endpoint)
            }
        }
    };
}

etcd_surface! {
    get(get: Get) -> pb::RangeResponse;
    put(put: Put) -> pb::PutResponse;
    delete(delete: Delete) -> pb::DeleteRangeResponse;
    txn(txn: Txn) -> pb::TxnResponse;
    compact(compact: Compact) -> pb::CompactionResponse;
    endpoints() -> Vec<Endpoint>;
    lease_grant(ttl: i64) -> pb::LeaseGrantResponse;
    lease_revoke(id: i64) -> pb::LeaseRevokeResponse;
    lease_time_to_live(id: i64, keys: bool) -> pb::LeaseTimeToLiveResponse;
    lease_leases() -> pb::LeaseLeasesResponse;
    member_list() -> pb::MemberListResponse;
    status() -> pb::StatusResponse;
    alarm_list() -> pb::AlarmResponse;
    hash_kv(revision: i64) -> pb::HashKvResponse;
    user_add(name: String, password: String) -> pb::AuthUserAddResponse;
    user_get(name: String) -> pb::AuthUserGetResponse;
    user_list() -> pb::AuthUserListResponse;
    user_delete(name: String) -> pb::AuthUserDeleteResponse;
    user_grant_role(user: String, role: String) -> pb::AuthUserGrantRoleResponse;
    user_revoke_role(user: String, role: String) -> pb::AuthUserRevokeRoleResponse;
    role_add(name: String) -> pb::AuthRoleAddResponse;
    role_get(name: String) -> pb::AuthRoleGetResponse;
    role_list() -> pb::AuthRoleListResponse;
    role_delete(name: String) -> pb::AuthRoleDeleteResponse;
    role_grant_permission(role: String, perm: Permission) -> pb::AuthRoleGrantPermissionResponse;
    lock(name: String, lease: i64) -> lock::LockResponse;
    unlock(key: bytes::Bytes) -> lock::UnlockResponse;
    campaign(name: String, lease: i64, value: String) -> election::CampaignResponse;
    proclaim(leader: LeaderKey, value: String) -> election::ProclaimResponse;
    leader(name: String) -> election::LeaderResponse;
    resign(leader: LeaderKey) -> election::ResignResponse;
}
