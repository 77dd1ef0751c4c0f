//! Typed KV requests: ranges and prefixes (facts §11), sort rules, every option landing in its
//! wire field, Txn compares and builder misuse.

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder as PbOrder, SortTarget as PbTarget},
    request_op::Request as Op,
    CompactionRequest, Compare as PbCompare, DeleteRangeRequest, PutRequest, RangeRequest,
    TxnRequest,
};
use etcd_proto_core::rpc::kv::{
    prefix_range_end, Compact, Compare, CompareOp, Delete, Get, Put, SortOrder, SortTarget, Txn,
    TxnOp,
};
use etcd_proto_core::rpc::{RetryClass, UnaryRpc};
use etcd_proto_core::{Error, InvalidRequest};
use prost::Message;

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn get(g: Get) -> RangeRequest {
    g.build().expect("valid get")
}

#[test]
fn prefix_range_end_cases() {
    // §11
    assert_eq!(prefix_range_end(b"aa"), b(b"ab"));
    assert_eq!(prefix_range_end(b"a\xff"), b(b"b"));
    assert_eq!(prefix_range_end(b"\xff\xff"), b(b"\0"));
    assert_eq!(prefix_range_end(b""), b(b"\0"));
    // More cases of the same rule.
    assert_eq!(prefix_range_end(b"a"), b(b"b"));
    assert_eq!(prefix_range_end(b"/registry/"), b(b"/registry0"));
    assert_eq!(prefix_range_end(b"a\xfe"), b(b"a\xff"));
    assert_eq!(prefix_range_end(b"ab\xff\xff"), b(b"ac"));
    assert_eq!(prefix_range_end(b"\x00"), b(b"\x01"));
    assert_eq!(prefix_range_end(b"\xff"), b(b"\0"));
}

#[test]
fn get_single_key() {
    let r = get(Get::new("foo"));
    assert_eq!(
        r,
        RangeRequest {
            key: b(b"foo"),
            ..Default::default()
        }
    );
}

#[test]
fn get_prefix_and_from_key() {
    let r = get(Get::new("").prefix());
    assert_eq!((r.key, r.range_end), (b(b"\0"), b(b"\0")));

    let r = get(Get::new("").from_key());
    assert_eq!((r.key, r.range_end), (b(b"\0"), b(b"\0")));

    let r = get(Get::new("a").from_key());
    assert_eq!((r.key, r.range_end), (b(b"a"), b(b"\0")));

    let r = get(Get::new("aa").prefix());
    assert_eq!((r.key, r.range_end), (b(b"aa"), b(b"ab")));

    let r = get(Get::new(&b"a\xff"[..]).prefix());
    assert_eq!((r.key, r.range_end), (b(b"a\xff"), b(b"b")));

    let r = get(Get::new("a").range_end("c"));
    assert_eq!((r.key, r.range_end), (b(b"a"), b(b"c")));
}

#[test]
fn prefix_and_from_key_together_is_invalid() {
    for g in [
        Get::new("a").prefix().from_key(),
        Get::new("a").from_key().prefix(),
    ] {
        assert_eq!(
            g.build(),
            Err(Error::InvalidRequest(InvalidRequest::PrefixAndFromKey))
        );
    }
    assert_eq!(
        Get::new("").prefix().from_key().into_request(),
        Err(Error::InvalidRequest(InvalidRequest::PrefixAndFromKey))
    );
    for d in [
        Delete::new("a").prefix().from_key(),
        Delete::new("a").from_key().prefix(),
    ] {
        assert_eq!(
            d.build(),
            Err(Error::InvalidRequest(InvalidRequest::PrefixAndFromKey))
        );
    }
}

fn sort_on_wire(target: SortTarget, order: SortOrder) -> (PbTarget, PbOrder) {
    let r = get(Get::new("k").prefix().sort(target, order));
    (r.sort_target(), r.sort_order())
}

