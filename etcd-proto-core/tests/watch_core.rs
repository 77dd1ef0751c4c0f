//! Watches driven by hand (no sockets, simulated time): resume revisions, hidden repeated
//! Created responses, replay filtering, fragment reassembly, compaction (ending or resyncing),
//! rejected creates, unknown watch IDs, cancellation, reconnects with pending creates,
//! progress requests, require-leader streams and flow control.

mod common;

use bytes::Bytes;
use common::*;
use etcd_proto_core::proto::etcdserverpb::{
    watch_request::RequestUnion, RangeRequest, RangeResponse, ResponseHeader, WatchCreateRequest,
    WatchRequest, WatchResponse as PbWatchResponse,
};
use etcd_proto_core::proto::mvccpb::{event::EventType, Event as PbEvent, KeyValue};
use etcd_proto_core::{
    Error, EtcdErrorKind, Event, StreamId, Watch, WatchId, WatchResponse, WatchResponseKind,
    RESET_CANCEL,
};

const WATCH: &str = "/etcdserverpb.Watch/Watch";
const RANGE: &str = "/etcdserverpb.KV/Range";
const PERMISSION_DENIED: &str =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Every watch request in a request body.
fn requests(data: &Bytes) -> Vec<RequestUnion> {
    decode_all::<WatchRequest>(data)
        .into_iter()
        .map(|r| r.request_union.expect("a request"))
        .collect()
}

/// The create requests of a request body (which must hold nothing else).
#[track_caller]
fn creates(data: &Bytes) -> Vec<WatchCreateRequest> {
    requests(data)
        .into_iter()
        .map(|r| match r {
            RequestUnion::CreateRequest(c) => c,
            other => panic!("expected only create requests, got {other:?}"),
        })
        .collect()
}

/// The watch IDs cancelled by a request body (which must hold nothing else).
#[track_caller]
fn cancels(data: &Bytes) -> Vec<i64> {
    requests(data)
        .into_iter()
        .map(|r| match r {
            RequestUnion::CancelRequest(c) => c.watch_id,
            other => panic!("expected only cancel requests, got {other:?}"),
        })
        .collect()
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision,
        raft_term: 3,
    }
}

fn created(wire: i64, revision: i64) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(header(revision)),
        watch_id: wire,
        created: true,
        ..Default::default()
    }
}

fn kv(key: &str, revision: i64, value: &[u8]) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: 2,
        mod_revision: revision,
        version: 1,
        value: Bytes::copy_from_slice(value),
        lease: 0,
    }
}

fn put(key: &str, revision: i64) -> PbEvent {
    put_value(key, revision, b"v")
}

fn put_value(key: &str, revision: i64, value: &[u8]) -> PbEvent {
    PbEvent {
        r#type: EventType::Put as i32,
        kv: Some(kv(key, revision, value)),
        prev_kv: None,
    }
}

fn events_at(wire: i64, revision: i64, events: Vec<PbEvent>) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(header(revision)),
        watch_id: wire,
        events,
        ..Default::default()
    }
}

fn progress(wire: i64, revision: i64) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(header(revision)),
        watch_id: wire,
        ..Default::default()
    }
}

/// Mod revisions of a response's events.
fn revisions(response: &WatchResponse) -> Vec<i64> {
    response
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect()
}

/// The events, which must all be watch responses.
#[track_caller]
fn responses(events: Vec<Event>) -> Vec<(WatchId, WatchResponse, usize)> {
    events
        .into_iter()
        .map(|e| match e {
            Event::WatchResponse {
                watch,
                response,
                size,
                ..
            } => (watch, response, size),
            other => panic!("expected only watch responses, got {other:?}"),
        })
        .collect()
}

#[track_caller]
fn one_response(events: Vec<Event>) -> (WatchId, WatchResponse, usize) {
    let mut r = responses(events);
    assert_eq!(r.len(), 1, "expected one watch response: {r:?}");
    r.remove(0)
}

impl Sim {
    fn watch(&mut self, watch: Watch) -> WatchId {
        let now = self.now;
        self.core.watch(watch, now).unwrap()
    }

    /// Connects the endpoint, expects the watch stream to open and answers its headers.
    #[track_caller]
    fn open_watch_stream(&mut self) -> Opened {
        let (_, out) = self.connect();
        let opened = out.one_open();
        check_watch_stream(&opened);
        self.headers_ok(opened.stream);
        opened
    }

    /// The stream breaks under the client (not a halting error): the core reopens it at once
    /// (first failure, same endpoint). Returns the new stream, its headers answered.
    #[track_caller]
    fn break_stream(&mut self, stream: StreamId) -> Opened {
        let now = self.now;
        self.core
            .handle_stream_error(stream, "stream broke", true, now);
        let opened = self.out().one_open();
        check_watch_stream(&opened);
        assert_ne!(opened.stream, stream);
        self.headers_ok(opened.stream);
        opened
    }

    /// Drains the transmits, asserting there is nothing but capacity releases.
    #[track_caller]
    fn releases_only(&mut self) -> usize {
        let out = self.out();
        assert!(out.only_releases(), "expected only releases: {out:?}");
        out.released()
    }

    /// Drains transmits, asserting nothing but releases, and the events.
    #[track_caller]
    fn drain_events(&mut self) -> Vec<Event> {
        self.releases_only();
        self.events()
    }
}

#[track_caller]
fn check_watch_stream(opened: &Opened) {
    assert_eq!(opened.path(), WATCH);
    assert!(!opened.end_stream, "the watch request stream stays open");
    assert!(
        opened.manual_flow_control,
        "watch capacity is released by the core"
    );
}

/// Starts the watchers, opens the stream (checking one create each, in order, with the
/// client-chosen wire IDs 1, 2, ...) and answers every create with Created at `revision`.
fn setup(watches: Vec<Watch>, revision: i64) -> (Sim, Vec<WatchId>, StreamId) {
    let mut sim = Sim::new();
    let ids: Vec<WatchId> = watches.into_iter().map(|w| sim.watch(w)).collect();
    let opened = sim.open_watch_stream();
    let c = creates(&opened.body);
    let wires: Vec<i64> = c.iter().map(|c| c.watch_id).collect();
    let expected: Vec<i64> = ids.iter().map(|id| id.0 as i64).collect();
    assert_eq!(wires, expected, "one create per watcher, in order");
    for id in &ids {
        sim.message(opened.stream, &created(id.0 as i64, revision));
    }
    let events = sim.drain_events();
    let announced: Vec<WatchId> = events
        .iter()
        .filter_map(|e| match e {
            Event::WatchCreated { watch, revision: r } => {
                assert_eq!(*r, revision);
                Some(*watch)
            }
            _ => None,
        })
        .collect();
    assert_eq!(announced, ids);
    (sim, ids, opened.stream)
}

