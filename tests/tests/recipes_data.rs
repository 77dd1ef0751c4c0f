//! The data recipes of the runtime-agnostic layer against real servers (3.4.23 and 3.5.1):
//! namespaces, clientv3util compares, mirroring, revision ordering, the endpoint manager, the
//! leasing cache, and client configuration from YAML files and `ETCDCTL_*` variables.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use etcd_driver::config_file;
use etcd_driver::leasing::{LeasingKv, LeasingOptions};
use etcd_driver::mirror::Syncer;
use etcd_driver::namespace::NamespacedWatch;
use etcd_driver::naming::{
    EndpointChange, EndpointInfo, EndpointManager, EndpointUpdate, EndpointWatcher, Operation,
};
use etcd_driver::ordering::{OrderedKv, OrderingError, ViolationPolicy};
use etcd_driver::util::{key_exists, key_missing};
use etcd_tests::{EtcdServer, EtcdVersion, ProxyMode, TcpProxy, TestCerts};
use etcd_tokio::proto::etcdserverpb::{response_op::Response, RangeResponse};
use etcd_tokio::proto::mvccpb::event::EventType;
use etcd_tokio::{
    Client, Compare, CompareOp, Config, Delete, EtcdErrorKind, Get, Put, TlsConfig, Txn, TxnOp,
};

const WAIT: Duration = Duration::from_secs(10);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn value(resp: &RangeResponse) -> String {
    String::from_utf8_lossy(&resp.kvs.first().expect("a key").value).into_owned()
}

per_version!(namespace_kv_and_nested_txn, |version| {
    let (c, p) = shared_client(version, "ns_kv");
    let c = c.with_timeout(CALL_TIMEOUT);
    let ns = c.namespaced(format!("{p}app/"));
    ns.put(("a", "1")).await.unwrap();
    ns.put(Put::new("b", "2")).await.unwrap();
    ns.put(("dir/x", "3")).await.unwrap();
    // Neighbours just outside the namespace, on both sides.
    c.put((format!("{p}app"), "before")).await.unwrap();
    c.put((format!("{p}app0"), "after")).await.unwrap();

    // Visible raw under the prefix, and back without it.
    let raw = c.get(format!("{p}app/a")).await.unwrap();
    assert_eq!(value(&raw), "1");
    let got = ns.get("a").await.unwrap();
    assert_eq!(keys(&got), ["a"]);
    assert_eq!(value(&got), "1");

    // Ranges stay inside: the whole namespace, from-key up to its end, prefix, [a, c).
    let all = ns.get(Get::new("").prefix()).await.unwrap();
    assert_eq!(keys(&all), ["a", "b", "dir/x"]);
    let from = ns.get(Get::new("b").from_key()).await.unwrap();
    assert_eq!(keys(&from), ["b", "dir/x"]);
    let everything = ns.get(Get::new("").from_key()).await.unwrap();
    assert_eq!(everything.count, 3);
    let dir = ns.get(Get::new("dir/").prefix()).await.unwrap();
    assert_eq!(keys(&dir), ["dir/x"]);
    let ab = ns.get(Get::new("a").range_end("c")).await.unwrap();
    assert_eq!(keys(&ab), ["a", "b"]);

    // Previous key-values come back stripped.
    let put = ns.put(Put::new("a", "1b").prev_kv()).await.unwrap();
    assert_eq!(&put.prev_kv.unwrap().key[..], b"a");
    let deleted = ns
        .delete(Delete::new("dir/").prefix().prev_kv())
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(&deleted.prev_kvs[0].key[..], b"dir/x");

    // Empty keys are refused before anything is sent, with the server's own error.
    let err = ns.get("").await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey), "{err:?}");
    let err = ns.put(("", "v")).await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey), "{err:?}");

    // A nested transaction: compares and ops of both levels are namespaced, responses
    // stripped.
    let txn = Txn::new()
        .when([
            Compare::value("a", CompareOp::Equal, "1b"),
            key_exists("b"),
            key_missing("c"),
        ])
        .and_then([
            TxnOp::from(Put::new("c", "3")),
            TxnOp::from(
                Txn::new()
                    .when([key_missing("zz")])
                    .and_then([Get::new("").prefix()]),
            ),
        ])
        .or_else([Get::new("a")]);
    let resp = ns.txn(txn).await.unwrap();
    assert!(resp.succeeded);
    let Some(Response::ResponseTxn(inner)) = &resp.responses[1].response else {
        panic!("a nested txn response: {resp:?}")
    };
    assert!(inner.succeeded);
    let Some(Response::ResponseRange(range)) = &inner.responses[0].response else {
        panic!("a range response: {inner:?}")
    };
    assert_eq!(keys(range), ["a", "b", "c"]);
    assert_eq!(value(&c.get(format!("{p}app/c")).await.unwrap()), "3");
    // The failure branch: `c` exists now.
    let resp = ns
        .txn(Txn::new().when([key_missing("c")]).or_else([Get::new("c")]))
        .await
        .unwrap();
    assert!(!resp.succeeded);
    let Some(Response::ResponseRange(range)) = &resp.responses[0].response else {
        panic!("a range response")
    };
    assert_eq!(keys(range), ["c"]);
    // The neighbours were never touched.
    assert_eq!(value(&c.get(format!("{p}app0")).await.unwrap()), "after");
    assert_eq!(value(&c.get(format!("{p}app")).await.unwrap()), "before");
});

