//! Micro-benchmarks of the core's hot paths, with a small timing harness (no dependencies):
//!
//! * `put_encode`: a Put (8-byte key, 256-byte value) turned into its gRPC frame;
//! * `range_decode_1000`: a RangeResponse with 1000 key-values decoded (values are slices of
//!   the received buffer, not copies);
//! * `watch_decode_1` / `watch_decode_100` (and `watch_decode_prost_*` for comparison): a
//!   WatchResponse with 1 or 100 events (16-byte keys, 64-byte values) decoded, per event;
//! * `watch_dispatch_10000` (and `_10` for comparison): one WatchResponse handed to the right
//!   watcher among 10,000 (resp. 10) on one stream, through `Core::handle_data`;
//! * `lease_renew_10000`: 10,000 kept leases renewed: due renewals sent in one batch, the
//!   answers fed back, and the next renewal scheduled, with simulated time (per renewal).
//!
//! Run with `cargo bench -p etcd-proto-core --bench core` (add a name to run only the
//! benchmarks whose name contains it). Each line is the median of 7 samples.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use etcd_proto_core::grpc::{encode_message, MessageDecoder};
use etcd_proto_core::proto::etcdserverpb::{
    watch_request::RequestUnion, LeaseKeepAliveResponse, RangeResponse, ResponseHeader,
    WatchRequest, WatchResponse as PbWatchResponse,
};
use etcd_proto_core::proto::mvccpb::{Event as PbEvent, KeyValue};
use etcd_proto_core::rpc::kv::{Get, Put};
use etcd_proto_core::rpc::{decode_response, UnaryRpc};
use etcd_proto_core::{Config, Core, Event, StreamId, Transmit, Watch, WatchId};
use http::{HeaderMap, HeaderValue, StatusCode};
use prost::Message;

const SAMPLES: usize = 7;

/// Times `f` (which does `per_call` operations per call): median ns per operation.
fn measure(name: &str, per_call: u64, mut f: impl FnMut()) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    // Calibrate: enough calls for ~50 ms per sample.
    let mut calls = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..calls {
            f();
        }
        if t.elapsed() > Duration::from_millis(50) || calls >= 1 << 30 {
            break;
        }
        calls *= 2;
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed().as_nanos() as f64 / (calls * per_call) as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<24} {:>12.1} ns/op   (min {:.1}, max {:.1}; {} ops per sample)",
        samples[SAMPLES / 2],
        samples[0],
        samples[SAMPLES - 1],
        calls * per_call
    );
}

fn grpc_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h
}

fn frame<M: Message>(msg: &M) -> Bytes {
    encode_message(msg, usize::MAX).expect("encodes")
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision,
        raft_term: 3,
    }
}

/// A core connected to one endpoint, with a simulated clock.
struct Sim {
    core: Core,
    now: Instant,
}

impl Sim {
    fn new() -> Sim {
        let now = Instant::now();
        let config = Config::from_endpoints(["http://127.0.0.1:2379"]).expect("config");
        Sim {
            core: Core::new(config, now).expect("core"),
            now,
        }
    }

    /// Carries out connects at once; returns the streams opened and the data sent.
    fn pump(&mut self) -> (Vec<(StreamId, Bytes)>, Vec<Bytes>) {
        let mut opened = Vec::new();
        let mut sent = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit() {
                progressed = true;
                match t {
                    Transmit::Connect { endpoint, .. } => {
                        self.core.handle_connected(endpoint, self.now)
                    }
                    Transmit::OpenStream { stream, body, .. } => opened.push((stream, body)),
                    Transmit::SendData { data, .. } => sent.push(data),
                    _ => {}
                }
            }
            if !progressed {
                return (opened, sent);
            }
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }
}

fn messages<M: Message + Default>(data: &Bytes) -> Vec<M> {
    let mut d = MessageDecoder::new(usize::MAX);
    d.push(data.clone());
    std::iter::from_fn(|| d.next_message().expect("framing"))
        .map(|m| M::decode(m).expect("decodes"))
        .collect()
}

