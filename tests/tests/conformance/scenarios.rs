//! The scenarios, written once against [`Etcd`]: each runs on every runtime and server
//! version (see `conformance.rs`).

use std::time::Duration;

use etcd_driver::core::rpc::auth::Permission;
use etcd_driver::core::{Direction, InvalidRequest};
use etcd_driver::proto::etcdserverpb::{
    response_op::Response, LeaseGrantRequest, LeaseRevokeRequest, MemberListRequest, RangeResponse,
};
use etcd_driver::rpc::kv::{
    Compact, Compare, CompareOp, Delete, Get, Put, SortOrder, SortTarget, Txn, TxnOp,
};
use etcd_driver::{CallOptions, Error, EtcdErrorKind};
use etcd_tests::EtcdVersion;

use super::client::Etcd;
use super::target::Target;

fn rel_keys(resp: &RangeResponse, t: &Target) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key);
            key.strip_prefix(&t.prefix).unwrap_or(&key).to_string()
        })
        .collect()
}

fn kind<T: std::fmt::Debug>(result: Result<T, Error>) -> EtcdErrorKind {
    match result {
        Err(e) => e
            .etcd_kind()
            .unwrap_or_else(|| panic!("expected an etcd error, got {e:?}")),
        Ok(v) => panic!("expected an etcd error, got success {v:?}"),
    }
}

async fn put(c: &impl Etcd, key: String, value: &str) -> i64 {
    let resp = c.put(Put::new(key, value.to_string())).await.expect("put");
    resp.header.expect("header").revision
}

/// Put, get, overwrite with the previous value, delete: revisions and versions as etcd counts.
pub async fn kv_put_get_delete(c: &impl Etcd, t: &Target) {
    let key = t.key("k");
    let r1 = put(c, key.clone(), "v1").await;
    let got = c.get(Get::new(&key)).await.unwrap();
    assert!(got.header.as_ref().unwrap().revision >= r1);
    assert_eq!(got.count, 1);
    let kv = &got.kvs[0];
    assert_eq!((&kv.key[..], &kv.value[..]), (key.as_bytes(), &b"v1"[..]));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );

    let second = c.put(Put::new(&key, "v2").prev_kv()).await.unwrap();
    assert_eq!(&second.prev_kv.expect("prev kv").value[..], b"v1");
    let kv = c.get(Get::new(&key)).await.unwrap().kvs[0].clone();
    assert_eq!(
        (kv.create_revision, kv.version, &kv.value[..]),
        (r1, 2, &b"v2"[..])
    );

    let missing = c.get(Get::new(t.key("missing"))).await.unwrap();
    assert_eq!((missing.count, missing.kvs.len()), (0, 0));

    let deleted = c.delete(Delete::new(&key).prev_kv()).await.unwrap();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(&deleted.prev_kvs[0].value[..], b"v2");
    assert_eq!(c.delete(Delete::new(&key)).await.unwrap().deleted, 0);
    assert_eq!(c.get(Get::new(&key)).await.unwrap().count, 0);
}

/// Ranges, prefixes, limits, projections, sorting and historical reads.
pub async fn kv_ranges_and_options(c: &impl Etcd, t: &Target) {
    let mut revisions = Vec::new();
    for k in ["a", "b", "c", "x/1", "x/2"] {
        revisions.push(put(c, t.key(k), k).await);
    }
    let r = c
        .get(Get::new(t.key("a")).range_end(t.key("c")))
        .await
        .unwrap();
    assert_eq!(rel_keys(&r, t), ["a", "b"]);
    let r = c.get(Get::new(t.key("x/")).prefix()).await.unwrap();
    assert_eq!(rel_keys(&r, t), ["x/1", "x/2"]);
    let r = c.get(Get::new(&t.prefix).prefix().limit(2)).await.unwrap();
    assert_eq!(
        (rel_keys(&r, t), r.more, r.count),
        (vec!["a".into(), "b".into()], true, 5)
    );
    let r = c
        .get(Get::new(&t.prefix).prefix().count_only())
        .await
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (5, 0));
    let r = c
        .get(Get::new(&t.prefix).prefix().keys_only())
        .await
        .unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 5);
    let r = c
        .get(
            Get::new(&t.prefix)
                .prefix()
                .sort(SortTarget::Key, SortOrder::Descend),
        )
        .await
        .unwrap();
    assert_eq!(rel_keys(&r, t), ["x/2", "x/1", "c", "b", "a"]);
    let r = c
        .get(Get::new(&t.prefix).prefix().serializable())
        .await
        .unwrap();
    assert_eq!(r.count, 5);
    // As of the revision of the third put, only the first three keys exist.
    let r = c
        .get(Get::new(&t.prefix).prefix().revision(revisions[2]))
        .await
        .unwrap();
    assert_eq!(rel_keys(&r, t), ["a", "b", "c"]);
    let deleted = c.delete(Delete::new(&t.prefix).prefix()).await.unwrap();
    assert_eq!(deleted.deleted, 5);
}

