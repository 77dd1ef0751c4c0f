//! etcd errors (facts §9): every etcd error string maps to its kind whatever code carries it;
//! retry and outcome classification.

use std::collections::HashSet;

use etcd_proto_core::error::Direction;
use etcd_proto_core::Code::{self, *};
use etcd_proto_core::EtcdErrorKind as K;
use etcd_proto_core::{Error, InvalidRequest, Status};

/// §9.1, row by row: message, code on servers <= 3.5, code on 3.6+, expected kind.
const TABLE_9_1: &[(&str, Option<Code>, Option<Code>, K)] = &[
    (
        "etcdserver: key is not provided",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::EmptyKey,
    ),
    (
        "etcdserver: key not found",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::KeyNotFound,
    ),
    (
        "etcdserver: value is provided",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::ValueProvided,
    ),
    (
        "etcdserver: lease is provided",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::LeaseProvided,
    ),
    (
        "etcdserver: too many operations in txn request",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::TooManyOps,
    ),
    (
        "etcdserver: duplicate key given in txn request",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::DuplicateKey,
    ),
    (
        "etcdserver: mvcc: required revision has been compacted",
        Some(OutOfRange),
        Some(OutOfRange),
        K::Compacted,
    ),
    (
        "etcdserver: mvcc: required revision is a future revision",
        Some(OutOfRange),
        Some(OutOfRange),
        K::FutureRev,
    ),
    (
        "etcdserver: mvcc: database space exceeded",
        Some(ResourceExhausted),
        Some(ResourceExhausted),
        K::NoSpace,
    ),
    (
        "etcdserver: requested lease not found",
        Some(NotFound),
        Some(NotFound),
        K::LeaseNotFound,
    ),
    (
        "etcdserver: lease already exists",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::LeaseExist,
    ),
    (
        "etcdserver: too large lease TTL",
        Some(OutOfRange),
        Some(OutOfRange),
        K::LeaseTtlTooLarge,
    ),
    (
        "etcdserver: watch canceled",
        Some(Cancelled),
        Some(Cancelled),
        K::WatchCanceled,
    ),
    (
        "etcdserver: member ID already exist",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::MemberExist,
    ),
    (
        "etcdserver: Peer URLs already exists",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::PeerUrlExist,
    ),
    (
        "etcdserver: re-configuration failed due to not enough started members",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::MemberNotEnoughStarted,
    ),
    (
        "etcdserver: given member URLs are invalid",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::MemberBadUrls,
    ),
    (
        "etcdserver: member not found",
        Some(NotFound),
        Some(NotFound),
        K::MemberNotFound,
    ),
    (
        "etcdserver: can only promote a learner member",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::MemberNotLearner,
    ),
    (
        "etcdserver: can only promote a learner member which is in sync with leader",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::MemberLearnerNotReady,
    ),
    (
        "etcdserver: too many learner members in cluster",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::TooManyLearners,
    ),
    (
        "etcdserver: cluster ID mismatch",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::ClusterIdMismatch,
    ),
    (
        "etcdserver: request is too large",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::RequestTooLarge,
    ),
    (
        "etcdserver: too many requests",
        Some(ResourceExhausted),
        Some(ResourceExhausted),
        K::TooManyRequests,
    ),
    (
        "etcdserver: root user does not exist",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::RootUserNotExist,
    ),
    (
        "etcdserver: root user does not have root role",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::RootRoleNotExist,
    ),
    (
        "etcdserver: user name already exists",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::UserAlreadyExist,
    ),
    (
        "etcdserver: user name is empty",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::UserEmpty,
    ),
    (
        "etcdserver: user name not found",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::UserNotFound,
    ),
    (
        "etcdserver: role name already exists",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::RoleAlreadyExist,
    ),
    (
        "etcdserver: role name not found",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::RoleNotFound,
    ),
    (
        "etcdserver: role name is empty",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::RoleEmpty,
    ),
    (
        "etcdserver: authentication failed, invalid user ID or password",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::AuthFailed,
    ),
    (
        "etcdserver: permission not given",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::PermissionNotGiven,
    ),
    (
        "etcdserver: permission denied",
        Some(PermissionDenied),
        Some(PermissionDenied),
        K::PermissionDenied,
    ),
    (
        "etcdserver: role is not granted to the user",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::RoleNotGranted,
    ),
    (
        "etcdserver: permission is not granted to the role",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::PermissionNotGranted,
    ),
    (
        "etcdserver: authentication is not enabled",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::AuthNotEnabled,
    ),
    (
        "etcdserver: invalid auth token",
        Some(Unauthenticated),
        Some(Unauthenticated),
        K::InvalidAuthToken,
    ),
    (
        "etcdserver: invalid auth management",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::InvalidAuthMgmt,
    ),
    (
        "etcdserver: revision of auth store is old",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::AuthOldRevision,
    ),
    (
        "etcdserver: no leader",
        Some(Unavailable),
        Some(Unavailable),
        K::NoLeader,
    ),
    (
        "etcdserver: not leader",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::NotLeader,
    ),
    (
        "etcdserver: leader changed",
        Some(Unavailable),
        Some(Unavailable),
        K::LeaderChanged,
    ),
    (
        "etcdserver: not capable",
        Some(Unavailable),
        Some(FailedPrecondition),
        K::NotCapable,
    ),
    (
        "etcdserver: server stopped",
        Some(Unavailable),
        Some(Unavailable),
        K::Stopped,
    ),
    (
        "etcdserver: request timed out",
        Some(Unavailable),
        Some(Unavailable),
        K::Timeout,
    ),
    (
        "etcdserver: request timed out, possibly due to previous leader failure",
        Some(Unavailable),
        Some(Unavailable),
        K::TimeoutDueToLeaderFail,
    ),
    (
        "etcdserver: request timed out, possibly due to connection lost",
        Some(Unavailable),
        Some(Unavailable),
        K::TimeoutDueToConnectionLost,
    ),
    (
        "etcdserver: request timed out, waiting for the applied index took too long",
        Some(Unavailable),
        Some(Unavailable),
        K::TimeoutWaitAppliedIndex,
    ),
    (
        "etcdserver: unhealthy cluster",
        Some(Unavailable),
        Some(Unavailable),
        K::Unhealthy,
    ),
    (
        "etcdserver: corrupt cluster",
        Some(DataLoss),
        Some(DataLoss),
        K::Corrupt,
    ),
    (
        "etcdserver: rpc not supported for learner",
        Some(Unavailable),
        Some(FailedPrecondition),
        K::NotSupportedForLearner,
    ),
    (
        "etcdserver: bad leader transferee",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::BadLeaderTransferee,
    ),
    (
        "etcdserver: cluster version not found during downgrade",
        Some(Unavailable),
        Some(FailedPrecondition),
        K::ClusterVersionUnavailable,
    ),
    (
        "etcdserver: wrong downgrade target version format",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::WrongDowngradeVersionFormat,
    ),
    (
        "etcdserver: invalid downgrade target version",
        Some(InvalidArgument),
        Some(InvalidArgument),
        K::InvalidDowngradeTargetVersion,
    ),
    (
        "etcdserver: cluster has a downgrade job in progress",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::DowngradeInProcess,
    ),
    (
        "etcdserver: no inflight downgrade job",
        Some(FailedPrecondition),
        Some(FailedPrecondition),
        K::NoInflightDowngrade,
    ),
    (
        "etcdserver: request canceled",
        Some(Cancelled),
        Some(Cancelled),
        K::RequestCanceled,
    ),
    (
        "etcdserver: context deadline exceeded",
        Some(DeadlineExceeded),
        Some(DeadlineExceeded),
        K::ContextDeadlineExceeded,
    ),
    (
        "etcdserver: invalid client api version",
        None,
        Some(InvalidArgument),
        K::InvalidClientApiVersion,
    ),
    (
        "etcdserver: invalid sort option",
        None,
        Some(InvalidArgument),
        K::InvalidSortOption,
    ),
];

