//! Connection management driven by hand (no sockets, simulated time): retries end to end,
//! the circuit breaker, reconnect backoff, token authentication and refresh, keepalive pings,
//! endpoint changes and sync, and deadlines of retried calls.
//!
//! Every input is followed by draining the outputs, as the drain rule asks. The clock is one
//! `Instant` taken at the start plus `Duration`s.

use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto_core::grpc::encode_message;
use etcd_proto_core::proto::etcdserverpb::{
    AuthenticateRequest, AuthenticateResponse, Member, MemberListRequest, MemberListResponse,
    RangeResponse, ResponseHeader,
};
use etcd_proto_core::retry::MAX_AUTH_RETRIES;
use etcd_proto_core::rpc::kv;
use etcd_proto_core::{
    endpoints_from_members, CallId, CallOptions, Code, Config, Core, Endpoint, EndpointId, Error,
    EtcdErrorKind, Event, StreamId, Transmit,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use prost::Message;

const EP: &str = "http://127.0.0.1:2379";
const EP_A: &str = "http://10.0.0.1:2379";
const EP_B: &str = "http://10.0.0.2:2379";
const EP_C: &str = "http://10.0.0.3:2379";
const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A core plus a simulated clock.
struct Sim {
    core: Core,
    t0: Instant,
    now: Instant,
}

/// What an `OpenStream` transmit carried.
#[derive(Debug)]
struct Opened {
    endpoint: EndpointId,
    stream: StreamId,
    request: Request<()>,
    body: Bytes,
}

impl Opened {
    fn path(&self) -> &str {
        self.request.uri().path()
    }

    fn authority(&self) -> &str {
        self.request.uri().authority().unwrap().as_str()
    }

    fn token(&self) -> Option<&str> {
        self.request
            .headers()
            .get("token")
            .map(|v| v.to_str().unwrap())
    }
}

/// One drained batch of transmits, sorted by kind (order within a kind is kept).
#[derive(Debug, Default)]
struct Out {
    connects: Vec<(EndpointId, Endpoint)>,
    opens: Vec<Opened>,
    pings: Vec<EndpointId>,
    disconnects: Vec<EndpointId>,
    resets: Vec<StreamId>,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.connects.is_empty()
            && self.opens.is_empty()
            && self.pings.is_empty()
            && self.disconnects.is_empty()
            && self.resets.is_empty()
    }

    /// Exactly one OpenStream and nothing else.
    #[track_caller]
    fn one_open(mut self) -> Opened {
        assert_eq!(self.opens.len(), 1, "expected one OpenStream: {self:?}");
        let opened = self.opens.remove(0);
        assert!(self.is_empty(), "expected only an OpenStream: {self:?}");
        opened
    }

    /// Exactly one Connect and nothing else.
    #[track_caller]
    fn one_connect(self) -> (EndpointId, Endpoint) {
        assert!(
            self.opens.is_empty()
                && self.pings.is_empty()
                && self.disconnects.is_empty()
                && self.resets.is_empty()
                && self.connects.len() == 1,
            "expected one Connect: {self:?}"
        );
        self.connects.into_iter().next().unwrap()
    }

    /// Exactly one OpenStream, next to any Connects.
    #[track_caller]
    fn one_open_ignoring_connects(mut self) -> Opened {
        self.connects.clear();
        self.one_open()
    }

    fn connects_to(&self, endpoint: EndpointId) -> bool {
        self.connects.iter().any(|(e, _)| *e == endpoint)
    }
}

/// The defaults, with keepalive pings off so that only the timers under test are armed.
fn base_config(endpoints: &[&str]) -> Config {
    let mut config = Config::from_endpoints(endpoints).unwrap();
    config.keepalive_interval = None;
    config
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

impl Sim {
    fn with_config(config: Config) -> Sim {
        let t0 = Instant::now();
        Sim {
            core: Core::new(config, t0).unwrap(),
            t0,
            now: t0,
        }
    }

    /// Moves the clock to `t0 + d` (never backwards).
    fn at(&mut self, d: Duration) -> Instant {
        self.set(self.t0 + d)
    }

    fn set(&mut self, t: Instant) -> Instant {
        assert!(t >= self.now, "time must not go backwards");
        self.now = t;
        t
    }

    /// Drains the transmits.
    fn out(&mut self) -> Out {
        let mut out = Out::default();
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Connect { endpoint, target } => out.connects.push((endpoint, target)),
                Transmit::OpenStream {
                    endpoint,
                    stream,
                    request,
                    body,
                    end_stream,
                    ..
                } => {
                    assert!(end_stream, "a unary request ends the request stream");
                    out.opens.push(Opened {
                        endpoint,
                        stream,
                        request,
                        body,
                    });
                }
                Transmit::Ping { endpoint } => out.pings.push(endpoint),
                Transmit::Disconnect { endpoint } => out.disconnects.push(endpoint),
                Transmit::ResetStream { stream, .. } => out.resets.push(stream),
                other => panic!("unexpected transmit {other:?}"),
            }
        }
        out
    }

    /// Drains the events.
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }

    /// Drains the events, which must all be finished calls.
    fn finished(&mut self) -> Vec<(CallId, Result<Bytes, Error>)> {
        self.events()
            .into_iter()
            .map(|e| match e {
                Event::CallFinished { call, result } => (call, result),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    #[track_caller]
    fn one_finished(&mut self) -> (CallId, Result<Bytes, Error>) {
        let mut f = self.finished();
        assert_eq!(f.len(), 1, "expected one finished call: {f:?}");
        f.remove(0)
    }

    #[track_caller]
    fn assert_quiet(&mut self, what: &str) {
        let out = self.out();
        assert!(out.is_empty(), "{what}: unexpected transmits {out:?}");
        let e = self.events();
        assert!(e.is_empty(), "{what}: unexpected events {e:?}");
    }

    fn get(&mut self, key: &str) -> CallId {
        self.get_with(key, CallOptions::default())
    }

    fn get_with(&mut self, key: &str, options: CallOptions) -> CallId {
        let now = self.now;
        self.core
            .start_unary(kv::Get::new(key.to_string()), options, now)
            .unwrap()
    }

    fn put(&mut self, key: &str) -> CallId {
        let now = self.now;
        self.core
            .start_unary(
                kv::Put::new(key.to_string(), "v"),
                CallOptions::default(),
                now,
            )
            .unwrap()
    }

    fn connected(&mut self, endpoint: EndpointId) {
        let now = self.now;
        self.core.handle_connected(endpoint, now);
    }

    fn connect_failed(&mut self, endpoint: EndpointId) {
        let now = self.now;
        self.core
            .handle_connect_failed(endpoint, "connection refused", now);
    }

    fn lost(&mut self, endpoint: EndpointId) {
        let now = self.now;
        self.core
            .handle_connection_lost(endpoint, "connection reset by peer", now);
    }

    fn timeout(&mut self) {
        let now = self.now;
        self.core.handle_timeout(now);
        // Something handle_timeout itself queued may be due at once (a call it released went
        // to a connection whose keepalive ping is overdue): the driver calls again. After
        // that, whatever is armed lies in the future, else the driver would spin.
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
        }
        if let Some(at) = self.core.poll_timeout() {
            assert!(
                at > now,
                "poll_timeout t0+{:?} is not after now (t0+{:?})",
                at - self.t0,
                now - self.t0
            );
        }
    }

    /// Moves the clock to the next armed timer and handles it.
    #[track_caller]
    fn advance(&mut self) -> Instant {
        let at = self.core.poll_timeout().expect("a timer is armed");
        let at = at.max(self.now);
        self.set(at);
        self.timeout();
        at
    }

    /// A successful response carrying `msg`.
    fn respond<M: Message>(&mut self, stream: StreamId, msg: &M) {
        let now = self.now;
        self.core
            .handle_response_headers(stream, StatusCode::OK, &grpc_headers(), false, now);
        let framed = encode_message(msg, usize::MAX).unwrap();
        self.core.handle_data(stream, framed, false, now);
        self.core
            .handle_trailers(stream, &status_trailers("0", None), now);
    }

    fn respond_range(&mut self, stream: StreamId) {
        self.respond(stream, &range_response());
    }

    /// A trailers-only error response (HTTP 200, grpc-status in the headers, end of stream).
    fn trailers_only(&mut self, stream: StreamId, code: Code, message: &str) {
        let now = self.now;
        let mut h = grpc_headers();
        h.insert("grpc-status", HeaderValue::from(code.as_u32()));
        h.insert("grpc-message", HeaderValue::from_str(message).unwrap());
        self.core
            .handle_response_headers(stream, StatusCode::OK, &h, true, now);
    }

    fn answer_token(&mut self, stream: StreamId, token: &str) {
        self.respond(
            stream,
            &AuthenticateResponse {
                header: None,
                token: token.into(),
            },
        );
    }

    /// Starts Gets until one lands on `endpoint` (the others are answered at once).
    fn get_on(&mut self, endpoint: EndpointId) -> (CallId, Opened) {
        for _ in 0..8 {
            let call = self.get("k");
            let opened = self.out().one_open();
            if opened.endpoint == endpoint {
                return (call, opened);
            }
            self.respond_range(opened.stream);
            assert!(self.one_finished().1.is_ok());
        }
        panic!("no call went to {endpoint:?}");
    }
}

fn grpc_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h
}

