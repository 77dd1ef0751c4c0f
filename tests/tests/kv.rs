//! KV against real etcd servers (3.4.23 and 3.5.1): every Get/Put/Delete/Txn/Compact option
//! of the Go client, and the typed errors the server and the client produce.

mod common;

use bytes::Bytes;
use common::*;
use etcd_tests::EtcdServer;
use etcd_tokio::proto::etcdserverpb::{response_op::Response, LeaseGrantRequest, RangeResponse};
use etcd_tokio::{
    Compact, Compare, CompareOp, Delete, Direction, Error, EtcdErrorKind, Get, Put, SortOrder,
    SortTarget, Txn, TxnOp,
};

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn rel_keys(resp: &RangeResponse, prefix: &str) -> Vec<String> {
    keys(resp)
        .into_iter()
        .map(|k| k.strip_prefix(prefix).unwrap_or(&k).to_string())
        .collect()
}

fn etcd_kind<T: std::fmt::Debug>(result: Result<T, Error>) -> EtcdErrorKind {
    match result {
        Err(e) => e
            .etcd_kind()
            .unwrap_or_else(|| panic!("expected an etcd error, got {e:?}")),
        Ok(v) => panic!("expected an etcd error, got success {v:?}"),
    }
}

async fn put_rev(c: &etcd_tokio::Client, key: String, value: &str) -> i64 {
    c.put((key, value.to_string()))
        .await
        .expect("put")
        .header
        .expect("header")
        .revision
}

per_version!(put_get_round_trip_with_header_revision, |version| {
    let (c, p) = shared_client(version, "round_trip");
    let rev = put_rev(&c, format!("{p}k"), "v1").await;
    assert!(rev > 0);
    let got = c.get(format!("{p}k")).await.unwrap();
    let header = got.header.expect("header");
    assert!(header.revision >= rev);
    assert_ne!(header.cluster_id, 0);
    assert_ne!(header.member_id, 0);
    assert_eq!(got.count, 1);
    let kv = &got.kvs[0];
    assert_eq!(&kv.key[..], format!("{p}k").as_bytes());
    assert_eq!(&kv.value[..], b"v1");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (rev, rev, 1)
    );
    let rev2 = put_rev(&c, format!("{p}k"), "v2").await;
    assert!(rev2 > rev);
    let kv = c.get(format!("{p}k")).await.unwrap().kvs[0].clone();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (rev, rev2, 2)
    );
    assert_eq!(&kv.value[..], b"v2");
    // A missing key is an empty result, not an error.
    let missing = c.get(format!("{p}missing")).await.unwrap();
    assert_eq!((missing.count, missing.kvs.len()), (0, 0));
});

per_version!(range_prefix_and_from_key, |version| {
    let (c, p) = shared_client(version, "ranges");
    for k in ["a", "b", "c", "x/1", "x/2", "y"] {
        put_rev(&c, format!("{p}{k}"), k).await;
    }
    let r = c
        .get(Get::new(format!("{p}a")).range_end(format!("{p}c")))
        .await
        .unwrap();
    assert_eq!(rel_keys(&r, &p), ["a", "b"]);
    let r = c.get(Get::new(format!("{p}x/")).prefix()).await.unwrap();
    assert_eq!(rel_keys(&r, &p), ["x/1", "x/2"]);
    // from-key: every key >= p/x/2 (other tests' keys sort elsewhere or after).
    let r = c.get(Get::new(format!("{p}x/2")).from_key()).await.unwrap();
    let ks = keys(&r);
    assert_eq!(ks[0], format!("{p}x/2"));
    assert!(ks.contains(&format!("{p}y")));
    assert!(!ks.contains(&format!("{p}x/1")));
    assert!(ks.windows(2).all(|w| w[0] < w[1]));
    assert!(ks.iter().all(|k| k.as_str() >= format!("{p}x/2").as_str()));
    // Prefix together with from-key is refused locally, as Go refuses it (by panicking).
    let err = c
        .get(Get::new(format!("{p}a")).prefix().from_key())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidRequest(etcd_tokio::InvalidRequest::PrefixAndFromKey)
        ),
        "{err:?}"
    );
});