#[test]
fn sort_rules() {
    // (Key, Ascend) is sent as (Key, None).
    assert_eq!(
        sort_on_wire(SortTarget::Key, SortOrder::Ascend),
        (PbTarget::Key, PbOrder::None)
    );
    assert_eq!(
        sort_on_wire(SortTarget::Key, SortOrder::Descend),
        (PbTarget::Key, PbOrder::Descend)
    );
    assert_eq!(
        sort_on_wire(SortTarget::Version, SortOrder::Ascend),
        (PbTarget::Version, PbOrder::Ascend)
    );
    assert_eq!(
        sort_on_wire(SortTarget::CreateRevision, SortOrder::Descend),
        (PbTarget::Create, PbOrder::Descend)
    );
    assert_eq!(
        sort_on_wire(SortTarget::ModRevision, SortOrder::Ascend),
        (PbTarget::Mod, PbOrder::Ascend)
    );
    assert_eq!(
        sort_on_wire(SortTarget::Value, SortOrder::None),
        (PbTarget::Value, PbOrder::None)
    );
    assert_eq!(
        sort_on_wire(SortTarget::Key, SortOrder::None),
        (PbTarget::Key, PbOrder::None)
    );
    // Raw numbers on the wire (facts §4: KEY 0, VERSION 1, CREATE 2, MOD 3, VALUE 4;
    // NONE 0, ASCEND 1, DESCEND 2).
    let r = get(Get::new("k").sort(SortTarget::Value, SortOrder::Descend));
    assert_eq!((r.sort_target, r.sort_order), (4, 2));
    let r = get(Get::new("k").sort(SortTarget::Version, SortOrder::Ascend));
    assert_eq!((r.sort_target, r.sort_order), (1, 1));
    let r = get(Get::new("k"));
    assert_eq!((r.sort_target, r.sort_order), (0, 0));
}

#[test]
fn first_and_last_helpers() {
    let cases = [
        (
            Get::new("p/").first_create(),
            PbTarget::Create,
            PbOrder::Ascend,
        ),
        (
            Get::new("p/").last_create(),
            PbTarget::Create,
            PbOrder::Descend,
        ),
        (Get::new("p/").first_key(), PbTarget::Key, PbOrder::None),
        (Get::new("p/").last_key(), PbTarget::Key, PbOrder::Descend),
        (Get::new("p/").first_rev(), PbTarget::Mod, PbOrder::Ascend),
        (Get::new("p/").last_rev(), PbTarget::Mod, PbOrder::Descend),
    ];
    for (g, target, order) in cases {
        let r = get(g);
        assert_eq!(r.key, b(b"p/"));
        assert_eq!(r.range_end, b(b"p0"), "prefix range");
        assert_eq!(r.limit, 1);
        assert_eq!((r.sort_target(), r.sort_order()), (target, order));
    }
}

#[test]
fn every_get_option_lands_in_its_field() {
    let r = get(Get::new("a")
        .range_end("z")
        .limit(10)
        .revision(42)
        .sort(SortTarget::ModRevision, SortOrder::Descend)
        .serializable()
        .keys_only()
        .count_only()
        .min_mod_revision(3)
        .max_mod_revision(4)
        .min_create_revision(5)
        .max_create_revision(6));
    assert_eq!(
        r,
        RangeRequest {
            key: b(b"a"),
            range_end: b(b"z"),
            limit: 10,
            revision: 42,
            sort_order: PbOrder::Descend as i32,
            sort_target: PbTarget::Mod as i32,
            serializable: true,
            keys_only: true,
            count_only: true,
            min_mod_revision: 3,
            max_mod_revision: 4,
            min_create_revision: 5,
            max_create_revision: 6,
        }
    );
    // Each alone, to catch two options writing the same field.
    assert_eq!(get(Get::new("a").limit(7)).limit, 7);
    assert_eq!(get(Get::new("a").revision(8)).revision, 8);
    assert!(get(Get::new("a").serializable()).serializable);
    assert!(get(Get::new("a").keys_only()).keys_only);
    assert!(get(Get::new("a").count_only()).count_only);
    let r = get(Get::new("a").min_mod_revision(9));
    assert_eq!(
        (
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision
        ),
        (9, 0, 0, 0)
    );
    let r = get(Get::new("a").max_mod_revision(9));
    assert_eq!(
        (
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision
        ),
        (0, 9, 0, 0)
    );
    let r = get(Get::new("a").min_create_revision(9));
    assert_eq!(
        (
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision
        ),
        (0, 0, 9, 0)
    );
    let r = get(Get::new("a").max_create_revision(9));
    assert_eq!(
        (
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision
        ),
        (0, 0, 0, 9)
    );
    let r = get(Get::new("a").serializable());
    assert!(!r.keys_only && !r.count_only);
}