fn status_trailers(code: &'static str, message: Option<&'static str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from_static(code));
    if let Some(m) = message {
        h.insert("grpc-message", HeaderValue::from_static(m));
    }
    h
}

fn range_response() -> RangeResponse {
    RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 2,
            raft_term: 2,
        }),
        kvs: vec![],
        more: false,
        count: 0,
    }
}

/// A core for `endpoints`, every endpoint connected and a warm-up Get answered. Returns the
/// endpoint ids in configuration order.
fn connected_sim(config: Config) -> (Sim, Vec<EndpointId>) {
    let targets = config.endpoints.clone();
    let mut sim = Sim::with_config(config);
    let warm_up = sim.get("warm-up");
    let out = sim.out();
    // A waiting call connects every endpoint at once.
    let ids: Vec<EndpointId> = targets
        .iter()
        .map(|t| {
            out.connects
                .iter()
                .find(|(_, target)| target == t)
                .unwrap_or_else(|| panic!("no Connect to {t}: {out:?}"))
                .0
        })
        .collect();
    assert_eq!(out.connects.len(), targets.len(), "{out:?}");
    assert!(out.opens.is_empty());
    let mut opened = None;
    for &id in &ids {
        sim.connected(id);
        let out = sim.out();
        if opened.is_none() {
            opened = Some(out.one_open());
        } else {
            assert!(out.is_empty(), "{out:?}");
        }
    }
    sim.respond_range(opened.unwrap().stream);
    assert_eq!(sim.one_finished().0, warm_up);
    (sim, ids)
}

#[track_caller]
fn assert_transport_sent(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.outcome_unknown());
}

// ---------------------------------------------------------------------------------------------
// 3. Retries end to end
// ---------------------------------------------------------------------------------------------

