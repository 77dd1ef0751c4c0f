//! Golden bytes from the wire facts (§6 worked example, live-checked against etcd 3.4.23).

use bytes::Bytes;
use etcd_proto_core::config::DEFAULT_MAX_SEND;
use etcd_proto_core::grpc::{encode_message, MessageDecoder};
use etcd_proto_core::proto::etcdserverpb::{PutRequest, RangeRequest};
use etcd_proto_core::rpc::{self, kv, UnaryRpc};

/// Parses hex with any whitespace and `|` separators, as written in the facts file.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| (b as char).to_digit(16).unwrap() as u8)
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// §6: `request gRPC frame:  00 00000005 | 0a 03 66 6f 6f`
const RANGE_FOO_REQUEST: &str = "00 00000005 | 0a 03 66 6f 6f";

const PUT_FOO_BAR_REQUEST: &str = "00 00 00 00 0a 0a 03 66 6f 6f 12 03 62 61 72";

/// §6: the response frame, copied field by field from the facts file.
const RANGE_FOO_RESPONSE: &str = "
00 0000002e |
  0a 18
     08 87d5edba8fd59dc104
     10 c0c0caafc1ba96892e
     18 02
     20 02
  12 10
     0a 03 666f6f
     10 02
     18 02
     20 01
     2a 03 626172
  20 01
";

#[test]
fn range_request_golden_bytes() {
    let req = RangeRequest {
        key: Bytes::from_static(b"foo"),
        ..Default::default()
    };
    let framed = encode_message(&req, DEFAULT_MAX_SEND).unwrap();
    assert_eq!(&framed[..], &hex(RANGE_FOO_REQUEST)[..]);
    assert_eq!(
        &framed[..],
        &[0x00, 0x00, 0x00, 0x00, 0x05, 0x0a, 0x03, 0x66, 0x6f, 0x6f]
    );
}

#[test]
fn put_request_golden_bytes() {
    let req = PutRequest {
        key: Bytes::from_static(b"foo"),
        value: Bytes::from_static(b"bar"),
        ..Default::default()
    };
    let framed = encode_message(&req, DEFAULT_MAX_SEND).unwrap();
    assert_eq!(&framed[..], &hex(PUT_FOO_BAR_REQUEST)[..]);
}

#[test]
fn typed_builders_give_the_same_bytes() {
    let get = kv::Get::new("foo").build().unwrap();
    assert_eq!(
        &encode_message(&get, DEFAULT_MAX_SEND).unwrap()[..],
        &hex(RANGE_FOO_REQUEST)[..]
    );
    let put = kv::Put::new("foo", "bar").build().unwrap();
    assert_eq!(
        &encode_message(&put, DEFAULT_MAX_SEND).unwrap()[..],
        &hex(PUT_FOO_BAR_REQUEST)[..]
    );
    // And through the UnaryRpc trait, which is what the engine uses.
    let get = kv::Get::new(b"foo").into_request().unwrap();
    assert_eq!(
        &encode_message(&get, DEFAULT_MAX_SEND).unwrap()[..],
        &hex(RANGE_FOO_REQUEST)[..]
    );
    assert_eq!(kv::Get::METHOD.path, "/etcdserverpb.KV/Range");
    assert_eq!(kv::Put::METHOD.path, "/etcdserverpb.KV/Put");
    assert_eq!(kv::Delete::METHOD.path, "/etcdserverpb.KV/DeleteRange");
    assert_eq!(kv::Txn::METHOD.path, "/etcdserverpb.KV/Txn");
    assert_eq!(kv::Compact::METHOD.path, "/etcdserverpb.KV/Compact");
}

fn check_range_response(body: Bytes) {
    let resp = rpc::decode_response::<kv::Get>(body).unwrap();
    let header = resp.header.expect("header present");
    assert_eq!(header.revision, 2);
    assert_eq!(header.raft_term, 2);
    assert_eq!(header.cluster_id, 0x0482_76a8_f75b_6a87);
    assert_eq!(header.member_id, 0x2e12_59d4_15f2_a040);
    assert_eq!(resp.kvs.len(), 1);
    let kv = &resp.kvs[0];
    assert_eq!(&kv.key[..], b"foo");
    assert_eq!(&kv.value[..], b"bar");
    assert_eq!(kv.create_revision, 2);
    assert_eq!(kv.mod_revision, 2);
    assert_eq!(kv.version, 1);
    assert_eq!(kv.lease, 0);
    assert_eq!(resp.count, 1);
    assert!(!resp.more);
}

#[test]
fn range_response_golden_decodes() {
    let frame = hex(RANGE_FOO_RESPONSE);
    assert_eq!(frame.len(), 5 + 0x2e);

    let mut dec = MessageDecoder::new(u32::MAX as usize);
    dec.push(Bytes::from(frame.clone()));
    let body = dec.next_message().unwrap().expect("one whole message");
    assert_eq!(body.len(), 0x2e);
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.finish(), Ok(()));
    check_range_response(body);

    // The same frame split in two anywhere decodes identically.
    for split in 0..=frame.len() {
        let mut dec = MessageDecoder::new(u32::MAX as usize);
        dec.push(Bytes::copy_from_slice(&frame[..split]));
        let mut got = dec.next_message().unwrap();
        dec.push(Bytes::copy_from_slice(&frame[split..]));
        if got.is_none() {
            got = dec.next_message().unwrap();
        }
        assert_eq!(dec.finish(), Ok(()));
        check_range_response(got.expect("message after both pieces"));
    }
}

#[test]
fn undecodable_response_is_a_protocol_error() {
    // Field 2 (kvs) announced with 16 bytes but only 1 present.
    let err = rpc::decode_response::<kv::Get>(Bytes::from_static(&[0x12, 0x10, 0x0a])).unwrap_err();
    match err {
        etcd_proto_core::Error::Protocol(msg) => assert!(msg.contains("/etcdserverpb.KV/Range")),
        other => panic!("expected protocol error, got {other:?}"),
    }
}