#[test]
fn get_key_types() {
    let owned = String::from("k");
    let v: Vec<u8> = b"k".to_vec();
    for g in [
        Get::new("k"),
        Get::new(owned.clone()),
        Get::new(&owned),
        Get::new(v.clone()),
        Get::new(&v),
        Get::new(&v[..]),
        Get::new(b"k"),
        Get::new(Bytes::from_static(b"k")),
        Get::from("k"),
    ] {
        assert_eq!(get(g).key, b(b"k"));
    }
}

#[test]
fn put_options() {
    assert_eq!(
        Put::new("foo", "bar").build().unwrap(),
        PutRequest {
            key: b(b"foo"),
            value: b(b"bar"),
            ..Default::default()
        }
    );
    assert_eq!(
        Put::new("k", "v").lease(0x1234).prev_kv().build().unwrap(),
        PutRequest {
            key: b(b"k"),
            value: b(b"v"),
            lease: 0x1234,
            prev_kv: true,
            ignore_value: false,
            ignore_lease: false,
        }
    );
    assert_eq!(
        Put::new("k", "")
            .ignore_value()
            .ignore_lease()
            .build()
            .unwrap(),
        PutRequest {
            key: b(b"k"),
            value: Bytes::new(),
            lease: 0,
            prev_kv: false,
            ignore_value: true,
            ignore_lease: true,
        }
    );
    let r = Put::new("k", "v").ignore_value().build().unwrap();
    assert!(r.ignore_value && !r.ignore_lease && !r.prev_kv);
    let r = Put::new("k", "v").ignore_lease().build().unwrap();
    assert!(!r.ignore_value && r.ignore_lease && !r.prev_kv);
    assert_eq!(Put::from(("a", "b")).build().unwrap().value, b(b"b"));
    assert_eq!(Put::METHOD.retry, RetryClass::NonRepeatable);
    assert_eq!(Get::METHOD.retry, RetryClass::Repeatable);
}

#[test]
fn delete_options() {
    assert_eq!(
        Delete::new("k").build().unwrap(),
        DeleteRangeRequest {
            key: b(b"k"),
            range_end: Bytes::new(),
            prev_kv: false,
        }
    );
    assert_eq!(
        Delete::new("dir/").prefix().prev_kv().build().unwrap(),
        DeleteRangeRequest {
            key: b(b"dir/"),
            range_end: b(b"dir0"),
            prev_kv: true,
        }
    );
    let r = Delete::new("").prefix().build().unwrap();
    assert_eq!((r.key, r.range_end), (b(b"\0"), b(b"\0")));
    let r = Delete::new("m").from_key().build().unwrap();
    assert_eq!((r.key, r.range_end), (b(b"m"), b(b"\0")));
    let r = Delete::new("a").range_end("b").build().unwrap();
    assert_eq!((r.key, r.range_end), (b(b"a"), b(b"b")));
}

#[test]
fn compact_options() {
    assert_eq!(
        Compact::new(100).into_request().unwrap(),
        CompactionRequest {
            revision: 100,
            physical: false
        }
    );
    assert_eq!(
        Compact::new(100).physical().into_request().unwrap(),
        CompactionRequest {
            revision: 100,
            physical: true
        }
    );
    assert_eq!(Compact::from(7).into_request().unwrap().revision, 7);
}

fn one_compare(c: Compare) -> PbCompare {
    let mut t = Txn::new().when([c]).build().unwrap();
    assert_eq!(t.compare.len(), 1);
    t.compare.remove(0)
}

