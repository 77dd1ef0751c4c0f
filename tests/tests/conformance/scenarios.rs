//! The scenarios, written once against [`Etcd`]: each runs on every runtime and server
//! version (see `conformance.rs`).

use std::time::{Duration, Instant};

use etcd_driver::core::rpc::auth::Permission;
use etcd_driver::core::{Direction, InvalidRequest};
use etcd_driver::proto::etcdserverpb::{
    response_op::Response, LeaseGrantRequest, LeaseRevokeRequest, MemberListRequest, RangeResponse,
};
use etcd_driver::rpc::kv::{
    Compact, Compare, CompareOp, Delete, Get, Put, SortOrder, SortTarget, Txn, TxnOp,
};
use etcd_driver::{
    CallOptions, Error, EtcdErrorKind, LeaseLostReason, Watch, WatchResponse, WatchResponseKind,
};
use etcd_tests::{EtcdVersion, ProxyMode};

use super::client::{Etcd, Stream};
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

/// Keys and mod revisions of the events a watcher delivers, read until one at `revision` or
/// later (so a lost event shows as a difference, not as a wait for one more).
async fn read_through(
    w: &mut impl Stream<Item = WatchResponse>,
    revision: i64,
) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    while out.last().is_none_or(|(_, r)| *r < revision) {
        let resp = w
            .next()
            .await
            .expect("the watcher is running")
            .expect("no watch error");
        assert_eq!(resp.kind, WatchResponseKind::Events, "{resp:?}");
        out.extend(resp.events.into_iter().map(|e| {
            let kv = e.kv.expect("kv");
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        }));
    }
    out
}

/// Puts `key` = `value` and returns the key with the revision of the write.
async fn put_at(c: &impl Etcd, key: String, value: &str) -> (String, i64) {
    let revision = put(c, key.clone(), value).await;
    (key, revision)
}

/// Watch: every event of a prefix once, in revision order.
pub async fn watch_prefix(c: &impl Etcd, t: &Target) {
    let prefix = t.key("w/");
    let mut w = c.watch(Watch::new(&prefix).prefix()).await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(put_at(c, format!("{prefix}{i}"), &i.to_string()).await);
    }
    c.put(Put::new(t.key("elsewhere"), "x")).await.unwrap();
    assert_eq!(read_through(&mut w, written[4].1).await, written);
}

/// Lease keepalive: a 2 s lease kept alive past several TTLs is still alive.
pub async fn lease_keepalive(c: &impl Etcd, _t: &Target) {
    let granted = c.lease_grant(2).await.unwrap();
    let mut keeper = c.keep_alive((&granted).into()).await.unwrap();
    for _ in 0..9 {
        let renewal = keeper.next().await.expect("a renewal").unwrap();
        assert_eq!((renewal.lease, renewal.ttl), (granted.id, 2));
    }
    let ttl = c.lease_time_to_live(granted.id, false).await.unwrap().ttl;
    assert!(
        ttl > 0,
        "the lease is alive after ~3 TTLs of renewals (ttl {ttl})"
    );
    c.lease_revoke(granted.id).await.unwrap();
}

// ---- Faults ----

/// Watch through connection cuts: the proxy cuts the watcher's connection three times while
/// keys are written before each cut and while the watcher reconnects; it resumes where it
/// was and delivers every event exactly once, in revision order, with no gap.
pub async fn watch_through_cuts(c: &impl Etcd, t: &Target) {
    // Writes go straight to the server, so none is lost to a cut.
    let direct = c.on_endpoint(&t.direct).unwrap();
    let prefix = t.key("w/");
    let mut w = c.watch(Watch::new(&prefix).prefix()).await.unwrap();
    let (mut written, mut seen) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for i in 0..4 {
            written.push(put_at(&direct, format!("{prefix}{round}-before-{i}"), "v").await);
        }
        // Cut, and keep the watcher from reconnecting while more keys are written: it must
        // resume from before them.
        t.proxy(0).set_mode(ProxyMode::Refuse);
        assert!(
            t.cut() > 0,
            "the watcher's connection goes through the proxy"
        );
        for i in 0..4 {
            written.push(put_at(&direct, format!("{prefix}{round}-after-{i}"), "v").await);
        }
        t.proxy(0).set_mode(ProxyMode::Forward);
        let last = written.last().unwrap().1;
        seen.extend(read_through(&mut w, last).await);
        assert_eq!(seen, written, "round {round}: once, in order, no gap");
    }
    // Nothing was queued twice: the next event is the next write.
    let last = put_at(&direct, format!("{prefix}last"), "v").await;
    assert_eq!(read_through(&mut w, last.1).await, [last]);
    assert!(t.proxy(0).total_cut() >= 3);
}