per_version!(whole_keyspace_forms_on_a_fresh_server, |version| {
    let server = EtcdServer::builder(version).start().expect("etcd");
    let c = client_for(&server, |_| {});
    for k in ["\u{1}first", "m", "zzz"] {
        c.put((k, "v")).await.unwrap();
    }
    let all = c.get(Get::new("").from_key()).await.unwrap();
    assert_eq!(keys(&all), ["\u{1}first", "m", "zzz"]);
    let all = c.get(Get::new("").prefix()).await.unwrap();
    assert_eq!(all.count, 3);
    let from_m = c.get(Get::new("m").from_key()).await.unwrap();
    assert_eq!(keys(&from_m), ["m", "zzz"]);
    let deleted = c.delete(Delete::new("").prefix()).await.unwrap();
    assert_eq!(deleted.deleted, 3);
    assert_eq!(c.get(Get::new("").from_key()).await.unwrap().count, 0);
});

per_version!(limit_count_only_keys_only, |version| {
    let (c, p) = shared_client(version, "limit");
    for i in 0..5 {
        put_rev(&c, format!("{p}{i}"), &format!("value{i}")).await;
    }
    let r = c.get(Get::new(&p).prefix().limit(2)).await.unwrap();
    assert_eq!(rel_keys(&r, &p), ["0", "1"]);
    assert!(r.more);
    assert_eq!(r.count, 5);
    let r = c.get(Get::new(&p).prefix().limit(5)).await.unwrap();
    assert!(!r.more);
    assert_eq!(r.kvs.len(), 5);
    let r = c.get(Get::new(&p).prefix().count_only()).await.unwrap();
    assert_eq!(r.count, 5);
    assert!(r.kvs.is_empty());
    let r = c.get(Get::new(&p).prefix().keys_only()).await.unwrap();
    assert_eq!(r.kvs.len(), 5);
    assert!(r
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && !kv.key.is_empty()));
    let r = c.get(Get::new(&p).prefix().serializable()).await.unwrap();
    assert_eq!(r.kvs.len(), 5);
});

per_version!(historical_read_at_revision, |version| {
    let (c, p) = shared_client(version, "history");
    let r1 = put_rev(&c, format!("{p}k"), "old").await;
    let r2 = put_rev(&c, format!("{p}k"), "new").await;
    let at1 = c.get(Get::new(format!("{p}k")).revision(r1)).await.unwrap();
    assert_eq!(&at1.kvs[0].value[..], b"old");
    let at2 = c.get(Get::new(format!("{p}k")).revision(r2)).await.unwrap();
    assert_eq!(&at2.kvs[0].value[..], b"new");
    let before = c
        .get(Get::new(format!("{p}k")).revision(r1 - 1))
        .await
        .unwrap();
    assert_eq!(before.count, 0);
});

