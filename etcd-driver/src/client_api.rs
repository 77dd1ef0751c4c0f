//! Convenience methods of [`Client`] for every unary RPC besides KV, named after the Go
//! client's methods. Each builds the typed request of [`etcd_proto_core::rpc`] and runs it with
//! [`Client::call`]; for options the shortcut does not take, build the request and call it.

use etcd_proto_core::proto::etcdserverpb::{
    AlarmResponse, AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse,
    AuthRoleDeleteResponse, AuthRoleGetResponse, AuthRoleGrantPermissionResponse,
    AuthRoleListResponse, AuthRoleRevokePermissionResponse, AuthStatusResponse,
    AuthUserAddResponse, AuthUserChangePasswordResponse, AuthUserDeleteResponse,
    AuthUserGetResponse, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleResponse, DefragmentResponse, HashKvResponse, LeaseGrantResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, MemberAddResponse,
    MemberListResponse, MemberPromoteResponse, MemberRemoveResponse, MemberUpdateResponse,
    MoveLeaderResponse, StatusResponse,
};
use etcd_proto_core::proto::v3electionpb::{
    CampaignResponse, LeaderKey, LeaderResponse, ProclaimResponse, ResignResponse,
};
use etcd_proto_core::proto::v3lockpb::{LockResponse, UnlockResponse};
use etcd_proto_core::rpc::auth::{
    AuthDisable, AuthEnable, AuthStatus, Permission, RoleAdd, RoleDelete, RoleGet,
    RoleGrantPermission, RoleList, RoleRevokePermission, UserAdd, UserChangePassword, UserDelete,
    UserGet, UserGrantRole, UserList, UserRevokeRole,
};
use etcd_proto_core::rpc::cluster::{
    MemberAdd, MemberList, MemberPromote, MemberRemove, MemberUpdate,
};
use etcd_proto_core::rpc::election::{Campaign, Leader, Proclaim, Resign};
use etcd_proto_core::rpc::lease::{LeaseGrant, LeaseLeases, LeaseRevoke, LeaseTimeToLive};
use etcd_proto_core::rpc::lock::{Lock, Unlock};
use etcd_proto_core::rpc::maintenance::{
    AlarmDisarm, AlarmList, AlarmType, Defragment, HashKv, MoveLeader, Status,
};
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::Error;

use crate::Client;

impl Client {
    // ---- Lease ----

    /// Grants a lease of `ttl` seconds (Go's `Grant`); see
    /// [`LeaseGrant`](etcd_proto_core::rpc::lease::LeaseGrant).
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, Error> {
        self.call(LeaseGrant::new(ttl)).await
    }