/// Compare-and-swap both ways, the create-if-absent idiom, nesting, and txn errors.
pub async fn txn_compares_and_nesting(c: &impl Etcd, t: &Target) {
    let key = t.key("k");
    put(c, key.clone(), "v1").await;
    let cas = |expected: &str, new: &str| {
        Txn::new()
            .when([Compare::value(&key, CompareOp::Equal, expected)])
            .and_then([Put::new(&key, new)])
            .or_else([Get::new(&key)])
    };
    let hit = c.txn(cas("v1", "v2")).await.unwrap();
    assert!(hit.succeeded);
    assert!(matches!(
        hit.responses[0].response,
        Some(Response::ResponsePut(_))
    ));
    let miss = c.txn(cas("v1", "v3")).await.unwrap();
    assert!(!miss.succeeded);
    match &miss.responses[0].response {
        Some(Response::ResponseRange(r)) => assert_eq!(&r.kvs[0].value[..], b"v2"),
        other => panic!("expected the else branch's range, got {other:?}"),
    }

    let absent = t.key("absent");
    let create = || {
        Txn::new()
            .when([Compare::version(&absent, CompareOp::Equal, 0)])
            .and_then([Put::new(&absent, "new")])
    };
    assert!(c.txn(create()).await.unwrap().succeeded);
    assert!(!c.txn(create()).await.unwrap().succeeded);

    let inner = Txn::new()
        .when([Compare::value(&key, CompareOp::Equal, "v2")])
        .and_then([Put::new(t.key("inner"), "yes")]);
    let outer = Txn::new()
        .when([Compare::version(&key, CompareOp::Greater, 0)])
        .and_then([TxnOp::Txn(inner), TxnOp::Get(Get::new(&key))]);
    let resp = c.txn(outer).await.unwrap();
    match &resp.responses[0].response {
        Some(Response::ResponseTxn(inner)) => assert!(inner.succeeded),
        other => panic!("expected a nested txn response, got {other:?}"),
    }
    assert_eq!(
        &c.get(Get::new(t.key("inner"))).await.unwrap().kvs[0].value[..],
        b"yes"
    );

    let dup = Txn::new().and_then([Put::new(&key, "1"), Put::new(&key, "2")]);
    assert_eq!(kind(c.txn(dup).await), EtcdErrorKind::DuplicateKey);
    let many = Txn::new().and_then((0..129).map(|i| Put::new(t.key(&format!("m{i}")), "v")));
    assert_eq!(kind(c.txn(many).await), EtcdErrorKind::TooManyOps);
    let misuse = Txn::new().and_then([Put::new(&key, "x")]).when([]);
    assert!(matches!(
        c.txn(misuse).await,
        Err(Error::InvalidRequest(InvalidRequest::TxnMisuse(_)))
    ));
}

/// Typed errors from the server and from the client, the send limit, and a call deadline.
pub async fn typed_errors_and_limits(c: &impl Etcd, t: &Target) {
    assert_eq!(kind(c.get(Get::new("")).await), EtcdErrorKind::EmptyKey);
    assert_eq!(
        kind(c.put(Put::new("", "v")).await),
        EtcdErrorKind::EmptyKey
    );
    assert_eq!(
        kind(c.delete(Delete::new("")).await),
        EtcdErrorKind::EmptyKey
    );
    let e = c.put(Put::new(t.key("missing"), "").ignore_value()).await;
    assert_eq!(kind(e), EtcdErrorKind::KeyNotFound);
    let e = c
        .get(Get::new(t.key("a")).prefix().from_key())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidRequest(InvalidRequest::PrefixAndFromKey)),
        "{e:?}"
    );
    // 1.6 MiB: under the client's 2 MiB send limit, over the server's 1.5 MiB.
    let big = c.put(Put::new(t.key("big"), vec![b'x'; 1_677_722])).await;
    assert_eq!(kind(big), EtcdErrorKind::RequestTooLarge);
    // 3 MiB: refused locally, nothing sent.
    match c.put(Put::new(t.key("huge"), vec![b'y'; 3 << 20])).await {
        Err(Error::MessageTooLarge {
            direction: Direction::Send,
            limit,
            size,
        }) => assert!(limit == 2 << 20 && size > 3 << 20),
        other => panic!("expected a local send-limit error, got {other:?}"),
    }
    assert_eq!(c.get(Get::new(t.key("huge"))).await.unwrap().count, 0);
    // A deadline that has passed before any answer can come back.
    let mut options = CallOptions::default();
    options.timeout = Some(Duration::from_nanos(1));
    // The client's timer or the server (which got the deadline as `grpc-timeout`) ends it,
    // whichever is first; 3.4 answers with code Unknown.
    match c.call_with(Get::new(t.key("k")), options).await {
        Err(Error::DeadlineExceeded { .. }) => {}
        Err(Error::Status(s)) if s.message == "context deadline exceeded" => {}
        other => panic!("expected a deadline error, got {other:?}"),
    }
}