/// A write whose connection is cut while it is in flight is reported as an error that says
/// the request may have been sent, and is never sent again; a read in the same situation is
/// retried and succeeds; under random cuts every put reported as done was applied once and
/// none reported as not sent was applied.
pub async fn writes_at_most_once_across_cuts(c: &impl Etcd, t: &Target) {
    let direct = c.on_endpoint(&t.direct).unwrap();
    let key = t.key("k");
    c.get(Get::new(&key))
        .await
        .expect("a connection through the proxy");

    // The proxy holds the put's bytes, then cuts the connection (dropping them) and forwards
    // again: the put was never applied, so success could only come from sending it again.
    t.proxy(0).set_mode(ProxyMode::Stall);
    let cutter = t.cut_after(Duration::from_millis(300), ProxyMode::Forward);
    let put = c.put(Put::new(&key, "held")).await;
    assert!(cutter.join().unwrap() > 0, "the put's connection was cut");
    match put {
        Err(
            ref e @ (Error::Transport {
                request_sent: true, ..
            }
            | Error::DeadlineExceeded { request_sent: true }),
        ) => assert!(e.outcome_unknown()),
        other => panic!("expected an error saying the put may have been sent, got {other:?}"),
    }
    assert_eq!(
        direct.get(Get::new(&key)).await.unwrap().count,
        0,
        "the cut put was not sent again"
    );

    // A read held and cut the same way is retried on a new connection.
    t.proxy(0).set_mode(ProxyMode::Stall);
    let cutter = t.cut_after(Duration::from_millis(300), ProxyMode::Forward);
    let read = c.get(Get::new(&key)).await;
    assert!(cutter.join().unwrap() > 0, "the read's connection was cut");
    assert_eq!(read.expect("the read was retried after the cut").count, 0);

    // Puts of one key while the proxy cuts at random: the key's version counts the puts the
    // server applied.
    t.proxy(0)
        .cut_randomly(Duration::from_millis(5), Duration::from_millis(30), 11);
    let (mut ok, mut unknown, mut not_sent) = (0i64, 0i64, 0i64);
    let mut i = 0;
    while i < 40 || (t.proxy(0).total_cut() < 5 && i < 1000) {
        match c.put(Put::new(&key, i.to_string())).await {
            Ok(_) => ok += 1,
            Err(e) if e.outcome_unknown() => unknown += 1,
            Err(e) => {
                assert!(e.is_retryable(), "unexpected error {e:?}");
                not_sent += 1;
            }
        }
        i += 1;
    }
    t.proxy(0).stop_cutting();
    let applied = direct.get(Get::new(&key)).await.unwrap().kvs[0].version;
    println!(
        "{i} puts, {} cuts: {ok} ok, {unknown} unknown, {not_sent} not sent; version {applied}",
        t.proxy(0).total_cut()
    );
    assert!(
        ok <= applied && applied <= ok + unknown,
        "{ok} ok, {unknown} unknown, {not_sent} not sent: version {applied}"
    );
    assert!(t.proxy(0).total_cut() >= 5);
    // After the cuts, calls go through again.
    c.get(Get::new(&key)).await.unwrap();
}

/// A kept-alive lease survives connection cuts: the keeper reconnects and renews, so the
/// lease outlives its TTL several times over.
pub async fn lease_keepalive_through_cuts(c: &impl Etcd, t: &Target) {
    let direct = c.on_endpoint(&t.direct).unwrap();
    let granted = c.lease_grant(2).await.unwrap();
    let mut keeper = c.keep_alive((&granted).into()).await.unwrap();
    keeper.next().await.expect("a renewal").unwrap();
    let first_cut = Instant::now();
    for round in 1..=3u32 {
        assert!(t.cut() > 0, "the keepalive stream goes through the proxy");
        let mut renewals = 0;
        // Renewals come every TTL/3; read them until the next cut is due.
        while renewals == 0 || first_cut.elapsed() < Duration::from_millis(1200) * round {
            let renewal = keeper
                .next()
                .await
                .expect("a renewal after the cut")
                .unwrap();
            assert!(renewal.ttl > 0, "{renewal:?}");
            renewals += 1;
        }
    }
    // The first cut is more than a TTL ago: without renewals since, the lease would be gone.
    assert!(first_cut.elapsed() > Duration::from_secs(3));
    let ttl = direct
        .lease_time_to_live(granted.id, false)
        .await
        .unwrap()
        .ttl;
    assert!(ttl > 0, "the lease is alive (ttl {ttl})");
    direct.lease_revoke(granted.id).await.unwrap();
}