/// §9.2 rows that carry an etcd (or etcd-server) error string: code on the wire, message, kind.
const TABLE_9_2_ETCD: &[(Code, &str, K)] = &[
    (Cancelled, "etcdserver: watch canceled", K::WatchCanceled),
    (Unknown, "etcdserver: too many requests", K::TooManyRequests),
    (
        Unknown,
        "etcdserver: re-configuration failed due to not enough started members",
        K::MemberNotEnoughStarted,
    ),
    (
        Unknown,
        "etcdserver: request timed out, leader transfer took too long",
        K::LeaderTransferTimeout,
    ),
    (
        Unknown,
        "etcdserver: request cancelled",
        K::RequestCancelledLegacy,
    ),
    (
        Unknown,
        "auth: authentication failed, password was given for no password user",
        K::NoPasswordUser,
    ),
    (
        Unknown,
        "\"leader\" field must be provided",
        K::ElectionLeaderNotProvided,
    ),
    (Unknown, "election: not leader", K::ElectionNotLeader),
    (Unknown, "election: no leader", K::ElectionNoLeader),
];

/// §9.2 rows that come from the gRPC layer or plain Go context errors: not etcd errors.
const TABLE_9_2_GRPC: &[(Code, &str)] = &[
    (
        ResourceExhausted,
        "grpc: received message larger than max (2202020 vs. 2097152)",
    ),
    (
        Unimplemented,
        "unknown method AuthStatus for service etcdserverpb.Auth",
    ),
    (Unimplemented, "unknown service etcdserverpb.Nope"),
    (DeadlineExceeded, "context deadline exceeded"),
    (Cancelled, "context canceled"),
];