per_version!(sort_by_every_target_both_orders, |version| {
    let (c, p) = shared_client(version, "sort");
    // Creation order c, a, b; then updates c, a, c. Final values c=1, a=3, b=2.
    put_rev(&c, format!("{p}c"), "1").await;
    put_rev(&c, format!("{p}a"), "3").await;
    put_rev(&c, format!("{p}b"), "2").await;
    put_rev(&c, format!("{p}c"), "1").await;
    put_rev(&c, format!("{p}a"), "3").await;
    put_rev(&c, format!("{p}c"), "1").await;
    let cases = [
        (SortTarget::Key, ["a", "b", "c"]),
        (SortTarget::CreateRevision, ["c", "a", "b"]),
        (SortTarget::ModRevision, ["b", "a", "c"]),
        (SortTarget::Version, ["b", "a", "c"]),
        (SortTarget::Value, ["c", "b", "a"]),
    ];
    for (target, ascending) in cases {
        let up = c
            .get(Get::new(&p).prefix().sort(target, SortOrder::Ascend))
            .await
            .unwrap();
        assert_eq!(rel_keys(&up, &p), ascending, "{target:?} ascending");
        let down = c
            .get(Get::new(&p).prefix().sort(target, SortOrder::Descend))
            .await
            .unwrap();
        let mut descending = ascending.to_vec();
        descending.reverse();
        assert_eq!(rel_keys(&down, &p), descending, "{target:?} descending");
    }
    // The first/last helpers are prefix + sort + limit 1.
    let first = c.get(Get::new(&p).first_create()).await.unwrap();
    assert_eq!(rel_keys(&first, &p), ["c"]);
    let last = c.get(Get::new(&p).last_create()).await.unwrap();
    assert_eq!(rel_keys(&last, &p), ["b"]);
    let last = c.get(Get::new(&p).last_key()).await.unwrap();
    assert_eq!(rel_keys(&last, &p), ["c"]);
    let first = c.get(Get::new(&p).first_key()).await.unwrap();
    assert_eq!(rel_keys(&first, &p), ["a"]);
    let last = c.get(Get::new(&p).last_rev()).await.unwrap();
    assert_eq!(rel_keys(&last, &p), ["c"]);
    let first = c.get(Get::new(&p).first_rev()).await.unwrap();
    assert_eq!(rel_keys(&first, &p), ["b"]);
});

per_version!(mod_and_create_revision_filters, |version| {
    let (c, p) = shared_client(version, "filters");
    let ra = put_rev(&c, format!("{p}a"), "1").await;
    let rb = put_rev(&c, format!("{p}b"), "1").await;
    let rc = put_rev(&c, format!("{p}c"), "1").await;
    let rb2 = put_rev(&c, format!("{p}b"), "2").await;
    let get = |g: Get| {
        let c = c.clone();
        async move { c.get(g).await.unwrap() }
    };
    let r = get(Get::new(&p).prefix().min_mod_revision(rb2)).await;
    assert_eq!(rel_keys(&r, &p), ["b"]);
    let r = get(Get::new(&p).prefix().max_mod_revision(rc)).await;
    assert_eq!(rel_keys(&r, &p), ["a", "c"]);
    let r = get(Get::new(&p).prefix().min_create_revision(rb)).await;
    assert_eq!(rel_keys(&r, &p), ["b", "c"]);
    let r = get(Get::new(&p).prefix().max_create_revision(rb)).await;
    assert_eq!(rel_keys(&r, &p), ["a", "b"]);
    let r = get(Get::new(&p)
        .prefix()
        .min_create_revision(ra + 1)
        .max_mod_revision(rc))
    .await;
    assert_eq!(rel_keys(&r, &p), ["c"]);
});