#[test]
fn unavailable_get_is_retried_on_the_other_endpoint() {
    let (mut sim, _) = connected_sim(base_config(&[EP_A, EP_B]));
    let call = sim.get("foo");
    let first = sim.out().one_open();
    assert_eq!(first.path(), RANGE);
    sim.at(5 * MS);
    sim.trailers_only(first.stream, Code::Unavailable, "upstream connect error");
    assert!(sim.events().is_empty(), "retried, not finished");
    // Two endpoints: the first retry does not wait, and goes to the other member.
    let second = sim.out().one_open();
    assert_ne!(second.endpoint, first.endpoint);
    assert_ne!(second.authority(), first.authority());
    assert_ne!(second.stream, first.stream);
    assert_eq!(second.path(), RANGE);
    assert_eq!(second.body, first.body);
    sim.respond_range(second.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    let resp = etcd_proto_core::rpc::decode_response::<kv::Get>(result.unwrap()).unwrap();
    assert_eq!(resp.header.unwrap().revision, 2);
    assert_eq!(sim.core.calls_in_progress(), 0);
}

#[test]
fn unavailable_put_fails_at_once() {
    let (mut sim, _) = connected_sim(base_config(&[EP_A, EP_B]));
    let call = sim.put("foo");
    let first = sim.out().one_open();
    assert_eq!(first.path(), PUT);
    sim.trailers_only(first.stream, Code::Unavailable, "upstream connect error");
    let out = sim.out();
    assert!(out.is_empty(), "a write is never sent twice: {out:?}");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    match result.unwrap_err() {
        Error::Status(s) => {
            assert_eq!(s.code, Code::Unavailable);
            assert_eq!(s.message, "upstream connect error");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn refused_put_is_resent() {
    let (mut sim, _) = connected_sim(base_config(&[EP_A, EP_B]));
    let call = sim.put("foo");
    let first = sim.out().one_open();
    let now = sim.now;
    // REFUSED_STREAM: the server did not process it, safe to send again.
    sim.core.handle_stream_reset(first.stream, 7, now);
    assert!(sim.events().is_empty());
    let second = sim.out().one_open();
    assert_eq!(second.path(), PUT);
    assert_eq!(second.body, first.body);
    assert_ne!(second.endpoint, first.endpoint);
    sim.respond(
        second.stream,
        &etcd_proto_core::proto::etcdserverpb::PutResponse::default(),
    );
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn get_gives_up_after_max_attempts_with_the_last_error() {
    let mut config = base_config(&[EP_A, EP_B]);
    config.max_attempts = 4;
    let (mut sim, _) = connected_sim(config);
    let call = sim.get("foo");
    let answers = [
        "etcdserver: no leader",
        "etcdserver: request timed out",
        "etcdserver: no leader",
        "etcdserver: leader changed",
    ];
    let mut sent = 0;
    let mut out = sim.out();
    for (i, answer) in answers.iter().enumerate() {
        if out.is_empty() {
            // A retry pause (every second retry with two endpoints).
            sim.advance();
            out = sim.out();
        }
        let opened = out.one_open();
        sent += 1;
        assert!(sim.events().is_empty(), "attempt {i} not final");
        sim.trailers_only(opened.stream, Code::Unavailable, answer);
        out = sim.out();
    }
    assert_eq!(sent, 4);
    assert!(out.is_empty(), "no fifth attempt: {out:?}");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err().etcd_kind(),
        Some(EtcdErrorKind::LeaderChanged),
        "the last error is returned"
    );
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn single_endpoint_retry_waits_for_the_pause() {
    let (mut sim, _) = connected_sim(base_config(&[EP]));
    let call = sim.get("foo");
    let first = sim.out().one_open();
    let failed_at = sim.at(10 * MS);
    sim.trailers_only(first.stream, Code::Unavailable, "etcdserver: no leader");
    sim.assert_quiet("one endpoint: the retry waits");
    let at = sim.core.poll_timeout().expect("the pause is timed");
    let pause = at - failed_at;
    assert!(
        pause >= Duration::from_micros(22_500) && pause <= Duration::from_micros(27_500),
        "{pause:?}"
    );
    // Nothing before that instant, even if the driver wakes up early.
    for early in [
        failed_at,
        failed_at + 10 * MS,
        at - Duration::from_micros(1),
    ] {
        sim.set(early);
        sim.timeout();
        sim.assert_quiet("before the pause ends");
    }
    sim.set(at);
    sim.timeout();
    let second = sim.out().one_open();
    assert_eq!(second.body, first.body);
    sim.respond_range(second.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

// ---------------------------------------------------------------------------------------------
// 4. Circuit breaker
// ---------------------------------------------------------------------------------------------

/// Fails `n` Gets on `bad` with a transport error that leaves the connection up; each is
/// retried on another endpoint and answered there.
fn fail_streams_on(sim: &mut Sim, bad: EndpointId, n: usize) {
    for _ in 0..n {
        let (call, opened) = sim.get_on(bad);
        let now = sim.now;
        sim.core
            .handle_stream_error(opened.stream, "stream could not be opened", false, now);
        let retry = sim.out().one_open();
        assert_ne!(retry.endpoint, bad);
        sim.respond_range(retry.stream);
        let (id, result) = sim.one_finished();
        assert_eq!(id, call);
        assert!(result.is_ok());
    }
}

/// Starts `n` Gets, answers each, and returns the endpoints they went to.
fn spread(sim: &mut Sim, n: usize) -> Vec<EndpointId> {
    (0..n)
        .map(|_| {
            sim.get("k");
            let opened = sim.out().one_open();
            sim.respond_range(opened.stream);
            assert!(sim.one_finished().1.is_ok());
            opened.endpoint
        })
        .collect()
}

#[test]
fn breaker_puts_a_connected_endpoint_aside_until_the_cooldown() {
    let (mut sim, ids) = connected_sim(base_config(&[EP_A, EP_B]));
    let (a, b) = (ids[0], ids[1]);
    let cooldown = sim.core.config().breaker_cooldown;
    assert_eq!(cooldown, 5 * SEC);
    assert_eq!(sim.core.config().breaker_threshold, 3);

    // Two failures: still in rotation.
    fail_streams_on(&mut sim, a, 2);
    assert!(spread(&mut sim, 4).contains(&a));
    // A success in between resets the count: two more failures still do not open it.
    fail_streams_on(&mut sim, a, 2);
    assert!(spread(&mut sim, 4).contains(&a));

    // Three consecutive failures: put aside.
    let opened_at = sim.at(SEC);
    fail_streams_on(&mut sim, a, 3);
    // Both connected, but every call goes to b until the cooldown has passed.
    assert_eq!(spread(&mut sim, 6), vec![b; 6]);
    sim.set(opened_at + cooldown - MS);
    assert_eq!(spread(&mut sim, 4), vec![b; 4]);
    sim.assert_quiet("no reconnection: a stayed connected");

    // After it, a is tried again; one more failure puts it aside at once (half-open).
    let reopened_at = sim.set(opened_at + cooldown);
    fail_streams_on(&mut sim, a, 1);
    assert_eq!(spread(&mut sim, 4), vec![b; 4]);

    // After the next cooldown a is used again, and its successful answers close the breaker:
    // two failures are then not enough to put it aside.
    sim.set(reopened_at + cooldown);
    let used = spread(&mut sim, 4);
    assert_eq!(used.iter().filter(|e| **e == a).count(), 2, "{used:?}");
    fail_streams_on(&mut sim, a, 2);
    let used = spread(&mut sim, 4);
    assert_eq!(used.iter().filter(|e| **e == a).count(), 2, "{used:?}");
}

#[test]
fn breaker_after_three_connection_losses() {
    let (mut sim, ids) = connected_sim(base_config(&[EP_A, EP_B]));
    let (a, b) = (ids[0], ids[1]);
    let cooldown = sim.core.config().breaker_cooldown;
    for round in 1..=2u32 {
        sim.at(round * 100 * MS);
        sim.lost(a);
        sim.assert_quiet("idle connection lost, nothing waits");
        // The next call goes to b, and a is connected again meanwhile.
        let call = sim.get("k");
        let out = sim.out();
        assert!(
            out.connects_to(a),
            "round {round}: a is reconnected: {out:?}"
        );
        assert_eq!(out.opens.len(), 1, "{out:?}");
        assert_eq!(out.opens[0].endpoint, b);
        sim.respond_range(out.opens[0].stream);
        assert_eq!(sim.one_finished().0, call);
        sim.connected(a);
        sim.assert_quiet("a connected again");
    }
    // The third loss in a row puts a aside: calls go to b and a is left alone.
    let lost_at = sim.at(300 * MS);
    sim.lost(a);
    for d in [Duration::ZERO, 100 * MS, SEC, cooldown - MS] {
        sim.set(lost_at + d);
        sim.timeout();
        let call = sim.get("k");
        let out = sim.out();
        assert!(!out.connects_to(a), "a is put aside: {out:?}");
        let opened = out.one_open();
        assert_eq!(opened.endpoint, b);
        sim.respond_range(opened.stream);
        assert_eq!(sim.one_finished().0, call);
    }
    // After the cooldown, a is connected and used again.
    sim.set(lost_at + cooldown);
    sim.timeout();
    sim.get("k");
    let out = sim.out();
    assert!(out.connects_to(a), "{out:?}");
    assert_eq!(out.opens.len(), 1);
    sim.respond_range(out.opens[0].stream);
    sim.finished();
    sim.connected(a);
    let used = spread(&mut sim, 4);
    assert_eq!(used.iter().filter(|e| **e == a).count(), 2, "{used:?}");
}

/// Two endpoints: b connected and serving, a refused three connection attempts in a row (each
/// new attempt made by a later call once a's reconnect backoff has passed). Returns the sim,
/// a, b and the instant of the third failure.
fn a_refused_three_times() -> (Sim, EndpointId, EndpointId, Instant) {
    let mut sim = Sim::with_config(base_config(&[EP_A, EP_B]));
    let first = sim.get("first");
    let out = sim.out();
    assert_eq!(out.connects.len(), 2, "{out:?}");
    let (a, b) = (out.connects[0].0, out.connects[1].0);
    assert_eq!(out.connects[0].1, ep(EP_A));
    sim.connected(b);
    let opened = sim.out().one_open();
    assert_eq!(opened.endpoint, b);
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, first);

    sim.at(MS);
    sim.connect_failed(a);
    sim.assert_quiet("a backs off");
    // Backoffs are at most 60 ms, then 120 ms.
    for (round, wait) in [(2, 61 * MS), (3, 121 * MS)] {
        let t = sim.now + wait;
        sim.set(t);
        sim.timeout();
        sim.get("k");
        let out = sim.out();
        assert!(out.connects_to(a), "round {round}: {out:?}");
        assert_eq!(out.opens.len(), 1, "{out:?}");
        assert_eq!(out.opens[0].endpoint, b);
        sim.respond_range(out.opens[0].stream);
        sim.finished();
        sim.connect_failed(a);
        sim.assert_quiet("a backs off");
    }
    let at = sim.now;
    (sim, a, b, at)
}

#[test]
fn breaker_after_three_connect_failures() {
    let (mut sim, a, b, opened_at) = a_refused_three_times();
    let cooldown = sim.core.config().breaker_cooldown;
    // Put aside: not reconnected during the cooldown even though its backoff is long over.
    for d in [SEC, 3 * SEC, cooldown - MS] {
        sim.set(opened_at + d);
        sim.timeout();
        sim.get("k");
        let out = sim.out();
        assert!(out.connects.is_empty(), "{out:?}");
        let opened = out.one_open();
        assert_eq!(opened.endpoint, b);
        sim.respond_range(opened.stream);
        sim.finished();
    }
    // Then it is tried again, and used once connected.
    sim.set(opened_at + cooldown);
    sim.timeout();
    sim.get("k");
    let out = sim.out();
    assert!(out.connects_to(a), "{out:?}");
    sim.respond_range(out.opens[0].stream);
    sim.finished();
    sim.connected(a);
    let used = spread(&mut sim, 4);
    assert_eq!(used.iter().filter(|e| **e == a).count(), 2, "{used:?}");
}

#[test]
fn expired_breaker_leaves_no_timer_in_the_past() {
    let (mut sim, a, b, opened_at) = a_refused_three_times();
    let cooldown = sim.core.config().breaker_cooldown;
    let call = sim.get("k");
    let opened = sim.out().one_open();
    assert_eq!(opened.endpoint, b);
    // Long after a's cooldown, b's connection breaks: the Get waits for a new connection.
    sim.set(opened_at + cooldown + SEC);
    sim.timeout();
    sim.lost(b);
    let out = sim.out();
    assert!(out.connects_to(a) && out.connects_to(b), "{out:?}");
    assert!(sim.events().is_empty());
    // The driver wakes up at the armed instant, at once if it lies in the past; afterwards
    // nothing armed may lie in the past (checked in `Sim::timeout`), else it would spin.
    let lost_at = sim.now;
    if sim.core.poll_timeout().unwrap() <= sim.now {
        sim.timeout();
    }
    assert_eq!(
        sim.core.poll_timeout(),
        Some(lost_at + sim.core.config().connect_timeout),
        "only the connection attempts are timed"
    );
    sim.connected(a);
    let retry = sim.out().one_open();
    assert_eq!(retry.endpoint, a);
    sim.respond_range(retry.stream);
    assert_eq!(sim.one_finished().0, call);
}

#[test]
fn calls_go_out_when_every_breaker_is_open() {
    // One endpoint: three refusals open its breaker, yet the call keeps trying it.
    let mut sim = Sim::with_config(base_config(&[EP]));
    let call = sim.get("k");
    let (e, _) = sim.out().one_connect();
    for _ in 0..4 {
        sim.connect_failed(e);
        sim.assert_quiet("backing off");
        sim.advance();
        assert_eq!(sim.out().one_connect().0, e);
    }
    sim.connected(e);
    let opened = sim.out().one_open();
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, call);

    // Two endpoints, both put aside: the call still connects them and goes out.
    let mut sim = Sim::with_config(base_config(&[EP_A, EP_B]));
    let call = sim.get("k");
    let out = sim.out();
    let (a, b) = (out.connects[0].0, out.connects[1].0);
    let mut failures = [0u32; 2];
    sim.connect_failed(a);
    sim.connect_failed(b);
    failures = failures.map(|f| f + 1);
    while failures.iter().any(|f| *f < 4) {
        sim.advance();
        let out = sim.out();
        assert!(out.opens.is_empty() && sim.events().is_empty(), "{out:?}");
        for (id, _) in out.connects {
            let i = usize::from(id == b);
            failures[i] += 1;
            sim.connect_failed(id);
        }
    }
    // Both breakers are open now; the next attempts still happen.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        sim.advance();
        for (id, _) in sim.out().connects {
            seen.push(id);
        }
    }
    sim.connected(seen[0]);
    let opened = sim.out().one_open();
    assert_eq!(opened.endpoint, seen[0]);
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, call);
}

// ---------------------------------------------------------------------------------------------
// 5. Reconnect backoff
// ---------------------------------------------------------------------------------------------

#[test]
fn reconnect_waits_for_the_backoff_which_grows_to_the_cap() {
    let mut config = base_config(&[EP]);
    config.reconnect_backoff_min = 50 * MS;
    config.reconnect_backoff_max = 400 * MS;
    let mut sim = Sim::with_config(config);
    let call = sim.get("k");
    let (e, target) = sim.out().one_connect();
    assert_eq!(target, ep(EP));
    let bases = [50, 100, 200, 400, 400, 400, 400, 400];
    let mut longest = Duration::ZERO;
    for (round, base) in bases.into_iter().enumerate() {
        let base = base * MS;
        let failed_at = sim.now + MS;
        sim.set(failed_at);
        sim.connect_failed(e);
        sim.assert_quiet("connect failed: backing off");
        let until = sim
            .core
            .poll_timeout()
            .expect("the backoff is timed while a call waits");
        let backoff = until - failed_at;
        // +-20 % jitter around the doubling base, capped at the max.
        assert!(
            backoff >= base.mul_f64(0.8) && backoff <= base.mul_f64(1.2),
            "round {round}: backoff {backoff:?}, base {base:?}"
        );
        longest = longest.max(backoff);
        // No new Connect before that instant, however often the driver wakes up.
        for early in [
            failed_at,
            failed_at + backoff / 2,
            until - Duration::from_micros(1),
        ] {
            sim.set(early);
            sim.timeout();
            sim.assert_quiet("before the backoff instant");
            // Neither does another call.
            if round == 0 {
                let other = sim.get("other");
                sim.assert_quiet("a new call during the backoff");
                let now = sim.now;
                sim.core.cancel(other, now);
                assert_eq!(sim.one_finished().1.unwrap_err(), Error::Cancelled);
            }
        }
        sim.set(until);
        sim.timeout();
        assert_eq!(sim.out().one_connect().0, e, "round {round}");
    }
    assert!(longest <= 480 * MS && longest >= 320 * MS, "{longest:?}");
    sim.connected(e);
    let opened = sim.out().one_open();
    sim.respond_range(opened.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn failed_endpoint_is_reconnected_after_its_backoff_while_calls_flow() {
    let mut sim = Sim::with_config(base_config(&[EP_A, EP_B]));
    sim.get("first");
    let out = sim.out();
    let (a, b) = (out.connects[0].0, out.connects[1].0);
    sim.connected(b);
    let opened = sim.out().one_open();
    sim.respond_range(opened.stream);
    sim.finished();
    let failed_at = sim.at(MS);
    sim.connect_failed(a);
    sim.assert_quiet("a backs off");
    // Before a's backoff (at least 40 ms) calls go to b and a is left alone.
    for d in [MS, 20 * MS, 39 * MS] {
        sim.set(failed_at + d);
        sim.get("k");
        let opened = sim.out().one_open();
        assert_eq!(opened.endpoint, b);
        sim.respond_range(opened.stream);
        sim.finished();
    }
    // After it (at most 60 ms) the next call reconnects a.
    sim.set(failed_at + 60 * MS);
    sim.timeout();
    sim.get("k");
    let out = sim.out();
    assert!(out.connects_to(a), "{out:?}");
    assert_eq!(out.opens.len(), 1);
    assert_eq!(out.opens[0].endpoint, b);
}

// ---------------------------------------------------------------------------------------------
// 6. Token authentication and refresh
// ---------------------------------------------------------------------------------------------

const USER: &str = "root";
const PASSWORD: &str = "s3cr3t-pw";

fn auth_config(endpoints: &[&str]) -> Config {
    base_config(endpoints).with_credentials(USER, PASSWORD)
}

impl Sim {
    /// The transmits now, or, if there are none, after the next armed timer (a retry pause of
    /// at most 30 ms).
    #[track_caller]
    fn next_out(&mut self) -> Out {
        let out = self.out();
        if !out.is_empty() {
            return out;
        }
        let before = self.now;
        self.advance();
        assert!(self.now - before <= 30 * MS, "{:?}", self.now - before);
        self.out()
    }
}

#[track_caller]
fn assert_authenticate(opened: &Opened) {
    assert_eq!(opened.path(), AUTHENTICATE);
    assert_eq!(opened.token(), None, "Authenticate carries no token");
    let req = AuthenticateRequest::decode(opened.body.slice(5..)).unwrap();
    assert_eq!((req.name.as_str(), req.password.as_str()), (USER, PASSWORD));
}

/// One endpoint with credentials: a Get starts, the endpoint connects, and the Authenticate
/// call is the only thing sent.
fn auth_started() -> (Sim, EndpointId, CallId, Opened) {
    let mut sim = Sim::with_config(auth_config(&[EP]));
    let call = sim.get("foo");
    let (e, _) = sim.out().one_connect();
    sim.connected(e);
    let auth = sim.out().one_open();
    assert_authenticate(&auth);
    assert!(sim.events().is_empty());
    (sim, e, call, auth)
}

#[test]
fn rejected_token_is_refreshed_and_the_call_resent() {
    let (mut sim, _, call, auth) = auth_started();
    sim.answer_token(auth.stream, "tok1");
    assert!(sim.events().is_empty(), "the internal call has no event");
    let first = sim.out().one_open();
    assert_eq!(first.path(), RANGE);
    assert_eq!(first.token(), Some("tok1"));

    sim.trailers_only(
        first.stream,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    assert!(sim.events().is_empty(), "refreshed, not finished");
    let reauth = sim.next_out().one_open();
    assert_authenticate(&reauth);
    sim.assert_quiet("the Get waits for the new token");

    sim.answer_token(reauth.stream, "tok2");
    let second = sim.out().one_open();
    assert_eq!(second.path(), RANGE);
    assert_eq!(second.token(), Some("tok2"));
    assert_eq!(second.body, first.body);
    sim.respond_range(second.stream);
    let finished = sim.finished();
    assert_eq!(finished.len(), 1, "exactly one CallFinished: {finished:?}");
    assert_eq!(finished[0].0, call);
    assert!(finished[0].1.is_ok());
    assert_eq!(sim.core.calls_in_progress(), 0);

    // The new token is kept for later calls.
    sim.get("bar");
    assert_eq!(sim.out().one_open().token(), Some("tok2"));
}

#[test]
fn concurrent_rejections_authenticate_once() {
    let mut sim = Sim::with_config(auth_config(&[EP_A, EP_B]));
    let get1 = sim.get("one");
    let out = sim.out();
    let (a, b) = (out.connects[0].0, out.connects[1].0);
    sim.connected(a);
    let auth = sim.out().one_open();
    assert_authenticate(&auth);
    sim.connected(b);
    sim.assert_quiet("nothing else before the token");
    sim.answer_token(auth.stream, "tok1");
    let first1 = sim.out().one_open();
    let get2 = sim.get("two");
    let first2 = sim.out().one_open();
    assert_eq!(first1.token(), Some("tok1"));
    assert_eq!(first2.token(), Some("tok1"));

    // Both are rejected; the second rejection comes while the new token is being fetched.
    sim.trailers_only(
        first1.stream,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    let reauth = sim.next_out().one_open();
    assert_authenticate(&reauth);
    sim.trailers_only(
        first2.stream,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    let out = sim.out();
    assert!(
        out.opens.iter().all(|o| o.path() != AUTHENTICATE),
        "one Authenticate in flight is enough: {out:?}"
    );
    sim.answer_token(reauth.stream, "tok2");
    let mut out = sim.out();
    if out.opens.len() < 2 {
        // A retry pause of the second call.
        let more = sim.next_out();
        out.opens.extend(more.opens);
    }
    assert_eq!(out.opens.len(), 2, "{out:?}");
    for o in &out.opens {
        assert_eq!(o.path(), RANGE);
        assert_eq!(o.token(), Some("tok2"));
    }
    for o in &out.opens {
        sim.respond_range(o.stream);
    }
    let mut ids: Vec<CallId> = sim
        .finished()
        .into_iter()
        .map(|(id, r)| {
            assert!(r.is_ok());
            id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, vec![get1, get2]);
}

#[test]
fn auth_not_enabled_means_no_token() {
    let (mut sim, _, call, auth) = auth_started();
    sim.trailers_only(
        auth.stream,
        Code::FailedPrecondition,
        "etcdserver: authentication is not enabled",
    );
    assert!(sim.events().is_empty());
    let opened = sim.out().one_open();
    assert_eq!(opened.path(), RANGE);
    assert_eq!(opened.token(), None);
    sim.respond_range(opened.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
    // Later calls go straight out, without authenticating again.
    sim.get("bar");
    let opened = sim.out().one_open();
    assert_eq!(opened.path(), RANGE);
    assert_eq!(opened.token(), None);
}

#[test]
fn auth_failure_fails_the_waiting_calls_and_the_next_call_tries_again() {
    let mut sim = Sim::with_config(auth_config(&[EP]));
    let get1 = sim.get("one");
    let put = sim.put("two");
    let (e, _) = sim.out().one_connect();
    sim.connected(e);
    let auth = sim.out().one_open();
    assert_authenticate(&auth);
    sim.trailers_only(
        auth.stream,
        Code::InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password",
    );
    sim.assert_quiet_transmits("the calls are not sent without a token");
    let mut finished = sim.finished();
    finished.sort_by_key(|(id, _)| *id);
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert_eq!(finished[0].0, get1);
    assert_eq!(finished[1].0, put);
    for (_, result) in finished {
        assert_eq!(
            result.unwrap_err().etcd_kind(),
            Some(EtcdErrorKind::AuthFailed)
        );
    }
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(sim.core.poll_timeout(), None);

    // The next call authenticates again (on the connection that is still up).
    let get3 = sim.get("three");
    let auth = sim.out().one_open();
    assert_authenticate(&auth);
    sim.answer_token(auth.stream, "tok");
    let opened = sim.out().one_open();
    assert_eq!(opened.token(), Some("tok"));
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, get3);
}

impl Sim {
    #[track_caller]
    fn assert_quiet_transmits(&mut self, what: &str) {
        let out = self.out();
        assert!(out.is_empty(), "{what}: unexpected transmits {out:?}");
    }
}

#[test]
fn user_empty_with_credentials_authenticates_again() {
    let (mut sim, _, call, auth) = auth_started();
    sim.answer_token(auth.stream, "tok1");
    let first = sim.out().one_open();
    // The server lost the token (e.g. it restarted) and sees no user.
    sim.trailers_only(
        first.stream,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    assert!(sim.events().is_empty());
    let reauth = sim.next_out().one_open();
    assert_authenticate(&reauth);
    sim.answer_token(reauth.stream, "tok2");
    let second = sim.out().one_open();
    assert_eq!(second.token(), Some("tok2"));
    sim.respond_range(second.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn invalid_token_without_credentials_fails_at_once() {
    let (mut sim, _) = connected_sim(base_config(&[EP]));
    let call = sim.get("k");
    let opened = sim.out().one_open();
    assert_eq!(opened.token(), None);
    sim.trailers_only(
        opened.stream,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    sim.assert_quiet_transmits("nothing to authenticate with");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err().etcd_kind(),
        Some(EtcdErrorKind::InvalidAuthToken)
    );
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn auth_retries_stop_after_the_limit() {
    let (mut sim, _, call, auth) = auth_started();
    sim.answer_token(auth.stream, "tok1");
    let mut current = sim.out().one_open();
    let mut authenticates = 1;
    for i in 0..MAX_AUTH_RETRIES {
        sim.trailers_only(
            current.stream,
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        );
        assert!(sim.events().is_empty(), "refresh {i}");
        let reauth = sim.next_out().one_open();
        assert_authenticate(&reauth);
        authenticates += 1;
        let token = format!("tok{}", i + 2);
        sim.answer_token(reauth.stream, &token);
        current = sim.out().one_open();
        assert_eq!(current.token(), Some(token.as_str()));
    }
    sim.trailers_only(
        current.stream,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    sim.assert_quiet_transmits("no more re-authentication");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err().etcd_kind(),
        Some(EtcdErrorKind::InvalidAuthToken)
    );
    assert_eq!(authenticates, 1 + MAX_AUTH_RETRIES);
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn debug_of_the_core_shows_no_secret() {
    const TOKEN: &str = "tOkEnTeXtSeCrEt.42";
    let (mut sim, _, call, auth) = auth_started();
    let check = |sim: &Sim, when: &str| {
        let dbg = format!("{:?}", sim.core);
        assert!(!dbg.contains(PASSWORD), "{when}: password in {dbg}");
        assert!(!dbg.contains(TOKEN), "{when}: token in {dbg}");
    };
    check(&sim, "Authenticate in flight");
    // The answer arrives in pieces: headers, message, then trailers.
    let now = sim.now;
    sim.core
        .handle_response_headers(auth.stream, StatusCode::OK, &grpc_headers(), false, now);
    let framed = encode_message(
        &AuthenticateResponse {
            header: None,
            token: TOKEN.into(),
        },
        usize::MAX,
    )
    .unwrap();
    sim.core.handle_data(auth.stream, framed, false, now);
    check(&sim, "token received, trailers pending");
    sim.core
        .handle_trailers(auth.stream, &status_trailers("0", None), now);
    let opened = sim.out().one_open();
    assert_eq!(opened.token(), Some(TOKEN));
    check(&sim, "token in use");
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, call);
    check(&sim, "after the call");
}

// ---------------------------------------------------------------------------------------------
// 7. Keepalive
// ---------------------------------------------------------------------------------------------

fn keepalive_config(endpoints: &[&str]) -> Config {
    let mut config = base_config(endpoints);
    config.keepalive_interval = Some(10 * SEC);
    config.keepalive_timeout = 5 * SEC;
    config
}

#[test]
fn ping_only_on_a_silent_connection_with_streams() {
    let mut sim = Sim::with_config(keepalive_config(&[EP]));
    let call = sim.get("k");
    let (e, _) = sim.out().one_connect();
    sim.connected(e);
    let opened = sim.out().one_open();
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 10 * SEC));
    sim.at(10 * SEC - MS);
    sim.timeout();
    sim.assert_quiet("not silent long enough");
    sim.at(10 * SEC);
    sim.timeout();
    let out = sim.out();
    assert_eq!(out.pings, vec![e], "{out:?}");
    assert!(out.opens.is_empty() && out.disconnects.is_empty());
    // Answered: the connection lives on, the next ping is an interval after the answer.
    sim.at(11 * SEC);
    let now = sim.now;
    sim.core.handle_pong(e, now);
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 21 * SEC));
    sim.at(16 * SEC);
    sim.timeout();
    sim.assert_quiet("answered: no disconnect at the old ping deadline");
    // Finished: no streams, no pings, however long the connection stays silent.
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, call);
    assert_eq!(sim.core.poll_timeout(), None, "no streams, no pings");
    for d in [21, 60, 600] {
        sim.at(d * SEC);
        sim.timeout();
        sim.assert_quiet("idle connection");
    }
    // The connection is still usable.
    sim.get("again");
    assert_eq!(sim.out().one_open().endpoint, e);
}

#[test]
fn unanswered_ping_drops_the_connection() {
    let (mut sim, _) = connected_sim(keepalive_config(&[EP_A, EP_B]));
    // Calls alternate between the endpoints: Get and Put land on one, the filler on the other.
    let get = sim.get("get");
    let get_open = sim.out().one_open();
    let x = get_open.endpoint;
    sim.get("filler");
    let filler = sim.out().one_open();
    assert_ne!(filler.endpoint, x);
    let y = filler.endpoint;
    sim.respond_range(filler.stream);
    sim.finished();
    let put = sim.put("put");
    let put_open = sim.out().one_open();
    assert_eq!(put_open.endpoint, x);

    sim.at(10 * SEC);
    sim.timeout();
    let out = sim.out();
    assert_eq!(
        out.pings,
        vec![x],
        "only the connection with streams: {out:?}"
    );
    sim.at(15 * SEC - MS);
    sim.timeout();
    sim.assert_quiet("the ping may still be answered");

    sim.at(15 * SEC);
    sim.timeout();
    let out = sim.out();
    assert_eq!(out.disconnects, vec![x], "{out:?}");
    // The Get is retried on the other endpoint ...
    let retried: Vec<&Opened> = out.opens.iter().collect();
    assert_eq!(retried.len(), 1, "{out:?}");
    assert_eq!(retried[0].endpoint, y);
    assert_eq!(retried[0].path(), RANGE);
    assert_eq!(retried[0].body, get_open.body);
    // ... the Put fails: it may have been applied.
    let (id, result) = sim.one_finished();
    assert_eq!(id, put);
    assert_transport_sent(&result.unwrap_err());
    let stream = retried[0].stream;
    sim.respond_range(stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, get);
    assert!(result.is_ok());
}

#[test]
fn keepalive_interval_below_five_seconds_is_rejected() {
    let mut config = base_config(&[EP]);
    config.keepalive_interval = Some(Duration::from_millis(4999));
    assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
    assert!(matches!(
        Core::new(config.clone(), Instant::now()),
        Err(Error::InvalidConfig(_))
    ));
    config.keepalive_interval = Some(5 * SEC);
    assert!(config.validate().is_ok());
    config.keepalive_interval = None;
    assert!(config.validate().is_ok());
}

// ---------------------------------------------------------------------------------------------
// 8. Endpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn set_endpoints_keeps_kept_connections_and_drops_removed_ones() {
    let (mut sim, ids) = connected_sim(base_config(&[EP_A, EP_B]));
    let (a, b) = (ids[0], ids[1]);
    let (get, on_a) = sim.get_on(a);
    let now = sim.now;
    sim.core
        .set_endpoints(vec![ep(EP_B), ep(EP_C)], now)
        .unwrap();
    let out = sim.out();
    assert_eq!(out.disconnects, vec![a], "{out:?}");
    assert!(!out.connects_to(b), "b's connection is kept: {out:?}");
    assert!(
        out.connects.iter().all(|(_, t)| *t == ep(EP_C)),
        "only the new endpoint may be connected: {out:?}"
    );
    // The Get that was in flight on a is retried on b.
    assert_eq!(out.opens.len(), 1, "{out:?}");
    let retry = &out.opens[0];
    assert_eq!(retry.endpoint, b);
    assert_eq!(retry.body, on_a.body);
    let events = sim.events();
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Event::EndpointsChanged { endpoints } => {
            assert_eq!(endpoints, &vec![ep(EP_B), ep(EP_C)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.core.endpoints(), vec![ep(EP_B), ep(EP_C)]);
    sim.respond_range(retry.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, get);
    assert!(result.is_ok());
    // Late news about the removed endpoint is ignored.
    sim.lost(a);
    sim.connected(a);
    sim.assert_quiet("removed endpoint");
    // Calls now use b (and c once connected), never a.
    for used in spread(&mut sim, 4) {
        assert_ne!(used, a);
    }
}

#[test]
fn set_endpoints_with_a_write_in_flight_on_a_removed_endpoint() {
    let (mut sim, ids) = connected_sim(base_config(&[EP_A, EP_B]));
    let a = ids[0];
    let put = loop {
        let put = sim.put("k");
        let opened = sim.out().one_open();
        if opened.endpoint == a {
            break put;
        }
        sim.respond(
            opened.stream,
            &etcd_proto_core::proto::etcdserverpb::PutResponse::default(),
        );
        sim.finished();
    };
    let now = sim.now;
    sim.core.set_endpoints(vec![ep(EP_B)], now).unwrap();
    let out = sim.out();
    assert_eq!(out.disconnects, vec![a]);
    assert!(out.opens.is_empty(), "a write is not resent: {out:?}");
    let events = sim.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let mut saw_put = false;
    for e in events {
        match e {
            Event::CallFinished { call, result } => {
                assert_eq!(call, put);
                assert_transport_sent(&result.unwrap_err());
                saw_put = true;
            }
            Event::EndpointsChanged { endpoints } => assert_eq!(endpoints, vec![ep(EP_B)]),
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_put);
}

#[test]
fn set_endpoints_rejects_an_empty_list() {
    let (mut sim, _) = connected_sim(base_config(&[EP_A, EP_B]));
    let now = sim.now;
    let err = sim.core.set_endpoints(vec![], now).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    sim.assert_quiet("nothing changed");
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A), ep(EP_B)]);
    assert_eq!(spread(&mut sim, 2).len(), 2);
}

#[test]
fn pinned_call_to_an_unlisted_endpoint() {
    const EP_P: &str = "http://10.0.0.9:2379";
    let (mut sim, ids) = connected_sim(base_config(&[EP_A]));
    let a = ids[0];
    let call = sim.get_with("k", CallOptions::on_endpoint(ep(EP_P)));
    let (p, target) = sim.out().one_connect();
    assert_eq!(target, ep(EP_P));
    assert_ne!(p, a);
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A)], "not listed");
    // Other calls keep using a, even though a is connected and p is not.
    let other = sim.get("other");
    let opened = sim.out().one_open();
    assert_eq!(opened.endpoint, a);
    sim.respond_range(opened.stream);
    assert_eq!(sim.one_finished().0, other);

    sim.connected(p);
    let first = sim.out().one_open();
    assert_eq!(first.endpoint, p);
    assert_eq!(first.authority(), "10.0.0.9:2379");
    // A retry stays on p.
    sim.trailers_only(first.stream, Code::Unavailable, "etcdserver: no leader");
    let second = sim.next_out().one_open();
    assert_eq!(second.endpoint, p);
    sim.respond_range(second.stream);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert!(result.is_ok());
    // Its last call over, p goes with its connection.
    let out = sim.out();
    assert_eq!(out.disconnects, vec![p], "{out:?}");

    // Unpinned calls never go to p.
    for used in spread(&mut sim, 4) {
        assert_eq!(used, a);
    }
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A)]);
    // Pinned again, it is connected again.
    let _again = sim.get_with("k", CallOptions::on_endpoint(ep(EP_P)));
    let (_, target) = sim.out().one_connect();
    assert_eq!(target, ep(EP_P));
}

#[test]
fn pinned_call_to_a_learner_is_not_retried_there() {
    // Three endpoints, but the call may only use one: a learner refusal will not go away.
    let (mut sim, ids) = connected_sim(base_config(&[EP_A, EP_B, EP_C]));
    let call = sim.get_with("k", CallOptions::on_endpoint(ep(EP_C)));
    let opened = sim.out().one_open();
    assert_eq!(opened.endpoint, ids[2]);
    sim.trailers_only(
        opened.stream,
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    );
    sim.assert_quiet_transmits("not sent to the same learner again");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err().etcd_kind(),
        Some(EtcdErrorKind::NotSupportedForLearner)
    );
    // Unpinned, the same refusal is retried on another member.
    let call = sim.get("k");
    let first = sim.out().one_open();
    sim.trailers_only(
        first.stream,
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    );
    let second = sim.out().one_open();
    assert_ne!(second.endpoint, first.endpoint);
    sim.respond_range(second.stream);
    assert_eq!(sim.one_finished().0, call);
}