per_version!(namespace_watch_lease_lock_and_election, |version| {
    let (c, p) = shared_client(version, "ns_services");
    let c = c.with_timeout(CALL_TIMEOUT);
    let ns = c.namespaced(format!("{p}ns/"));

    // Watch: only the namespace's events, keys (and previous keys) stripped.
    let mut w = ns
        .watch(NamespacedWatch::new("").prefix().prev_kv())
        .await
        .unwrap();
    c.put((format!("{p}outside"), "x")).await.unwrap();
    ns.put(("k", "1")).await.unwrap();
    ns.put(("k", "2")).await.unwrap();
    ns.delete("k").await.unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        let resp = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("in time")
            .expect("running")
            .expect("no error");
        events.extend(resp.events);
    }
    let seen: Vec<(String, i32)> = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (String::from_utf8_lossy(&kv.key).into_owned(), e.r#type)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("k".to_string(), EventType::Put as i32),
            ("k".to_string(), EventType::Put as i32),
            ("k".to_string(), EventType::Delete as i32),
        ]
    );
    let prev = events[1].prev_kv.as_ref().expect("prev kv");
    assert_eq!((&prev.key[..], &prev.value[..]), (&b"k"[..], &b"1"[..]));
    // A single-key watch of the namespace.
    let mut single = ns.watch("only").await.unwrap();
    ns.put(("other", "x")).await.unwrap();
    ns.put(("only", "y")).await.unwrap();
    let resp = tokio::time::timeout(WAIT, single.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&resp.events[0].kv.as_ref().unwrap().key[..], b"only");

    // Lease time-to-live lists only the namespace's keys, stripped.
    let lease = c.lease_grant(60).await.unwrap().id;
    ns.put(Put::new("leased", "v").lease(lease)).await.unwrap();
    c.put(Put::new(format!("{p}raw-leased"), "v").lease(lease))
        .await
        .unwrap();
    let ttl = ns.lease_time_to_live(lease, true).await.unwrap();
    assert_eq!(ttl.keys, [Bytes::from_static(b"leased")]);
    assert_eq!(
        c.lease_time_to_live(lease, true).await.unwrap().keys.len(),
        2
    );

    // Lock: the lock key lives under the prefix and comes back stripped.
    let locked = ns.lock("mylock", lease).await.unwrap();
    assert!(locked.key.starts_with(b"mylock/"), "{:?}", locked.key);
    let raw_lock = format!("{p}ns/{}", String::from_utf8_lossy(&locked.key));
    assert_eq!(c.get(raw_lock.as_str()).await.unwrap().count, 1);
    ns.unlock(locked.key.clone()).await.unwrap();
    assert_eq!(c.get(raw_lock.as_str()).await.unwrap().count, 0);

    // Election: name and leader key under the prefix, stripped on the way back.
    let campaign = ns.campaign("elect", lease, "alpha").await.unwrap();
    let leader = campaign.leader.expect("leader key");
    assert_eq!(&leader.name[..], b"elect");
    assert!(leader.key.starts_with(b"elect/"), "{:?}", leader.key);
    let raw_leader = format!("{p}ns/{}", String::from_utf8_lossy(&leader.key));
    assert_eq!(value(&c.get(raw_leader.as_str()).await.unwrap()), "alpha");
    let current = ns.leader("elect").await.unwrap().kv.expect("a leader");
    assert_eq!(current.key, leader.key);
    assert_eq!(&current.value[..], b"alpha");
    let mut observe = ns.observe("elect").await.unwrap();
    let first = tokio::time::timeout(WAIT, observe.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.kv.unwrap().key, leader.key);
    ns.proclaim(leader.clone(), "beta").await.unwrap();
    let proclaimed = tokio::time::timeout(WAIT, observe.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .kv
        .unwrap();
    assert_eq!(
        (proclaimed.key, &proclaimed.value[..]),
        (leader.key.clone(), &b"beta"[..])
    );
    ns.resign(leader).await.unwrap();
    let err = ns.leader("elect").await.unwrap_err();
    assert_eq!(
        err.etcd_kind(),
        Some(EtcdErrorKind::ElectionNoLeader),
        "{err:?}"
    );
    c.lease_revoke(lease).await.unwrap();
});