// ---------------------------------------------------------------------------------------------
// (1) Resume revisions
// ---------------------------------------------------------------------------------------------

#[test]
fn resume_after_events_starts_after_the_last_event() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("foo").prev_kv()], 10);
    sim.message(
        stream,
        &events_at(1, 13, vec![put("foo", 12), put("foo", 13)]),
    );
    let (id, resp, _) = one_response(sim.drain_events());
    assert_eq!(id, ids[0]);
    assert_eq!(resp.kind, WatchResponseKind::Events);
    assert_eq!(revisions(&resp), [12, 13]);

    let opened = sim.break_stream(stream);
    let c = creates(&opened.body);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].watch_id, 1, "the same wire ID on the new stream");
    assert_eq!(c[0].start_revision, 14, "last event mod_revision + 1");
    assert_eq!(c[0].key, Bytes::from_static(b"foo"));
    assert!(c[0].prev_kv, "the options survive the resume");

    // And again after more events on the resumed stream.
    sim.message(opened.stream, &created(1, 14));
    sim.message(opened.stream, &events_at(1, 20, vec![put("foo", 20)]));
    let (_, resp, _) = one_response(sim.drain_events());
    assert_eq!(revisions(&resp), [20]);
    let opened = sim.break_stream(opened.stream);
    assert_eq!(creates(&opened.body)[0].start_revision, 21);
}

#[test]
fn resume_after_progress_starts_after_the_progress_revision() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("foo").progress_notify()], 10);
    sim.message(stream, &progress(1, 20));
    let (id, resp, size) = one_response(sim.drain_events());
    assert_eq!(id, ids[0]);
    assert_eq!(resp.kind, WatchResponseKind::Progress);
    assert_eq!(resp.header.revision, 20);
    assert!(resp.events.is_empty());
    assert_eq!(size, 0);

    let opened = sim.break_stream(stream);
    let c = creates(&opened.body);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].start_revision, 21, "progress revision + 1");
    assert!(c[0].progress_notify);
}

#[test]
fn resume_of_a_watch_from_now_starts_after_the_created_revision() {
    let mut sim = Sim::new();
    let id = sim.watch(Watch::new("foo"));
    let opened = sim.open_watch_stream();
    assert_eq!(creates(&opened.body)[0].start_revision, 0, "0: from now");
    sim.message(opened.stream, &created(1, 10));
    let events = sim.drain_events();
    assert!(
        matches!(events.as_slice(), [Event::WatchCreated { watch, revision: 10 }] if *watch == id),
        "{events:?}"
    );

    let opened = sim.break_stream(opened.stream);
    let c = creates(&opened.body);
    // Go resumes at 10 and may deliver an event of revision 10, which happened before the
    // watch was created.
    assert_eq!(
        c[0].start_revision, 11,
        "Created revision + 1, not the revision"
    );
}

#[test]
fn resume_with_an_explicit_start_and_no_events_keeps_the_start() {
    let (mut sim, _, stream) = setup(vec![Watch::new("foo").start_revision(5)], 10);
    let opened = sim.break_stream(stream);
    let c = creates(&opened.body);
    assert_eq!(
        c[0].start_revision, 5,
        "events from 5 on were never delivered"
    );

    // Still 5 after a second failure (the repeated Created says nothing about events).
    sim.message(opened.stream, &created(1, 12));
    assert!(sim.drain_events().is_empty());
    let opened = sim.break_stream(opened.stream);
    assert_eq!(creates(&opened.body)[0].start_revision, 5);
}

#[test]
fn resume_before_the_first_created_keeps_the_requested_start() {
    // Both a watch from now and one from an explicit revision, broken before Created.
    let mut sim = Sim::new();
    sim.watch(Watch::new("a"));
    sim.watch(Watch::new("b").start_revision(7));
    let opened = sim.open_watch_stream();
    let opened = sim.break_stream(opened.stream);
    let starts: Vec<i64> = creates(&opened.body)
        .iter()
        .map(|c| c.start_revision)
        .collect();
    assert_eq!(starts, [0, 7]);
}

// ---------------------------------------------------------------------------------------------
// (2) Repeated Created responses
// ---------------------------------------------------------------------------------------------

#[test]
fn repeated_created_after_a_resume_is_hidden() {
    let mut sim = Sim::new();
    let a = sim.watch(Watch::new("a").created_notify());
    let b = sim.watch(Watch::new("b"));
    let opened = sim.open_watch_stream();
    sim.message(opened.stream, &created(1, 10));
    sim.message(opened.stream, &created(2, 10));
    let events = sim.drain_events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(events[0], Event::WatchCreated { watch, revision: 10 } if watch == a));
    match &events[1] {
        Event::WatchResponse {
            watch, response, ..
        } => {
            assert_eq!(*watch, a);
            assert_eq!(response.kind, WatchResponseKind::Created);
            assert_eq!(response.header.revision, 10);
        }
        other => panic!("expected the Created response of a: {other:?}"),
    }
    assert!(matches!(events[2], Event::WatchCreated { watch, revision: 10 } if watch == b));

    // Two resumes: the Created responses are resumes, not news.
    let mut stream = opened.stream;
    for revision in [15, 20] {
        let opened = sim.break_stream(stream);
        stream = opened.stream;
        sim.message(stream, &created(1, revision));
        sim.message(stream, &created(2, revision));
        let events = sim.drain_events();
        assert!(events.is_empty(), "resume at {revision}: {events:?}");
    }

    // The watchers still work.
    sim.message(stream, &events_at(1, 21, vec![put("a", 21)]));
    sim.message(stream, &events_at(2, 22, vec![put("b", 22)]));
    let r = responses(sim.drain_events());
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].0, revisions(&r[0].1)), (a, vec![21]));
    assert_eq!((r[1].0, revisions(&r[1].1)), (b, vec![22]));
}