    /// Revokes lease `id`, deleting its keys (Go's `Revoke`).
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        let revoked = self.call(LeaseRevoke::new(id)).await?;
        // Keepalives of this lease end now, with the reason, instead of failing later.
        self.notify_revoked(id);
        Ok(revoked)
    }

    /// The TTL of lease `id`, with its keys if `keys` (Go's `TimeToLive` with
    /// `WithAttachedKeys`). An unknown lease answers TTL -1, not an error.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        let rpc = LeaseTimeToLive::new(id);
        self.call(if keys { rpc.keys() } else { rpc }).await
    }

    /// Lists the live leases (Go's `Leases`).
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, Error> {
        self.call(LeaseLeases::new()).await
    }

    // ---- Cluster ----

    /// Lists the members, linearizably (Go's `MemberList`).
    pub async fn member_list(&self) -> Result<MemberListResponse, Error> {
        self.call(MemberList::new()).await
    }

    /// Adds a voting member; the peer URLs are checked first as Go does (Go's `MemberAdd`).
    pub async fn member_add<I>(&self, peer_urls: I) -> Result<MemberAddResponse, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.call(MemberAdd::new(peer_urls)).await
    }

    /// Adds a learner; the peer URLs are checked first as Go does (Go's
    /// `MemberAddAsLearner`).
    pub async fn member_add_as_learner<I>(&self, peer_urls: I) -> Result<MemberAddResponse, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.call(MemberAdd::new(peer_urls).as_learner()).await
    }

    /// Removes member `id` (Go's `MemberRemove`).
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, Error> {
        self.call(MemberRemove::new(id)).await
    }

    /// Replaces the peer URLs of member `id`; they are checked first as Go does (Go's
    /// `MemberUpdate`).
    pub async fn member_update<I>(
        &self,
        id: u64,
        peer_urls: I,
    ) -> Result<MemberUpdateResponse, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.call(MemberUpdate::new(id, peer_urls)).await
    }

    /// Promotes learner `id` to a voting member (Go's `MemberPromote`).
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, Error> {
        self.call(MemberPromote::new(id)).await
    }

    // ---- Maintenance ----

    /// Lists the raised alarms (Go's `AlarmList`).
    pub async fn alarm_list(&self) -> Result<AlarmResponse, Error> {
        self.call(AlarmList::new()).await
    }

    /// Clears alarm `alarm` of member `member_id` (Go's `AlarmDisarm`).
    ///
    /// As in Go, member 0 with [`AlarmType::None`] clears every alarm: the alarms are listed,
    /// then each is disarmed in turn; the response lists every alarm cleared and carries the
    /// header of the last request made. The first failure ends the loop and is returned
    /// (alarms already cleared stay cleared).
    pub async fn alarm_disarm(
        &self,
        member_id: u64,
        alarm: AlarmType,
    ) -> Result<AlarmResponse, Error> {
        if member_id != 0 || alarm != AlarmType::None {
            return self.call(AlarmDisarm::new(member_id, alarm)).await;
        }
        let listed = self.alarm_list().await?;
        let mut combined = AlarmResponse {
            header: listed.header,
            alarms: Vec::new(),
        };
        for member in listed.alarms {
            let cleared = self.call(AlarmDisarm::from(member)).await?;
            combined.header = cleared.header;
            combined.alarms.extend(cleared.alarms);
        }
        Ok(combined)
    }

    /// The status of the member the call reaches (Go's `Status`, without the endpoint choice).
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        self.call(Status::new()).await
    }

    /// Defragments the member the call reaches (Go's `Defragment`, without the endpoint
    /// choice).
    pub async fn defragment(&self) -> Result<DefragmentResponse, Error> {
        self.call(Defragment::new()).await
    }

    /// The KV hash up to `revision` (0 = latest) of the member the call reaches (Go's
    /// `HashKV`, without the endpoint choice).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, Error> {
        self.call(HashKv::new(revision)).await
    }

    /// Transfers the leadership to member `target_id`; must reach the leader (Go's
    /// `MoveLeader`).
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse, Error> {
        self.call(MoveLeader::new(target_id)).await
    }

    // ---- Auth ----

    /// Turns authentication on (Go's `AuthEnable`).
    pub async fn auth_enable(&self) -> Result<AuthEnableResponse, Error> {
        self.call(AuthEnable::new()).await
    }

    /// Turns authentication off (Go's `AuthDisable`).
    pub async fn auth_disable(&self) -> Result<AuthDisableResponse, Error> {
        self.call(AuthDisable::new()).await
    }

    /// Whether authentication is on (Go's `AuthStatus`).
    pub async fn auth_status(&self) -> Result<AuthStatusResponse, Error> {
        self.call(AuthStatus::new()).await
    }

    /// Creates user `name` with `password` (Go's `UserAdd`).
    pub async fn user_add(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<AuthUserAddResponse, Error> {
        self.call(UserAdd::new(name, password)).await
    }

    /// Creates user `name` without a password (Go's `UserAddWithOptions` with `NoPassword`).
    pub async fn user_add_no_password(
        &self,
        name: impl Into<String>,
    ) -> Result<AuthUserAddResponse, Error> {
        self.call(UserAdd::no_password(name)).await
    }

    /// The roles of user `name` (Go's `UserGet`).
    pub async fn user_get(&self, name: impl Into<String>) -> Result<AuthUserGetResponse, Error> {
        self.call(UserGet::new(name)).await
    }

    /// Lists the users (Go's `UserList`).
    pub async fn user_list(&self) -> Result<AuthUserListResponse, Error> {
        self.call(UserList::new()).await
    }

    /// Deletes user `name` (Go's `UserDelete`).
    pub async fn user_delete(
        &self,
        name: impl Into<String>,
    ) -> Result<AuthUserDeleteResponse, Error> {
        self.call(UserDelete::new(name)).await
    }

    /// Changes the password of user `name` (Go's `UserChangePassword`).
    pub async fn user_change_password(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<AuthUserChangePasswordResponse, Error> {
        self.call(UserChangePassword::new(name, password)).await
    }

    /// Grants `role` to `user` (Go's `UserGrantRole`).
    pub async fn user_grant_role(
        &self,
        user: impl Into<String>,
        role: impl Into<String>,
    ) -> Result<AuthUserGrantRoleResponse, Error> {
        self.call(UserGrantRole::new(user, role)).await
    }

    /// Revokes `role` from `user` (Go's `UserRevokeRole`).
    pub async fn user_revoke_role(
        &self,
        user: impl Into<String>,
        role: impl Into<String>,
    ) -> Result<AuthUserRevokeRoleResponse, Error> {
        self.call(UserRevokeRole::new(user, role)).await
    }

    /// Creates role `name` (Go's `RoleAdd`).
    pub async fn role_add(&self, name: impl Into<String>) -> Result<AuthRoleAddResponse, Error> {
        self.call(RoleAdd::new(name)).await
    }

    /// The permissions of role `name` (Go's `RoleGet`).
    pub async fn role_get(&self, name: impl Into<String>) -> Result<AuthRoleGetResponse, Error> {
        self.call(RoleGet::new(name)).await
    }

    /// Lists the roles (Go's `RoleList`).
    pub async fn role_list(&self) -> Result<AuthRoleListResponse, Error> {
        self.call(RoleList::new()).await
    }

    /// Deletes role `name` (Go's `RoleDelete`).
    pub async fn role_delete(
        &self,
        name: impl Into<String>,
    ) -> Result<AuthRoleDeleteResponse, Error> {
        self.call(RoleDelete::new(name)).await
    }

    /// Grants `perm` to `role` (Go's `RoleGrantPermission`):
    /// `client.role_grant_permission("r", Permission::read("k").with_prefix())`.
    pub async fn role_grant_permission(
        &self,
        role: impl Into<String>,
        perm: Permission,
    ) -> Result<AuthRoleGrantPermissionResponse, Error> {
        self.call(RoleGrantPermission::new(role, perm)).await
    }

    /// Revokes the permission of `role` on `[key, range_end)` (empty `range_end`: the single
    /// key; Go's `RoleRevokePermission`).
    pub async fn role_revoke_permission(
        &self,
        role: impl Into<String>,
        key: impl IntoBytes,
        range_end: impl IntoBytes,
    ) -> Result<AuthRoleRevokePermissionResponse, Error> {
        self.call(RoleRevokePermission::new(role, key).range_end(range_end))
            .await
    }

    // ---- Lock and election services ----

    /// Acquires lock `name`, waiting until it is free; attached to `lease` (0: a fresh 60 s
    /// lease nobody keeps alive). The response's key releases it with [`Client::unlock`].
    pub async fn lock(&self, name: impl IntoBytes, lease: i64) -> Result<LockResponse, Error> {
        self.call(Lock::new(name).lease(lease)).await
    }

    /// Releases the lock whose key is `key`.
    pub async fn unlock(&self, key: impl IntoBytes) -> Result<UnlockResponse, Error> {
        self.call(Unlock::new(key)).await
    }

    /// Campaigns in election `name` with `lease`, waiting until elected, then announces
    /// `value`.
    pub async fn campaign(
        &self,
        name: impl IntoBytes,
        lease: i64,
        value: impl IntoBytes,
    ) -> Result<CampaignResponse, Error> {
        self.call(Campaign::new(name, lease, value)).await
    }

    /// Announces `value` as the leader holding `leader`.
    pub async fn proclaim(
        &self,
        leader: LeaderKey,
        value: impl IntoBytes,
    ) -> Result<ProclaimResponse, Error> {
        self.call(Proclaim::new(leader, value)).await
    }

    /// The current proclamation of election `name`.
    pub async fn leader(&self, name: impl IntoBytes) -> Result<LeaderResponse, Error> {
        self.call(Leader::new(name)).await
    }

    /// Gives up the leadership held by `leader`.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse, Error> {
        self.call(Resign::new(leader)).await
    }
}