fn assert_etcd(code: Code, message: &str, kind: K) {
    let err = Error::from_status(Status::new(code, message));
    match &err {
        Error::Etcd(e) => {
            assert_eq!(e.kind, kind, "{message:?} sent with {code:?}");
            assert_eq!(e.code, code, "the code actually sent is kept");
            assert_eq!(e.message, message, "the message is kept");
        }
        other => panic!("{message:?} sent with {code:?}: expected Etcd, got {other:?}"),
    }
    assert_eq!(err.etcd_kind(), Some(kind));
}

#[test]
fn every_9_1_row_maps_to_its_kind_whatever_the_code() {
    for &(message, code_3_5, code_3_6, kind) in TABLE_9_1 {
        let mut codes = vec![Unknown, Internal, Ok];
        codes.extend(code_3_5);
        codes.extend(code_3_6);
        for code in codes {
            assert_etcd(code, message, kind);
        }
        // The canonical code is what etcd defines the error with.
        let canonical = code_3_5.or(code_3_6).unwrap();
        assert_eq!(kind.canonical_code(), canonical, "{message:?}");
        assert_eq!(
            Error::from_status(Status::new(Unknown, message)).code(),
            canonical
        );
    }
}

#[test]
fn every_9_2_etcd_row_maps_to_its_kind() {
    for &(code, message, kind) in TABLE_9_2_ETCD {
        assert_etcd(code, message, kind);
        assert_etcd(Unknown, message, kind);
    }
}

#[test]
fn grpc_layer_statuses_stay_statuses() {
    for &(code, message) in TABLE_9_2_GRPC {
        let status = Status::new(code, message);
        assert_eq!(Error::from_status(status.clone()), Error::Status(status));
    }
}

#[test]
fn all_kinds_are_covered_by_the_facts_tables() {
    let from_facts: HashSet<&str> = TABLE_9_1
        .iter()
        .map(|r| r.0)
        .chain(TABLE_9_2_ETCD.iter().map(|r| r.1))
        .collect();
    // 63 rows in §9.1 plus 6 strings that only appear in §9.2.
    assert_eq!(
        from_facts.len(),
        63 + 6,
        "duplicate rows in the test tables"
    );
    let in_code: HashSet<&str> = K::ALL.iter().map(|k| k.message()).collect();
    assert_eq!(in_code.len(), K::ALL.len(), "two kinds share a message");
    assert_eq!(
        in_code,
        from_facts,
        "kinds and facts differ: only in code {:?}, only in facts {:?}",
        in_code.difference(&from_facts).collect::<Vec<_>>(),
        from_facts.difference(&in_code).collect::<Vec<_>>()
    );
}

#[test]
fn all_kinds_round_trip_through_their_message() {
    let mut seen = HashSet::new();
    for &kind in K::ALL {
        assert!(seen.insert(kind), "{kind:?} listed twice");
        assert_eq!(K::from_message(kind.message()), Some(kind));
        assert_eq!(kind.to_string(), kind.message());
        // Also in the Go rendering used for watch cancel reasons.
        let rendered = format!(
            "rpc error: code = {:?} desc = {}",
            kind.canonical_code(),
            kind.message()
        );
        assert_eq!(K::from_message(&rendered), Some(kind), "{rendered:?}");
    }
}

