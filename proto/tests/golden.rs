//! Golden wire-format tests: exact bytes from the etcd wire facts (§4, §6).

use etcd_proto::bytes::Bytes;
use etcd_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, watch_create_request, watch_request, Compare,
    LeaseTimeToLiveResponse, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use etcd_proto::mvccpb::{event, Event, KeyValue};
use etcd_proto::prost::Message;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => panic!("bad hex digit {:?}", b as char),
        })
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

#[test]
fn range_request_key_foo() {
    let req = RangeRequest {
        key: Bytes::from_static(b"foo"),
        ..Default::default()
    };
    assert_eq!(req.encode_to_vec(), hex("0a 03 66 6f 6f"));
    assert_eq!(RangeRequest::decode(&hex("0a03666f6f")[..]).unwrap(), req);
}

/// Body of the live-checked `KV/Range` response for key `foo` after
/// `put foo bar` (etcd 3.4.23), gRPC frame prefix `00 0000002e` removed.
const RANGE_RESPONSE_BODY: &str = "
    0a 18
       08 87 d5 ed ba 8f d5 9d c1 04
       10 c0 c0 ca af c1 ba 96 89 2e
       18 02
       20 02
    12 10
       0a 03 66 6f 6f
       10 02
       18 02
       20 01
       2a 03 62 61 72
    20 01
";

#[test]
fn range_response_worked_example() {
    let body = hex(RANGE_RESPONSE_BODY);
    assert_eq!(body.len(), 0x2e, "gRPC frame length from the doc");

    let resp = RangeResponse::decode(&body[..]).expect("decode RangeResponse");
    let header = resp.header.as_ref().expect("header present");
    assert_eq!(header.cluster_id, 0x0482_76a8_f75b_6a87);
    assert_eq!(header.cluster_id, 324_952_591_200_643_719);
    assert_eq!(header.member_id, 0x2e12_59d4_15f2_a040);
    assert_eq!(header.member_id, 3_319_814_642_761_637_952);
    assert_eq!(header.revision, 2);
    assert_eq!(header.raft_term, 2);

    assert_eq!(resp.kvs.len(), 1);
    let kv = &resp.kvs[0];
    assert_eq!(&kv.key[..], b"foo");
    assert_eq!(&kv.value[..], b"bar");
    assert_eq!(kv.create_revision, 2);
    assert_eq!(kv.mod_revision, 2);
    assert_eq!(kv.version, 1);
    assert_eq!(kv.lease, 0);
    assert!(!resp.more);
    assert_eq!(resp.count, 1);

    // Canonical field order, so re-encoding reproduces the server's bytes.
    assert_eq!(resp.encode_to_vec(), body);
    assert_eq!(resp.encoded_len(), body.len());
}

#[test]
fn compare_version_zero_is_emitted() {
    let cmp = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        key: Bytes::from_static(b"k"),
        target_union: Some(compare::TargetUnion::Version(0)),
        range_end: Bytes::new(),
    };
    // result/target are 0 (omitted); key = 1a 01 6b; field 4 present as 20 00.
    assert_eq!(cmp.encode_to_vec(), hex("1a 01 6b 20 00"));

    let only_union = Compare {
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    };
    assert_eq!(only_union.encode_to_vec(), hex("20 00"));
    let back = Compare::decode(&hex("20 00")[..]).unwrap();
    assert_eq!(back.target_union, Some(compare::TargetUnion::Version(0)));
    assert_eq!(back.target(), compare::CompareTarget::Version);
}

#[test]
fn compare_range_end_is_field_64() {
    let cmp = Compare {
        range_end: Bytes::from_static(b"\0"),
        ..Default::default()
    };
    assert_eq!(cmp.encode_to_vec(), hex("82 04 01 00"));

    let lease = Compare {
        target: compare::CompareTarget::Lease as i32,
        target_union: Some(compare::TargetUnion::Lease(7)),
        ..Default::default()
    };
    assert_eq!(lease.encode_to_vec(), hex("10 04 40 07"));
    let value = Compare {
        target_union: Some(compare::TargetUnion::Value(Bytes::from_static(b"v"))),
        ..Default::default()
    };
    assert_eq!(value.encode_to_vec(), hex("3a 01 76"));
}