per_version!(mirror_copies_2000_keys_in_pages_then_follows, |version| {
    let (c, p) = shared_client(version, "mirror");
    let c = c.with_timeout(CALL_TIMEOUT);
    let base = format!("{p}m/");
    for chunk in 0..20 {
        let puts: Vec<Put> = (0..100)
            .map(|i| Put::new(format!("{base}{:05}", chunk * 100 + i), "v"))
            .collect();
        c.txn(Txn::new().and_then(puts)).await.unwrap();
    }
    c.put((format!("{p}m0-outside"), "x")).await.unwrap();
    let mut syncer = Syncer::new(c.clone(), base.clone(), 0);
    let mut pages = syncer.sync_base().await.unwrap();
    let revision = syncer.revision();
    assert!(revision > 0);
    // Written after the base revision was fixed: not in the base, seen by the updates.
    c.put((format!("{base}late"), "x")).await.unwrap();
    let mut sizes = Vec::new();
    let mut copied = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        sizes.push(page.kvs.len());
        copied.extend(keys(&page));
        assert!(page.kvs.iter().all(|kv| kv.mod_revision <= revision));
    }
    assert_eq!(sizes, [1000, 1000], "two full pages");
    let expected: Vec<String> = (0..2000).map(|i| format!("{base}{i:05}")).collect();
    assert_eq!(copied, expected, "every key once, in key order");

    let mut updates = syncer.sync_updates().await.unwrap();
    c.put((format!("{base}after"), "y")).await.unwrap();
    c.delete(format!("{base}00000")).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(WAIT, updates.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for e in resp.events {
            let kv = e.kv.unwrap();
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            seen.push((key.strip_prefix(&base).unwrap().to_string(), e.r#type));
        }
    }
    assert_eq!(
        seen,
        [
            ("late".to_string(), EventType::Put as i32),
            ("after".to_string(), EventType::Put as i32),
            ("00000".to_string(), EventType::Delete as i32),
        ]
    );
    // Updates before the base are a typed error, not a panic.
    assert!(Syncer::new(c.clone(), base, 0)
        .sync_updates()
        .await
        .is_err());
});

/// A 3-member cluster whose member 2 can be kept behind: the others reach its peer port only
/// through a proxy. Raft messages to it travel on streams it dials itself, but a snapshot is
/// always sent to its advertised peer URL; with the proxy refusing, a member that fell more
/// than etcd's 5000 catch-up entries behind (snapshots every 100 entries compact the log)
/// can never catch up, yet keeps serving serializable reads from its old copy.
struct LaggableCluster {
    members: Vec<EtcdServer>,
    proxy: TcpProxy,
}

fn laggable_cluster(version: EtcdVersion) -> LaggableCluster {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| (etcd_tests::free_port(), etcd_tests::free_port()))
        .collect();
    let proxy = TcpProxy::start(("127.0.0.1", ports[2].1)).expect("proxy");
    let peer_url = |i: usize| {
        if i == 2 {
            proxy.url()
        } else {
            format!("http://127.0.0.1:{}", ports[i].1)
        }
    };
    let initial = (0..3)
        .map(|i| format!("m{i}={}", peer_url(i)))
        .collect::<Vec<_>>()
        .join(",");
    let token = etcd_tests::unique_prefix("ordering").replace('/', "-");
    let members: Vec<EtcdServer> = (0..3)
        .map(|i| {
            let mut b = EtcdServer::builder(version)
                .name(format!("m{i}"))
                .client_port(ports[i].0)
                .peer_port(ports[i].1)
                .initial_cluster(initial.clone())
                .cluster_token(token.clone())
                .flag("--snapshot-count", "100");
            if i == 2 {
                b = b.flag("--initial-advertise-peer-urls", proxy.url());
            }
            b.start_no_wait().expect("member start")
        })
        .collect();
    for m in &members {
        m.wait_healthy(Duration::from_secs(30))
            .expect("healthy member");
    }
    LaggableCluster { members, proxy }
}