per_version!(put_prev_kv_ignore_value_ignore_lease, |version| {
    let (c, p) = shared_client(version, "put_options");
    let fresh = c
        .put(Put::new(format!("{p}k"), "v1").prev_kv())
        .await
        .unwrap();
    assert!(fresh.prev_kv.is_none());
    let second = c
        .put(Put::new(format!("{p}k"), "v2").prev_kv())
        .await
        .unwrap();
    assert_eq!(&second.prev_kv.expect("prev kv").value[..], b"v1");
    // On a missing key both ignore options give the typed KeyNotFound error.
    let e = c
        .put(Put::new(format!("{p}missing"), "").ignore_value())
        .await;
    assert_eq!(etcd_kind(e), EtcdErrorKind::KeyNotFound);
    let e = c
        .put(Put::new(format!("{p}missing"), "x").ignore_lease())
        .await;
    assert_eq!(etcd_kind(e), EtcdErrorKind::KeyNotFound);
    // ignore_value with a value is ValueProvided.
    let e = c.put(Put::new(format!("{p}k"), "x").ignore_value()).await;
    assert_eq!(etcd_kind(e), EtcdErrorKind::ValueProvided);
    // On an existing key: keep the value, attach a lease; then keep the lease, change the value.
    let lease = c
        .call(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .id;
    c.put(Put::new(format!("{p}k"), "").ignore_value().lease(lease))
        .await
        .unwrap();
    let kv = c.get(format!("{p}k")).await.unwrap().kvs[0].clone();
    assert_eq!((&kv.value[..], kv.lease), (&b"v2"[..], lease));
    c.put(Put::new(format!("{p}k"), "v3").ignore_lease())
        .await
        .unwrap();
    let kv = c.get(format!("{p}k")).await.unwrap().kvs[0].clone();
    assert_eq!((&kv.value[..], kv.lease), (&b"v3"[..], lease));
    let e = c
        .put(Put::new(format!("{p}k"), "v").ignore_lease().lease(lease))
        .await;
    assert_eq!(etcd_kind(e), EtcdErrorKind::LeaseProvided);
});

per_version!(delete_range_with_prev_kvs, |version| {
    let (c, p) = shared_client(version, "delete");
    for k in ["a", "b", "c", "d"] {
        put_rev(&c, format!("{p}{k}"), &format!("val-{k}")).await;
    }
    let one = c.delete(format!("{p}a")).await.unwrap();
    assert_eq!(one.deleted, 1);
    assert!(one.prev_kvs.is_empty());
    let range = c
        .delete(
            Delete::new(format!("{p}b"))
                .range_end(format!("{p}d"))
                .prev_kv(),
        )
        .await
        .unwrap();
    assert_eq!(range.deleted, 2);
    let prev: Vec<(Bytes, Bytes)> = range
        .prev_kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        prev,
        [
            (Bytes::from(format!("{p}b")), Bytes::from("val-b")),
            (Bytes::from(format!("{p}c")), Bytes::from("val-c")),
        ]
    );
    let rest = c.delete(Delete::new(&p).prefix().prev_kv()).await.unwrap();
    assert_eq!(rest.deleted, 1);
    assert_eq!(&rest.prev_kvs[0].value[..], b"val-d");
    let none = c.delete(Delete::new(&p).prefix()).await.unwrap();
    assert_eq!(none.deleted, 0);
});

/// Runs a txn guarded by `cmp` that puts `then` on success and reads the key on failure;
/// returns whether it succeeded, checking the responses of the branch that ran.
async fn guarded(c: &etcd_tokio::Client, key: &str, cmp: Compare) -> bool {
    let resp = c
        .txn(
            Txn::new()
                .when([cmp])
                .and_then([Put::new(format!("{key}-then"), "x")])
                .or_else([Get::new(key)]),
        )
        .await
        .unwrap();
    assert_eq!(resp.responses.len(), 1);
    match resp.responses[0].response.as_ref().expect("response") {
        Response::ResponsePut(_) => assert!(resp.succeeded),
        Response::ResponseRange(r) => {
            assert!(!resp.succeeded);
            assert_eq!(&r.kvs[0].key[..], key.as_bytes());
        }
        other => panic!("unexpected {other:?}"),
    }
    resp.succeeded
}