fn bench_put_encode() {
    let key = Bytes::from_static(b"00000042");
    let value = Bytes::from(vec![b'v'; 256]);
    measure("put_encode", 1, || {
        let req = Put::new(key.clone(), value.clone())
            .into_request()
            .expect("valid");
        black_box(encode_message(&req, usize::MAX).expect("encodes"));
    });
}

fn bench_range_decode() {
    let kvs = (0..1000)
        .map(|i| KeyValue {
            key: Bytes::from(format!("key/{i:012}")),
            create_revision: 10 + i,
            mod_revision: 1000 + i,
            version: 1,
            value: Bytes::from(vec![b'v'; 256]),
            lease: 0,
        })
        .collect();
    let resp = RangeResponse {
        header: Some(header(2000)),
        kvs,
        more: false,
        count: 1000,
    };
    let body = Bytes::from(resp.encode_to_vec());
    measure("range_decode_1000", 1, || {
        let r = decode_response::<Get>(body.clone()).expect("decodes");
        assert_eq!(r.kvs.len(), 1000);
        black_box(r);
    });
}

/// `watchers` watchers on one stream, every one created; then one response at a time for a
/// pseudo-random watcher, consumed at once.
/// A WatchResponse as the benchmark's watch rows receive it: `events` PUT events of a
/// 16-byte key and a 64-byte value, with a full header.
fn watch_response_bytes(events: usize) -> Bytes {
    let resp = PbWatchResponse {
        header: Some(ResponseHeader {
            cluster_id: 0xcdf8_18f2_3c61_5c41,
            member_id: 0x8e9e_05c5_2164_694d,
            revision: 1_234_567,
            raft_term: 2,
        }),
        watch_id: 517,
        events: (0..events)
            .map(|i| PbEvent {
                r#type: 0,
                kv: Some(KeyValue {
                    key: Bytes::from(format!("wp/{i:013}")),
                    create_revision: 1_000_000 + i as i64,
                    mod_revision: 1_234_000 + i as i64,
                    version: 3,
                    value: Bytes::from(vec![b'x'; 64]),
                    lease: 0,
                }),
                prev_kv: None,
            })
            .collect(),
        ..Default::default()
    };
    Bytes::from(resp.encode_to_vec())
}

/// The hand-written watch decoder against prost's, per event.
fn bench_watch_decode() {
    for events in [1, 100] {
        let msg = watch_response_bytes(events);
        measure(&format!("watch_decode_{events}"), events as u64, || {
            black_box(etcd_proto_core::wire::decode_watch_response(black_box(&msg)).unwrap());
        });
        measure(
            &format!("watch_decode_prost_{events}"),
            events as u64,
            || {
                black_box(PbWatchResponse::decode(black_box(msg.clone())).unwrap());
            },
        );
    }
}