/// More raft entries than etcd keeps for slow followers (5000).
const CATCH_UP_ENTRIES_EXCEEDED: usize = 5600;

per_version!(
    ordering_reports_a_stale_read_from_a_lagging_member,
    |version| {
        let cluster = blocking(move || laggable_cluster(version)).await;
        let urls: Vec<String> = cluster.members.iter().map(EtcdServer::client_url).collect();
        let mut config = Config::from_endpoints([&urls[2], &urls[0], &urls[1]]).unwrap();
        config.default_timeout = Some(CALL_TIMEOUT);
        let client = Client::with_config(config).unwrap();
        // The member to hold back must not lead.
        let mut statuses = Vec::new();
        for url in &urls {
            statuses.push(client.on_endpoint(url).unwrap().status().await.unwrap());
        }
        let m2 = statuses[2].header.as_ref().unwrap().member_id;
        if statuses[2].leader == m2 {
            let m0 = statuses[0].header.as_ref().unwrap().member_id;
            client
                .on_endpoint(&urls[2])
                .unwrap()
                .move_leader(m0)
                .await
                .unwrap();
        }

        let kv = OrderedKv::new(client.inner().clone());
        kv.put(("k", "v1")).await.unwrap();
        let m2_client = client.on_endpoint(&urls[2]).unwrap();
        for _ in 0..100 {
            let r = m2_client.get(Get::new("k").serializable()).await.unwrap();
            if r.count == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Member 2 misses everything from here on.
        cluster.members[2].pause().unwrap();
        let writer = client.on_endpoint(&urls[0]).unwrap();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..CATCH_UP_ENTRIES_EXCEEDED).step_by(32) {
                    writer.put((format!("filler/{i}"), "x")).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let on_m0 = kv.on_endpoint(&urls[0]).unwrap();
        on_m0.put(("k", "v2")).await.unwrap();
        on_m0.get("k").await.unwrap();
        cluster.proxy.set_mode(ProxyMode::Refuse);
        cluster.proxy.cut_all();
        cluster.members[2].resume().unwrap();
        let fresh = kv.previous_revision();
        let stale = m2_client.get(Get::new("k").serializable()).await.unwrap();
        let stale_rev = stale.header.unwrap().revision;
        assert!(stale_rev < fresh, "member 2 lags: {stale_rev} < {fresh}");
        assert_eq!(value(&stale), "v1", "member 2 serves its old copy");

        // Through the ordering view the stale answer is detected and the read goes elsewhere.
        let got = kv
            .on_endpoint(&urls[2])
            .unwrap()
            .get(Get::new("k").serializable())
            .await
            .unwrap();
        assert_eq!(value(&got), "v2");
        assert!(got.header.unwrap().revision >= fresh);
        assert!(kv.violations() >= 1);

        // The Fail policy reports the first violation.
        let strict = OrderedKv::with_policy(client.inner().clone(), ViolationPolicy::Fail);
        strict.put(("k2", "x")).await.unwrap();
        let err = strict
            .on_endpoint(&urls[2])
            .unwrap()
            .get(Get::new("k").serializable())
            .await
            .unwrap_err();
        assert!(
            matches!(err, OrderingError::NoGreaterRevision { .. }),
            "{err}"
        );

        // With only the lagging member left, no endpoint has a newer revision.
        client.set_endpoints([&urls[2]]).await.unwrap();
        let err = kv.get(Get::new("k").serializable()).await.unwrap_err();
        match err {
            OrderingError::NoGreaterRevision { previous, received } => {
                assert!(
                    previous >= fresh && received < fresh,
                    "{previous} {received}"
                );
            }
            other => panic!("expected NoGreaterRevision, got {other}"),
        }
        // Still lagging at the end: the stale answers were not a race.
        let still = m2_client.get(Get::new("k").serializable()).await.unwrap();
        assert_eq!(value(&still), "v1");
        drop(cluster);
    }
);

async fn next_batch(w: &mut EndpointWatcher) -> Vec<EndpointUpdate> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("in time")
        .expect("running")
        .expect("no error")
}