// ---------------------------------------------------------------------------------------------
// (3) Replays
// ---------------------------------------------------------------------------------------------

#[test]
fn events_below_next_rev_are_dropped() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k").prefix()], 10);
    let mut delivered = Vec::new();
    sim.message(
        stream,
        &events_at(1, 13, vec![put("k1", 12), put("k2", 13)]),
    );
    for (_, resp, _) in responses(sim.drain_events()) {
        delivered.extend(revisions(&resp));
    }

    // The same stream replays an old revision: dropped.
    sim.message(stream, &events_at(1, 13, vec![put("k1", 12)]));
    assert!(sim.drain_events().is_empty(), "replay of 12 delivered");

    let opened = sim.break_stream(stream);
    assert_eq!(creates(&opened.body)[0].start_revision, 14);
    sim.message(opened.stream, &created(1, 14));
    // A server that resumes too early: 13 again, then 14.
    sim.message(
        opened.stream,
        &events_at(1, 14, vec![put("k2", 13), put("k3", 14)]),
    );
    let (id, resp, _) = one_response(sim.drain_events());
    assert_eq!(id, ids[0]);
    assert_eq!(revisions(&resp), [14], "only the new event of the response");
    delivered.extend(revisions(&resp));
    // A response of nothing but replays: nothing delivered at all.
    sim.message(opened.stream, &events_at(1, 14, vec![put("k3", 14)]));
    assert!(sim.drain_events().is_empty());
    sim.message(opened.stream, &events_at(1, 15, vec![put("k1", 15)]));
    for (_, resp, _) in responses(sim.drain_events()) {
        delivered.extend(revisions(&resp));
    }
    assert_eq!(
        delivered,
        [12, 13, 14, 15],
        "every event exactly once, in order"
    );
}

// ---------------------------------------------------------------------------------------------
// (4) Fragments
// ---------------------------------------------------------------------------------------------

#[test]
fn fragments_are_one_response_under_every_split() {
    let fragment = |events: Vec<PbEvent>, more: bool| PbWatchResponse {
        header: Some(header(12)),
        watch_id: 1,
        fragment: more,
        events,
        ..Default::default()
    };
    let mut wire = Vec::new();
    wire.extend_from_slice(&encode(&fragment(
        vec![put("k/a", 12), put("k/b", 12)],
        true,
    )));
    wire.extend_from_slice(&encode(&fragment(vec![put("k/c", 12)], true)));
    wire.extend_from_slice(&encode(&fragment(
        vec![put("k/d", 12), put("k/e", 12)],
        false,
    )));
    let wire = Bytes::from(wire);

    for split in 0..=wire.len() {
        let (mut sim, ids, stream) = setup(vec![Watch::new("k/").prefix().fragment()], 10);
        let (first, second) = (wire.slice(..split), wire.slice(split..));
        sim.data(stream, first.clone());
        assert_eq!(sim.releases_only(), first.len(), "split {split}");
        let mut got = sim.events();
        if split < wire.len() {
            assert!(got.is_empty(), "split {split}: delivered early {got:?}");
        }
        sim.data(stream, second.clone());
        assert_eq!(sim.releases_only(), second.len(), "split {split}");
        got.extend(sim.events());
        let (id, resp, size) = one_response(got);
        assert_eq!(id, ids[0]);
        assert_eq!(resp.kind, WatchResponseKind::Events, "split {split}");
        let keys: Vec<&[u8]> = resp
            .events
            .iter()
            .map(|e| &e.kv.as_ref().unwrap().key[..])
            .collect();
        assert_eq!(
            keys,
            [&b"k/a"[..], b"k/b", b"k/c", b"k/d", b"k/e"],
            "split {split}"
        );
        assert_eq!(resp.header.revision, 12);
        assert_eq!(size, wire.len(), "the size counts every fragment");

        // The next revision is a response of its own.
        sim.message(stream, &events_at(1, 13, vec![put("k/a", 13)]));
        let (_, resp, _) = one_response(sim.drain_events());
        assert_eq!(revisions(&resp), [13], "split {split}");
    }
}

// ---------------------------------------------------------------------------------------------
// (5) Compaction
// ---------------------------------------------------------------------------------------------

fn compacted(wire: i64, revision: i64, compact_revision: i64) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(header(revision)),
        watch_id: wire,
        canceled: true,
        compact_revision,
        ..Default::default()
    }
}

#[test]
fn compaction_ends_the_watcher_with_watch_compacted() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("a"), Watch::new("b")], 10);
    sim.message(stream, &compacted(1, 20, 7));
    let out = sim.out();
    assert!(
        out.only_releases(),
        "the other watcher keeps the stream: {out:?}"
    );
    let events = sim.events();
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Event::WatchEnded { watch, error } => {
            assert_eq!(*watch, ids[0]);
            assert_eq!(
                *error,
                Some(Error::WatchCompacted {
                    compact_revision: 7
                })
            );
        }
        other => panic!("expected WatchEnded: {other:?}"),
    }
    // b is not affected.
    sim.message(stream, &events_at(2, 21, vec![put("b", 21)]));
    let (id, _, _) = one_response(sim.drain_events());
    assert_eq!(id, ids[1]);

    // b compacted too: the stream is reset, its last watcher gone.
    sim.message(stream, &compacted(2, 30, 25));
    let out = sim.out();
    assert!(out.sends.is_empty() && out.opens.is_empty(), "{out:?}");
    assert_eq!(out.resets, [(stream, RESET_CANCEL)]);
    let events = sim.events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::WatchEnded { watch, error: Some(Error::WatchCompacted { compact_revision: 25 }) }]
                if *watch == ids[1]
        ),
        "{events:?}"
    );
    assert_eq!(sim.core.watchers(), 0);
}