/// Compaction on a server of the test's own: Compacted and FutureRev are typed.
pub async fn compaction(c: &impl Etcd, t: &Target) {
    let r1 = put(c, t.key("k"), "v1").await;
    let r2 = put(c, t.key("k"), "v2").await;
    let old = c.get(Get::new(t.key("k")).revision(r1)).await.unwrap();
    assert_eq!(&old.kvs[0].value[..], b"v1");
    c.compact(Compact::new(r2)).await.unwrap();
    let gone = c.get(Get::new(t.key("k")).revision(r1)).await;
    assert_eq!(kind(gone), EtcdErrorKind::Compacted);
    assert_eq!(
        kind(c.compact(Compact::new(r1)).await),
        EtcdErrorKind::Compacted
    );
    assert_eq!(
        kind(c.compact(Compact::new(r2 + 1000)).await),
        EtcdErrorKind::FutureRev
    );
    let r3 = put(c, t.key("k"), "v3").await;
    c.compact(Compact::new(r3).physical()).await.unwrap();
    assert_eq!(
        &c.get(Get::new(t.key("k"))).await.unwrap().kvs[0].value[..],
        b"v3"
    );
}

/// Leases through raw protobuf requests and through the typed shortcuts.
pub async fn leases(c: &impl Etcd, t: &Target) {
    let granted = c.call(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap();
    assert!(granted.id != 0 && granted.ttl == 60, "{granted:?}");
    let id = granted.id;
    c.put(Put::new(t.key("leased"), "v").lease(id))
        .await
        .unwrap();
    let ttl = c.lease_time_to_live(id, true).await.unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 0 && ttl.ttl <= 60);
    assert_eq!(ttl.keys, [t.key("leased").into_bytes()]);
    let leases = c.lease_leases().await.unwrap();
    assert!(leases.leases.iter().any(|l| l.id == id));
    c.call(LeaseRevokeRequest { id }).await.unwrap();
    assert_eq!(c.get(Get::new(t.key("leased"))).await.unwrap().count, 0);
    assert_eq!(kind(c.lease_revoke(id).await), EtcdErrorKind::LeaseNotFound);
    assert_eq!(c.lease_time_to_live(id, false).await.unwrap().ttl, -1);

    let typed = c.lease_grant(30).await.unwrap();
    assert_eq!(typed.ttl, 30);
    c.lease_revoke(typed.id).await.unwrap();
}

/// The Cluster and Maintenance services on a one-member server.
pub async fn cluster_and_maintenance(c: &impl Etcd, t: &Target) {
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members.len(), 1, "{members:?}");
    let member = &members.members[0];
    assert!(member.client_ur_ls.contains(&t.endpoint), "{member:?}");
    let raw = c
        .call(MemberListRequest {
            linearizable: false,
        })
        .await
        .unwrap();
    assert_eq!(raw.members[0].id, member.id);

    let status = c.status().await.unwrap();
    let expected = match t.version {
        EtcdVersion::V3_4 => "3.4.",
        EtcdVersion::V3_5 => "3.5.",
    };
    assert!(status.version.starts_with(expected), "{status:?}");
    assert_eq!(status.leader, member.id);
    assert_eq!(status.header.unwrap().member_id, member.id);

    assert!(c.alarm_list().await.unwrap().alarms.is_empty());
    put(c, t.key("k"), "v").await;
    let hash = c.hash_kv(0).await.unwrap();
    assert_ne!(hash.hash, 0, "{hash:?}");
    let endpoints = c.endpoints().await.unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].to_string(), t.endpoint);
}