#[test]
fn watch_cancel_reasons() {
    // §9.3
    for (reason, kind) in [
        (
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
            Some(K::PermissionDenied),
        ),
        (
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
            Some(K::InvalidAuthToken),
        ),
        (
            "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old",
            Some(K::AuthOldRevision),
        ),
        (
            "rpc error: code = InvalidArgument desc = etcdserver: user name is empty",
            Some(K::UserEmpty),
        ),
        (
            "etcdserver: mvcc: required revision has been compacted",
            Some(K::Compacted),
        ),
        ("mvcc: duplicate watch ID provided on the WatchStream", None),
        ("mvcc: watcher range is empty", None),
        ("rpc error: code = Unknown desc = something else", None),
    ] {
        assert_eq!(K::from_message(reason), kind, "{reason:?}");
    }
    // Through from_status as well (a watch layer would build a status from the reason).
    let err = Error::from_status(Status::new(
        Unknown,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    ));
    assert_eq!(err.etcd_kind(), Some(K::PermissionDenied));
}

#[test]
fn unknown_messages_stay_status_errors() {
    for message in [
        "",
        "something went wrong",
        "etcdserver: key is not provided ",
        " etcdserver: key is not provided",
        "Etcdserver: key is not provided",
        "etcdserver: key is not provided\n",
        "etcdserver:",
        "etcdserver: no leader!",
    ] {
        let status = Status::new(InvalidArgument, message);
        let err = Error::from_status(status.clone());
        assert_eq!(err, Error::Status(status), "{message:?}");
        assert_eq!(err.etcd_kind(), None);
        assert_eq!(err.code(), InvalidArgument);
    }
    // An unknown numeric code keeps its raw value inside the status.
    let mut status = Status::new(Unknown, "odd");
    status.raw_code = 99;
    assert_eq!(Error::from_status(status.clone()), Error::Status(status));
}

fn etcd(kind: K) -> Error {
    Error::from_status(Status::new(kind.canonical_code(), kind.message()))
}

fn transport(request_sent: bool) -> Error {
    Error::Transport {
        message: "connection reset".into(),
        request_sent,
    }
}

#[test]
fn retryable_errors() {
    for err in [
        etcd(K::NoLeader),
        etcd(K::LeaderChanged),
        etcd(K::Timeout),
        etcd(K::Stopped),
        transport(true),
        transport(false),
        Error::DeadlineExceeded { request_sent: true },
        Error::DeadlineExceeded {
            request_sent: false,
        },
        Error::Status(Status::new(Unavailable, "")),
    ] {
        assert!(err.is_retryable(), "{err:?}");
    }
}

#[test]
fn non_retryable_errors() {
    for err in [
        etcd(K::Compacted),
        etcd(K::EmptyKey),
        etcd(K::PermissionDenied),
        etcd(K::FutureRev),
        etcd(K::RequestTooLarge),
        Error::InvalidRequest(InvalidRequest::PrefixAndFromKey),
        Error::InvalidRequest(InvalidRequest::TxnMisuse("cannot call when twice")),
        Error::Cancelled,
        Error::ClientClosed,
        Error::MessageTooLarge {
            size: 10,
            limit: 5,
            direction: Direction::Send,
        },
        Error::Protocol("bad".into()),
        Error::Status(Status::new(InvalidArgument, "bad")),
    ] {
        assert!(!err.is_retryable(), "{err:?}");
    }
}

#[test]
fn outcome_unknown_only_when_the_request_was_sent() {
    assert!(transport(true).outcome_unknown());
    assert!(!transport(false).outcome_unknown());
    assert!(Error::DeadlineExceeded { request_sent: true }.outcome_unknown());
    assert!(!Error::DeadlineExceeded {
        request_sent: false
    }
    .outcome_unknown());
    for err in [
        etcd(K::NoLeader),
        etcd(K::EmptyKey),
        Error::Cancelled,
        Error::ClientClosed,
        Error::Status(Status::new(Unavailable, "")),
        Error::Protocol("bad".into()),
        Error::InvalidRequest(InvalidRequest::PrefixAndFromKey),
        Error::MessageTooLarge {
            size: 10,
            limit: 5,
            direction: Direction::Send,
        },
    ] {
        assert!(!err.outcome_unknown(), "{err:?}");
    }
}

#[test]
fn error_messages_say_what_happened() {
    let e = etcd(K::EmptyKey);
    assert!(e.to_string().contains("etcdserver: key is not provided"));
    assert!(transport(true).to_string().contains("outcome is unknown"));
    assert!(!transport(false).to_string().contains("outcome is unknown"));
    assert!(Error::DeadlineExceeded { request_sent: true }
        .to_string()
        .contains("outcome is unknown"));
}
