//! Protobuf message types for the etcd v3 gRPC API.
//!
//! The Rust code lives in `src/generated/` and was produced by
//! [`prost-build`](https://docs.rs/prost-build) from the `.proto` files in
//! this crate's `proto/` directory (written for this project from the etcd
//! wire facts), compiled with the pure-Rust `protox` compiler. The generated
//! files are checked in: building this crate needs neither `protoc` nor a
//! build script. `tests/schema_drift.rs` fails when the checked-in code no
//! longer matches the `.proto` files; regenerate with
//!
//! ```text
//! ETCD_PROTO_REGENERATE=1 cargo test -p etcd-proto --test schema_drift
//! ```
//!
//! Modules follow the protobuf packages:
//!
//! | module | proto package | contents |
//! |---|---|---|
//! | [`etcdserverpb`] | `etcdserverpb` | KV, Watch, Lease, Cluster, Maintenance, Auth messages |
//! | [`mvccpb`] | `mvccpb` | `KeyValue`, `Event` |
//! | [`authpb`] | `authpb` | `UserAddOptions`, `Permission`, `User`, `Role` |
//! | [`v3electionpb`] | `v3electionpb` | Election service messages |
//! | [`v3lockpb`] | `v3lockpb` | Lock service messages |
//! | [`grpc::health::v1`] | `grpc.health.v1` | gRPC health check |
//!
//! Only messages and enums are generated (no service stubs); the gRPC paths
//! are `/<package>.<Service>/<Method>`, e.g. `/etcdserverpb.KV/Range`.
//!
//! Notes on the generated types:
//!
//! * All `bytes` fields are [`bytes::Bytes`].
//! * Enum-typed fields are stored as `i32`; use the enum's
//!   `TryFrom<i32>` or the generated getter (e.g.
//!   `RangeRequest::sort_order()`) to read them.
//! * Upstream field names that are not snake_case are renamed by prost:
//!   `TTL` → `ttl`, `ID` → `id`, `peerURLs` → `peer_ur_ls`, `clientURLs` →
//!   `client_ur_ls`, `isLearner` → `is_learner`, `memberID` → `member_id`,
//!   `hashedPassword` → `hashed_password`, `remaining_TTL` → `remaining_ttl`,
//!   and so on. Field numbers (what reaches the wire) are unchanged.
//! * The `Debug` output of [`etcdserverpb::AuthenticateRequest`],
//!   [`etcdserverpb::AuthenticateResponse`],
//!   [`etcdserverpb::AuthUserAddRequest`] and
//!   [`etcdserverpb::AuthUserChangePasswordRequest`] prints passwords and
//!   tokens as `<redacted>`.

#![forbid(unsafe_code)]

pub use bytes;
pub use prost;

mod redact;

/// Package `mvccpb`: key-values and watch events.
#[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
pub mod mvccpb {
    include!("generated/mvccpb.rs");
}

/// Package `authpb`: users, roles and permissions.
#[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
pub mod authpb {
    include!("generated/authpb.rs");
}

/// Package `etcdserverpb`: messages of the KV, Watch, Lease, Cluster,
/// Maintenance and Auth services.
#[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
pub mod etcdserverpb {
    include!("generated/etcdserverpb.rs");
}

/// Package `v3electionpb`: messages of the Election service.
#[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
pub mod v3electionpb {
    include!("generated/v3electionpb.rs");
}

/// Package `v3lockpb`: messages of the Lock service.
#[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
pub mod v3lockpb {
    include!("generated/v3lockpb.rs");
}

/// Package `grpc.*`.
pub mod grpc {
    /// Package `grpc.health.*`.
    pub mod health {
        /// Package `grpc.health.v1`: the standard gRPC health check.
        #[allow(clippy::all, clippy::pedantic, clippy::nursery, missing_docs)]
        pub mod v1 {
            include!("generated/grpc.health.v1.rs");
        }
    }
}