#[test]
fn compaction_in_resync_mode_snapshots_and_watches_again() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k/").prefix().resync_on_compaction()], 10);
    let id = ids[0];
    sim.message(stream, &events_at(1, 11, vec![put("k/a", 11)]));
    one_response(sim.drain_events());

    sim.message(stream, &compacted(1, 40, 30));
    let out = sim.out();
    assert!(out.resets.is_empty(), "{out:?}");
    // The old wire ID is freed on the server.
    assert_eq!(out.sends.len(), 1, "{out:?}");
    assert_eq!(out.sends[0].stream, stream);
    assert_eq!(cancels(&out.sends[0].data), [1]);
    // The range is re-read.
    assert_eq!(out.opens.len(), 1, "{out:?}");
    let range = &out.opens[0];
    assert_eq!(range.path(), RANGE);
    let req: Vec<RangeRequest> = decode_all(&range.body);
    assert_eq!(req.len(), 1);
    assert_eq!(req[0].key, Bytes::from_static(b"k/"));
    assert_eq!(req[0].range_end, Bytes::from_static(b"k0"));
    assert_eq!(req[0].revision, 0, "the current revision");
    assert!(sim.events().is_empty(), "the watcher goes on: no end");

    sim.respond(
        range.stream,
        &RangeResponse {
            header: Some(header(42)),
            kvs: vec![kv("k/a", 35, b"1"), kv("k/b", 41, b"2")],
            more: false,
            count: 2,
        },
    );
    let out = sim.out();
    assert!(out.opens.is_empty() && out.resets.is_empty(), "{out:?}");
    assert_eq!(out.sends.len(), 1, "{out:?}");
    assert_eq!(out.sends[0].stream, stream);
    let c = creates(&out.sends[0].data);
    assert_eq!(c.len(), 1);
    let new_wire = c[0].watch_id;
    assert_ne!(new_wire, 1, "a fresh wire ID");
    assert!(new_wire > 0);
    assert_eq!(c[0].start_revision, 43, "range header revision + 1");
    assert_eq!(c[0].key, Bytes::from_static(b"k/"));
    assert_eq!(c[0].range_end, Bytes::from_static(b"k0"));
    let (w, resp, _) = one_response(sim.events());
    assert_eq!(w, id);
    assert_eq!(resp.kind, WatchResponseKind::Snapshot);
    assert_eq!(resp.header.revision, 42);
    assert_eq!(revisions(&resp), [35, 41]);
    assert!(resp
        .events
        .iter()
        .all(|e| e.r#type == EventType::Put as i32));

    // Created under the new ID: not announced again; events flow under the new ID.
    sim.message(stream, &created(new_wire, 42));
    assert!(sim.drain_events().is_empty());
    sim.message(stream, &events_at(new_wire, 43, vec![put("k/c", 43)]));
    let (w, resp, _) = one_response(sim.drain_events());
    assert_eq!(w, id);
    assert_eq!(revisions(&resp), [43]);

    // A resume now uses the new ID and the new revision.
    let opened = sim.break_stream(stream);
    let c = creates(&opened.body);
    assert_eq!((c[0].watch_id, c[0].start_revision), (new_wire, 44));
}

// ---------------------------------------------------------------------------------------------
// (6) Rejected creates
// ---------------------------------------------------------------------------------------------

fn rejected(revision: i64, reason: &str) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(header(revision)),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: reason.into(),
        ..Default::default()
    }
}

#[track_caller]
fn assert_permission_denied(events: &[Event], id: WatchId) {
    match events {
        [Event::WatchEnded {
            watch,
            error: Some(Error::Etcd(e)),
        }] => {
            assert_eq!(*watch, id);
            assert_eq!(e.kind, EtcdErrorKind::PermissionDenied);
        }
        other => panic!("expected {id:?} ended with PermissionDenied: {other:?}"),
    }
}

#[test]
fn a_rejected_create_ends_only_the_oldest_pending_watcher() {
    let mut sim = Sim::new();
    let a = sim.watch(Watch::new("secret"));
    let b = sim.watch(Watch::new("public"));
    let opened = sim.open_watch_stream();
    assert_eq!(creates(&opened.body).len(), 2);

    sim.message(opened.stream, &rejected(10, PERMISSION_DENIED));
    let out = sim.out();
    assert!(
        out.only_releases(),
        "no cancel, no reset: b still waits: {out:?}"
    );
    assert_permission_denied(&sim.events(), a);

    sim.message(opened.stream, &created(2, 10));
    let events = sim.drain_events();
    assert!(
        matches!(events.as_slice(), [Event::WatchCreated { watch, revision: 10 }] if *watch == b),
        "{events:?}"
    );
    assert_eq!(sim.core.watchers(), 1);
    sim.message(opened.stream, &events_at(2, 11, vec![put("public", 11)]));
    let (w, _, _) = one_response(sim.drain_events());
    assert_eq!(w, b);
}