#[test]
fn watch_progress_request_is_empty_field_3() {
    let req = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest::default(),
        )),
    };
    assert_eq!(req.encode_to_vec(), hex("1a 00"));
    assert_eq!(WatchRequest::decode(&hex("1a 00")[..]).unwrap(), req);
}

#[test]
fn negative_watch_id_round_trips() {
    let resp = WatchResponse {
        watch_id: -1,
        ..Default::default()
    };
    let bytes = resp.encode_to_vec();
    assert_eq!(bytes, hex("10 ff ff ff ff ff ff ff ff ff 01"));
    assert_eq!(WatchResponse::decode(&bytes[..]).unwrap().watch_id, -1);

    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: -1 },
        )),
    };
    let bytes = cancel.encode_to_vec();
    assert_eq!(bytes, hex("12 0b 08 ff ff ff ff ff ff ff ff ff 01"));
    assert_eq!(WatchRequest::decode(&bytes[..]).unwrap(), cancel);

    // LeaseTimeToLiveResponse.TTL = -1 for a missing lease (field 3).
    let ttl =
        LeaseTimeToLiveResponse::decode(&hex("18 ff ff ff ff ff ff ff ff ff 01")[..]).unwrap();
    assert_eq!(ttl.ttl, -1);
}

#[test]
fn watch_response_events_are_field_11() {
    let resp = WatchResponse {
        events: vec![Event {
            r#type: event::EventType::Delete as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec(), hex("5a 02 08 01"));
}

#[test]
fn watch_create_filters_are_packed() {
    let req = WatchCreateRequest {
        key: Bytes::from_static(b"a"),
        filters: vec![
            watch_create_request::FilterType::Noput as i32,
            watch_create_request::FilterType::Nodelete as i32,
        ],
        ..Default::default()
    };
    assert_eq!(req.encode_to_vec(), hex("0a 01 61 2a 02 00 01"));
    // Decoders must also accept the unpacked form.
    let unpacked = WatchCreateRequest::decode(&hex("0a 01 61 28 00 28 01")[..]).unwrap();
    assert_eq!(unpacked, req);
}

#[test]
fn txn_oneofs_round_trip() {
    let txn = TxnRequest {
        compare: vec![Compare {
            target: compare::CompareTarget::Mod as i32,
            result: compare::CompareResult::Less as i32,
            key: Bytes::from_static(b"k"),
            target_union: Some(compare::TargetUnion::ModRevision(-5)),
            range_end: Bytes::new(),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: Bytes::from_static(b"k"),
                sort_order: range_request::SortOrder::Descend as i32,
                ..Default::default()
            })),
        }],
    };
    let bytes = txn.encode_to_vec();
    assert_eq!(TxnRequest::decode(&bytes[..]).unwrap(), txn);

    let resp = TxnResponse {
        header: Some(ResponseHeader {
            revision: 3,
            ..Default::default()
        }),
        succeeded: true,
        responses: vec![ResponseOp {
            response: Some(response_op::Response::ResponseTxn(TxnResponse::default())),
        }],
    };
    // header: 0a 02 18 03; succeeded: 10 01; responses: 1a 02 (22 00)
    assert_eq!(resp.encode_to_vec(), hex("0a 02 18 03 10 01 1a 02 22 00"));
}

#[test]
fn key_value_lease_and_unknown_fields() {
    let kv = KeyValue {
        key: Bytes::from_static(b"x"),
        lease: 0x1234,
        ..Default::default()
    };
    let mut bytes = kv.encode_to_vec();
    // An unknown field (number 99, varint) must be skipped.
    bytes.extend_from_slice(&hex("98 06 01"));
    assert_eq!(KeyValue::decode(&bytes[..]).unwrap(), kv);
}