per_version!(
    endpoint_manager_watch_sees_one_batch_per_update,
    |version| {
        let (c, p) = shared_client(version, "naming");
        let c = c.with_timeout(CALL_TIMEOUT);
        let target = format!("{p}svc");
        let manager = EndpointManager::new(c.clone(), target.clone()).unwrap();
        let key = |name: &str| format!("{target}/{name}");
        manager
            .add_endpoint(key("a"), EndpointInfo::new("10.0.0.1:80"))
            .await
            .unwrap();
        // Go's JSON, readable by Go's manager.
        let raw = c.get(key("a")).await.unwrap();
        assert_eq!(
            value(&raw),
            r#"{"Op":0,"Addr":"10.0.0.1:80","Metadata":null}"#
        );

        let mut w = manager.watch().await.unwrap();
        let initial = next_batch(&mut w).await;
        assert_eq!(initial.len(), 1);
        assert_eq!(
            (initial[0].op, initial[0].key.as_str()),
            (Operation::Add, key("a").as_str())
        );
        assert_eq!(initial[0].endpoint.addr, "10.0.0.1:80");

        let meta = etcd_driver::naming::serde_json::json!({"zone": "z1", "weight": 3});
        manager
            .update([
                EndpointChange::delete(key("a")),
                EndpointChange::add(key("b"), EndpointInfo::new("10.0.0.2:80")),
                EndpointChange::add(
                    key("c"),
                    EndpointInfo::new("10.0.0.3:80").metadata(meta.clone()),
                ),
            ])
            .await
            .unwrap();
        manager
            .add_endpoint(key("d"), EndpointInfo::new("10.0.0.4:80"))
            .await
            .unwrap();
        manager.delete_endpoint(key("b")).await.unwrap();
        let batch = next_batch(&mut w).await;
        let summary: Vec<(Operation, String)> =
            batch.iter().map(|u| (u.op, u.key.clone())).collect();
        assert_eq!(
            summary,
            [
                (Operation::Delete, key("a")),
                (Operation::Add, key("b")),
                (Operation::Add, key("c")),
            ],
            "the atomic update is one batch"
        );
        assert_eq!(batch[2].endpoint.metadata, meta);
        let batch = next_batch(&mut w).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(
            (batch[0].op, batch[0].key.clone()),
            (Operation::Add, key("d"))
        );
        let batch = next_batch(&mut w).await;
        assert_eq!((batch.len(), batch[0].op), (1, Operation::Delete));

        let listed = manager.list().await.unwrap();
        let listed_keys: Vec<&String> = listed.keys().collect();
        assert_eq!(listed_keys, [&key("c"), &key("d")]);
        assert_eq!(listed[&key("c")].metadata, meta);
        // Keys outside the target are refused before anything is written.
        assert!(manager
            .add_endpoint(format!("{p}elsewhere"), EndpointInfo::new("x:1"))
            .await
            .is_err());
        // An endpoint attached to a lease goes with it.
        let lease = c.lease_grant(60).await.unwrap().id;
        manager
            .add_endpoint_with_lease(key("e"), EndpointInfo::new("10.0.0.5:80"), lease)
            .await
            .unwrap();
        assert_eq!(next_batch(&mut w).await[0].op, Operation::Add);
        c.lease_revoke(lease).await.unwrap();
        let gone = next_batch(&mut w).await;
        assert_eq!(
            (gone[0].op, gone[0].key.clone()),
            (Operation::Delete, key("e"))
        );
    }
);

