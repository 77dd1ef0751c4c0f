//! Every unary RPC as its raw protobuf request message, so any call can be made even before a
//! friendlier builder exists. Retry classes follow the Go client (`retry.go`).

use etcd_proto::etcdserverpb as pb;
use etcd_proto::grpc::health::v1 as health;
use etcd_proto::{v3electionpb as election, v3lockpb as lock};

use super::{Method, RetryClass, UnaryRpc};
use crate::error::Error;

macro_rules! raw_unary {
    ($( $req:ty => $resp:ty, $path:literal, $class:ident; )*) => {
        $(
            impl UnaryRpc for $req {
                type Request = $req;
                type Response = $resp;
                const METHOD: Method = Method { path: $path, retry: RetryClass::$class };
                fn into_request(self) -> Result<$req, Error> {
                    Ok(self)
                }
            }
        )*
    };
}

raw_unary! {
    pb::RangeRequest => pb::RangeResponse, "/etcdserverpb.KV/Range", Repeatable;
    pb::PutRequest => pb::PutResponse, "/etcdserverpb.KV/Put", NonRepeatable;
    pb::DeleteRangeRequest => pb::DeleteRangeResponse, "/etcdserverpb.KV/DeleteRange", NonRepeatable;
    pb::TxnRequest => pb::TxnResponse, "/etcdserverpb.KV/Txn", NonRepeatable;
    pb::CompactionRequest => pb::CompactionResponse, "/etcdserverpb.KV/Compact", NonRepeatable;

    pb::LeaseGrantRequest => pb::LeaseGrantResponse, "/etcdserverpb.Lease/LeaseGrant", Repeatable;
    pb::LeaseRevokeRequest => pb::LeaseRevokeResponse, "/etcdserverpb.Lease/LeaseRevoke", Repeatable;
    pb::LeaseTimeToLiveRequest => pb::LeaseTimeToLiveResponse, "/etcdserverpb.Lease/LeaseTimeToLive", Repeatable;
    pb::LeaseLeasesRequest => pb::LeaseLeasesResponse, "/etcdserverpb.Lease/LeaseLeases", Repeatable;

    pb::MemberAddRequest => pb::MemberAddResponse, "/etcdserverpb.Cluster/MemberAdd", NonRepeatable;
    pb::MemberRemoveRequest => pb::MemberRemoveResponse, "/etcdserverpb.Cluster/MemberRemove", NonRepeatable;
    pb::MemberUpdateRequest => pb::MemberUpdateResponse, "/etcdserverpb.Cluster/MemberUpdate", NonRepeatable;
    pb::MemberListRequest => pb::MemberListResponse, "/etcdserverpb.Cluster/MemberList", Repeatable;
    pb::MemberPromoteRequest => pb::MemberPromoteResponse, "/etcdserverpb.Cluster/MemberPromote", NonRepeatable;

    pb::AlarmRequest => pb::AlarmResponse, "/etcdserverpb.Maintenance/Alarm", Repeatable;
    pb::StatusRequest => pb::StatusResponse, "/etcdserverpb.Maintenance/Status", Repeatable;
    pb::DefragmentRequest => pb::DefragmentResponse, "/etcdserverpb.Maintenance/Defragment", NonRepeatable;
    pb::HashRequest => pb::HashResponse, "/etcdserverpb.Maintenance/Hash", Repeatable;
    pb::HashKvRequest => pb::HashKvResponse, "/etcdserverpb.Maintenance/HashKV", Repeatable;
    pb::MoveLeaderRequest => pb::MoveLeaderResponse, "/etcdserverpb.Maintenance/MoveLeader", Repeatable;
    pb::DowngradeRequest => pb::DowngradeResponse, "/etcdserverpb.Maintenance/Downgrade", NonRepeatable;

    pb::AuthEnableRequest => pb::AuthEnableResponse, "/etcdserverpb.Auth/AuthEnable", NonRepeatable;
    pb::AuthDisableRequest => pb::AuthDisableResponse, "/etcdserverpb.Auth/AuthDisable", NonRepeatable;
    pb::AuthStatusRequest => pb::AuthStatusResponse, "/etcdserverpb.Auth/AuthStatus", NonRepeatable;
    pb::AuthenticateRequest => pb::AuthenticateResponse, "/etcdserverpb.Auth/Authenticate", NonRepeatable;
    pb::AuthUserAddRequest => pb::AuthUserAddResponse, "/etcdserverpb.Auth/UserAdd", NonRepeatable;
    pb::AuthUserGetRequest => pb::AuthUserGetResponse, "/etcdserverpb.Auth/UserGet", Repeatable;
    pb::AuthUserListRequest => pb::AuthUserListResponse, "/etcdserverpb.Auth/UserList", Repeatable;
    pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse, "/etcdserverpb.Auth/UserDelete", NonRepeatable;
    pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse, "/etcdserverpb.Auth/UserChangePassword", NonRepeatable;
    pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse, "/etcdserverpb.Auth/UserGrantRole", NonRepeatable;
    pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse, "/etcdserverpb.Auth/UserRevokeRole", NonRepeatable;
    pb::AuthRoleAddRequest => pb::AuthRoleAddResponse, "/etcdserverpb.Auth/RoleAdd", NonRepeatable;
    pb::AuthRoleGetRequest => pb::AuthRoleGetResponse, "/etcdserverpb.Auth/RoleGet", Repeatable;
    pb::AuthRoleListRequest => pb::AuthRoleListResponse, "/etcdserverpb.Auth/RoleList", Repeatable;
    pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse, "/etcdserverpb.Auth/RoleDelete", NonRepeatable;
    pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse, "/etcdserverpb.Auth/RoleGrantPermission", NonRepeatable;
    pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse, "/etcdserverpb.Auth/RoleRevokePermission", NonRepeatable;

    election::CampaignRequest => election::CampaignResponse, "/v3electionpb.Election/Campaign", NonRepeatable;
    election::ProclaimRequest => election::ProclaimResponse, "/v3electionpb.Election/Proclaim", NonRepeatable;
    election::LeaderRequest => election::LeaderResponse, "/v3electionpb.Election/Leader", Repeatable;
    election::ResignRequest => election::ResignResponse, "/v3electionpb.Election/Resign", NonRepeatable;

    lock::LockRequest => lock::LockResponse, "/v3lockpb.Lock/Lock", NonRepeatable;
    lock::UnlockRequest => lock::UnlockResponse, "/v3lockpb.Lock/Unlock", NonRepeatable;

    health::HealthCheckRequest => health::HealthCheckResponse, "/grpc.health.v1.Health/Check", Repeatable;
}