#[test]
fn cancelling_a_pending_watcher_keeps_rejections_matched() {
    // a is cancelled before its Created came; the server still answers its create first. The
    // rejection that follows is b's.
    let mut sim = Sim::new();
    let a = sim.watch(Watch::new("a"));
    let b = sim.watch(Watch::new("secret"));
    let c = sim.watch(Watch::new("c"));
    let opened = sim.open_watch_stream();
    let now = sim.now;
    sim.core.cancel_watch(a, now);
    let out = sim.out();
    assert!(
        out.is_empty(),
        "nothing to cancel on the server yet: {out:?}"
    );
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [Event::WatchEnded { watch, error: None }] if *watch == a),
        "{events:?}"
    );

    // a's Created: the server is told to cancel it.
    sim.message(opened.stream, &created(1, 10));
    let out = sim.out();
    assert_eq!(out.sends.len(), 1, "{out:?}");
    assert_eq!(cancels(&out.sends[0].data), [1]);
    assert!(sim.events().is_empty());

    // b's rejection ends b, not c.
    sim.message(opened.stream, &rejected(10, PERMISSION_DENIED));
    sim.releases_only();
    assert_permission_denied(&sim.events(), b);

    sim.message(opened.stream, &created(3, 10));
    let events = sim.drain_events();
    assert!(
        matches!(events.as_slice(), [Event::WatchCreated { watch, revision: 10 }] if *watch == c),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (7) Unknown wire IDs
// ---------------------------------------------------------------------------------------------

#[test]
fn events_for_an_unknown_wire_id_are_cancelled_once() {
    let (mut sim, _, stream) = setup(vec![Watch::new("a")], 10);
    let mut cancelled = Vec::new();
    for revision in 11..15 {
        sim.message(stream, &events_at(99, revision, vec![put("x", revision)]));
        let out = sim.out();
        assert!(out.opens.is_empty() && out.resets.is_empty(), "{out:?}");
        for s in &out.sends {
            assert_eq!(s.stream, stream);
            cancelled.extend(cancels(&s.data));
        }
        assert!(sim.events().is_empty(), "nothing delivered for ID 99");
    }
    assert_eq!(
        cancelled,
        [99],
        "one cancel request, however often it repeats"
    );
    // A progress notification for it does not trigger another one either.
    sim.message(stream, &progress(99, 20));
    assert!(sim.drain_events().is_empty());
}

// ---------------------------------------------------------------------------------------------
// (8) cancel_watch
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_watch_cancels_on_the_server_and_resets_the_stream_after_the_last() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("a"), Watch::new("b")], 10);
    let now = sim.now;
    sim.core.cancel_watch(ids[0], now);
    let sent = sim.out().one_send();
    assert_eq!(sent.stream, stream);
    assert!(!sent.end_stream);
    assert_eq!(cancels(&sent.data), [1]);
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [Event::WatchEnded { watch, error: None }] if *watch == ids[0]),
        "{events:?}"
    );
    // The server's confirmation is ignored.
    let mut confirm = progress(1, 10);
    confirm.canceled = true;
    sim.message(stream, &confirm);
    let out = sim.out();
    assert!(out.only_releases(), "{out:?}");
    assert!(sim.events().is_empty());

    // Cancelling twice is harmless.
    sim.core.cancel_watch(ids[0], now);
    sim.assert_quiet("second cancel");

    sim.core.cancel_watch(ids[1], now);
    let out = sim.out();
    assert_eq!(out.resets, [(stream, RESET_CANCEL)], "{out:?}");
    // A cancel request before the reset is allowed (the reset alone frees the watcher).
    assert!(out.sends.len() <= 1, "{out:?}");
    for s in &out.sends {
        assert_eq!(cancels(&s.data), [2]);
    }
    assert!(out.opens.is_empty() && out.connects.is_empty());
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [Event::WatchEnded { watch, error: None }] if *watch == ids[1]),
        "{events:?}"
    );
    assert_eq!(sim.core.watchers(), 0);
    // Nothing is armed and nothing reopens.
    assert_eq!(sim.core.poll_timeout(), None);
    sim.wait(SEC);
    sim.timeout();
    sim.assert_quiet("after the last watcher");
}

// ---------------------------------------------------------------------------------------------
// (9) Reconnect with pending creates
// ---------------------------------------------------------------------------------------------