fn leasing(client: &Client, prefix: &str, options: LeasingOptions) -> LeasingKv {
    LeasingKv::with_options(
        etcd_tokio::Tokio::current().unwrap(),
        client.inner().clone(),
        prefix,
        options,
    )
    .unwrap()
}

per_version!(
    leasing_serves_owned_keys_locally_and_never_stale,
    |version| {
        let server = blocking(move || EtcdServer::start(version)).await.unwrap();
        let raw = client_for(&server, |_| {});
        let other_client = client_for(&server, |_| {});
        let options = LeasingOptions::default().revoke_backoff(Duration::from_millis(300));
        let a = leasing(&raw, "lease/", options.clone());
        let b = leasing(&other_client, "lease/", options);
        raw.put(("k", "v1")).await.unwrap();

        // The first read acquires the key; the next ones are answered locally.
        assert_eq!(value(&a.get("k").await.unwrap()), "v1");
        let after_first = a.stats();
        assert_eq!((after_first.server_reads, after_first.acquired), (1, 1));
        assert!(a.is_cached(b"k"));
        let owner = raw.get("lease/k").await.unwrap();
        assert_eq!(owner.count, 1, "the ownership key exists");
        assert_ne!(owner.kvs[0].lease, 0, "attached to the session lease");
        for _ in 0..5 {
            assert_eq!(value(&a.get("k").await.unwrap()), "v1");
        }
        let local = a.stats();
        assert_eq!(local.cache_hits, 5);
        assert_eq!(local.server_reads, 1, "no request for cached reads");
        // Read options are honoured locally.
        let keys_only = a.get(Get::new("k").keys_only()).await.unwrap();
        assert!(keys_only.kvs[0].value.is_empty());
        assert_eq!(a.get(Get::new("k").count_only()).await.unwrap().count, 1);
        // Proof that no request is made: with the server frozen, a cached read still answers.
        {
            let s = &server;
            s.pause().unwrap();
            let frozen = tokio::time::timeout(Duration::from_secs(1), a.get("k")).await;
            s.resume().unwrap();
            assert_eq!(
                value(
                    &frozen
                        .expect("answered while the server is frozen")
                        .unwrap()
                ),
                "v1"
            );
        }

        // Another client's write revokes the ownership first; the value is written exactly once.
        let version_before = raw.get("k").await.unwrap().kvs[0].version;
        tokio::time::timeout(WAIT, b.put(("k", "v2")))
            .await
            .expect("the owner gives the key up in time")
            .unwrap();
        assert_eq!(
            raw.get("k").await.unwrap().kvs[0].version,
            version_before + 1
        );
        assert_eq!(b.stats().revokes_sent, 1);
        assert_eq!(a.stats().revokes_served, 1);
        assert!(!a.is_cached(b"k"));
        assert_eq!(raw.get("lease/k").await.unwrap().count, 0);
        assert_eq!(
            value(&a.get("k").await.unwrap()),
            "v2",
            "never the old value"
        );

        // Again and again: the owner re-acquires after the back-off, the writer revokes it.
        for round in 0..5 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            a.get("k").await.unwrap();
            assert!(a.is_cached(b"k"), "round {round}: re-acquired");
            let want = format!("r{round}");
            tokio::time::timeout(WAIT, b.put(("k", want.as_str())))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(value(&a.get("k").await.unwrap()), want, "round {round}");
        }
        assert_eq!(a.stats().revokes_served, 6);

        // A write nobody owns is applied once, without revocations.
        let sent = b.stats().revokes_sent;
        let put = b.put(Put::new("fresh", "1").prev_kv()).await.unwrap();
        assert!(put.prev_kv.is_none());
        assert_eq!(raw.get("fresh").await.unwrap().kvs[0].version, 1);
        assert_eq!(b.stats().revokes_sent, sent);

        // The owner's own writes keep its cache right.
        a.get("mine").await.unwrap();
        assert!(a.is_cached(b"mine"));
        a.put(("mine", "m1")).await.unwrap();
        let hits = a.stats().cache_hits;
        assert_eq!(value(&a.get("mine").await.unwrap()), "m1");
        assert_eq!(
            a.stats().cache_hits,
            hits + 1,
            "served locally after the own write"
        );
        a.delete("mine").await.unwrap();
        assert_eq!(a.get("mine").await.unwrap().count, 0);

        // A range delete by another client revokes every owned key in the range.
        a.put(("d/1", "x")).await.unwrap();
        a.get("d/1").await.unwrap();
        assert!(a.is_cached(b"d/1"));
        let deleted = tokio::time::timeout(WAIT, b.delete(Delete::new("d/").prefix()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.deleted, 1);
        assert_eq!(a.get("d/1").await.unwrap().count, 0);

        // A transaction through the protocol.
        a.get("t").await.unwrap();
        let resp = tokio::time::timeout(
            WAIT,
            b.txn(
                Txn::new()
                    .when([key_missing("t")])
                    .and_then([Put::new("t", "from-b")]),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(resp.succeeded);
        assert_eq!(value(&a.get("t").await.unwrap()), "from-b");

        // Concurrently: every read that starts after a write was acknowledged sees that write
        // (or a later one), whether it was answered locally or not.
        let writer = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 1..=40u32 {
                    b.put(("race", i.to_string())).await.unwrap();
                    acked.push((std::time::Instant::now(), i));
                    if i % 8 == 0 {
                        tokio::time::sleep(Duration::from_millis(350)).await;
                    }
                }
                acked
            })
        };
        let mut reads = Vec::new();
        while !writer.is_finished() {
            let started = std::time::Instant::now();
            let r = a.get("race").await.unwrap();
            let seen: u32 = r
                .kvs
                .first()
                .map_or(0, |kv| String::from_utf8_lossy(&kv.value).parse().unwrap());
            reads.push((started, seen));
        }
        let acked = writer.await.unwrap();
        for (started, seen) in &reads {
            let newest_acked = acked
                .iter()
                .filter(|(at, _)| at < started)
                .map(|(_, v)| *v)
                .max()
                .unwrap_or(0);
            assert!(
                *seen >= newest_acked,
                "a read saw {seen} after {newest_acked} was acknowledged"
            );
        }
        assert!(reads.len() > 40, "{} reads", reads.len());
        assert!(a.stats().cache_hits > hits, "some reads were local");

        // Closing gives every ownership up at once.
        a.get("k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        a.get("k").await.unwrap();
        a.close().await.unwrap();
        assert_eq!(
            raw.get(Get::new("lease/").prefix()).await.unwrap().count,
            0,
            "no ownership key left"
        );
    }
);