#[test]
fn compare_targets_and_operands() {
    let c = one_compare(Compare::value("k", CompareOp::Equal, "v"));
    assert_eq!(c.target(), CompareTarget::Value);
    assert_eq!(c.result(), CompareResult::Equal);
    assert_eq!(c.key, b(b"k"));
    assert_eq!(c.range_end, Bytes::new());
    assert_eq!(c.target_union, Some(TargetUnion::Value(b(b"v"))));

    let c = one_compare(Compare::version("k", CompareOp::Greater, 3));
    assert_eq!(c.target(), CompareTarget::Version);
    assert_eq!(c.result(), CompareResult::Greater);
    assert_eq!(c.target_union, Some(TargetUnion::Version(3)));

    let c = one_compare(Compare::create_revision("k", CompareOp::Less, 5));
    assert_eq!(c.target(), CompareTarget::Create);
    assert_eq!(c.result(), CompareResult::Less);
    assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(5)));

    let c = one_compare(Compare::mod_revision("k", CompareOp::NotEqual, 6));
    assert_eq!(c.target(), CompareTarget::Mod);
    assert_eq!(c.result(), CompareResult::NotEqual);
    assert_eq!(c.target_union, Some(TargetUnion::ModRevision(6)));

    let c = one_compare(Compare::lease("k", CompareOp::Equal, 77));
    assert_eq!(c.target(), CompareTarget::Lease);
    assert_eq!(c.target_union, Some(TargetUnion::Lease(77)));

    // Raw numbers (facts §4: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3; VERSION 0, CREATE 1,
    // MOD 2, VALUE 3, LEASE 4).
    let c = one_compare(Compare::lease("k", CompareOp::NotEqual, 1));
    assert_eq!((c.result, c.target), (3, 4));
    let c = one_compare(Compare::value("k", CompareOp::Less, "x"));
    assert_eq!((c.result, c.target), (2, 3));
}

#[test]
fn version_zero_is_still_sent() {
    // "the key does not exist" guard: the oneof member must be present even though 0.
    let c = one_compare(Compare::version("k", CompareOp::Equal, 0));
    assert_eq!(c.target_union, Some(TargetUnion::Version(0)));
    // On the wire: field 4 varint 0 (`20 00`) is emitted; result/target (0) are not.
    let bytes = c.encode_to_vec();
    assert_eq!(bytes, vec![0x1a, 0x01, b'k', 0x20, 0x00]);

    let c = one_compare(Compare::create_revision("k", CompareOp::Equal, 0));
    assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(0)));
    let c = one_compare(Compare::lease("k", CompareOp::Equal, 0));
    assert_eq!(c.target_union, Some(TargetUnion::Lease(0)));
    let c = one_compare(Compare::value("k", CompareOp::Equal, ""));
    assert_eq!(c.target_union, Some(TargetUnion::Value(Bytes::new())));
}

#[test]
fn compare_ranges() {
    let c = one_compare(Compare::version("p/", CompareOp::Greater, 0).with_prefix());
    assert_eq!((c.key, c.range_end), (b(b"p/"), b(b"p0")));

    let c = one_compare(Compare::mod_revision("a", CompareOp::Less, 10).with_range("m"));
    assert_eq!((c.key, c.range_end), (b(b"a"), b(b"m")));

    // The later of the two wins.
    let c = one_compare(
        Compare::mod_revision("a", CompareOp::Less, 10)
            .with_prefix()
            .with_range("m"),
    );
    assert_eq!(c.range_end, b(b"m"));
    let c = one_compare(
        Compare::mod_revision("a", CompareOp::Less, 10)
            .with_range("m")
            .with_prefix(),
    );
    assert_eq!(c.range_end, b(b"b"));

    // Compare.range_end is field 64: two tag bytes `82 04`.
    let bytes =
        one_compare(Compare::value("a", CompareOp::Equal, "v").with_range("b")).encode_to_vec();
    assert!(
        bytes.windows(4).any(|w| w == [0x82, 0x04, 0x01, b'b']),
        "{bytes:02x?}"
    );
}

#[test]
fn txn_full() {
    let t = Txn::new()
        .when([
            Compare::value("k", CompareOp::Equal, "v"),
            Compare::version("n", CompareOp::Equal, 0),
        ])
        .and_then([
            TxnOp::from(Put::new("k", "w")),
            TxnOp::from(Get::new("k")),
            TxnOp::from(Delete::new("d").prefix()),
        ])
        .or_else([Get::new("k").prefix()])
        .build()
        .unwrap();
    assert_eq!(t.compare.len(), 2);
    assert_eq!(t.compare[1].target_union, Some(TargetUnion::Version(0)));
    assert_eq!(t.success.len(), 3);
    assert_eq!(
        t.success[0].request,
        Some(Op::RequestPut(Put::new("k", "w").build().unwrap()))
    );
    assert_eq!(
        t.success[1].request,
        Some(Op::RequestRange(Get::new("k").build().unwrap()))
    );
    assert_eq!(
        t.success[2].request,
        Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: b(b"d"),
            range_end: b(b"e"),
            prev_kv: false
        }))
    );
    assert_eq!(t.failure.len(), 1);
    match &t.failure[0].request {
        Some(Op::RequestRange(r)) => {
            assert_eq!((&r.key[..], &r.range_end[..]), (&b"k"[..], &b"l"[..]))
        }
        other => panic!("expected a range, got {other:?}"),
    }
}