#[test]
fn reconnect_while_creates_are_pending_sends_them_again() {
    for reject_first in [false, true] {
        let mut sim = Sim::new();
        let a = sim.watch(Watch::new("a"));
        let b = sim.watch(Watch::new("b"));
        let (endpoint, out) = sim.connect();
        let opened = out.one_open();
        check_watch_stream(&opened);
        let wires: Vec<i64> = creates(&opened.body).iter().map(|c| c.watch_id).collect();
        assert_eq!(wires, [1, 2]);
        sim.headers_ok(opened.stream);

        // Lost before any Created.
        sim.wait(5 * MS);
        let now = sim.now;
        sim.core
            .handle_connection_lost(endpoint, "reset by peer", now);
        assert!(
            sim.events().is_empty(),
            "watchers survive a lost connection"
        );
        let (endpoint2, out) = sim.connect();
        assert_eq!(endpoint2, endpoint);
        let reopened = out.one_open();
        check_watch_stream(&reopened);
        assert_ne!(reopened.stream, opened.stream);
        let c = creates(&reopened.body);
        let sent: Vec<(i64, i64)> = c.iter().map(|c| (c.watch_id, c.start_revision)).collect();
        assert_eq!(sent, [(1, 0), (2, 0)], "both creates again, once each");
        sim.headers_ok(reopened.stream);

        // Late bytes of the old stream are ignored.
        sim.message(opened.stream, &created(1, 9));
        sim.assert_quiet("old stream");

        if reject_first {
            sim.message(reopened.stream, &rejected(10, PERMISSION_DENIED));
            sim.releases_only();
            assert_permission_denied(&sim.events(), a);
        } else {
            sim.message(reopened.stream, &created(1, 10));
        }
        sim.message(reopened.stream, &created(2, 11));
        let events = sim.drain_events();
        let announced: Vec<(WatchId, i64)> = events
            .iter()
            .map(|e| match e {
                Event::WatchCreated { watch, revision } => (*watch, *revision),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        if reject_first {
            assert_eq!(announced, [(b, 11)]);
        } else {
            assert_eq!(announced, [(a, 10), (b, 11)]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (10) Progress requests
// ---------------------------------------------------------------------------------------------

#[test]
fn progress_request_reaches_every_created_watcher() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("a"), Watch::new("b")], 10);
    // A third watcher whose create is still pending gets no progress.
    let c = sim.watch(Watch::new("c"));
    let sent = sim.out().one_send();
    assert_eq!(creates(&sent.data)[0].watch_id, c.0 as i64);

    let now = sim.now;
    sim.core.request_progress(now).unwrap();
    let sent = sim.out().one_send();
    assert_eq!(sent.stream, stream);
    assert!(!sent.end_stream);
    let reqs = requests(&sent.data);
    assert!(
        matches!(reqs.as_slice(), [RequestUnion::ProgressRequest(_)]),
        "{reqs:?}"
    );

    sim.message(stream, &progress(-1, 30));
    let r = responses(sim.drain_events());
    let got: Vec<(WatchId, WatchResponseKind, i64)> = r
        .iter()
        .map(|(w, resp, _)| (*w, resp.kind, resp.header.revision))
        .collect();
    assert_eq!(
        got,
        [
            (ids[0], WatchResponseKind::Progress, 30),
            (ids[1], WatchResponseKind::Progress, 30)
        ]
    );

    // The stream-wide answer does not move resume points (see the next test): a resume
    // starts after what was delivered.
    let opened = sim.break_stream(stream);
    let starts: Vec<(i64, i64)> = creates(&opened.body)
        .iter()
        .map(|c| (c.watch_id, c.start_revision))
        .collect();
    assert_eq!(starts, [(1, 11), (2, 11), (3, 0)]);
}

#[test]
fn an_early_stream_wide_progress_does_not_drop_the_events_behind_it() {
    // etcd #15220 (3.4.23, 3.5.1, ...): the answer to a progress request goes through another
    // queue than the events and can overtake an event of its own revision.
    let (mut sim, ids, stream) = setup(vec![Watch::new("a")], 10);
    let now = sim.now;
    sim.core.request_progress(now).unwrap();
    sim.out().one_send();
    sim.message(stream, &progress(-1, 11));
    sim.message(stream, &events_at(1, 11, vec![put("a", 11)]));
    let r = responses(sim.drain_events());
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!((r[0].0, r[0].1.kind), (ids[0], WatchResponseKind::Progress));
    assert_eq!((r[1].0, r[1].1.kind), (ids[0], WatchResponseKind::Events));
    assert_eq!(
        revisions(&r[1].1),
        [11],
        "the event is delivered, not dropped"
    );
    // And it is delivered once: the resume starts after it.
    let opened = sim.break_stream(stream);
    assert_eq!(creates(&opened.body)[0].start_revision, 12);
}

#[test]
fn progress_request_without_a_stream_is_an_error() {
    let mut sim = Sim::new();
    let now = sim.now;
    assert!(sim.core.request_progress(now).is_err());
}

// ---------------------------------------------------------------------------------------------
// (11) require_leader
// ---------------------------------------------------------------------------------------------

#[test]
fn require_leader_watchers_have_their_own_stream_and_end_on_no_leader() {
    let mut sim = Sim::new();
    let shared = sim.watch(Watch::new("s"));
    let leader1 = sim.watch(Watch::new("l1").require_leader());
    let leader2 = sim.watch(Watch::new("l2").require_leader());
    let (_, mut out) = sim.connect();
    assert_eq!(out.opens.len(), 2, "{out:?}");
    let (mut with_leader, mut plain): (Vec<Opened>, Vec<Opened>) = out
        .opens
        .drain(..)
        .partition(|o| o.header("hasleader").is_some());
    assert!(out.is_empty(), "{out:?}");
    let (leader_stream, plain_stream) = (with_leader.remove(0), plain.remove(0));
    check_watch_stream(&leader_stream);
    check_watch_stream(&plain_stream);
    assert_eq!(leader_stream.header("hasleader"), Some("true"));
    let lw: Vec<i64> = creates(&leader_stream.body)
        .iter()
        .map(|c| c.watch_id)
        .collect();
    let pw: Vec<i64> = creates(&plain_stream.body)
        .iter()
        .map(|c| c.watch_id)
        .collect();
    assert_eq!(lw, [leader1.0 as i64, leader2.0 as i64]);
    assert_eq!(pw, [shared.0 as i64]);

    for (s, wires) in [(&plain_stream, &pw), (&leader_stream, &lw)] {
        sim.headers_ok(s.stream);
        for w in wires.iter() {
            sim.message(s.stream, &created(*w, 10));
        }
    }
    assert_eq!(sim.drain_events().len(), 3);

    // The member loses its leader.
    sim.trailers(
        leader_stream.stream,
        &status_trailers("14", Some("etcdserver: no leader")),
    );
    let out = sim.out();
    assert!(
        out.is_empty(),
        "not reopened, nothing else touched: {out:?}"
    );
    let ended: Vec<WatchId> = sim
        .events()
        .into_iter()
        .map(|e| match e {
            Event::WatchEnded {
                watch,
                error: Some(Error::Etcd(e)),
            } => {
                assert_eq!(e.kind, EtcdErrorKind::NoLeader);
                watch
            }
            other => panic!("expected NoLeader ends: {other:?}"),
        })
        .collect();
    let mut ended = ended;
    ended.sort();
    assert_eq!(ended, [leader1, leader2]);

    // The shared-stream watcher is unaffected.
    assert_eq!(sim.core.watchers(), 1);
    sim.message(plain_stream.stream, &events_at(1, 11, vec![put("s", 11)]));
    let (w, _, _) = one_response(sim.drain_events());
    assert_eq!(w, shared);
}

// ---------------------------------------------------------------------------------------------
// (12) Flow control
// ---------------------------------------------------------------------------------------------

#[test]
fn capacity_is_held_while_a_watcher_is_over_its_buffer() {
    let (mut sim, ids, stream) = setup(
        vec![Watch::new("big").buffer_bytes(1000), Watch::new("other")],
        10,
    );
    let (big, other) = (ids[0], ids[1]);

    // 1200 bytes of value: the watcher goes over its limit with this response. The bytes
    // of the response itself were released as they arrived.
    let first = encode(&events_at(1, 11, vec![put_value("big", 11, &[7u8; 1200])]));
    sim.data(stream, first.clone());
    assert_eq!(sim.releases_only(), first.len());
    let (w, _, size1) = one_response(sim.events());
    assert_eq!(w, big);
    assert_eq!(size1, first.len());
    assert!(size1 > 1000);

    // Everything received from now on is held, whoever it is for (a partial message too).
    let second = encode(&events_at(1, 12, vec![put_value("big", 12, &[1u8; 300])]));
    let third = encode(&events_at(2, 13, vec![put("other", 13)]));
    let mut held = 0;
    for chunk in [
        second.slice(..100),
        second.slice(100..),
        third.slice(..3),
        third.slice(3..),
    ] {
        held += chunk.len();
        sim.data(stream, chunk);
        let out = sim.out();
        assert!(out.is_empty(), "no release while over the limit: {out:?}");
    }
    let r = responses(sim.events());
    assert_eq!(r.len(), 2, "responses are still delivered");
    assert_eq!((r[0].0, r[0].2), (big, second.len()));
    assert_eq!(r[1].0, other);
    let size3 = r[1].2;

    // The other watcher consuming changes nothing: big is still over.
    sim.core.watch_consumed(other, size3);
    sim.assert_quiet("other consumed");
    // big consumes its second response: still 1200+ bytes unconsumed, still over.
    sim.core.watch_consumed(big, second.len());
    sim.assert_quiet("still over");
    // big consumes its first: under the limit, exactly the held bytes are released.
    sim.core.watch_consumed(big, size1);
    let out = sim.out();
    assert!(out.only_releases(), "{out:?}");
    assert_eq!(out.releases, [(stream, held)]);
    sim.assert_quiet("released once");

    // Back to releasing at once.
    let fourth = encode(&events_at(1, 14, vec![put("big", 14)]));
    sim.data(stream, fourth.clone());
    assert_eq!(sim.out().releases, [(stream, fourth.len())]);
}

#[test]
fn under_the_limit_every_chunk_is_released_at_once() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k").buffer_bytes(1000)], 10);
    let msg = encode(&events_at(1, 11, vec![put_value("k", 11, &[9u8; 500])]));
    let chunks = [
        msg.slice(..2),
        msg.slice(2..7),
        msg.slice(7..300),
        msg.slice(300..),
    ];
    for (i, chunk) in chunks.iter().enumerate() {
        sim.data(stream, chunk.clone());
        let out = sim.out();
        assert!(out.only_releases(), "{out:?}");
        assert_eq!(
            out.releases,
            [(stream, chunk.len())],
            "chunk {i} released as it arrived"
        );
        let events = sim.events();
        if i + 1 < chunks.len() {
            assert!(events.is_empty(), "partial message delivered: {events:?}");
        } else {
            let (w, _, size) = one_response(events);
            assert_eq!((w, size), (ids[0], msg.len()));
        }
    }
    // Under the limit (500 + framing < 1000): the next response is released at once too.
    let next = encode(&events_at(1, 12, vec![put("k", 12)]));
    sim.data(stream, next.clone());
    assert_eq!(sim.out().releases, [(stream, next.len())]);
}

// ---------------------------------------------------------------------------------------------
// Shared server watches (identical coalescing watches from "now" share one server watch)
// ---------------------------------------------------------------------------------------------

/// A watcher's Created announcement (revision), from a list of events.
fn created_revision(events: &[Event], id: WatchId) -> Option<i64> {
    events.iter().find_map(|e| match e {
        Event::WatchCreated { watch, revision } if *watch == id => Some(*revision),
        _ => None,
    })
}

/// The events each watcher got, by watcher.
fn revisions_by_watcher(events: Vec<Event>) -> Vec<(WatchId, Vec<i64>)> {
    responses(events)
        .into_iter()
        .map(|(id, resp, _)| (id, revisions(&resp)))
        .collect()
}

#[test]
fn identical_watches_share_one_server_watch_and_each_gets_every_event() {
    let mut sim = Sim::new();
    let leader = sim.watch(Watch::new("p/").prefix().coalesce(true));
    let follower = sim.watch(Watch::new("p/").prefix().coalesce(true));
    let other = sim.watch(Watch::new("p/").prefix().coalesce(true).prev_kv()); // different options
    let opened = sim.open_watch_stream();
    let c = creates(&opened.body);
    let wires: Vec<i64> = c.iter().map(|c| c.watch_id).collect();
    assert_eq!(
        wires,
        [leader.0 as i64, other.0 as i64],
        "one create per distinct watch"
    );
    sim.message(opened.stream, &created(leader.0 as i64, 10));
    sim.message(opened.stream, &created(other.0 as i64, 10));
    let events = sim.drain_events();
    assert_eq!(created_revision(&events, leader), Some(10));
    assert_eq!(created_revision(&events, follower), Some(10));
    assert_eq!(created_revision(&events, other), Some(10));

    sim.message(
        opened.stream,
        &events_at(leader.0 as i64, 12, vec![put("p/a", 11), put("p/b", 12)]),
    );
    let got = revisions_by_watcher(sim.drain_events());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(leader, vec![11, 12])));
    assert!(got.contains(&(follower, vec![11, 12])));
    assert_eq!(sim.core.watchers(), 3);
}

