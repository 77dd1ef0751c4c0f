//! Lease keepalive driven by hand (no sockets, simulated time): renewal instants, renewals
//! after a reconnect close to the expiry, loss detection (NotFound, Expired, Revoked),
//! subscribers, keep_alive_once, batching on the one keepalive stream, and the cost of an
//! answer with many leases.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use etcd_proto_core::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, ResponseHeader,
};
use etcd_proto_core::{Event, KeepAliveId, LeaseLostReason, StreamId, RESET_CANCEL};

const KEEPALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
const NS: Duration = Duration::from_nanos(1);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The lease IDs of a keepalive request body.
fn renewed(data: &Bytes) -> Vec<i64> {
    decode_all::<LeaseKeepAliveRequest>(data)
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn answer(lease: i64, ttl: i64) -> LeaseKeepAliveResponse {
    LeaseKeepAliveResponse {
        header: Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 10,
            raft_term: 3,
        }),
        id: lease,
        ttl,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Sim {
    fn keep(&mut self, lease: i64, ttl: Option<Duration>) -> KeepAliveId {
        let now = self.now;
        self.core.keep_alive(lease, ttl, now).unwrap()
    }

    /// Connects the endpoint and expects the keepalive stream to open with one batch of
    /// renewals; answers the headers. Returns the stream and the renewed leases.
    #[track_caller]
    fn open_keeper(&mut self) -> (StreamId, Vec<i64>) {
        let (_, out) = self.connect();
        let (stream, leases) = check_keeper_open(out);
        self.headers_ok(stream);
        (stream, leases)
    }

    /// Answers a renewal; returns the events.
    fn answer(&mut self, stream: StreamId, lease: i64, ttl: i64) -> Vec<Event> {
        self.message(stream, &answer(lease, ttl));
        self.events()
    }

    /// Expects nothing but one renewal batch on `stream`; returns its leases.
    #[track_caller]
    fn renewal(&mut self, stream: StreamId) -> Vec<i64> {
        let sent = self.out().one_send();
        assert_eq!(sent.stream, stream);
        assert!(!sent.end_stream, "the keepalive request stream stays open");
        renewed(&sent.data)
    }

    fn poll_timeout(&self) -> Instant {
        self.core.poll_timeout().expect("a timer is armed")
    }
}

/// The keepalive stream opened (no body, request stream open, `hasleader`) followed by one
/// renewal batch on it.
#[track_caller]
fn check_keeper_open(mut out: Out) -> (StreamId, Vec<i64>) {
    assert_eq!(out.opens.len(), 1, "{out:?}");
    let opened = out.opens.remove(0);
    assert_eq!(opened.path(), KEEPALIVE);
    assert!(!opened.end_stream);
    assert!(opened.body.is_empty());
    assert_eq!(opened.header("hasleader"), Some("true"));
    let sent = out.one_send();
    assert_eq!(sent.stream, opened.stream);
    (opened.stream, renewed(&sent.data))
}

#[track_caller]
fn kept_alive(events: &[Event]) -> Vec<(KeepAliveId, i64, i64)> {
    events
        .iter()
        .map(|e| match e {
            Event::LeaseKeptAlive { keeper, lease, ttl } => (*keeper, *lease, *ttl),
            other => panic!("expected LeaseKeptAlive, got {other:?}"),
        })
        .collect()
}

#[track_caller]
fn lost(events: &[Event]) -> Vec<(KeepAliveId, i64, LeaseLostReason)> {
    events
        .iter()
        .map(|e| match e {
            Event::LeaseLost {
                keeper,
                lease,
                reason,
            } => (*keeper, *lease, *reason),
            other => panic!("expected LeaseLost, got {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (1) Renewal instants
// ---------------------------------------------------------------------------------------------

#[test]
fn renewal_is_due_a_third_of_the_ttl_after_the_send() {
    for ttl in [2u64, 5, 60] {
        let mut sim = Sim::new();
        let k = sim.keep(7, Some(secs(ttl)));
        let (stream, leases) = sim.open_keeper();
        assert_eq!(
            leases,
            [7],
            "TTL {ttl}: renewed as soon as the stream opens"
        );
        let mut sent_at = sim.now;

        for round in 0..3 {
            sim.wait(10 * MS);
            let events = sim.answer(stream, 7, ttl as i64);
            assert_eq!(kept_alive(&events), [(k, 7, ttl as i64)]);
            let out = sim.out();
            assert!(out.is_empty(), "TTL {ttl} round {round}: {out:?}");

            let due = sent_at + secs(ttl) / 3;
            assert_eq!(
                sim.poll_timeout(),
                due,
                "TTL {ttl} round {round}: renewal at send + TTL/3"
            );
            // Not a nanosecond early.
            sim.set(due - NS);
            sim.timeout();
            sim.assert_quiet("just before the renewal");
            sim.set(due);
            sim.timeout();
            assert_eq!(sim.renewal(stream), [7], "TTL {ttl} round {round}");
            assert!(sim.events().is_empty());
            // Outstanding: the next timer is the confirmed expiry.
            assert_eq!(sim.poll_timeout(), sent_at + secs(ttl), "TTL {ttl}");
            sent_at = due;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (2) Never past the expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn a_reconnect_just_before_the_expiry_renews_at_once() {
    let mut config = base_config();
    // The reconnect attempt stays pending until we answer it.
    config.connect_timeout = secs(300);
    let mut sim = Sim::with_config(config);
    let k = sim.keep(7, Some(secs(60)));
    let (ep, out) = sim.connect();
    let (stream, _) = check_keeper_open(out);
    sim.headers_ok(stream);
    sim.at(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 7, 60)).len(), 1);
    let expiry = sim.t0 + secs(60);
    assert_eq!(sim.poll_timeout(), sim.t0 + secs(20));

    // The connection is lost before the renewal; the reconnect does not complete.
    sim.at(secs(15));
    let now = sim.now;
    sim.core.handle_connection_lost(ep, "reset by peer", now);
    let out = sim.out();
    assert_eq!(out.connects, [ep], "{out:?}");
    assert!(out.sends.is_empty() && out.opens.is_empty(), "{out:?}");
    assert!(sim.events().is_empty());

    // The renewal instant passes with no stream: nothing to send, nothing lost.
    assert_eq!(sim.poll_timeout(), expiry, "only the expiry is armed");
    sim.at(secs(20));
    sim.timeout();
    sim.assert_quiet("renewal due without a stream");

    // Connected again one second before the expiry: renewed on the new stream at once.
    sim.at(secs(59));
    let now = sim.now;
    sim.core.handle_connected(ep, now);
    let (new_stream, leases) = check_keeper_open(sim.out());
    assert_ne!(new_stream, stream);
    assert_eq!(leases, [7]);
    assert!(sim.events().is_empty(), "not lost");
    sim.headers_ok(new_stream);

    sim.at(secs(59) + 10 * MS);
    assert_eq!(kept_alive(&sim.answer(new_stream, 7, 60)), [(k, 7, 60)]);
    // Confirmed until 59 + 60; next renewal a third of the TTL after the send.
    assert_eq!(sim.poll_timeout(), sim.t0 + secs(59 + 20));
    // The old expiry passes harmlessly.
    sim.at(secs(61));
    sim.timeout();
    sim.assert_quiet("old expiry");
}

#[test]
fn the_next_renewal_is_never_later_than_the_safety_margin() {
    // Whatever the answer's latency, the next renewal goes out no later than
    // expiry - TTL/6 (or at once when that instant has passed).
    for ttl in [1u64, 2, 5, 10, 60, 3600] {
        let ttl_d = secs(ttl);
        for permille in [0u32, 1, 100, 300, 334, 500, 800, 833, 834, 900, 999] {
            let mut sim = Sim::new();
            sim.keep(7, Some(ttl_d));
            let (stream, _) = sim.open_keeper();
            let sent_at = sim.now;
            let expiry = sent_at + ttl_d;
            let latency = ttl_d * permille / 1000;
            sim.set(sent_at + latency);
            let events = sim.answer(stream, 7, ttl as i64);
            assert_eq!(kept_alive(&events).len(), 1);
            let limit = expiry - ttl_d / 6;
            let out = sim.out();
            let what = format!("TTL {ttl}, answer after {latency:?}");
            if out.sends.is_empty() {
                assert!(out.is_empty(), "{what}: {out:?}");
                let due = sim.poll_timeout();
                assert!(due <= limit, "{what}: renewal after expiry - TTL/6");
                assert!(due > sim.now, "{what}");
                assert_eq!(due, sent_at + ttl_d / 3, "{what}");
                sim.set(due);
                sim.timeout();
                assert_eq!(sim.renewal(stream), [7], "{what}");
            } else {
                // Only when the TTL/3 instant has passed already.
                assert!(sim.now >= sent_at + ttl_d / 3, "{what}: sent early");
                assert_eq!(renewed(&out.sends[0].data), [7], "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (3) Loss detection
// ---------------------------------------------------------------------------------------------

#[test]
fn ttl_zero_is_not_found_for_every_subscriber() {
    let mut sim = Sim::new();
    let a = sim.keep(7, Some(secs(30)));
    let b = sim.keep(7, None);
    let (stream, leases) = sim.open_keeper();
    assert_eq!(leases, [7], "one renewal per lease, not per subscriber");
    sim.wait(10 * MS);
    let events = sim.answer(stream, 7, 0);
    assert_eq!(
        lost(&events),
        [
            (a, 7, LeaseLostReason::NotFound),
            (b, 7, LeaseLostReason::NotFound)
        ]
    );
    let out = sim.out();
    assert_eq!(
        out.resets,
        [(stream, RESET_CANCEL)],
        "no lease left: {out:?}"
    );
    assert!(out.sends.is_empty());
    assert_eq!(sim.core.kept_leases(), 0);
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn no_answer_until_the_expiry_is_expired_exactly_then() {
    let mut sim = Sim::new();
    let a = sim.keep(7, Some(secs(9)));
    let b = sim.keep(7, None);
    let (stream, _) = sim.open_keeper();
    let sent_at = sim.now;
    sim.wait(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 7, 9)).len(), 2);
    // The renewal goes out and is never answered.
    sim.set(sent_at + secs(3));
    sim.timeout();
    assert_eq!(sim.renewal(stream), [7]);
    let expiry = sent_at + secs(9);
    assert_eq!(sim.poll_timeout(), expiry);

    sim.set(expiry - NS);
    sim.timeout();
    sim.assert_quiet("a nanosecond before the expiry");
    sim.set(expiry);
    sim.timeout();
    assert_eq!(
        lost(&sim.events()),
        [
            (a, 7, LeaseLostReason::Expired),
            (b, 7, LeaseLostReason::Expired)
        ]
    );
    let out = sim.out();
    assert_eq!(out.resets, [(stream, RESET_CANCEL)], "{out:?}");
    assert!(out.sends.is_empty());
    // A late answer changes nothing.
    sim.answer(stream, 7, 9);
    sim.assert_quiet("late answer");
}

#[test]
fn no_first_answer_expires_after_the_hint() {
    let mut sim = Sim::new();
    let k = sim.keep(7, Some(secs(4)));
    sim.open_keeper();
    assert_eq!(sim.poll_timeout(), sim.t0 + secs(4));
    sim.at(secs(4) - NS);
    sim.timeout();
    sim.assert_quiet("before the presumed expiry");
    sim.at(secs(4));
    sim.timeout();
    assert_eq!(lost(&sim.events()), [(k, 7, LeaseLostReason::Expired)]);
}

// ---------------------------------------------------------------------------------------------
// (4) Subscribers, stop, revoke, once
// ---------------------------------------------------------------------------------------------

#[test]
fn every_subscriber_gets_every_renewal_until_stopped() {
    let mut sim = Sim::new();
    let a = sim.keep(7, Some(secs(6)));
    let b = sim.keep(7, Some(secs(6)));
    let (stream, leases) = sim.open_keeper();
    assert_eq!(leases, [7]);
    let mut sent_at = sim.now;
    for _ in 0..3 {
        sim.wait(10 * MS);
        let events = sim.answer(stream, 7, 6);
        assert_eq!(kept_alive(&events), [(a, 7, 6), (b, 7, 6)]);
        sim.set(sent_at + secs(2));
        sim.timeout();
        assert_eq!(sim.renewal(stream), [7]);
        sent_at = sim.now;
    }

    // a stops: renewals go on for b.
    let now = sim.now;
    sim.core.stop_keep_alive(a, now);
    sim.assert_quiet("a stopped, b left");
    sim.wait(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 7, 6)), [(b, 7, 6)]);
    sim.set(sent_at + secs(2));
    sim.timeout();
    assert_eq!(sim.renewal(stream), [7]);
    sim.wait(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 7, 6)), [(b, 7, 6)]);

    // b, the last, stops: the stream is reset and renewals stop.
    let now = sim.now;
    sim.core.stop_keep_alive(b, now);
    let out = sim.out();
    assert_eq!(out.resets, [(stream, RESET_CANCEL)], "{out:?}");
    assert!(out.sends.is_empty());
    assert!(sim.events().is_empty(), "stopping is not a loss");
    assert_eq!(sim.core.kept_leases(), 0);
    assert_eq!(sim.core.poll_timeout(), None);
    for s in [2, 4, 6, 60] {
        sim.wait(secs(s));
        sim.timeout();
        sim.assert_quiet("after the last subscriber stopped");
    }
    // Stopping again is harmless.
    let now = sim.now;
    sim.core.stop_keep_alive(b, now);
    sim.assert_quiet("stopped twice");
}

#[test]
fn stopping_one_lease_leaves_the_others_renewed() {
    let mut sim = Sim::new();
    let a = sim.keep(7, Some(secs(3)));
    let b = sim.keep(8, Some(secs(3)));
    let (stream, leases) = sim.open_keeper();
    assert_eq!(sorted(leases), [7, 8]);
    let sent_at = sim.now;
    sim.wait(10 * MS);
    sim.answer(stream, 7, 3);
    sim.answer(stream, 8, 3);
    let now = sim.now;
    sim.core.stop_keep_alive(a, now);
    sim.assert_quiet("lease 8 is still kept: no reset");
    sim.set(sent_at + secs(1));
    sim.timeout();
    assert_eq!(sim.renewal(stream), [8], "no renewal of the stopped lease");
    sim.wait(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 8, 3)), [(b, 8, 3)]);
}

#[test]
fn lease_revoked_is_revoked_for_every_subscriber() {
    let mut sim = Sim::new();
    let a = sim.keep(7, Some(secs(10)));
    let b = sim.keep(7, Some(secs(10)));
    let c = sim.keep(8, Some(secs(10)));
    let (stream, _) = sim.open_keeper();
    let now = sim.now;
    sim.core.lease_revoked(7, now);
    assert_eq!(
        lost(&sim.events()),
        [
            (a, 7, LeaseLostReason::Revoked),
            (b, 7, LeaseLostReason::Revoked)
        ]
    );
    sim.assert_quiet("lease 8 keeps the stream");
    // A late answer for 7 is ignored; 8 goes on.
    sim.wait(10 * MS);
    assert!(sim.answer(stream, 7, 10).is_empty());
    assert_eq!(kept_alive(&sim.answer(stream, 8, 10)), [(c, 8, 10)]);

    let now = sim.now;
    sim.core.lease_revoked(8, now);
    assert_eq!(lost(&sim.events()), [(c, 8, LeaseLostReason::Revoked)]);
    assert_eq!(sim.out().resets, [(stream, RESET_CANCEL)]);
    // Revoking an unknown lease is harmless.
    sim.core.lease_revoked(9, now);
    sim.assert_quiet("unknown lease");
}

#[test]
fn keep_alive_once_yields_one_renewal_and_ends() {
    let mut sim = Sim::new();
    let now = sim.now;
    let once = sim.core.keep_alive_once(7, now).unwrap();
    let (stream, leases) = sim.open_keeper();
    assert_eq!(leases, [7]);
    sim.wait(10 * MS);
    let events = sim.answer(stream, 7, 30);
    assert_eq!(kept_alive(&events), [(once, 7, 30)]);
    let out = sim.out();
    assert_eq!(out.resets, [(stream, RESET_CANCEL)], "{out:?}");
    assert_eq!(sim.core.kept_leases(), 0);
    for s in [10, 20, 30, 60] {
        sim.wait(secs(s));
        sim.timeout();
        sim.assert_quiet("after the one renewal");
    }
}

#[test]
fn keep_alive_once_on_a_kept_lease_renews_now() {
    let mut sim = Sim::new();
    let kept = sim.keep(7, Some(secs(60)));
    let (stream, _) = sim.open_keeper();
    sim.wait(10 * MS);
    sim.answer(stream, 7, 60);
    // Long before the regular renewal.
    sim.at(secs(5));
    let now = sim.now;
    let once = sim.core.keep_alive_once(7, now).unwrap();
    assert_eq!(sim.renewal(stream), [7], "renewed at once");
    sim.wait(10 * MS);
    let events = sim.answer(stream, 7, 60);
    assert_eq!(kept_alive(&events), [(kept, 7, 60), (once, 7, 60)]);
    sim.assert_quiet("the regular subscription goes on");
    assert_eq!(sim.core.kept_leases(), 1);
    // Next renewal a third of the TTL after the once-renewal was sent.
    assert_eq!(sim.poll_timeout(), sim.t0 + secs(25));
    sim.at(secs(25));
    sim.timeout();
    assert_eq!(sim.renewal(stream), [7]);
    sim.wait(10 * MS);
    assert_eq!(kept_alive(&sim.answer(stream, 7, 60)), [(kept, 7, 60)]);
}

// ---------------------------------------------------------------------------------------------
// (5) hasleader and batching
// ---------------------------------------------------------------------------------------------

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

#[test]
fn renewals_due_together_go_out_in_one_write() {
    let mut sim = Sim::new();
    let leases: Vec<i64> = (100..110).collect();
    for &l in &leases {
        sim.keep(l, Some(secs(30)));
    }
    // check_keeper_open asserts `hasleader: true` and a single SendData.
    let (stream, first) = sim.open_keeper();
    assert_eq!(sorted(first), leases, "one write for all ten");
    let sent_at = sim.now;

    // All answered at the same instant, in one DATA frame.
    sim.wait(10 * MS);
    let mut data = BytesMut::new();
    for &l in &leases {
        data.extend_from_slice(&encode(&answer(l, 30)));
    }
    sim.data(stream, data.freeze());
    assert_eq!(kept_alive(&sim.events()).len(), leases.len());
    sim.assert_quiet("answers");
    sim.set(sent_at + secs(10));
    sim.timeout();
    assert_eq!(sorted(sim.renewal(stream)), leases, "one write again");

    // Answered one by one at the same instant: still due together, still one write.
    sim.wait(10 * MS);
    let sent_at = sent_at + secs(10);
    for &l in &leases {
        sim.answer(stream, l, 30);
    }
    sim.assert_quiet("answers");
    sim.set(sent_at + secs(10));
    sim.timeout();
    assert_eq!(sorted(sim.renewal(stream)), leases);

    // A lease added on the open stream is renewed at once, on its own.
    sim.wait(MS);
    sim.keep(5, None);
    assert_eq!(sim.renewal(stream), [5]);
}

// ---------------------------------------------------------------------------------------------
// (6) Cost of an answer with many leases
// ---------------------------------------------------------------------------------------------

/// `n` leases kept, every one with a renewal outstanding. Returns the stream and the instant
/// the renewals went out.
fn kept(n: i64) -> (Sim, StreamId, Instant) {
    let mut sim = Sim::new();
    for l in 1..=n {
        sim.keep(l, Some(secs(60)));
    }
    let (stream, leases) = sim.open_keeper();
    assert_eq!(leases.len() as i64, n);
    let now = sim.now;
    (sim, stream, now)
}

/// Smallest time (over many samples) to handle `CHUNK` renewal answers, with `n` leases kept.
fn answer_cost(n: i64, samples: usize) -> Duration {
    const CHUNK: usize = 100;
    let (mut sim, stream, mut sent_at) = kept(n);
    let answers: Vec<Bytes> = (1..=n).map(|l| encode(&answer(l, 60))).collect();
    let mut best = Duration::MAX;
    let mut taken = 0;
    while taken < samples {
        sim.set(sent_at + 10 * MS);
        let now = sim.now;
        for chunk in answers.chunks(CHUNK) {
            assert_eq!(chunk.len(), CHUNK);
            let start = Instant::now();
            for a in chunk {
                sim.core.handle_data(stream, a.clone(), false, now);
                while sim.core.poll_event().is_some() {}
            }
            best = best.min(start.elapsed());
            taken += 1;
        }
        assert!(sim.core.poll_transmit().is_none());
        // Every lease is due again a third of the TTL later, in one write.
        sent_at += secs(20);
        sim.set(sent_at);
        sim.timeout();
        let sent = sim.out().one_send();
        assert_eq!(renewed(&sent.data).len() as i64, n);
    }
    best
}

/// How much more `cost(10_000, ..)` takes than `cost(100, ..)`, after a warm-up (allocator,
/// caches). Each cost is the minimum over many samples, robust against a loaded machine:
/// noise only ever adds time.
fn cost_ratio_10000_vs_100(
    what: &str,
    cost: fn(i64, usize) -> Duration,
    warmup: usize,
    samples: usize,
) -> f64 {
    cost(100, warmup);
    let small = cost(100, samples);
    let large = cost(10_000, samples);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    eprintln!("{what}: {small:?} with 100 leases, {large:?} with 10000 leases (x{ratio:.2})");
    ratio
}

#[test]
fn an_answer_costs_about_the_same_with_10000_leases_as_with_100() {
    let ratio = cost_ratio_10000_vs_100("100 answers", answer_cost, 20, 400);
    // O(n) per answer would be ~100x; O(log n) is ~2x plus cache effects.
    assert!(
        ratio < 5.0,
        "an answer with 10000 leases costs {ratio:.1}x one with 100"
    );
}

#[test]
fn renewals_close_to_due_share_the_write_of_a_due_one() {
    // TTL 12 s: renewals every 4 s, and one may go up to 1 s (TTL/12) early.
    let mut sim = Sim::new();
    sim.keep(1, Some(secs(12)));
    let (stream, first) = sim.open_keeper();
    assert_eq!(first, [1]);
    let t0 = sim.now;
    sim.answer(stream, 1, 12);
    // Leases subscribed at scattered instants are each renewed at once, on their own.
    for (lease, after) in [(2, 500 * MS), (3, 900 * MS), (4, secs(2))] {
        sim.set(t0 + after);
        sim.keep(lease, Some(secs(12)));
        assert_eq!(
            sim.renewal(stream),
            [lease],
            "lease {lease} renewed on its own"
        );
        sim.answer(stream, lease, 12);
    }
    sim.assert_quiet("all answered");
    assert_eq!(sim.poll_timeout(), t0 + secs(4), "lease 1 is due first");
    // Lease 1 is due: 2 and 3 (due 0.5 s and 0.9 s later) go with it; 4 (2 s later) does not.
    sim.set(t0 + secs(4));
    sim.timeout();
    assert_eq!(sorted(sim.renewal(stream)), [1, 2, 3]);
    for lease in [1, 2, 3] {
        sim.answer(stream, lease, 12);
    }
    sim.assert_quiet("answered");
    assert_eq!(sim.poll_timeout(), t0 + secs(6), "lease 4 on its own time");
    sim.set(t0 + secs(6));
    sim.timeout();
    assert_eq!(sim.renewal(stream), [4]);
    sim.answer(stream, 4, 12);
    // From now on 1, 2 and 3 share every round.
    assert_eq!(sim.poll_timeout(), t0 + secs(8));
    sim.set(t0 + secs(8));
    sim.timeout();
    assert_eq!(sorted(sim.renewal(stream)), [1, 2, 3]);
}

#[test]
fn a_thousand_leases_kept_from_scattered_instants_settle_into_one_write_per_round() {
    // One lease kept alive every millisecond for a second (TTL 12 s: every 4 s, up to 1 s
    // early). Without the early window each would keep its own instant: 1,000 writes a round.
    let mut sim = Sim::new();
    sim.keep(1, Some(secs(12)));
    let (stream, _) = sim.open_keeper();
    let t0 = sim.now;
    sim.answer(stream, 1, 12);
    for lease in 2..=1000i64 {
        sim.set(t0 + MS * (lease as u32 - 1));
        sim.keep(lease, Some(secs(12)));
        assert_eq!(sim.renewal(stream), [lease]);
        sim.answer(stream, lease, 12);
    }
    let (mut writes, mut renewed) = (0, 0);
    while sim.poll_timeout() < t0 + secs(20) {
        let at = sim.poll_timeout();
        sim.set(at);
        sim.timeout();
        let leases = sim.renewal(stream);
        if at >= t0 + secs(8) {
            writes += 1;
            renewed += leases.len();
        }
        for lease in leases {
            sim.answer(stream, lease, 12);
        }
    }
    assert_eq!((writes, renewed), (3, 3000), "rounds at 8, 12 and 16 s");
}

/// Smallest time (over many samples) to start keeping 100 new leases (each renewed at once,
/// on its own, and answered) while `n` kept leases have renewals due 0.8 s later: close, but
/// outside their early window (TTL 6 s: 0.5 s).
fn new_lease_cost(n: i64, samples: usize) -> Duration {
    const CHUNK: i64 = 100;
    let mut sim = Sim::new();
    for l in 1..=n {
        sim.keep(l, Some(secs(6)));
    }
    let (stream, leases) = sim.open_keeper();
    assert_eq!(leases.len() as i64, n);
    let t0 = sim.now;
    for l in 1..=n {
        sim.answer(stream, l, 6);
    }
    sim.set(t0 + 1200 * MS);
    let mut best = Duration::MAX;
    let mut next = n + 1;
    for _ in 0..samples {
        let chunk: Vec<i64> = (next..next + CHUNK).collect();
        next += CHUNK;
        let start = Instant::now();
        let mut keepers = Vec::new();
        for &lease in &chunk {
            keepers.push(sim.keep(lease, Some(secs(6))));
            let sent = sim.core.poll_transmit();
            assert!(sent.is_some(), "lease {lease} renewed at once");
            sim.message(stream, &answer(lease, 6));
            while sim.core.poll_event().is_some() {}
        }
        best = best.min(start.elapsed());
        let now = sim.now;
        for keeper in keepers {
            sim.core.stop_keep_alive(keeper, now);
        }
        while sim.core.poll_transmit().is_some() {}
    }
    assert_eq!(
        sim.poll_timeout(),
        t0 + secs(2),
        "the kept leases were left alone"
    );
    best
}

#[test]
fn a_new_lease_costs_about_the_same_with_10000_renewals_due_soon_as_with_100() {
    // A renewal that goes out looks for others that may go early with it; that look must
    // stop at the first that may not, or subscribing many leases becomes quadratic.
    let ratio = cost_ratio_10000_vs_100("100 new leases", new_lease_cost, 10, 200);
    assert!(
        ratio < 5.0,
        "a new lease with 10000 renewals due soon costs {ratio:.1}x one with 100"
    );
}