#[test]
fn nested_txn() {
    let inner = Txn::new()
        .when([Compare::mod_revision("x", CompareOp::Less, 5)])
        .and_then([Put::new("x", "1")]);
    let outer = Txn::new()
        .when([Compare::version("y", CompareOp::Greater, 0)])
        .and_then([TxnOp::from(inner.clone())])
        .build()
        .unwrap();
    assert_eq!(outer.success.len(), 1);
    match &outer.success[0].request {
        Some(Op::RequestTxn(t)) => {
            assert_eq!(t, &inner.build().unwrap());
            assert_eq!(t.compare[0].target_union, Some(TargetUnion::ModRevision(5)));
            assert_eq!(
                t.success[0].request,
                Some(Op::RequestPut(PutRequest {
                    key: b(b"x"),
                    value: b(b"1"),
                    ..Default::default()
                }))
            );
        }
        other => panic!("expected a nested txn, got {other:?}"),
    }

    // Misuse inside a nested txn, or an invalid nested op, fails the outer build.
    let bad_inner = Txn::new()
        .and_then([Put::new("a", "b")])
        .and_then([Put::new("c", "d")]);
    assert!(matches!(
        Txn::new().and_then([bad_inner]).build(),
        Err(Error::InvalidRequest(InvalidRequest::TxnMisuse(_)))
    ));
    assert_eq!(
        Txn::new()
            .or_else([Get::new("a").prefix().from_key()])
            .build(),
        Err(Error::InvalidRequest(InvalidRequest::PrefixAndFromKey))
    );
}

fn c() -> Compare {
    Compare::version("k", CompareOp::Equal, 0)
}

fn p() -> Put {
    Put::new("k", "v")
}

#[test]
fn txn_misuse() {
    let cases: Vec<(&str, Txn)> = vec![
        ("when twice", Txn::new().when([c()]).when([c()])),
        (
            "when after and_then",
            Txn::new().and_then([p()]).when([c()]),
        ),
        (
            "when after and_then (with when first)",
            Txn::new().when([c()]).and_then([p()]).when([c()]),
        ),
        ("when after or_else", Txn::new().or_else([p()]).when([c()])),
        (
            "when after or_else (with when first)",
            Txn::new().when([c()]).or_else([p()]).when([c()]),
        ),
        ("and_then twice", Txn::new().and_then([p()]).and_then([p()])),
        (
            "and_then after or_else",
            Txn::new().when([c()]).or_else([p()]).and_then([p()]),
        ),
        ("or_else twice", Txn::new().or_else([p()]).or_else([p()])),
        (
            "or_else twice (full)",
            Txn::new()
                .when([c()])
                .and_then([p()])
                .or_else([p()])
                .or_else([p()]),
        ),
        (
            "empty when twice",
            Txn::new()
                .when(Vec::<Compare>::new())
                .when(Vec::<Compare>::new()),
        ),
    ];
    for (what, txn) in cases {
        let result = txn.clone().build();
        assert!(
            matches!(
                result,
                Err(Error::InvalidRequest(InvalidRequest::TxnMisuse(_)))
            ),
            "{what}: {result:?}"
        );
        // Same through the engine-facing trait; the error message is non-empty.
        match txn.into_request() {
            Err(Error::InvalidRequest(InvalidRequest::TxnMisuse(msg))) => assert!(!msg.is_empty()),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn txn_allowed_shapes() {
    let t = Txn::new().when([c()]).or_else([p()]).build().unwrap();
    assert_eq!(
        (t.compare.len(), t.success.len(), t.failure.len()),
        (1, 0, 1)
    );

    let t = Txn::new()
        .and_then([p()])
        .or_else([p(), p()])
        .build()
        .unwrap();
    assert_eq!(
        (t.compare.len(), t.success.len(), t.failure.len()),
        (0, 1, 2)
    );

    let t = Txn::new().build().unwrap();
    assert_eq!(t, TxnRequest::default());

    let t = Txn::new().or_else([p()]).build().unwrap();
    assert_eq!(t.failure.len(), 1);

    let t = Txn::new().when([c()]).and_then([p()]).build().unwrap();
    assert_eq!(
        (t.compare.len(), t.success.len(), t.failure.len()),
        (1, 1, 0)
    );
}
