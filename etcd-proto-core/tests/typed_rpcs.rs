//! Typed builders of the lease, cluster, maintenance, auth, lock and election RPCs: the wire
//! request each produces, its method, and every local validation. No server involved.

use bytes::Bytes;
use etcd_proto_core::error::PeerUrlError;
use etcd_proto_core::proto::authpb::{self, permission};
use etcd_proto_core::proto::etcdserverpb as pb;
use etcd_proto_core::proto::v3electionpb::{self as electionpb, LeaderKey};
use etcd_proto_core::proto::v3lockpb as lockpb;
use etcd_proto_core::rpc::auth::*;
use etcd_proto_core::rpc::cluster::*;
use etcd_proto_core::rpc::election::*;
use etcd_proto_core::rpc::lease::*;
use etcd_proto_core::rpc::lock::*;
use etcd_proto_core::rpc::maintenance::*;
use etcd_proto_core::rpc::{Method, RetryClass, UnaryRpc};
use etcd_proto_core::{Code, Error, InvalidRequest};

use RetryClass::{NonRepeatable, Repeatable};

/// The method of `R`, and that it agrees with the raw protobuf request's impl.
fn method<R: UnaryRpc>() -> Method
where
    R::Request: UnaryRpc,
{
    assert_eq!(
        R::METHOD,
        <R::Request as UnaryRpc>::METHOD,
        "typed and raw methods differ"
    );
    R::METHOD
}

fn assert_method<R: UnaryRpc>(path: &str, retry: RetryClass)
where
    R::Request: UnaryRpc,
{
    let m = method::<R>();
    assert_eq!(m.path, path);
    assert_eq!(m.retry, retry, "{path}");
}