fn bench_watch_dispatch(watchers: usize) {
    let mut sim = Sim::new();
    let ids: Vec<WatchId> = (0..watchers)
        .map(|i| {
            sim.core
                .watch(Watch::new(format!("key/{i:08}")), sim.now)
                .expect("watch")
        })
        .collect();
    let (opened, sent) = sim.pump();
    let (stream, body) = opened.into_iter().next().expect("the watch stream opened");
    let mut wires = Vec::new();
    for data in std::iter::once(&body).chain(&sent) {
        for req in messages::<WatchRequest>(data) {
            if let Some(RequestUnion::CreateRequest(c)) = req.request_union {
                wires.push(c.watch_id);
            }
        }
    }
    assert_eq!(wires.len(), watchers, "one create per watcher");
    sim.core
        .handle_response_headers(stream, StatusCode::OK, &grpc_headers(), false, sim.now);
    let mut created = BytesMut::new();
    for &w in &wires {
        created.extend_from_slice(&frame(&PbWatchResponse {
            header: Some(header(1)),
            watch_id: w,
            created: true,
            ..Default::default()
        }));
    }
    sim.core
        .handle_data(stream, created.freeze(), false, sim.now);
    sim.pump();
    let announced = sim
        .events()
        .iter()
        .filter(|e| matches!(e, Event::WatchCreated { .. }))
        .count();
    assert_eq!(announced, ids.len());
    // Pre-encoded responses, one event each, for watchers in a scattered order.
    let mut revision = 2i64;
    let mut pick = 0x2545_f491_4f6c_dd1du64;
    let responses: Vec<Bytes> = (0..4096)
        .map(|_| {
            pick ^= pick << 13;
            pick ^= pick >> 7;
            pick ^= pick << 17;
            let w = wires[(pick % wires.len() as u64) as usize];
            revision += 1;
            frame(&PbWatchResponse {
                header: Some(header(revision)),
                watch_id: w,
                events: vec![PbEvent {
                    r#type: 0,
                    kv: Some(KeyValue {
                        key: Bytes::from_static(b"key/00000000"),
                        create_revision: 2,
                        mod_revision: revision,
                        version: 1,
                        value: Bytes::from_static(&[b'x'; 64]),
                        lease: 0,
                    }),
                    prev_kv: None,
                }],
                ..Default::default()
            })
        })
        .collect();
    // Revisions must keep growing for the events to be new: offset each pass.
    let mut i = 0usize;
    let name = format!("watch_dispatch_{watchers}");
    measure(&name, 1, || {
        let msg = responses[i % responses.len()].clone();
        i += 1;
        sim.core.handle_data(stream, msg, false, sim.now);
        while let Some(ev) = sim.core.poll_event() {
            if let Event::WatchResponse { watch, size, .. } = ev {
                sim.core.watch_consumed(watch, size);
            }
        }
        while sim.core.poll_transmit().is_some() {}
    });
    black_box(ids);
}

/// 10,000 kept leases (TTL 9 s): each round advances the clock to the next renewal, takes the
/// batch of requests the core sends, and answers them all.
fn bench_lease_renewals() {
    const LEASES: usize = 10_000;
    let mut sim = Sim::new();
    for id in 1..=LEASES as i64 {
        sim.core
            .keep_alive(id, Some(Duration::from_secs(9)), sim.now)
            .expect("keep_alive");
    }
    let (opened, mut sent) = sim.pump();
    let (stream, _) = opened
        .into_iter()
        .next()
        .expect("the keepalive stream opened");
    sim.core
        .handle_response_headers(stream, StatusCode::OK, &grpc_headers(), false, sim.now);
    // The answers to a whole round, encoded once (the core takes them in any order).
    let mut all = BytesMut::new();
    for id in 1..=LEASES as i64 {
        all.extend_from_slice(&frame(&LeaseKeepAliveResponse {
            header: Some(header(1)),
            id,
            ttl: 9,
        }));
    }
    let answers = all.freeze();
    let mut renewed = 0usize;
    measure("lease_renew_10000", LEASES as u64, || {
        if sent.is_empty() {
            // Move the clock to the next renewal (TTL/3 after the last sends).
            if let Some(at) = sim.core.poll_timeout() {
                sim.now = sim.now.max(at);
            }
            sim.core.handle_timeout(sim.now);
            sent = sim.pump().1;
        }
        assert!(!sent.is_empty(), "the due renewals were sent");
        renewed += sent.len();
        sent.clear();
        sim.core
            .handle_data(stream, answers.clone(), false, sim.now);
        let mut kept = 0;
        while let Some(e) = sim.core.poll_event() {
            kept += usize::from(matches!(e, Event::LeaseKeptAlive { .. }));
        }
        assert_eq!(kept, LEASES, "every lease renewed once per round");
        sent = sim.pump().1;
    });
    black_box(renewed);
}

fn main() {
    bench_put_encode();
    bench_range_decode();
    bench_watch_decode();
    bench_watch_dispatch(10);
    bench_watch_dispatch(10_000);
    bench_lease_renewals();
}
