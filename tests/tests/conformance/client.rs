//! The client surface the scenarios use, implemented once for the async client (tokio, smol
//! and async-std all hand out `etcd_driver::Client` through `Deref`) and once for the blocking
//! client (its synchronous calls, wrapped in `async fn`s so the scenarios are written once).

use etcd_driver::core::rpc::auth::Permission;
use etcd_driver::core::rpc::UnaryRpc;
use etcd_driver::proto::etcdserverpb as pb;
use etcd_driver::proto::v3electionpb::{self as election, LeaderKey};
use etcd_driver::proto::v3lockpb as lock;
use etcd_driver::rpc::kv::{Compact, Delete, Get, Put, Txn};
use etcd_driver::{CallOptions, Endpoint, Error, Watch};

/// Keys and mod revisions of a watch response's events.
fn events_of(resp: etcd_driver::WatchResponse) -> Vec<(String, i64)> {
    resp.events
        .into_iter()
        .filter_map(|e| e.kv)
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

/// Declares the trait and both implementations from one list of methods.
macro_rules! etcd_surface {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        /// What a conformance scenario may call.
        #[allow(async_fn_in_trait)]
        pub trait Etcd {
            async fn call<R: UnaryRpc + Send + 'static>(&self, rpc: R) -> Result<R::Response, Error>;
            async fn call_with<R: UnaryRpc + Send + 'static>(
                &self,
                rpc: R,
                options: CallOptions,
            ) -> Result<R::Response, Error>;
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$out, Error>;)*
            /// Starts `watch`, writes `puts` (key, value), and collects the keys and mod
            /// revisions of the first `n` events.
            async fn watch_puts(
                &self,
                watch: Watch,
                puts: Vec<(String, String)>,
                n: usize,
            ) -> Result<Vec<(String, i64)>, Error>;
            /// Grants a lease of `ttl` seconds, keeps it alive for `renewals` renewals, and
            /// returns its remaining TTL at the end (the keepalive still running).
            async fn kept_alive_ttl(&self, ttl: i64, renewals: usize) -> Result<i64, Error>;
        }

        impl Etcd for etcd_driver::Client {
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
            async fn watch_puts(
                &self,
                watch: Watch,
                puts: Vec<(String, String)>,
                n: usize,
            ) -> Result<Vec<(String, i64)>, Error> {
                let mut watcher = etcd_driver::Client::watch(self, watch).await?;
                for (k, v) in puts {
                    etcd_driver::Client::put(self, Put::new(k, v)).await?;
                }
                let mut out = Vec::new();
                while out.len() < n {
                    let resp = watcher.next().await.ok_or(Error::ClientClosed)??;
                    out.extend(events_of(resp));
                }
                Ok(out)
            }
            async fn kept_alive_ttl(&self, ttl: i64, renewals: usize) -> Result<i64, Error> {
                let granted = etcd_driver::Client::lease_grant(self, ttl).await?;
                let mut keeper = etcd_driver::Client::keep_alive(self, &granted).await?;
                for _ in 0..renewals {
                    keeper.next().await.ok_or(Error::ClientClosed)??;
                }
                Ok(etcd_driver::Client::lease_time_to_live(self, granted.id, false).await?.ttl)
            }
        }

        impl Etcd for etcd_blocking::Handle {
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
            async fn watch_puts(
                &self,
                watch: Watch,
                puts: Vec<(String, String)>,
                n: usize,
            ) -> Result<Vec<(String, i64)>, Error> {
                let mut watcher = etcd_blocking::Handle::watch(self, watch)?;
                for (k, v) in puts {
                    etcd_blocking::Handle::put(self, Put::new(k, v))?;
                }
                let mut out = Vec::new();
                while out.len() < n {
                    let resp = watcher.next().ok_or(Error::ClientClosed)??;
                    out.extend(events_of(resp));
                }
                Ok(out)
            }
            async fn kept_alive_ttl(&self, ttl: i64, renewals: usize) -> Result<i64, Error> {
                let granted = etcd_blocking::Handle::lease_grant(self, ttl)?;
                let mut keeper = etcd_blocking::Handle::keep_alive(self, &granted)?;
                for _ in 0..renewals {
                    keeper.next().ok_or(Error::ClientClosed)??;
                }
                Ok(etcd_blocking::Handle::lease_time_to_live(self, granted.id, false)?.ttl)
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