fn member(name: &str, urls: &[&str], learner: bool) -> Member {
    Member {
        id: 1,
        name: name.into(),
        peer_ur_ls: vec!["http://10.9.9.9:2380".into()],
        client_ur_ls: urls.iter().map(|u| u.to_string()).collect(),
        is_learner: learner,
    }
}

#[test]
fn endpoints_from_members_keeps_started_voters() {
    let members = vec![
        member("m1", &[EP_A, "http://10.0.0.1:22379"], false),
        // Not started yet: no name.
        member("", &["http://10.0.0.7:2379"], false),
        member("learner", &["http://10.0.0.8:2379"], true),
        // Same URL as m1: listed once.
        member("m2", &[EP_B, EP_A], false),
        // Unparseable URLs are skipped.
        member(
            "m3",
            &["unix:///tmp/etcd.sock", "http://10.0.0.3:2379/path", EP_C],
            false,
        ),
    ];
    assert_eq!(
        endpoints_from_members(&members),
        vec![ep(EP_A), ep("http://10.0.0.1:22379"), ep(EP_B), ep(EP_C)]
    );
    assert!(endpoints_from_members(&[]).is_empty());
    assert!(endpoints_from_members(&[member("", &[EP_A], false)]).is_empty());
}

fn member_list(members: Vec<Member>) -> MemberListResponse {
    MemberListResponse {
        header: None,
        members,
    }
}