/// A paused (SIGSTOP) and then a killed server: calls end with a typed error within their
/// deadline instead of hanging, a write says whether it may have been sent, and a kept-alive
/// lease ends with `LeaseLost { Expired }` once its TTL passed unconfirmed.
pub async fn calls_to_a_stopped_server(c: &impl Etcd, t: &Target) {
    let key = t.key("k");
    put(c, key.clone(), "v").await;
    let mut short = CallOptions::default();
    short.timeout = Some(Duration::from_secs(1));
    let within_deadline = |started: Instant| {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
    };

    // Paused: the connection stays up and nothing answers.
    t.server().pause().unwrap();
    let started = Instant::now();
    let read = c.call_with(Get::new(&key), short.clone()).await;
    within_deadline(started);
    assert!(
        matches!(read, Err(Error::DeadlineExceeded { .. })),
        "{read:?}"
    );
    let started = Instant::now();
    let write = c.call_with(Put::new(&key, "w"), short.clone()).await;
    within_deadline(started);
    assert!(
        matches!(write, Err(Error::DeadlineExceeded { request_sent: true })),
        "the put went out on the open connection: {write:?}"
    );
    t.server().resume().unwrap();
    assert_eq!(c.get(Get::new(&key)).await.unwrap().count, 1);

    // Killed: connections are refused.
    let granted = c.lease_grant(2).await.unwrap();
    let mut keeper = c.keep_alive((&granted).into()).await.unwrap();
    keeper.next().await.expect("a renewal").unwrap();
    t.server().kill().unwrap();
    let started = Instant::now();
    match c.call_with(Get::new(&key), short.clone()).await {
        Err(Error::DeadlineExceeded { .. } | Error::Transport { .. }) => {}
        other => panic!("expected a deadline or transport error, got {other:?}"),
    }
    within_deadline(started);
    let started = Instant::now();
    match c.call_with(Put::new(&key, "x"), short.clone()).await {
        Err(e @ (Error::DeadlineExceeded { .. } | Error::Transport { .. })) => {
            assert!(!e.outcome_unknown(), "no server to send it to: {e:?}")
        }
        other => panic!("expected a deadline or transport error, got {other:?}"),
    }
    within_deadline(started);
    // The keeper ends, saying why, about a TTL after the last confirmed renewal.
    let started = Instant::now();
    loop {
        match keeper.next().await.expect("the keeper ends with an error") {
            Ok(renewal) => assert_eq!(renewal.lease, granted.id),
            Err(e) => {
                assert_eq!(
                    e,
                    Error::LeaseLost {
                        lease: granted.id,
                        reason: LeaseLostReason::Expired
                    }
                );
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "lease loss told after {took:?}"
    );
}

/// Failover between two endpoints (two proxies to the same server): while one refuses
/// connections every call succeeds through the other, writes included, and each write is
/// applied at most once; with both down calls fail within their deadline, without having
/// sent anything; once they are back calls succeed again.
pub async fn failover_between_endpoints(c: &impl Etcd, t: &Target) {
    let direct = c.on_endpoint(&t.direct).unwrap();
    let key = t.key("k");
    let (mut ok, mut unknown) = (0i64, 0i64);
    for down in [0, 1] {
        let (failed, up) = (t.proxy(down), t.proxy(1 - down));
        up.set_mode(ProxyMode::Forward);
        failed.set_mode(ProxyMode::Refuse);
        failed.cut_all();
        for i in 0..10 {
            c.get(Get::new(&key))
                .await
                .expect("a read through the other endpoint");
            match c.put(Put::new(&key, format!("{down}-{i}"))).await {
                Ok(_) => ok += 1,
                // The put that met the cut connection.
                Err(e) if e.outcome_unknown() => unknown += 1,
                Err(e) => panic!("a put through the other endpoint failed: {e:?}"),
            }
        }
        assert!(
            up.connections() > 0,
            "calls went through endpoint {}",
            1 - down
        );
    }
    let applied = direct.get(Get::new(&key)).await.unwrap().kvs[0].version;
    assert!(
        ok <= applied && applied <= ok + unknown && unknown <= 2,
        "{ok} ok, {unknown} unknown: version {applied}"
    );

    // Both down.
    t.proxy(0).set_mode(ProxyMode::Refuse);
    t.cut();
    let mut short = CallOptions::default();
    short.timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let read = c.call_with(Get::new(&key), short.clone()).await;
    assert!(
        matches!(
            read,
            Err(Error::DeadlineExceeded { .. } | Error::Transport { .. })
        ),
        "{read:?}"
    );
    let write = c.call_with(Put::new(&key, "none"), short).await;
    match write {
        Err(e @ (Error::DeadlineExceeded { .. } | Error::Transport { .. })) => {
            assert!(!e.outcome_unknown(), "nothing could be sent: {e:?}")
        }
        other => panic!("expected a deadline or transport error, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(
        direct.get(Get::new(&key)).await.unwrap().kvs[0].version,
        applied
    );

    // Both back.
    t.proxy(0).set_mode(ProxyMode::Forward);
    t.proxy(1).set_mode(ProxyMode::Forward);
    c.put(Put::new(&key, "back"))
        .await
        .expect("a put once the endpoints are back");
    assert_eq!(
        &direct.get(Get::new(&key)).await.unwrap().kvs[0].value[..],
        b"back"
    );
}
