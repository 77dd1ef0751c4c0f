//! `watch_decode`: the input is one WatchResponse message body. The core's hand-written
//! decoder (`etcd_proto_core::wire`) must give exactly prost's answer: the same message when
//! prost accepts the input, an error when prost rejects it. Keys and values it hands out must
//! be slices of the input buffer.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use etcd_proto_core::proto::bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb as pb;
use etcd_proto_core::proto::prost::Message;
use etcd_proto_core::wire::decode_watch_response;

pub fn run(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let ours = decode_watch_response(&body);
    let reference = pb::WatchResponse::decode(body.clone());
    match (ours, reference) {
        (Ok(ours), Ok(reference)) => {
            assert_eq!(ours, reference, "decoders disagree");
            let inside = |b: &Bytes| {
                b.is_empty() || {
                    let start = body.as_ptr() as usize;
                    let p = b.as_ptr() as usize;
                    p >= start && p + b.len() <= start + body.len()
                }
            };
            for event in &ours.events {
                for kv in event.kv.iter().chain(event.prev_kv.iter()) {
                    assert!(inside(&kv.key) && inside(&kv.value), "a copy, not a slice");
                }
            }
        }
        (Err(_), Err(_)) => {}
        (ours, reference) => panic!(
            "decoders disagree on acceptance: ours {:?}, prost {:?}",
            ours.map(|_| "ok"),
            reference.map(|_| "ok")
        ),
    }
}