#[test]
fn a_late_follower_starts_after_what_the_client_has_seen() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k").coalesce(true)], 10);
    // The application writes (revision 15) and its answer comes back before it watches; the
    // server has not yet sent the leader that event.
    let now = sim.now;
    let _put = sim
        .core
        .start_unary(
            etcd_proto_core::rpc::kv::Put::new("k", "v"),
            Default::default(),
            now,
        )
        .unwrap();
    let put_stream = sim.out().one_open().stream;
    sim.respond(
        put_stream,
        &etcd_proto_core::proto::etcdserverpb::PutResponse {
            header: Some(header(15)),
            prev_kv: None,
        },
    );
    let _ = sim.events();
    let follower = sim.watch(Watch::new("k").coalesce(true));
    let out = sim.out();
    assert!(
        out.sends.is_empty() && out.opens.is_empty(),
        "no create: {out:?}"
    );
    let events = sim.events();
    assert_eq!(created_revision(&events, follower), Some(15));
    sim.message(stream, &events_at(1, 16, vec![put("k", 15), put("k", 16)]));
    let got = revisions_by_watcher(sim.drain_events());
    assert!(got.contains(&(follower, vec![16])), "{got:?}");
    assert!(got.contains(&(ids[0], vec![15, 16])), "{got:?}");
}

#[test]
fn cancelling_the_leader_hands_its_server_watch_to_a_follower() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k").coalesce(true)], 10);
    let f1 = sim.watch(Watch::new("k").coalesce(true));
    let f2 = sim.watch(Watch::new("k").coalesce(true));
    let _ = sim.drain_events();
    let now = sim.now;
    sim.core.cancel_watch(ids[0], now);
    let out = sim.out();
    assert!(
        out.sends.is_empty() && out.resets.is_empty(),
        "no cancel: {out:?}"
    );
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [Event::WatchEnded { watch, error: None }] if *watch == ids[0]),
        "{events:?}"
    );
    // The server watch (wire ID 1) goes on, now for the followers.
    sim.message(stream, &events_at(1, 11, vec![put("k", 11)]));
    let got = revisions_by_watcher(sim.drain_events());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(f1, vec![11])) && got.contains(&(f2, vec![11])));
    // After a failure only the new leader is re-created, under the same wire ID.
    let opened = sim.break_stream(stream);
    let c = creates(&opened.body);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].watch_id, 1);
    assert_eq!(c[0].start_revision, 12);
    sim.message(opened.stream, &created(1, 12));
    sim.message(opened.stream, &events_at(1, 13, vec![put("k", 13)]));
    let got = revisions_by_watcher(sim.drain_events());
    assert!(
        got.contains(&(f1, vec![13])) && got.contains(&(f2, vec![13])),
        "{got:?}"
    );
    // The last one out cancels the server watch.
    sim.core.cancel_watch(f1, now);
    assert!(sim.out().sends.is_empty());
    let _ = sim.events();
    sim.core.cancel_watch(f2, now);
    let out = sim.out();
    assert_eq!(out.resets, [(opened.stream, RESET_CANCEL)], "{out:?}");
    for s in &out.sends {
        assert_eq!(cancels(&s.data), [1]);
    }
    assert_eq!(sim.core.watchers(), 0);
}