/// Users, roles and permissions (authentication itself stays off).
pub async fn auth_admin(c: &impl Etcd, t: &Target) {
    let (user, role) = (t.name("user"), t.name("role"));
    c.user_add(user.clone(), "secret".into()).await.unwrap();
    assert_eq!(
        kind(c.user_add(user.clone(), "x".into()).await),
        EtcdErrorKind::UserAlreadyExist
    );
    c.role_add(role.clone()).await.unwrap();
    let perm = Permission::read(t.key("")).with_prefix();
    c.role_grant_permission(role.clone(), perm).await.unwrap();
    c.user_grant_role(user.clone(), role.clone()).await.unwrap();
    let roles = c.user_get(user.clone()).await.unwrap().roles;
    assert_eq!(roles, std::slice::from_ref(&role));
    let perms = c.role_get(role.clone()).await.unwrap().perm;
    assert_eq!(perms.len(), 1);
    assert_eq!(&perms[0].key[..], t.prefix.as_bytes());
    assert!(c.user_list().await.unwrap().users.contains(&user));
    assert!(c.role_list().await.unwrap().roles.contains(&role));
    c.user_revoke_role(user.clone(), role.clone())
        .await
        .unwrap();
    assert!(c.user_get(user.clone()).await.unwrap().roles.is_empty());
    c.user_delete(user.clone()).await.unwrap();
    c.role_delete(role.clone()).await.unwrap();
    assert_eq!(kind(c.user_get(user).await), EtcdErrorKind::UserNotFound);
    assert_eq!(kind(c.role_get(role).await), EtcdErrorKind::RoleNotFound);
}

/// The Lock and Election services, on a lease of the test's own.
pub async fn lock_and_election(c: &impl Etcd, t: &Target) {
    let lease = c.lease_grant(30).await.unwrap().id;
    let held = c.lock(t.name("lock"), lease).await.unwrap();
    assert!(held.key.starts_with(t.name("lock").as_bytes()), "{held:?}");
    assert_eq!(c.get(Get::new(held.key.to_vec())).await.unwrap().count, 1);
    c.unlock(held.key.clone()).await.unwrap();
    assert_eq!(c.get(Get::new(held.key.to_vec())).await.unwrap().count, 0);

    let election = t.name("election");
    let won = c
        .campaign(election.clone(), lease, "v1".into())
        .await
        .unwrap();
    let leader = won.leader.expect("leader key");
    let current = c.leader(election.clone()).await.unwrap();
    assert_eq!(&current.kv.expect("kv").value[..], b"v1");
    c.proclaim(leader.clone(), "v2".into()).await.unwrap();
    let current = c.leader(election.clone()).await.unwrap();
    assert_eq!(&current.kv.expect("kv").value[..], b"v2");
    c.resign(leader).await.unwrap();
    assert_eq!(
        kind(c.leader(election).await),
        EtcdErrorKind::ElectionNoLeader
    );
    c.lease_revoke(lease).await.unwrap();
}

/// KV and a txn over mutual TLS (the adapter's TLS path).
pub async fn over_mutual_tls(c: &impl Etcd, t: &Target) {
    let r = put(c, t.key("k"), "secure").await;
    let got = c.get(Get::new(t.key("k"))).await.unwrap();
    assert_eq!(
        (&got.kvs[0].value[..], got.kvs[0].mod_revision),
        (&b"secure"[..], r)
    );
    let swap = Txn::new()
        .when([Compare::mod_revision(t.key("k"), CompareOp::Equal, r)])
        .and_then([Put::new(t.key("k"), "swapped")]);
    assert!(c.txn(swap).await.unwrap().succeeded);
    assert!(t.endpoint.starts_with("https://"));
}

/// Watch: every event of a prefix once, in revision order.
pub async fn watch_prefix(c: &impl Etcd, t: &Target) {
    let prefix = t.key("w/");
    let puts: Vec<(String, String)> = (0..5)
        .map(|i| (format!("{prefix}{i}"), i.to_string()))
        .collect();
    let got = c
        .watch_puts(
            etcd_driver::Watch::new(prefix.clone()).prefix(),
            puts.clone(),
            5,
        )
        .await
        .unwrap();
    let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
    let want: Vec<&String> = puts.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, want);
    assert!(got.windows(2).all(|w| w[0].1 < w[1].1));
}

/// Lease keepalive: a 2 s lease kept alive past several TTLs is still alive.
pub async fn lease_keepalive(c: &impl Etcd, _t: &Target) {
    let ttl = c.kept_alive_ttl(2, 9).await.unwrap();
    assert!(
        ttl > 0,
        "the lease is alive after ~3 TTLs of renewals (ttl {ttl})"
    );
}
