//! Compare helpers of Go's `clientv3util`.
//!
//! ```
//! use etcd_driver::rpc::kv::{Put, Txn};
//! use etcd_driver::util::{key_exists, key_missing};
//!
//! // Create "k" only if it does not exist yet.
//! let create = Txn::new().when([key_missing("k")]).and_then([Put::new("k", "v")]);
//! // Update "k" only if it exists.
//! let update = Txn::new().when([key_exists("k")]).and_then([Put::new("k", "v2")]);
//! # let _ = (create, update);
//! ```

use etcd_proto_core::rpc::kv::{Compare, CompareOp};
use etcd_proto_core::rpc::IntoBytes;

/// Holds when `key` exists: its version is above 0 (Go's `clientv3util.KeyExists`).
pub fn key_exists(key: impl IntoBytes) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

/// Holds when `key` does not exist: its version is 0 (Go's `clientv3util.KeyMissing`).
pub fn key_missing(key: impl IntoBytes) -> Compare {
    Compare::version(key, CompareOp::Equal, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto_core::proto::etcdserverpb::compare::{
        CompareResult, CompareTarget, TargetUnion,
    };
    use etcd_proto_core::rpc::kv::Txn;

    #[test]
    fn compares_on_the_version() {
        let req = Txn::new()
            .when([key_exists("a"), key_missing("b")])
            .build()
            .unwrap();
        let (exists, missing) = (&req.compare[0], &req.compare[1]);
        assert_eq!(exists.target, CompareTarget::Version as i32);
        assert_eq!(exists.result, CompareResult::Greater as i32);
        assert_eq!(exists.target_union, Some(TargetUnion::Version(0)));
        assert_eq!(&exists.key[..], b"a");
        assert_eq!(missing.result, CompareResult::Equal as i32);
        assert_eq!(missing.target_union, Some(TargetUnion::Version(0)));
        assert_eq!(&missing.key[..], b"b");
    }
}