fn invalid(err: Error) -> InvalidRequest {
    match err {
        Error::InvalidRequest(e) => {
            let err = Error::InvalidRequest(e.clone());
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(!err.is_retryable());
            e
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Lease

#[test]
fn lease_grant() {
    assert_method::<LeaseGrant>("/etcdserverpb.Lease/LeaseGrant", Repeatable);
    assert_eq!(
        LeaseGrant::new(10).into_request().unwrap(),
        pb::LeaseGrantRequest { ttl: 10, id: 0 }
    );
    assert_eq!(
        LeaseGrant::new(10).id(77).into_request().unwrap(),
        pb::LeaseGrantRequest { ttl: 10, id: 77 }
    );
    // 0 is sent as is (the server raises it to its minimum TTL).
    assert_eq!(LeaseGrant::new(0).into_request().unwrap().ttl, 0);
    // Too large is the server's call (LeaseTtlTooLarge), not rejected locally.
    assert_eq!(
        LeaseGrant::new(9_000_000_001).into_request().unwrap().ttl,
        9_000_000_001
    );
    assert_eq!(
        LeaseGrant::new(i64::MAX).into_request().unwrap().ttl,
        i64::MAX
    );
}

#[test]
fn lease_grant_negative_ttl_is_rejected() {
    for ttl in [-1, -60, i64::MIN] {
        let err = invalid(LeaseGrant::new(ttl).into_request().unwrap_err());
        assert_eq!(err, InvalidRequest::NegativeLeaseTtl(ttl));
        assert!(err.to_string().contains(&ttl.to_string()), "{err}");
    }
    let err = invalid(LeaseGrant::new(-5).id(3).build().unwrap_err());
    assert_eq!(err, InvalidRequest::NegativeLeaseTtl(-5));
}

#[test]
fn lease_revoke_time_to_live_leases() {
    assert_method::<LeaseRevoke>("/etcdserverpb.Lease/LeaseRevoke", Repeatable);
    assert_eq!(
        LeaseRevoke::new(42).into_request().unwrap(),
        pb::LeaseRevokeRequest { id: 42 }
    );

    assert_method::<LeaseTimeToLive>("/etcdserverpb.Lease/LeaseTimeToLive", Repeatable);
    assert_eq!(
        LeaseTimeToLive::new(42).into_request().unwrap(),
        pb::LeaseTimeToLiveRequest {
            id: 42,
            keys: false
        }
    );
    assert_eq!(
        LeaseTimeToLive::new(42).keys().into_request().unwrap(),
        pb::LeaseTimeToLiveRequest { id: 42, keys: true }
    );

    assert_method::<LeaseLeases>("/etcdserverpb.Lease/LeaseLeases", Repeatable);
    assert_eq!(
        LeaseLeases::new().into_request().unwrap(),
        pb::LeaseLeasesRequest {}
    );
    assert_eq!(LeaseLeases::default(), LeaseLeases::new());
}

// ---------------------------------------------------------------------------------------------
// Cluster

#[test]
fn member_list_is_linearizable_by_default() {
    assert_method::<MemberList>("/etcdserverpb.Cluster/MemberList", Repeatable);
    assert_eq!(
        MemberList::new().into_request().unwrap(),
        pb::MemberListRequest { linearizable: true }
    );
    assert_eq!(MemberList::default(), MemberList::new());
    assert_eq!(
        MemberList::new().serializable().into_request().unwrap(),
        pb::MemberListRequest {
            linearizable: false
        }
    );
}

#[test]
fn member_add_and_learner() {
    assert_method::<MemberAdd>("/etcdserverpb.Cluster/MemberAdd", NonRepeatable);
    assert_eq!(
        MemberAdd::new(["http://10.0.0.1:2380", "https://[::1]:2380"])
            .into_request()
            .unwrap(),
        pb::MemberAddRequest {
            peer_ur_ls: vec!["http://10.0.0.1:2380".into(), "https://[::1]:2380".into()],
            is_learner: false,
        }
    );
    assert_eq!(
        MemberAdd::new(vec![String::from("http://a:1")])
            .as_learner()
            .into_request()
            .unwrap(),
        pb::MemberAddRequest {
            peer_ur_ls: vec!["http://a:1".into()],
            is_learner: true,
        }
    );
    // Owned or borrowed lists alike.
    let owned = vec![String::from("http://a:1")];
    assert_eq!(
        MemberAdd::new(&owned).into_request().unwrap().peer_ur_ls,
        owned
    );
    assert_eq!(
        MemberAdd::new(&["http://a:1"][..])
            .into_request()
            .unwrap()
            .peer_ur_ls,
        owned
    );
    // Sent as given: neither trimmed nor sorted (Go validates a trimmed, sorted copy).
    assert_eq!(
        MemberAdd::new([" http://b:2 ", "http://a:1"])
            .into_request()
            .unwrap()
            .peer_ur_ls,
        vec![" http://b:2 ".to_string(), "http://a:1".to_string()]
    );
}

#[test]
fn member_remove_update_promote() {
    assert_method::<MemberRemove>("/etcdserverpb.Cluster/MemberRemove", NonRepeatable);
    assert_eq!(
        MemberRemove::new(u64::MAX).into_request().unwrap(),
        pb::MemberRemoveRequest { id: u64::MAX }
    );

    assert_method::<MemberUpdate>("/etcdserverpb.Cluster/MemberUpdate", NonRepeatable);
    assert_eq!(
        MemberUpdate::new(7, ["unix://sock"])
            .into_request()
            .unwrap(),
        pb::MemberUpdateRequest {
            id: 7,
            peer_ur_ls: vec!["unix://sock".into()],
        }
    );

    assert_method::<MemberPromote>("/etcdserverpb.Cluster/MemberPromote", NonRepeatable);
    assert_eq!(
        MemberPromote::new(9).into_request().unwrap(),
        pb::MemberPromoteRequest { id: 9 }
    );
}

fn peer_url_error(url: &str) -> PeerUrlError {
    let err = invalid(MemberAdd::new([url]).into_request().unwrap_err());
    match err {
        InvalidRequest::InvalidPeerUrl { url: got, reason } => {
            assert_eq!(got, url);
            reason
        }
        other => panic!("{url:?}: expected InvalidPeerUrl, got {other:?}"),
    }
}

#[test]
fn peer_urls_empty_list() {
    let none: [&str; 0] = [];
    let err = invalid(MemberAdd::new(none).into_request().unwrap_err());
    assert_eq!(err, InvalidRequest::NoPeerUrls);
    assert_eq!(err.to_string(), "no valid URLs given");
    let err = invalid(
        MemberUpdate::new(1, Vec::<String>::new())
            .build()
            .unwrap_err(),
    );
    assert_eq!(err, InvalidRequest::NoPeerUrls);
    let err = invalid(MemberAdd::new(none).as_learner().build().unwrap_err());
    assert_eq!(err, InvalidRequest::NoPeerUrls);
}

#[test]
fn peer_urls_valid() {
    for url in [
        "http://127.0.0.1:2380",
        "https://[::1]:2380",
        "unix://sock",
        "unixs://sock",
        "unix:///tmp/etcd.sock",
        "unix:relative",
        "unix://anything/with/a/path",
        "http://localhost:2380",
        "HTTP://127.0.0.1:2380",
        "HttpS://host.example:1",
        "  http://127.0.0.1:2380\n",
        "http://user:pw@127.0.0.1:2380",
        "http://127.0.0.1:2380?query",
        "http://127.0.0.1:2380#fragment",
        "http://[fe80::1%25eth0]:2380",
        "http://[::ffff:10.0.0.1]:2380",
        // As Go: SplitHostPort accepts an empty port or an empty host.
        "http://a:",
        "http://:2380",
    ] {
        MemberAdd::new([url])
            .into_request()
            .unwrap_or_else(|e| panic!("{url:?} rejected: {e}"));
        MemberUpdate::new(1, [url])
            .into_request()
            .unwrap_or_else(|e| panic!("{url:?} rejected by update: {e}"));
    }
}

#[test]
fn peer_urls_bad_scheme() {
    for url in [
        "ftp://a:1",
        "a:1",
        "garbage",
        "//a:1",
        "",
        "httpx://a:1",
        "/path",
    ] {
        assert_eq!(peer_url_error(url), PeerUrlError::Scheme, "{url:?}");
    }
    let err = invalid(MemberAdd::new(["ftp://a:1"]).build().unwrap_err());
    assert_eq!(
        err.to_string(),
        "URL scheme must be http, https, unix, or unixs: ftp://a:1"
    );
}

#[test]
fn peer_urls_not_host_port() {
    for url in [
        "http://a",
        "http://127.0.0.1",
        "https://[::1]",
        "http://::1:2380",
        "http://a:1:2",
        "http:a:1",
        "http:/a:1",
        "http://",
        "http:///x",
    ] {
        assert_eq!(peer_url_error(url), PeerUrlError::NotHostPort, "{url:?}");
    }
    let err = invalid(MemberAdd::new(["http://a"]).build().unwrap_err());
    assert_eq!(
        err.to_string(),
        "URL address does not have the form \"host:port\": http://a"
    );
}

#[test]
fn peer_urls_path() {
    for url in [
        "http://a:1/x",
        "http://a:1/",
        "https://[::1]:2380/p/q",
        "http://a:1/%41",
    ] {
        assert_eq!(peer_url_error(url), PeerUrlError::HasPath, "{url:?}");
    }
    let err = invalid(MemberAdd::new(["http://a:1/x"]).build().unwrap_err());
    assert_eq!(err.to_string(), "URL must not contain a path: http://a:1/x");
}

#[test]
fn peer_urls_malformed() {
    for url in [
        ":2380",
        "http://a:x",
        "http://a:1x",
        "http://[::1",
        "http://[::1]:x",
        "http://[zz]:1",
        "http://[1.2.3.4]:1",
        "http://a b:1",
        "http://a{:1",
        "http://%41:1",
        "http://a:1/%zz",
        "http://a:1#%z",
        "http://a\u{1}:1",
        "http://a\u{7f}:1",
        "http://us er@a:1",
        "unix://%zz",
        "1http:x",
        "%zz",
        "127.0.0.1:2380",
        "http://[::1]x:1",
    ] {
        match peer_url_error(url) {
            PeerUrlError::Malformed(why) => assert!(!why.is_empty(), "{url:?}"),
            other => panic!("{url:?}: expected Malformed, got {other:?}"),
        }
    }
    let err = invalid(MemberAdd::new([":2380"]).build().unwrap_err());
    assert_eq!(
        err.to_string(),
        "malformed URL (missing protocol scheme): :2380"
    );
}

#[test]
fn peer_urls_first_bad_one_is_reported() {
    let err = invalid(
        MemberUpdate::new(3, ["http://ok:1", "http://bad", "ftp://worse:1"])
            .into_request()
            .unwrap_err(),
    );
    assert_eq!(
        err,
        InvalidRequest::InvalidPeerUrl {
            url: "http://bad".into(),
            reason: PeerUrlError::NotHostPort,
        }
    );
    assert_eq!(
        validate_peer_urls(&["http://127.0.0.1:2380", "unix://sock"]),
        Ok(())
    );
}

// ---------------------------------------------------------------------------------------------
// Maintenance

#[test]
fn alarms() {
    assert_method::<AlarmList>("/etcdserverpb.Maintenance/Alarm", Repeatable);
    assert_method::<AlarmDisarm>("/etcdserverpb.Maintenance/Alarm", Repeatable);
    assert_eq!(
        AlarmList::new().into_request().unwrap(),
        pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Get as i32,
            member_id: 0,
            alarm: pb::AlarmType::None as i32,
        }
    );
    assert_eq!(AlarmList::default(), AlarmList::new());
    for (typed, wire) in [
        (AlarmType::None, pb::AlarmType::None),
        (AlarmType::NoSpace, pb::AlarmType::Nospace),
        (AlarmType::Corrupt, pb::AlarmType::Corrupt),
    ] {
        assert_eq!(typed.wire(), wire);
        assert_eq!(pb::AlarmType::from(typed), wire);
        assert_eq!(AlarmType::from_wire(wire as i32), Some(typed));
        assert_eq!(
            AlarmDisarm::new(12, typed).into_request().unwrap(),
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: 12,
                alarm: wire as i32,
            }
        );
    }
    assert_eq!(AlarmType::from_wire(99), None);
    // A listed alarm of an unknown type is disarmed with its raw value.
    let listed = pb::AlarmMember {
        member_id: 5,
        alarm: 99,
    };
    assert_eq!(
        AlarmDisarm::from(listed).into_request().unwrap(),
        pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Deactivate as i32,
            member_id: 5,
            alarm: 99,
        }
    );
}