per_version!(txn_every_compare_target, |version| {
    let (c, p) = shared_client(version, "txn_targets");
    let key = format!("{p}k");
    let lease = c
        .call(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .id;
    let created = c
        .put(Put::new(&key, "v1").lease(lease))
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let modified = c
        .put(Put::new(&key, "v2").ignore_lease())
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    use CompareOp::*;
    let cases = [
        (Compare::value(&key, Equal, "v2"), true),
        (Compare::value(&key, Equal, "v1"), false),
        (Compare::value(&key, Greater, "v1"), true),
        (Compare::value(&key, Less, "v1"), false),
        (Compare::version(&key, Equal, 2), true),
        (Compare::version(&key, Greater, 2), false),
        (Compare::version(&key, NotEqual, 0), true),
        (Compare::create_revision(&key, Equal, created), true),
        (Compare::create_revision(&key, NotEqual, created), false),
        (Compare::mod_revision(&key, Equal, modified), true),
        (Compare::mod_revision(&key, Less, modified), false),
        (Compare::mod_revision(&key, Greater, created), true),
        (Compare::lease(&key, Equal, lease), true),
        (Compare::lease(&key, Equal, 0), false),
    ];
    for (cmp, expected) in cases {
        let label = format!("{cmp:?}");
        assert_eq!(guarded(&c, &key, cmp).await, expected, "{label}");
    }
    // A missing key has version 0 (Go's "key does not exist" idiom).
    let missing = format!("{p}missing");
    let created_now = c
        .txn(
            Txn::new()
                .when([Compare::version(&missing, Equal, 0)])
                .and_then([Put::new(&missing, "new")]),
        )
        .await
        .unwrap();
    assert!(created_now.succeeded);
    let again = c
        .txn(
            Txn::new()
                .when([Compare::version(&missing, Equal, 0)])
                .and_then([Put::new(&missing, "newer")]),
        )
        .await
        .unwrap();
    assert!(!again.succeeded);
    assert!(again.responses.is_empty());
});

per_version!(txn_range_compares_and_nested, |version| {
    let (c, p) = shared_client(version, "txn_range");
    for k in ["r/1", "r/2", "r/3"] {
        put_rev(&c, format!("{p}{k}"), "same").await;
    }
    let all_same = Compare::value(format!("{p}r/"), CompareOp::Equal, "same").with_prefix();
    assert!(
        c.txn(Txn::new().when([all_same.clone()]))
            .await
            .unwrap()
            .succeeded
    );
    let first_two =
        Compare::value(format!("{p}r/1"), CompareOp::Equal, "same").with_range(format!("{p}r/3"));
    put_rev(&c, format!("{p}r/3"), "different").await;
    assert!(!c.txn(Txn::new().when([all_same])).await.unwrap().succeeded);
    assert!(c.txn(Txn::new().when([first_two])).await.unwrap().succeeded);

    // Nested: the inner txn runs in the outer success branch.
    let inner = Txn::new()
        .when([Compare::value(
            format!("{p}r/3"),
            CompareOp::Equal,
            "different",
        )])
        .and_then([TxnOp::from(Put::new(format!("{p}inner"), "yes"))])
        .or_else([Put::new(format!("{p}inner"), "no")]);
    let outer = Txn::new()
        .when([Compare::version(format!("{p}r/1"), CompareOp::Greater, 0)])
        .and_then([TxnOp::Txn(inner), TxnOp::Get(Get::new(format!("{p}r/1")))]);
    let resp = c.txn(outer).await.unwrap();
    assert!(resp.succeeded);
    match resp.responses[0].response.as_ref().unwrap() {
        Response::ResponseTxn(t) => {
            assert!(t.succeeded);
            assert!(matches!(
                t.responses[0].response,
                Some(Response::ResponsePut(_))
            ));
        }
        other => panic!("expected a nested txn response, got {other:?}"),
    }
    assert!(matches!(
        resp.responses[1].response,
        Some(Response::ResponseRange(_))
    ));
    let inner_value = c.get(format!("{p}inner")).await.unwrap();
    assert_eq!(&inner_value.kvs[0].value[..], b"yes");
});

per_version!(txn_duplicate_key_and_too_many_ops, |version| {
    let (c, p) = shared_client(version, "txn_errors");
    let dup = Txn::new().and_then([
        Put::new(format!("{p}k"), "1"),
        Put::new(format!("{p}k"), "2"),
    ]);
    assert_eq!(etcd_kind(c.txn(dup).await), EtcdErrorKind::DuplicateKey);
    let many = Txn::new().and_then((0..129).map(|i| Put::new(format!("{p}{i}"), "v")));
    assert_eq!(etcd_kind(c.txn(many).await), EtcdErrorKind::TooManyOps);
    let ok = Txn::new().and_then((0..128).map(|i| Put::new(format!("{p}{i}"), "v")));
    assert!(c.txn(ok).await.unwrap().succeeded);
    // Builder misuse is a typed error, never a panic.
    let misuse = Txn::new()
        .and_then([Put::new(format!("{p}x"), "1")])
        .when([]);
    assert!(matches!(
        c.txn(misuse).await,
        Err(Error::InvalidRequest(
            etcd_tokio::InvalidRequest::TxnMisuse(_)
        ))
    ));
});

per_version!(compact_compacted_and_future_revision, |version| {
    // Compaction changes what every client can read: use a server of our own.
    let server = EtcdServer::builder(version).start().expect("etcd");
    let c = client_for(&server, |_| {});
    let r1 = c.put(("k", "v1")).await.unwrap().header.unwrap().revision;
    let r2 = c.put(("k", "v2")).await.unwrap().header.unwrap().revision;
    assert_eq!(
        &c.get(Get::new("k").revision(r1)).await.unwrap().kvs[0].value[..],
        b"v1"
    );
    c.compact(r2).await.unwrap();
    assert_eq!(
        etcd_kind(c.get(Get::new("k").revision(r1)).await),
        EtcdErrorKind::Compacted
    );
    assert_eq!(etcd_kind(c.compact(r1).await), EtcdErrorKind::Compacted);
    assert_eq!(
        etcd_kind(c.compact(r2 + 1000).await),
        EtcdErrorKind::FutureRev
    );
    assert_eq!(
        etcd_kind(c.get(Get::new("k").revision(r2 + 1000)).await),
        EtcdErrorKind::FutureRev
    );
    let r3 = c.put(("k", "v3")).await.unwrap().header.unwrap().revision;
    c.compact(Compact::new(r3).physical()).await.unwrap();
    assert_eq!(&c.get("k").await.unwrap().kvs[0].value[..], b"v3");
});

per_version!(empty_key_is_typed_error, |version| {
    let (c, _) = shared_client(version, "empty_key");
    assert_eq!(etcd_kind(c.get("").await), EtcdErrorKind::EmptyKey);
    assert_eq!(etcd_kind(c.put(("", "v")).await), EtcdErrorKind::EmptyKey);
    assert_eq!(etcd_kind(c.delete("").await), EtcdErrorKind::EmptyKey);
});

per_version!(size_limits, |version| {
    let (c, p) = shared_client(version, "size_limits");
    // 1.6 MiB: under our 2 MiB send limit, over the server's 1.5 MiB request limit.
    let big = vec![b'x'; 1_677_722];
    let e = c.put((format!("{p}big"), big)).await;
    assert_eq!(etcd_kind(e), EtcdErrorKind::RequestTooLarge);
    // 3 MiB: refused locally, nothing sent.
    let huge = vec![b'y'; 3 << 20];
    match c.put((format!("{p}huge"), huge)).await {
        Err(Error::MessageTooLarge {
            direction: Direction::Send,
            limit,
            size,
        }) => {
            assert_eq!(limit, 2 << 20);
            assert!(size > 3 << 20);
        }
        other => panic!("expected a local send-limit error, got {other:?}"),
    }
    assert_eq!(c.get(format!("{p}huge")).await.unwrap().count, 0);
});

per_version!(five_mib_value_when_the_server_allows_it, |version| {
    let server = EtcdServer::builder(version)
        .flag("--max-request-bytes", "10485760")
        .start()
        .expect("etcd");
    let writer = client_for(&server, |config| config.max_send_message_size = 8 << 20);
    let value: Vec<u8> = (0..5 << 20).map(|i| (i % 251) as u8).collect();
    writer.put(("five", value.clone())).await.unwrap();
    // A default client reads it back: no receive cap by default.
    let reader = client_for(&server, |_| {});
    let got = reader.get("five").await.unwrap();
    assert_eq!(got.kvs[0].value.len(), value.len());
    assert!(got.kvs[0].value[..] == value[..]);
});