#[test]
fn auto_sync_refreshes_the_endpoint_list() {
    let mut config = base_config(&[EP_A]);
    config.auto_sync_interval = Some(30 * SEC);
    let (mut sim, ids) = connected_sim(config);
    let a = ids[0];
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 30 * SEC));
    sim.at(30 * SEC - MS);
    sim.timeout();
    sim.assert_quiet("before the sync interval");

    sim.at(30 * SEC);
    sim.timeout();
    let sync = sim.out().one_open();
    assert_eq!(sync.endpoint, a);
    assert_eq!(sync.path(), MEMBER_LIST);
    let req = MemberListRequest::decode(sync.body.slice(5..)).unwrap();
    assert!(req.linearizable);
    sim.respond(
        sync.stream,
        &member_list(vec![
            member("a", &[EP_A], false),
            member("b", &[EP_B], false),
            member("learner", &[EP_C], true),
        ]),
    );
    let events = sim.events();
    assert_eq!(events.len(), 1, "no CallFinished for the sync: {events:?}");
    match &events[0] {
        Event::EndpointsChanged { endpoints } => {
            assert_eq!(endpoints, &vec![ep(EP_A), ep(EP_B)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A), ep(EP_B)]);
    sim.assert_quiet_transmits("a's connection is kept");
    assert_eq!(sim.core.calls_in_progress(), 0);

    // The next sync fails: the list stays.
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 60 * SEC));
    sim.at(60 * SEC);
    sim.timeout();
    let out = sim.out();
    // Calls flowing again bring the new member's connection up.
    assert_eq!(out.connects.len(), 1, "{out:?}");
    let (b, target) = out.connects[0].clone();
    assert_eq!(target, ep(EP_B));
    let sync = out.one_open_ignoring_connects();
    assert_eq!(sync.path(), MEMBER_LIST);
    sim.trailers_only(sync.stream, Code::Internal, "boom");
    assert!(sim.events().is_empty(), "a failed sync is silent");
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A), ep(EP_B)]);
    assert_eq!(sim.core.calls_in_progress(), 0);
    sim.connected(b);
    sim.assert_quiet("nothing waits");
    // And it is tried again an interval later.
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 90 * SEC));
}