#[test]
fn status_defragment_hash() {
    assert_method::<Status>("/etcdserverpb.Maintenance/Status", Repeatable);
    assert_eq!(Status::new().into_request().unwrap(), pb::StatusRequest {});
    assert_eq!(Status::default(), Status::new());

    assert_method::<Defragment>("/etcdserverpb.Maintenance/Defragment", NonRepeatable);
    assert_eq!(
        Defragment::new().into_request().unwrap(),
        pb::DefragmentRequest {}
    );

    assert_method::<Hash>("/etcdserverpb.Maintenance/Hash", Repeatable);
    assert_eq!(Hash::new().into_request().unwrap(), pb::HashRequest {});

    assert_method::<HashKv>("/etcdserverpb.Maintenance/HashKV", Repeatable);
    assert_eq!(
        HashKv::new(0).into_request().unwrap(),
        pb::HashKvRequest { revision: 0 }
    );
    assert_eq!(
        HashKv::new(1234).into_request().unwrap(),
        pb::HashKvRequest { revision: 1234 }
    );
}

#[test]
fn move_leader_and_downgrade() {
    assert_method::<MoveLeader>("/etcdserverpb.Maintenance/MoveLeader", Repeatable);
    assert_eq!(
        MoveLeader::new(0xabcdef).into_request().unwrap(),
        pb::MoveLeaderRequest {
            target_id: 0xabcdef
        }
    );

    assert_method::<Downgrade>("/etcdserverpb.Maintenance/Downgrade", NonRepeatable);
    use pb::downgrade_request::DowngradeAction;
    assert_eq!(
        Downgrade::validate("3.5").into_request().unwrap(),
        pb::DowngradeRequest {
            action: DowngradeAction::Validate as i32,
            version: "3.5".into(),
        }
    );
    assert_eq!(
        Downgrade::enable(String::from("3.5.0"))
            .into_request()
            .unwrap(),
        pb::DowngradeRequest {
            action: DowngradeAction::Enable as i32,
            version: "3.5.0".into(),
        }
    );
    assert_eq!(
        Downgrade::cancel().into_request().unwrap(),
        pb::DowngradeRequest {
            action: DowngradeAction::Cancel as i32,
            version: String::new(),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Auth

#[test]
fn auth_switches() {
    assert_method::<AuthEnable>("/etcdserverpb.Auth/AuthEnable", NonRepeatable);
    assert_eq!(
        AuthEnable::new().into_request().unwrap(),
        pb::AuthEnableRequest {}
    );
    assert_method::<AuthDisable>("/etcdserverpb.Auth/AuthDisable", NonRepeatable);
    assert_eq!(
        AuthDisable::new().into_request().unwrap(),
        pb::AuthDisableRequest {}
    );
    assert_method::<AuthStatus>("/etcdserverpb.Auth/AuthStatus", NonRepeatable);
    assert_eq!(
        AuthStatus::new().into_request().unwrap(),
        pb::AuthStatusRequest {}
    );
}

const SECRET: &str = "hunter2-s3cr3t";

#[test]
fn authenticate() {
    assert_method::<Authenticate>("/etcdserverpb.Auth/Authenticate", NonRepeatable);
    let rpc = Authenticate::new("alice", SECRET);
    for debug in [format!("{rpc:?}"), format!("{rpc:#?}")] {
        assert!(!debug.contains(SECRET), "password leaked: {debug}");
        assert!(debug.contains("alice"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
    let req = rpc.into_request().unwrap();
    assert_eq!(req.name, "alice");
    assert_eq!(req.password, SECRET);
}

#[test]
fn user_add() {
    assert_method::<UserAdd>("/etcdserverpb.Auth/UserAdd", NonRepeatable);
    let rpc = UserAdd::new("bob", SECRET);
    let debug = format!("{rpc:?}");
    assert!(!debug.contains(SECRET), "password leaked: {debug}");
    assert!(debug.contains("bob"), "{debug}");
    let req = rpc.into_request().unwrap();
    assert_eq!(req.name, "bob");
    assert_eq!(req.password, SECRET);
    // Like Go's UserAdd: explicit options with no_password = false.
    assert_eq!(
        req.options,
        Some(authpb::UserAddOptions { no_password: false })
    );
    assert_eq!(req.hashed_password, "");

    let req = UserAdd::no_password("carol").into_request().unwrap();
    assert_eq!(req.name, "carol");
    assert_eq!(req.password, "");
    assert_eq!(
        req.options,
        Some(authpb::UserAddOptions { no_password: true })
    );
    assert_eq!(req.hashed_password, "");
    assert!(format!("{:?}", UserAdd::no_password("carol")).contains("no_password: true"));
}

#[test]
fn user_change_password() {
    assert_method::<UserChangePassword>("/etcdserverpb.Auth/UserChangePassword", NonRepeatable);
    let rpc = UserChangePassword::new("dave", SECRET);
    let debug = format!("{:?}", vec![rpc.clone()]);
    assert!(!debug.contains(SECRET), "password leaked: {debug}");
    assert!(debug.contains("dave"), "{debug}");
    assert_eq!(
        rpc.into_request().unwrap(),
        pb::AuthUserChangePasswordRequest {
            name: "dave".into(),
            password: SECRET.into(),
            hashed_password: String::new(),
        }
    );
}

#[test]
fn users() {
    assert_method::<UserGet>("/etcdserverpb.Auth/UserGet", Repeatable);
    assert_eq!(
        UserGet::new("u").into_request().unwrap(),
        pb::AuthUserGetRequest { name: "u".into() }
    );
    assert_method::<UserList>("/etcdserverpb.Auth/UserList", Repeatable);
    assert_eq!(
        UserList::new().into_request().unwrap(),
        pb::AuthUserListRequest {}
    );
    assert_method::<UserDelete>("/etcdserverpb.Auth/UserDelete", NonRepeatable);
    assert_eq!(
        UserDelete::new(String::from("u")).into_request().unwrap(),
        pb::AuthUserDeleteRequest { name: "u".into() }
    );
    assert_method::<UserGrantRole>("/etcdserverpb.Auth/UserGrantRole", NonRepeatable);
    assert_eq!(
        UserGrantRole::new("u", "r").into_request().unwrap(),
        pb::AuthUserGrantRoleRequest {
            user: "u".into(),
            role: "r".into(),
        }
    );
    assert_method::<UserRevokeRole>("/etcdserverpb.Auth/UserRevokeRole", NonRepeatable);
    assert_eq!(
        UserRevokeRole::new("u", "r").into_request().unwrap(),
        pb::AuthUserRevokeRoleRequest {
            name: "u".into(),
            role: "r".into(),
        }
    );
    // Empty names are the server's to reject (UserEmpty), not ours.
    assert_eq!(UserGet::new("").into_request().unwrap().name, "");
    assert_eq!(
        UserAdd::new("", "pw").into_request().unwrap().name,
        String::new()
    );
}

#[test]
fn roles() {
    assert_method::<RoleAdd>("/etcdserverpb.Auth/RoleAdd", NonRepeatable);
    assert_eq!(
        RoleAdd::new("r").into_request().unwrap(),
        pb::AuthRoleAddRequest { name: "r".into() }
    );
    assert_method::<RoleGet>("/etcdserverpb.Auth/RoleGet", Repeatable);
    assert_eq!(
        RoleGet::new("r").into_request().unwrap(),
        pb::AuthRoleGetRequest { role: "r".into() }
    );
    assert_method::<RoleList>("/etcdserverpb.Auth/RoleList", Repeatable);
    assert_eq!(
        RoleList::new().into_request().unwrap(),
        pb::AuthRoleListRequest {}
    );
    assert_method::<RoleDelete>("/etcdserverpb.Auth/RoleDelete", NonRepeatable);
    assert_eq!(
        RoleDelete::new("r").into_request().unwrap(),
        pb::AuthRoleDeleteRequest { role: "r".into() }
    );
    // Empty role names go to the server (RoleEmpty).
    assert_eq!(RoleAdd::new("").into_request().unwrap().name, "");
}

#[test]
fn permission_type_parsing() {
    for (text, kind) in [
        ("read", PermissionType::Read),
        ("READ", PermissionType::Read),
        ("Read", PermissionType::Read),
        ("write", PermissionType::Write),
        ("WrItE", PermissionType::Write),
        ("readwrite", PermissionType::ReadWrite),
        ("READWRITE", PermissionType::ReadWrite),
        ("ReadWrite", PermissionType::ReadWrite),
    ] {
        assert_eq!(text.parse::<PermissionType>(), Ok(kind), "{text}");
    }
    for text in [
        "",
        "rw",
        "read-write",
        "read write",
        " read",
        "readwrite ",
        "all",
    ] {
        let err = text.parse::<PermissionType>().unwrap_err();
        assert_eq!(err, InvalidRequest::InvalidPermissionType(text.into()));
        assert_eq!(err.to_string(), format!("invalid permission type: {text}"));
        let err: Error = err.into();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    for (kind, wire, name) in [
        (PermissionType::Read, permission::Type::Read, "READ"),
        (PermissionType::Write, permission::Type::Write, "WRITE"),
        (
            PermissionType::ReadWrite,
            permission::Type::Readwrite,
            "READWRITE",
        ),
    ] {
        assert_eq!(kind.wire(), wire);
        assert_eq!(permission::Type::from(kind), wire);
        assert_eq!(PermissionType::from_wire(wire as i32), Some(kind));
        assert_eq!(kind.to_string(), name);
        assert_eq!(name.parse::<PermissionType>(), Ok(kind));
    }
    assert_eq!(PermissionType::from_wire(7), None);
}

fn wire_perm(kind: permission::Type, key: &[u8], range_end: &[u8]) -> authpb::Permission {
    authpb::Permission {
        perm_type: kind as i32,
        key: Bytes::copy_from_slice(key),
        range_end: Bytes::copy_from_slice(range_end),
    }
}

#[test]
fn permissions() {
    use permission::Type::{Read, Readwrite, Write};
    let cases = [
        (Permission::read("k"), wire_perm(Read, b"k", b"")),
        (Permission::write("k"), wire_perm(Write, b"k", b"")),
        (Permission::read_write("k"), wire_perm(Readwrite, b"k", b"")),
        (
            Permission::read("foo").with_prefix(),
            wire_perm(Read, b"foo", b"fop"),
        ),
        (
            Permission::read(&b"a\xff"[..]).with_prefix(),
            wire_perm(Read, b"a\xff", b"b"),
        ),
        (
            Permission::read(&b"\xff\xff"[..]).with_prefix(),
            wire_perm(Read, b"\xff\xff", b"\0"),
        ),
        (
            Permission::write("a").with_range_end("c"),
            wire_perm(Write, b"a", b"c"),
        ),
        (
            Permission::read("a").from_key(),
            wire_perm(Read, b"a", b"\0"),
        ),
        // Every key: the form the server accepts, ("\0", "\0").
        (
            Permission::read("").with_prefix(),
            wire_perm(Read, b"\0", b"\0"),
        ),
        (
            Permission::read_write("").from_key(),
            wire_perm(Readwrite, b"\0", b"\0"),
        ),
        // The last range choice wins.
        (
            Permission::read("foo").from_key().with_prefix(),
            wire_perm(Read, b"foo", b"fop"),
        ),
        (
            Permission::read("foo").with_prefix().with_range_end("z"),
            wire_perm(Read, b"foo", b"z"),
        ),
        (
            Permission::read("").from_key().with_prefix(),
            wire_perm(Read, b"\0", b"\0"),
        ),
        // A single empty key is the server's to reject.
        (Permission::read(""), wire_perm(Read, b"", b"")),
        (
            Permission::new(PermissionType::Write, "x"),
            wire_perm(Write, b"x", b""),
        ),
    ];
    for (perm, wire) in cases {
        assert_eq!(authpb::Permission::from(perm.clone()), wire, "{perm:?}");
        assert_method::<RoleGrantPermission>(
            "/etcdserverpb.Auth/RoleGrantPermission",
            NonRepeatable,
        );
        assert_eq!(
            RoleGrantPermission::new("role", perm)
                .into_request()
                .unwrap(),
            pb::AuthRoleGrantPermissionRequest {
                name: "role".into(),
                perm: Some(wire),
            }
        );
    }
    // Public fields.
    let perm = Permission {
        kind: PermissionType::Read,
        key: Bytes::from_static(b"a"),
        range_end: Bytes::from_static(b"b"),
    };
    assert_eq!(perm.clone().wire(), wire_perm(Read, b"a", b"b"));
    assert_eq!(Permission::from_wire(perm.clone().wire()), Some(perm));
    assert_eq!(
        Permission::from_wire(authpb::Permission {
            perm_type: 9,
            ..Default::default()
        }),
        None
    );
}

#[test]
fn role_revoke_permission() {
    assert_method::<RoleRevokePermission>("/etcdserverpb.Auth/RoleRevokePermission", NonRepeatable);
    let revoke = |rpc: RoleRevokePermission| {
        let req = rpc.into_request().unwrap();
        assert_eq!(req.role, "r");
        (req.key, req.range_end)
    };
    let b = |s: &'static [u8]| Bytes::from_static(s);
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "k")),
        (b(b"k"), b(b""))
    );
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "a").range_end("c")),
        (b(b"a"), b(b"c"))
    );
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "foo").prefix()),
        (b(b"foo"), b(b"fop"))
    );
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "foo").from_key()),
        (b(b"foo"), b(b"\0"))
    );
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "").prefix()),
        (b(b"\0"), b(b"\0"))
    );
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "").from_key()),
        (b(b"\0"), b(b"\0"))
    );
    assert_eq!(
        revoke(
            RoleRevokePermission::new("r", "foo")
                .from_key()
                .range_end("g")
        ),
        (b(b"foo"), b(b"g"))
    );
    // Matches what the same grant sends.
    let grant = Permission::read("").with_prefix().wire();
    assert_eq!(
        revoke(RoleRevokePermission::new("r", "").prefix()),
        (grant.key, grant.range_end)
    );
}

