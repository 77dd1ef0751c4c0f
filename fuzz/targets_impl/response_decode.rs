//! `response_decode`: the input is one gRPC response message body (the bytes after the 5-byte
//! prefix). It is decoded as every response type the client reads. Decoding may fail but must
//! never panic; whatever decodes must survive the enum getters (unknown enum values included),
//! `Debug`, and an encode/decode round trip; and the typed path
//! (`rpc::decode_response::<R>`) must agree with decoding the message type directly.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use etcd_proto_core::proto::bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb as pb;
use etcd_proto_core::proto::grpc::health::v1 as health;
use etcd_proto_core::proto::prost::Message;
use etcd_proto_core::proto::{mvccpb, v3electionpb as election, v3lockpb as lock};
use etcd_proto_core::rpc::{decode_response, kv, UnaryRpc};

pub fn run(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);

    // Typed requests: the typed path must agree with a direct decode.
    typed::<kv::Get>(&body, touch_range);
    typed::<kv::Put>(&body, |r| touch_kv_opt(&r.prev_kv));
    typed::<kv::Delete>(&body, |r| r.prev_kvs.iter().for_each(touch_kv));
    typed::<kv::Txn>(&body, touch_txn);
    typed::<kv::Compact>(&body, |_| {});

    // Raw requests for everything else the client reads.
    typed::<pb::RangeRequest>(&body, touch_range);
    typed::<pb::LeaseGrantRequest>(&body, |_| {});
    typed::<pb::LeaseRevokeRequest>(&body, |_| {});
    typed::<pb::LeaseTimeToLiveRequest>(&body, |_| {});
    typed::<pb::LeaseLeasesRequest>(&body, |_| {});
    typed::<pb::MemberListRequest>(&body, |r| {
        for m in &r.members {
            let _ = (
                &m.name,
                m.peer_ur_ls.len(),
                m.client_ur_ls.len(),
                m.is_learner,
            );
        }
    });
    typed::<pb::MemberAddRequest>(&body, |_| {});
    typed::<pb::StatusRequest>(&body, |_| {});
    typed::<pb::AlarmRequest>(&body, |r| {
        for a in &r.alarms {
            let _ = a.alarm();
        }
    });
    typed::<pb::AuthenticateRequest>(&body, |_| {});
    typed::<pb::AuthRoleGetRequest>(&body, |r| {
        for p in &r.perm {
            let _ = p.perm_type();
        }
    });
    typed::<pb::AuthUserGetRequest>(&body, |_| {});
    typed::<election::LeaderRequest>(&body, |r| touch_kv_opt(&r.kv));
    typed::<election::CampaignRequest>(&body, |_| {});
    typed::<lock::LockRequest>(&body, |_| {});
    typed::<health::HealthCheckRequest>(&body, |r| {
        let _ = r.status();
    });

    // Streamed responses (no unary request type).
    plain::<pb::WatchResponse>(&body, |r| {
        for e in &r.events {
            touch_event(e);
        }
        let _ = (&r.cancel_reason, r.watch_id, r.compact_revision, r.fragment);
    });
    plain::<pb::LeaseKeepAliveResponse>(&body, |_| {});
    plain::<pb::RangeStreamResponse>(&body, |r| {
        if let Some(r) = &r.range_response {
            touch_range(r);
        }
    });
    plain::<pb::SnapshotResponse>(&body, |_| {});
    plain::<mvccpb::Event>(&body, touch_event);
}

/// Decodes `body` through the typed path and directly; both must agree.
fn typed<R: UnaryRpc>(body: &Bytes, touch: impl Fn(&R::Response))
where
    R::Response: PartialEq + std::fmt::Debug,
{
    let via_rpc = decode_response::<R>(body.clone());
    let direct = R::Response::decode(body.clone());
    match (&via_rpc, &direct) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}: typed and direct decode differ", R::METHOD.path),
        (Err(e), Err(_)) => {
            // The error names the method and is a protocol error, never retryable.
            let text = e.to_string();
            assert!(text.contains(R::METHOD.path), "{text}");
            assert!(!e.is_retryable());
        }
        _ => panic!(
            "{}: typed decode {:?} but direct decode {:?}",
            R::METHOD.path,
            via_rpc.is_ok(),
            direct.is_ok()
        ),
    }
    if let Ok(msg) = direct {
        check(&msg);
        touch(&msg);
    }
}

fn plain<M: Message + Default + PartialEq + std::fmt::Debug>(body: &Bytes, touch: impl Fn(&M)) {
    if let Ok(msg) = M::decode(body.clone()) {
        check(&msg);
        touch(&msg);
    }
}

/// Re-encoding a decoded message and decoding it again gives the same message.
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let _ = format!("{msg:?}");
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded.len(), msg.encoded_len());
    let again = M::decode(&encoded[..]).expect("re-encoded message decodes");
    assert_eq!(&again, msg, "encode/decode round trip changed the message");
}

fn touch_range(r: &pb::RangeResponse) {
    if let Some(h) = &r.header {
        let _ = (h.cluster_id, h.member_id, h.revision, h.raft_term);
    }
    r.kvs.iter().for_each(touch_kv);
    let _ = (r.more, r.count);
}

fn touch_kv_opt(kv: &Option<mvccpb::KeyValue>) {
    if let Some(kv) = kv {
        touch_kv(kv);
    }
}

fn touch_kv(kv: &mvccpb::KeyValue) {
    let _ = (
        kv.key.len(),
        kv.value.len(),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
    );
}

fn touch_event(e: &mvccpb::Event) {
    // Unknown enum values must be readable: the getter falls back to the default.
    let t = e.r#type();
    let _ = t.as_str_name();
    assert_eq!(
        mvccpb::event::EventType::try_from(e.r#type).is_ok(),
        t as i32 == e.r#type,
        "enum getter disagrees with TryFrom"
    );
    touch_kv_opt(&e.kv);
    touch_kv_opt(&e.prev_kv);
}

fn touch_txn(r: &pb::TxnResponse) {
    use pb::response_op::Response;
    for op in &r.responses {
        match &op.response {
            Some(Response::ResponseRange(r)) => touch_range(r),
            Some(Response::ResponsePut(p)) => touch_kv_opt(&p.prev_kv),
            Some(Response::ResponseDeleteRange(d)) => d.prev_kvs.iter().for_each(touch_kv),
            Some(Response::ResponseTxn(t)) => touch_txn(t),
            None => {}
        }
    }
}