#[test]
fn sync_on_demand_with_nothing_usable_keeps_the_list() {
    let (mut sim, _) = connected_sim(base_config(&[EP_A]));
    let now = sim.now;
    sim.core.sync(now);
    let sync = sim.out().one_open();
    assert_eq!(sync.path(), MEMBER_LIST);
    // Only unstarted members and learners: nothing a client could use.
    sim.respond(
        sync.stream,
        &member_list(vec![member("", &[EP_B], false), member("l", &[EP_C], true)]),
    );
    sim.assert_quiet("nothing usable: no change, no event");
    assert_eq!(sim.core.endpoints(), vec![ep(EP_A)]);
    // A sync with the same list is silent too.
    let now = sim.now;
    sim.core.sync(now);
    let sync = sim.out().one_open();
    sim.respond(sync.stream, &member_list(vec![member("a", &[EP_A], false)]));
    sim.assert_quiet("same list");
}

// ---------------------------------------------------------------------------------------------
// 9. Deadlines of retried calls
// ---------------------------------------------------------------------------------------------

#[test]
fn deadline_during_the_retry_pause_after_a_lost_connection() {
    let (mut sim, ids) = connected_sim(base_config(&[EP]));
    let call = sim.get_with("k", CallOptions::with_timeout(20 * MS));
    sim.out().one_open();
    sim.at(5 * MS);
    sim.lost(ids[0]);
    sim.assert_quiet("a read is retried after a pause");
    // The deadline (20 ms) comes before the end of the pause (about 30 ms).
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 20 * MS));
    sim.at(20 * MS);
    sim.timeout();
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err(),
        Error::DeadlineExceeded { request_sent: true },
        "the first attempt may have reached the server"
    );
    sim.assert_quiet_transmits("nothing to reset");
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn deadline_while_waiting_for_a_new_connection_after_a_lost_one() {
    let (mut sim, ids) = connected_sim(base_config(&[EP]));
    let e = ids[0];
    let call = sim.get_with("k", CallOptions::with_timeout(100 * MS));
    sim.out().one_open();
    sim.at(5 * MS);
    sim.lost(e);
    sim.assert_quiet("retry pause");
    sim.advance();
    assert_eq!(sim.out().one_connect().0, e);
    // The connection does not come up before the deadline.
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 100 * MS));
    sim.at(100 * MS);
    sim.timeout();
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err(),
        Error::DeadlineExceeded { request_sent: true }
    );
}

#[test]
fn deadline_found_passed_at_dispatch_still_says_the_request_was_sent() {
    let (mut sim, ids) = connected_sim(base_config(&[EP]));
    let e = ids[0];
    let call = sim.get_with("k", CallOptions::with_timeout(100 * MS));
    sim.out().one_open();
    sim.at(5 * MS);
    sim.lost(e);
    sim.advance();
    assert_eq!(sim.out().one_connect().0, e);
    // The driver reports the connection after the deadline, before waking up for it.
    sim.at(150 * MS);
    sim.connected(e);
    sim.assert_quiet_transmits("too late to send");
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err(),
        Error::DeadlineExceeded { request_sent: true }
    );
}

#[test]
fn deadline_of_a_fresh_call_found_passed_at_dispatch() {
    // For comparison: a call that never went out reports request_sent: false.
    let mut sim = Sim::with_config(base_config(&[EP]));
    let call = sim.get_with("k", CallOptions::with_timeout(10 * MS));
    let (e, _) = sim.out().one_connect();
    sim.at(50 * MS);
    sim.connected(e);
    let (id, result) = sim.one_finished();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err(),
        Error::DeadlineExceeded {
            request_sent: false
        }
    );
}