// ---------------------------------------------------------------------------------------------
// Lock and election

#[test]
fn lock_and_unlock() {
    assert_method::<Lock>("/v3lockpb.Lock/Lock", NonRepeatable);
    assert_eq!(
        Lock::new("mylock").into_request().unwrap(),
        lockpb::LockRequest {
            name: b"mylock"[..].into(),
            lease: 0,
        }
    );
    assert_eq!(
        Lock::new(b"mylock").lease(99).into_request().unwrap(),
        lockpb::LockRequest {
            name: b"mylock"[..].into(),
            lease: 99,
        }
    );
    assert_method::<Unlock>("/v3lockpb.Lock/Unlock", NonRepeatable);
    assert_eq!(
        Unlock::new(Bytes::from_static(b"mylock/694d7a8f"))
            .into_request()
            .unwrap(),
        lockpb::UnlockRequest {
            key: Bytes::from_static(b"mylock/694d7a8f"),
        }
    );
}

#[test]
fn election() {
    let leader = LeaderKey {
        name: Bytes::from_static(b"e"),
        key: Bytes::from_static(b"e/694d7a8f"),
        rev: 12,
        lease: 34,
    };

    assert_method::<Campaign>("/v3electionpb.Election/Campaign", NonRepeatable);
    assert_eq!(
        Campaign::new("e", 34, "me").into_request().unwrap(),
        electionpb::CampaignRequest {
            name: Bytes::from_static(b"e"),
            lease: 34,
            value: Bytes::from_static(b"me"),
        }
    );

    assert_method::<Proclaim>("/v3electionpb.Election/Proclaim", NonRepeatable);
    assert_eq!(
        Proclaim::new(leader.clone(), "new value")
            .into_request()
            .unwrap(),
        electionpb::ProclaimRequest {
            leader: Some(leader.clone()),
            value: Bytes::from_static(b"new value"),
        }
    );

    assert_method::<Leader>("/v3electionpb.Election/Leader", Repeatable);
    assert_eq!(
        Leader::new("e").into_request().unwrap(),
        electionpb::LeaderRequest {
            name: Bytes::from_static(b"e"),
        }
    );

    assert_method::<Resign>("/v3electionpb.Election/Resign", NonRepeatable);
    assert_eq!(
        Resign::new(leader.clone()).into_request().unwrap(),
        electionpb::ResignRequest {
            leader: Some(leader),
        }
    );
}