const ROOT_PASSWORD: &str = "yaml-Pa55";

per_version!(yaml_config_with_tls_files_and_credentials, |version| {
    let (server, certs) = blocking(move || {
        let certs = TestCerts::generate_temp().expect("certs");
        let server = EtcdServer::builder(version)
            .tls(&certs, true)
            .start()
            .expect("etcd with TLS");
        (server, certs)
    })
    .await;
    let app = certs.issue_client("app").unwrap();
    // Auth on, through an admin client authenticated by its certificate (CN root).
    let admin = client_for(&server, |c| {
        c.tls = Some(
            TlsConfig::with_ca_pem(certs.ca().cert_pem())
                .identity(certs.client().cert_pem(), certs.client().key_pem()),
        );
    });
    admin.user_add("root", ROOT_PASSWORD).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let url = server.client_url();
    let port = server.client_port();
    let yaml = |credentials: bool| {
        let mut text = format!(
            "# written by the test\n\
             endpoints:\n  - {url}\n\
             dial-timeout: 3s\n\
             dial-keep-alive-time: 10s\n\
             dial-keep-alive-timeout: 3000000000\n\
             max-call-send-msg-size: 2097152\n\
             max-unary-retries: 5\n\
             backoff-wait-between: 50ms\n\
             backoff-jitter-fraction: 0.2\n\
             reject-old-cluster: true\n\
             trusted-ca-file: {}\n\
             cert-file: {}\n\
             key-file: {}\n",
            certs.ca_path().display(),
            app.cert_path().display(),
            app.key_path().display(),
        );
        if credentials {
            text.push_str(&format!("username: root\npassword: \"{ROOT_PASSWORD}\"\n"));
        }
        let path = certs
            .dir()
            .join(format!("client-{credentials}-{}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    };
    let with_deadline = |mut config: Config| {
        config.default_timeout = Some(CALL_TIMEOUT);
        Client::with_config(config).unwrap()
    };

    let loaded = config_file::from_yaml_file(yaml(true)).unwrap();
    assert!(loaded.reject_old_cluster);
    assert_eq!(loaded.config.connect_timeout, Duration::from_secs(3));
    assert_eq!(loaded.config.keepalive_timeout, Duration::from_secs(3));
    assert_eq!(loaded.config.max_attempts, 5);
    let client = with_deadline(loaded.config);
    config_file::check_cluster_version(client.inner())
        .await
        .unwrap();
    client.put(("yaml", "works")).await.unwrap();
    assert_eq!(value(&client.get("yaml").await.unwrap()), "works");

    // Without the credentials the certificate's CN (`app`) is no user: refused.
    let anonymous = with_deadline(config_file::from_yaml_file(yaml(false)).unwrap().config);
    assert!(anonymous.get("yaml").await.is_err());

    // The same through ETCDCTL_* variables; a bare endpoint uses TLS since a CA is given.
    let env = [
        ("ETCDCTL_ENDPOINTS", format!("127.0.0.1:{port}")),
        ("ETCDCTL_CACERT", certs.ca_path().display().to_string()),
        ("ETCDCTL_CERT", app.cert_path().display().to_string()),
        ("ETCDCTL_KEY", app.key_path().display().to_string()),
        ("ETCDCTL_USER", format!("root:{ROOT_PASSWORD}")),
        ("ETCDCTL_DIAL_TIMEOUT", "3s".to_string()),
        ("ETCDCTL_COMMAND_TIMEOUT", "10s".to_string()),
    ];
    let loaded = config_file::from_env_vars(env).unwrap();
    assert_eq!(loaded.config.default_timeout, Some(Duration::from_secs(10)));
    let from_env = Client::with_config(loaded.config).unwrap();
    assert_eq!(value(&from_env.get("yaml").await.unwrap()), "works");
});