#[test]
fn followers_of_a_pending_leader_are_created_with_it_and_end_with_it() {
    let mut sim = Sim::new();
    let leader = sim.watch(Watch::new("k").coalesce(true));
    let follower = sim.watch(Watch::new("k").coalesce(true).created_notify());
    let opened = sim.open_watch_stream();
    assert_eq!(creates(&opened.body).len(), 1);
    assert!(sim.events().is_empty(), "nothing created yet");
    sim.message(opened.stream, &created(1, 20));
    let events = sim.drain_events();
    assert_eq!(created_revision(&events, leader), Some(20));
    assert_eq!(created_revision(&events, follower), Some(20));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::WatchResponse { watch, response, .. }
            if *watch == follower && response.kind == WatchResponseKind::Created)),
        "created_notify is the follower's own: {events:?}"
    );
    // Compaction ends the server watch: both end with it.
    sim.message(opened.stream, &compacted(1, 30, 25));
    let events = sim.events();
    for id in [leader, follower] {
        assert!(
            events.iter().any(|e| matches!(e, Event::WatchEnded { watch, error: Some(Error::WatchCompacted { compact_revision: 25 }) } if *watch == id)),
            "{id:?} ends compacted: {events:?}"
        );
    }
    assert_eq!(sim.core.watchers(), 0);
}

#[test]
fn a_stream_wide_progress_reaches_followers_once_and_moves_no_one() {
    let (mut sim, ids, stream) = setup(vec![Watch::new("k").coalesce(true)], 10);
    let follower = sim.watch(Watch::new("k").coalesce(true));
    let _ = sim.drain_events();
    let now = sim.now;
    sim.core.request_progress(now).unwrap();
    let _ = sim.out();
    sim.message(stream, &progress(-1, 15));
    let got = responses(sim.drain_events());
    let kinds: Vec<(WatchId, WatchResponseKind)> =
        got.iter().map(|(id, r, _)| (*id, r.kind)).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&(ids[0], WatchResponseKind::Progress)));
    assert!(kinds.contains(&(follower, WatchResponseKind::Progress)));
    // An event at 12 that was still behind the progress reaches both.
    sim.message(stream, &events_at(1, 12, vec![put("k", 12)]));
    let got = revisions_by_watcher(sim.drain_events());
    assert!(got.contains(&(ids[0], vec![12])) && got.contains(&(follower, vec![12])));
}

#[test]
fn watches_from_a_revision_or_with_their_own_stream_do_not_share() {
    let (mut sim, _ids, stream) = setup(vec![Watch::new("k")], 10);
    let _historic = sim.watch(Watch::new("k").start_revision(5));
    let _own = sim.watch(Watch::new("k").own_stream());
    let _resync = sim.watch(Watch::new("k").resync_on_compaction());
    let _shared = sim.watch(Watch::new("k")); // coalesced by default: nothing sent
    let _plain = sim.watch(Watch::new("k").coalesce(false)); // a server watch of its own
    let out = sim.out();
    let on_shared: usize = out
        .sends
        .iter()
        .filter(|s| s.stream == stream)
        .map(|s| creates(&s.data).len())
        .sum();
    assert_eq!(
        on_shared, 3,
        "the historic, the resync and the plain watch: {out:?}"
    );
}

#[test]
fn a_progress_request_reaches_the_require_leader_stream_too() {
    let mut sim = Sim::new();
    let plain = sim.watch(Watch::new("s"));
    let with_leader = sim.watch(Watch::new("l").require_leader());
    let _own = sim.watch(Watch::new("o").own_stream());
    let (_, out) = sim.connect();
    assert_eq!(out.opens.len(), 3, "{out:?}");
    for o in &out.opens {
        sim.headers_ok(o.stream);
        for c in creates(&o.body) {
            sim.message(o.stream, &created(c.watch_id, 10));
        }
    }
    let _ = sim.drain_events();
    let now = sim.now;
    sim.core.request_progress(now).unwrap();
    let out = sim.out();
    let asked: Vec<StreamId> = out
        .sends
        .iter()
        .filter(|s| {
            requests(&s.data)
                .iter()
                .all(|r| matches!(r, RequestUnion::ProgressRequest(_)))
        })
        .map(|s| s.stream)
        .collect();
    assert_eq!(
        asked.len(),
        2,
        "the two shared streams, not the own one: {out:?}"
    );
    for stream in asked {
        sim.message(stream, &progress(-1, 12));
    }
    let got: Vec<WatchId> = responses(sim.drain_events())
        .into_iter()
        .map(|(id, r, _)| {
            assert_eq!(r.kind, WatchResponseKind::Progress);
            id
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&plain) && got.contains(&with_leader));
}

// Found by the watch_sequence fuzz target: the leader is cancelled while its create "from now"
// is pending. The promoted follower answers that create: it and the remaining followers start
// after the server's creation revision (never before it: the server sends nothing older), and
// a re-create after a failure resumes from there.
#[test]
fn a_follower_promoted_before_the_create_is_answered_starts_at_the_creation_revision() {
    let mut sim = Sim::new();
    let leader = sim.watch(Watch::new("k"));
    let f1 = sim.watch(Watch::new("k"));
    let f2 = sim.watch(Watch::new("k"));
    let opened = sim.open_watch_stream();
    assert_eq!(creates(&opened.body).len(), 1);
    let now = sim.now;
    sim.core.cancel_watch(leader, now);
    let _ = sim.drain_events();
    sim.message(opened.stream, &created(leader.0 as i64, 5));
    let events = sim.events();
    assert_eq!(created_revision(&events, f1), Some(5), "{events:?}");
    assert_eq!(created_revision(&events, f2), Some(5), "{events:?}");
    let _ = sim.out();
    let again = sim.break_stream(opened.stream);
    let c = creates(&again.body);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].start_revision, 6, "resume after the creation revision");
    sim.message(again.stream, &created(c[0].watch_id, 7));
    sim.message(
        again.stream,
        &events_at(c[0].watch_id, 7, vec![put("k", 6), put("k", 7)]),
    );
    let got = revisions_by_watcher(sim.drain_events());
    assert!(
        got.contains(&(f1, vec![6, 7])) && got.contains(&(f2, vec![6, 7])),
        "{got:?}"
    );
}
