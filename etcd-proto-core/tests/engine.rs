//! The call engine driven by hand: no sockets, a simulated clock (one `Instant` taken at the
//! start, plus `Duration`s), every output drained and checked after every input.

use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto_core::error::Direction;
use etcd_proto_core::grpc::encode_message;
use etcd_proto_core::proto::etcdserverpb::{
    AuthenticateRequest, AuthenticateResponse, RangeResponse, ResponseHeader,
};
use etcd_proto_core::proto::mvccpb::KeyValue;
use etcd_proto_core::rpc::{self, kv};
use etcd_proto_core::{
    CallId, CallOptions, Code, Config, Core, EndpointId, Error, EtcdErrorKind, Event, Scheme,
    StreamId, Transmit, RESET_CANCEL,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use prost::Message;

const EP: &str = "http://127.0.0.1:2379";
const MS: Duration = Duration::from_millis(1);

/// A core plus a simulated clock.
struct Sim {
    core: Core,
    t0: Instant,
    now: Instant,
}

/// What an `OpenStream` transmit carried.
struct Opened {
    endpoint: EndpointId,
    stream: StreamId,
    request: Request<()>,
    body: Bytes,
}

/// The defaults, with keepalive pings off so that only the timers under test are armed.
fn base_config(endpoints: &[&str]) -> Config {
    let mut config = Config::from_endpoints(endpoints).unwrap();
    config.keepalive_interval = None;
    config
}

/// One attempt per call: the call ends with the outcome of that attempt (no retries).
fn single_attempt() -> Config {
    let mut config = base_config(&[EP]);
    config.max_attempts = 1;
    config
}

impl Sim {
    /// One endpoint, default retry policy, no keepalive.
    fn new() -> Sim {
        Sim::with_config(base_config(&[EP]))
    }

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
        let t = self.t0 + d;
        assert!(t >= self.now, "time must not go backwards");
        self.now = t;
        t
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.core.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<(CallId, Result<Bytes, Error>)> {
        std::iter::from_fn(|| self.core.poll_event())
            .map(|e| match e {
                Event::CallFinished { call, result } => (call, result),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    /// Drains both queues and asserts both are empty.
    fn assert_quiet(&mut self, what: &str) {
        let t = self.transmits();
        assert!(t.is_empty(), "{what}: unexpected transmits {t:?}");
        let e = self.events();
        assert!(e.is_empty(), "{what}: unexpected events {e:?}");
    }

    fn expect_connect(&mut self) -> EndpointId {
        let t = self.transmits();
        match t.as_slice() {
            [Transmit::Connect { endpoint, .. }] => *endpoint,
            other => panic!("expected one Connect, got {other:?}"),
        }
    }

    fn expect_open(&mut self) -> Opened {
        let mut t = self.transmits();
        assert_eq!(t.len(), 1, "expected one OpenStream, got {t:?}");
        match t.remove(0) {
            Transmit::OpenStream {
                endpoint,
                stream,
                request,
                body,
                end_stream,
                manual_flow_control,
            } => {
                assert!(end_stream, "a unary request ends the request stream");
                assert!(
                    !manual_flow_control,
                    "unary responses release capacity at once"
                );
                Opened {
                    endpoint,
                    stream,
                    request,
                    body,
                }
            }
            other => panic!("expected OpenStream, got {other:?}"),
        }
    }

    fn expect_one_event(&mut self) -> (CallId, Result<Bytes, Error>) {
        let mut e = self.events();
        assert_eq!(e.len(), 1, "expected one event, got {e:?}");
        e.remove(0)
    }

    /// Starts a Get of "foo", connects the single endpoint and returns the opened stream.
    fn connected_call(&mut self, options: CallOptions) -> (CallId, Opened) {
        let now = self.now;
        let call = self
            .core
            .start_unary(kv::Get::new("foo"), options, now)
            .unwrap();
        let ep = self.expect_connect();
        self.core.handle_connected(ep, now);
        let opened = self.expect_open();
        assert_eq!(opened.endpoint, ep);
        (call, opened)
    }

    fn respond_ok(&mut self, stream: StreamId, body: &[u8]) {
        let now = self.now;
        self.core
            .handle_response_headers(stream, StatusCode::OK, &grpc_headers(), false, now);
        let framed = frame(body);
        self.core.handle_data(stream, framed, false, now);
        self.core
            .handle_trailers(stream, &status_trailers("0", None), now);
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

fn frame(body: &[u8]) -> Bytes {
    let mut v = vec![0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

fn range_response() -> Vec<u8> {
    RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 2,
            raft_term: 2,
        }),
        kvs: vec![KeyValue {
            key: Bytes::from_static(b"foo"),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: Bytes::from_static(b"bar"),
            lease: 0,
        }],
        more: false,
        count: 1,
    }
    .encode_to_vec()
}

fn parse_grpc_timeout(v: &HeaderValue) -> Duration {
    let s = v.to_str().unwrap();
    let (digits, unit) = s.split_at(s.len() - 1);
    assert!(!digits.is_empty() && digits.len() <= 8, "{s}");
    let n: u64 = digits.parse().unwrap();
    match unit {
        "n" => Duration::from_nanos(n),
        "u" => Duration::from_micros(n),
        "m" => Duration::from_millis(n),
        "S" => Duration::from_secs(n),
        "M" => Duration::from_secs(n * 60),
        "H" => Duration::from_secs(n * 3600),
        other => panic!("bad grpc-timeout unit {other:?} in {s}"),
    }
}

fn opts_timeout(ms: u64) -> CallOptions {
    CallOptions::with_timeout(Duration::from_millis(ms))
}

#[test]
fn start_connects_first_and_opens_no_stream() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let t = sim.transmits();
    match t.as_slice() {
        [Transmit::Connect { endpoint, target }] => {
            assert_eq!(*endpoint, EndpointId(0));
            assert_eq!(target.scheme, Scheme::Http);
            assert_eq!(target.host, "127.0.0.1");
            assert_eq!(target.port, 2379);
        }
        other => panic!("expected exactly one Connect, got {other:?}"),
    }
    assert!(sim.events().is_empty());
    assert_eq!(sim.core.calls_in_progress(), 1);
    // Only the connect attempt is timed.
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + sim.core.config().connect_timeout)
    );
    // A second call while connecting does not start another connection.
    let call2 = sim
        .core
        .start_unary(kv::Get::new("bar"), CallOptions::default(), now)
        .unwrap();
    assert_ne!(call, call2);
    sim.assert_quiet("second call while connecting");
    // Both go out once connected, in order, on distinct streams.
    let t = sim.at(MS);
    sim.core.handle_connected(EndpointId(0), t);
    let t = sim.transmits();
    let streams: Vec<StreamId> = t
        .iter()
        .map(|t| match t {
            Transmit::OpenStream { stream, .. } => *stream,
            other => panic!("expected OpenStream, got {other:?}"),
        })
        .collect();
    assert_eq!(streams.len(), 2);
    assert_ne!(streams[0], streams[1]);
}

#[test]
fn open_stream_carries_the_grpc_request() {
    let mut sim = Sim::new();
    let (_, opened) = sim.connected_call(CallOptions::default());
    let req = &opened.request;
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri().path(), "/etcdserverpb.KV/Range");
    assert_eq!(req.uri().scheme_str(), Some("http"));
    assert_eq!(
        req.uri().authority().map(|a| a.as_str()),
        Some("127.0.0.1:2379")
    );
    let h = req.headers();
    assert_eq!(h.get("content-type").unwrap(), "application/grpc");
    assert_eq!(h.get("te").unwrap(), "trailers");
    assert!(
        h.get("grpc-timeout").is_none(),
        "no deadline, no grpc-timeout"
    );
    assert!(h.get("hasleader").is_none());
    assert!(h.get("token").is_none());
    assert_eq!(h.get_all("content-type").iter().count(), 1);
    // The body is exactly the framed request (facts §6 bytes).
    let expected = encode_message(&kv::Get::new("foo").build().unwrap(), usize::MAX).unwrap();
    assert_eq!(opened.body, expected);
    assert_eq!(
        &opened.body[..],
        &[0x00, 0x00, 0x00, 0x00, 0x05, 0x0a, 0x03, 0x66, 0x6f, 0x6f]
    );
    assert_eq!(sim.core.poll_timeout(), None, "nothing timed");
}

#[test]
fn grpc_timeout_header_is_the_remaining_deadline() {
    // Connection established 10 ms after the call started: the header says at most 1.5 s.
    let mut sim = Sim::new();
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), opts_timeout(1500), now)
        .unwrap();
    let ep = sim.expect_connect();
    let t = sim.at(10 * MS);
    sim.core.handle_connected(ep, t);
    let opened = sim.expect_open();
    let v = opened
        .request
        .headers()
        .get("grpc-timeout")
        .expect("grpc-timeout");
    let d = parse_grpc_timeout(v);
    assert!(d <= Duration::from_millis(1500), "{v:?}");
    assert!(d >= Duration::from_millis(1490), "{v:?}");
    assert_eq!(v, "1490000u");

    // On an open connection the whole timeout is sent.
    let now = sim.at(20 * MS);
    sim.core
        .start_unary(kv::Get::new("foo"), opts_timeout(1500), now)
        .unwrap();
    let opened = sim.expect_open();
    let v = opened.request.headers().get("grpc-timeout").unwrap();
    assert_eq!(parse_grpc_timeout(v), Duration::from_millis(1500));
}

#[test]
fn default_timeout_from_config_applies() {
    let mut config = base_config(&[EP]);
    config.default_timeout = Some(Duration::from_secs(2));
    let mut sim = Sim::with_config(config);
    let (_, opened) = sim.connected_call(CallOptions::default());
    let v = opened.request.headers().get("grpc-timeout").unwrap();
    assert_eq!(parse_grpc_timeout(v), Duration::from_secs(2));
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(2))
    );
}

#[test]
fn require_leader_metadata() {
    let mut sim = Sim::new();
    let mut opts = CallOptions::default();
    opts.require_leader = true;
    let (_, opened) = sim.connected_call(opts);
    assert_eq!(opened.request.headers().get("hasleader").unwrap(), "true");
    assert!(opened.request.headers().get("token").is_none());

    // Not set: no header on the next call.
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    assert!(opened.request.headers().get("hasleader").is_none());
}

#[test]
fn credentials_authenticate_first_then_send_the_token() {
    let config = base_config(&[EP]).with_credentials("root", "secret");
    let mut sim = Sim::with_config(config);
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    let t = sim.at(MS);
    sim.core.handle_connected(ep, t);
    // Only the Authenticate call goes out; the Get waits for the token.
    let auth = sim.expect_open();
    assert_eq!(auth.request.uri().path(), "/etcdserverpb.Auth/Authenticate");
    assert!(auth.request.headers().get("token").is_none());
    let req = AuthenticateRequest::decode(auth.body.slice(5..)).unwrap();
    assert_eq!(
        (req.name.as_str(), req.password.as_str()),
        ("root", "secret")
    );

    let token = AuthenticateResponse {
        header: None,
        token: "txOfQSVSLHQfNfwp.14".into(),
    }
    .encode_to_vec();
    sim.respond_ok(auth.stream, &token);
    let opened = sim.expect_open();
    assert!(
        sim.events().is_empty(),
        "the internal call produces no event"
    );
    assert_eq!(opened.request.uri().path(), "/etcdserverpb.KV/Range");
    assert_eq!(
        opened.request.headers().get("token").unwrap(),
        "txOfQSVSLHQfNfwp.14"
    );
    sim.respond_ok(opened.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());

    // The token is reused, not fetched again.
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    assert_eq!(opened.request.uri().path(), "/etcdserverpb.KV/Range");
    assert_eq!(
        opened.request.headers().get("token").unwrap(),
        "txOfQSVSLHQfNfwp.14"
    );
}

#[test]
fn successful_response_in_pieces() {
    let mut sim = Sim::new();
    let (call, opened) = sim.connected_call(CallOptions::default());
    let s = opened.stream;
    let body = range_response();
    let framed = frame(&body);
    let now = sim.at(5 * MS);
    sim.core
        .handle_response_headers(s, StatusCode::OK, &grpc_headers(), false, now);
    sim.assert_quiet("headers");
    let (a, rest) = framed.split_at(3);
    let (b, c) = rest.split_at(10);
    for piece in [a, b, c] {
        sim.core
            .handle_data(s, Bytes::copy_from_slice(piece), false, now);
        sim.assert_quiet("data");
    }
    assert_eq!(sim.core.calls_in_progress(), 1);
    sim.core
        .handle_trailers(s, &status_trailers("0", None), now);
    assert!(sim.transmits().is_empty(), "no reset after a clean end");
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let msg = result.expect("call succeeded");
    assert_eq!(&msg[..], &body[..]);
    let resp = rpc::decode_response::<kv::Get>(msg).unwrap();
    assert_eq!(resp.header.unwrap().revision, 2);
    assert_eq!(&resp.kvs[0].value[..], b"bar");
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(sim.core.poll_timeout(), None);

    // Anything after the end for that stream is ignored.
    sim.core
        .handle_trailers(s, &status_trailers("0", None), now);
    sim.core.handle_stream_reset(s, 0, now);
    sim.assert_quiet("inputs after the end");
}

#[test]
fn ok_status_in_trailers_with_end_stream_data() {
    // Data frame with END_STREAM but no trailers: HTTP 200 without grpc-status is UNKNOWN.
    let mut sim = Sim::new();
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    sim.core
        .handle_response_headers(opened.stream, StatusCode::OK, &grpc_headers(), false, now);
    sim.core
        .handle_data(opened.stream, frame(&range_response()), true, now);
    let (_, result) = sim.expect_one_event();
    match result {
        Err(Error::Status(s)) => assert_eq!(s.code, Code::Unknown),
        other => panic!("{other:?}"),
    }
    assert!(sim.transmits().is_empty());
}

#[test]
fn ok_without_message_or_with_partial_message_is_a_protocol_error() {
    let mut sim = Sim::new();
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    sim.core
        .handle_trailers(opened.stream, &status_trailers("0", None), now);
    let (_, result) = sim.expect_one_event();
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");

    let now = sim.at(MS);
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    let framed = frame(&range_response());
    sim.core
        .handle_data(opened.stream, framed.slice(..framed.len() - 1), false, now);
    sim.assert_quiet("partial message");
    sim.core
        .handle_trailers(opened.stream, &status_trailers("0", None), now);
    let (_, result) = sim.expect_one_event();
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
}

#[test]
fn trailers_only_error_response() {
    let mut sim = Sim::new();
    let (call, opened) = sim.connected_call(CallOptions::default());
    let mut h = grpc_headers();
    h.insert("grpc-status", HeaderValue::from_static("3"));
    h.insert(
        "grpc-message",
        HeaderValue::from_static("etcdserver: key is not provided"),
    );
    let now = sim.now;
    sim.core
        .handle_response_headers(opened.stream, StatusCode::OK, &h, true, now);
    assert!(sim.transmits().is_empty(), "stream is over: no reset");
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey));
    match &err {
        Error::Etcd(e) => {
            assert_eq!(e.code, Code::InvalidArgument);
            assert_eq!(e.message, "etcdserver: key is not provided");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[test]
fn error_status_in_trailers_after_headers() {
    // One attempt: with retries, a read meeting "no leader" is sent again (see the retry tests).
    let mut sim = Sim::with_config(single_attempt());
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    sim.core
        .handle_response_headers(opened.stream, StatusCode::OK, &grpc_headers(), false, now);
    sim.core.handle_trailers(
        opened.stream,
        &status_trailers("14", Some("etcdserver: no leader")),
        now,
    );
    let (_, result) = sim.expect_one_event();
    let err = result.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::NoLeader));
    assert!(err.is_retryable());
}

#[test]
fn missing_grpc_status_falls_back_to_http_status() {
    // Headers-only 503 response.
    // One attempt: UNAVAILABLE would be retried for a read.
    let mut sim = Sim::with_config(single_attempt());
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    sim.core.handle_response_headers(
        opened.stream,
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        true,
        now,
    );
    let (_, result) = sim.expect_one_event();
    match result {
        Err(Error::Status(s)) => assert_eq!(s.code, Code::Unavailable),
        other => panic!("{other:?}"),
    }

    // 503 headers, then the body ends without trailers.
    let now = sim.at(MS);
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    sim.core.handle_response_headers(
        opened.stream,
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        false,
        now,
    );
    sim.core
        .handle_data(opened.stream, Bytes::from_static(b"<html>"), true, now);
    let (_, result) = sim.expect_one_event();
    match result {
        Err(Error::Status(s)) => assert_eq!(s.code, Code::Unavailable),
        other => panic!("{other:?}"),
    }

    // 404 without grpc-status: UNIMPLEMENTED; a present grpc-status always wins.
    let now = sim.at(2 * MS);
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    sim.core.handle_response_headers(
        opened.stream,
        StatusCode::NOT_FOUND,
        &status_trailers("5", Some("nope")),
        true,
        now,
    );
    let (_, result) = sim.expect_one_event();
    match result {
        Err(Error::Status(s)) => assert_eq!((s.code, s.message.as_str()), (Code::NotFound, "nope")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_messages_in_a_unary_response() {
    for split in [false, true] {
        let mut sim = Sim::new();
        let (call, opened) = sim.connected_call(CallOptions::default());
        let now = sim.now;
        sim.core.handle_response_headers(
            opened.stream,
            StatusCode::OK,
            &grpc_headers(),
            false,
            now,
        );
        let one = frame(&range_response());
        if split {
            sim.core.handle_data(opened.stream, one.clone(), false, now);
            sim.assert_quiet("first message");
            sim.core.handle_data(opened.stream, one, false, now);
        } else {
            let mut both = one.to_vec();
            both.extend_from_slice(&one);
            sim.core
                .handle_data(opened.stream, Bytes::from(both), false, now);
        }
        let t = sim.transmits();
        match t.as_slice() {
            [Transmit::ResetStream { stream, reason }] => {
                assert_eq!(*stream, opened.stream);
                assert_eq!(*reason, RESET_CANCEL);
            }
            other => panic!("expected a reset, got {other:?}"),
        }
        let (id, result) = sim.expect_one_event();
        assert_eq!(id, call);
        assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
        // The trailers that follow are ignored.
        sim.core
            .handle_trailers(opened.stream, &status_trailers("0", None), now);
        sim.assert_quiet("trailers after protocol error");
    }
}

#[test]
fn bad_framing_in_response() {
    let mut sim = Sim::new();
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    sim.core.handle_data(
        opened.stream,
        Bytes::from_static(&[1, 0, 0, 0, 1, 0]),
        false,
        now,
    );
    assert!(matches!(
        sim.transmits().as_slice(),
        [Transmit::ResetStream { .. }]
    ));
    let (_, result) = sim.expect_one_event();
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
}

#[test]
fn response_over_receive_limit() {
    let mut config = base_config(&[EP]);
    config.max_send_message_size = 100;
    config.max_receive_message_size = 100;
    let mut sim = Sim::with_config(config);
    let (_, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    // Only the prefix, announcing 101 bytes.
    sim.core.handle_data(
        opened.stream,
        Bytes::from_static(&[0, 0, 0, 0, 101]),
        false,
        now,
    );
    assert!(matches!(
        sim.transmits().as_slice(),
        [Transmit::ResetStream {
            reason: RESET_CANCEL,
            ..
        }]
    ));
    let (_, result) = sim.expect_one_event();
    assert_eq!(
        result.unwrap_err(),
        Error::MessageTooLarge {
            size: 101,
            limit: 100,
            direction: Direction::Receive
        }
    );
}

#[test]
fn deadline_of_a_call_in_flight() {
    let mut sim = Sim::new();
    let (call, opened) = sim.connected_call(opts_timeout(1000));
    let start = sim.t0;
    assert_eq!(
        opened.request.headers().get("grpc-timeout").unwrap(),
        "1000000u"
    );
    assert_eq!(
        sim.core.poll_timeout(),
        Some(start + Duration::from_secs(1))
    );

    let t = sim.at(999 * MS);
    sim.core.handle_timeout(t);
    sim.assert_quiet("before the deadline");
    assert_eq!(sim.core.calls_in_progress(), 1);
    assert_eq!(
        sim.core.poll_timeout(),
        Some(start + Duration::from_secs(1))
    );

    let t = sim.at(1000 * MS);
    sim.core.handle_timeout(t);
    let t = sim.transmits();
    match t.as_slice() {
        [Transmit::ResetStream { stream, reason }] => {
            assert_eq!(*stream, opened.stream);
            assert_eq!(*reason, 8);
        }
        other => panic!("expected a CANCEL reset, got {other:?}"),
    }
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert_eq!(err, Error::DeadlineExceeded { request_sent: true });
    assert!(err.outcome_unknown());
    assert_eq!(sim.core.poll_timeout(), None);
    assert_eq!(sim.core.calls_in_progress(), 0);

    // A late response is ignored.
    let now = sim.at(1001 * MS);
    sim.core
        .handle_data(opened.stream, frame(&range_response()), false, now);
    sim.core
        .handle_trailers(opened.stream, &status_trailers("0", None), now);
    sim.assert_quiet("late response");
}

#[test]
fn deadline_of_a_call_waiting_for_a_connection() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), opts_timeout(1000), now)
        .unwrap();
    sim.expect_connect();
    // The call deadline comes before the connect deadline (5 s).
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(1))
    );
    let t = sim.at(1000 * MS);
    sim.core.handle_timeout(t);
    assert!(
        sim.transmits().is_empty(),
        "nothing to reset, connecting continues"
    );
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        Error::DeadlineExceeded {
            request_sent: false
        }
    );
    assert!(!err.outcome_unknown());
    assert!(err.is_retryable());
    // The connection attempt is still timed.
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(5))
    );
    // Connecting later opens no stream for the expired call.
    let t = sim.at(1100 * MS);
    sim.core.handle_connected(EndpointId(0), t);
    sim.assert_quiet("connected after the only call expired");
}

#[test]
fn connect_timeout_backs_off_then_reconnects() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    let connect_timeout = sim.core.config().connect_timeout;
    assert_eq!(connect_timeout, Duration::from_secs(5));
    assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + connect_timeout));

    let t = sim.at(4999 * MS);
    sim.core.handle_timeout(t);
    sim.assert_quiet("before the connect timeout");

    let t = sim.at(5000 * MS);
    sim.core.handle_timeout(t);
    let t = sim.transmits();
    match t.as_slice() {
        [Transmit::Disconnect { endpoint }] => assert_eq!(*endpoint, ep),
        other => panic!("expected Disconnect only (endpoint backing off), got {other:?}"),
    }
    assert!(sim.events().is_empty(), "the call keeps waiting");
    assert_eq!(sim.core.calls_in_progress(), 1);

    // Backoff: 50 ms +-20 %.
    let until = sim
        .core
        .poll_timeout()
        .expect("backoff is timed while a call waits");
    let backoff = until - (sim.t0 + connect_timeout);
    assert!(
        backoff >= 40 * MS && backoff <= 60 * MS,
        "backoff {backoff:?}"
    );

    // A connect report for the abandoned attempt is ignored.
    let t = sim.at(5001 * MS);
    sim.core.handle_connected(ep, t);
    sim.assert_quiet("late connected report during backoff");

    let before = until - Duration::from_nanos(1);
    sim.now = before;
    sim.core.handle_timeout(before);
    sim.assert_quiet("just before the backoff ends");

    sim.now = until;
    sim.core.handle_timeout(until);
    assert_eq!(sim.expect_connect(), ep);
    sim.core.handle_connected(ep, until);
    let opened = sim.expect_open();
    sim.respond_ok(opened.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn connect_failed_backs_off_exponentially_then_reconnects() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();

    let mut expected_base = 50 * MS;
    for round in 0..4 {
        let failed_at = sim.now + MS;
        sim.now = failed_at;
        sim.core
            .handle_connect_failed(ep, "connection refused", failed_at);
        sim.assert_quiet("connect failed: backing off");
        let until = sim.core.poll_timeout().unwrap();
        let backoff = until - failed_at;
        assert!(
            backoff >= expected_base.mul_f64(0.8) && backoff <= expected_base.mul_f64(1.2),
            "round {round}: backoff {backoff:?}, base {expected_base:?}"
        );
        sim.now = until;
        sim.core.handle_timeout(until);
        assert_eq!(sim.expect_connect(), ep, "round {round}");
        expected_base *= 2;
    }

    sim.core.handle_connected(ep, sim.now);
    let opened = sim.expect_open();
    sim.respond_ok(opened.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());

    // A successful connection resets the backoff.
    let now = sim.now;
    sim.core.handle_connection_lost(ep, "closed", now);
    sim.assert_quiet("idle connection lost");
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    assert_eq!(sim.expect_connect(), ep);
    let failed_at = now + MS;
    sim.now = failed_at;
    sim.core.handle_connect_failed(ep, "refused", failed_at);
    let backoff = sim.core.poll_timeout().unwrap() - failed_at;
    assert!(backoff >= 40 * MS && backoff <= 60 * MS, "{backoff:?}");
}

#[test]
fn backoff_is_capped() {
    let mut config = base_config(&[EP]);
    config.reconnect_backoff_max = Duration::from_millis(300);
    let mut sim = Sim::with_config(config);
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    for _ in 0..20 {
        let failed_at = sim.now + MS;
        sim.now = failed_at;
        sim.core.handle_connect_failed(ep, "refused", failed_at);
        let until = sim.core.poll_timeout().unwrap();
        assert!(until - failed_at <= Duration::from_millis(360));
        sim.now = until;
        sim.core.handle_timeout(until);
        assert_eq!(sim.expect_connect(), ep);
    }
}

#[test]
fn no_reconnect_without_waiting_calls() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    let t = sim.at(MS);
    sim.core.handle_connect_failed(ep, "refused", t);
    sim.core.cancel(call, sim.now);
    let (_, result) = sim.expect_one_event();
    assert_eq!(result.unwrap_err(), Error::Cancelled);
    assert!(
        sim.transmits().is_empty(),
        "nothing to reset for a waiting call"
    );
    // Whatever the core asks for, handling it must not reconnect.
    let mut t = sim.now;
    for _ in 0..3 {
        t = sim
            .core
            .poll_timeout()
            .map_or(t + Duration::from_secs(1), |at| at.max(t));
        sim.now = t;
        sim.core.handle_timeout(t);
        sim.assert_quiet("no call waits");
    }
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn connection_lost_fails_calls_in_flight() {
    // One attempt: the read would otherwise be retried (see the retry tests); the write never is.
    let mut sim = Sim::with_config(single_attempt());
    let (call1, _) = sim.connected_call(opts_timeout(10_000));
    let now = sim.now;
    let call2 = sim
        .core
        .start_unary(kv::Put::new("k", "v"), CallOptions::default(), now)
        .unwrap();
    sim.expect_open();
    let t = sim.at(MS);
    sim.core
        .handle_connection_lost(EndpointId(0), "connection reset by peer", t);
    assert!(sim.transmits().is_empty(), "no resets on a dead connection");
    let mut events = sim.events();
    events.sort_by_key(|(id, _)| *id);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, call1);
    assert_eq!(events[1].0, call2);
    for (_, result) in events {
        let err = result.unwrap_err();
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
        assert!(err.is_retryable());
    }
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(
        sim.core.poll_timeout(),
        None,
        "the deadline went with the call"
    );

    // The next call reconnects at once (no backoff after a working connection).
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    assert_eq!(sim.expect_connect(), EndpointId(0));
}

#[test]
fn stream_reset_by_server() {
    // REFUSED_STREAM: nothing was processed.
    // One attempt: a refused stream is otherwise retried (see the retry tests).
    let mut sim = Sim::with_config(single_attempt());
    let (call, opened) = sim.connected_call(CallOptions::default());
    sim.core.handle_stream_reset(opened.stream, 7, sim.now);
    assert!(
        sim.transmits().is_empty(),
        "the peer reset it; no reset back"
    );
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.outcome_unknown());

    // Other codes become statuses by the §7.5 table.
    for (reason, code) in [
        (8, Code::Cancelled),
        (2, Code::Internal),
        (0, Code::Internal),
        (11, Code::ResourceExhausted),
        (12, Code::PermissionDenied),
    ] {
        let now = sim.now;
        sim.core
            .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
            .unwrap();
        let opened = sim.expect_open();
        sim.core.handle_stream_reset(opened.stream, reason, now);
        assert!(sim.transmits().is_empty());
        let (_, result) = sim.expect_one_event();
        match result {
            Err(Error::Status(s)) => assert_eq!(s.code, code, "reason {reason}"),
            other => panic!("reason {reason}: {other:?}"),
        }
    }
}

#[test]
fn stream_error_from_transport() {
    let mut sim = Sim::with_config(single_attempt());
    let (call, opened) = sim.connected_call(CallOptions::default());
    sim.core
        .handle_stream_error(opened.stream, "could not open stream", false, sim.now);
    assert!(sim.transmits().is_empty());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.outcome_unknown());

    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    sim.core
        .handle_stream_error(opened.stream, "broken pipe", true, now);
    let (_, result) = sim.expect_one_event();
    assert!(result.unwrap_err().outcome_unknown());
}

#[test]
fn cancel() {
    let mut sim = Sim::new();
    let (call, opened) = sim.connected_call(opts_timeout(5000));
    let t = sim.at(MS);
    sim.core.cancel(call, t);
    match sim.transmits().as_slice() {
        [Transmit::ResetStream { stream, reason }] => {
            assert_eq!(*stream, opened.stream);
            assert_eq!(*reason, RESET_CANCEL);
        }
        other => panic!("expected a CANCEL reset, got {other:?}"),
    }
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    let err = result.unwrap_err();
    assert_eq!(err, Error::Cancelled);
    assert!(!err.is_retryable());
    assert_eq!(sim.core.poll_timeout(), None, "the deadline is gone");

    // Cancelling again, or an unknown call, does nothing.
    sim.core.cancel(call, sim.now);
    sim.core.cancel(CallId(12345), sim.now);
    sim.assert_quiet("cancel of finished/unknown calls");

    // Data for the cancelled stream is ignored.
    let now = sim.now;
    sim.core
        .handle_data(opened.stream, frame(&range_response()), true, now);
    sim.assert_quiet("data after cancel");
}

#[test]
fn close_fails_every_call_and_disconnects() {
    // Calls in flight.
    let mut sim = Sim::new();
    let (call1, opened1) = sim.connected_call(opts_timeout(5000));
    let now = sim.now;
    let call2 = sim
        .core
        .start_unary(kv::Get::new("x"), CallOptions::default(), now)
        .unwrap();
    let opened2 = sim.expect_open();
    let t = sim.at(MS);
    sim.core.close(t);
    let t = sim.transmits();
    let mut resets: Vec<StreamId> = Vec::new();
    let mut disconnects = Vec::new();
    for tr in &t {
        match tr {
            Transmit::ResetStream { stream, reason } => {
                assert_eq!(*reason, RESET_CANCEL);
                resets.push(*stream);
            }
            Transmit::Disconnect { endpoint } => disconnects.push(*endpoint),
            other => panic!("unexpected {other:?}"),
        }
    }
    resets.sort();
    let mut want = vec![opened1.stream, opened2.stream];
    want.sort();
    assert_eq!(resets, want);
    assert_eq!(disconnects, vec![EndpointId(0)]);
    let mut events = sim.events();
    events.sort_by_key(|(id, _)| *id);
    let ids: Vec<CallId> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![call1, call2]);
    for (_, result) in events {
        assert_eq!(result.unwrap_err(), Error::ClientClosed);
    }
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(sim.core.poll_timeout(), None);

    // Nothing can start afterwards.
    let now = sim.now;
    assert_eq!(
        sim.core
            .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
            .unwrap_err(),
        Error::ClientClosed
    );
    sim.assert_quiet("after close");

    // A call waiting for a connection.
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    sim.expect_connect();
    sim.core.close(now);
    match sim.transmits().as_slice() {
        [Transmit::Disconnect { endpoint }] => assert_eq!(*endpoint, EndpointId(0)),
        other => panic!("expected the connect attempt to be abandoned, got {other:?}"),
    }
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert_eq!(result.unwrap_err(), Error::ClientClosed);
    assert_eq!(sim.core.poll_timeout(), None);
    // A late connect report after close opens nothing.
    let t = sim.at(MS);
    sim.core.handle_connected(EndpointId(0), t);
    sim.assert_quiet("connected after close");
}

#[test]
fn oversize_request_fails_locally() {
    let mut sim = Sim::new();
    let now = sim.now;
    let value = vec![0u8; 3 * 1024 * 1024];
    let err = sim
        .core
        .start_unary(kv::Put::new("big", value), CallOptions::default(), now)
        .unwrap_err();
    match err {
        Error::MessageTooLarge {
            size,
            limit,
            direction,
        } => {
            assert_eq!(direction, Direction::Send);
            assert_eq!(limit, 2 * 1024 * 1024);
            assert!(size > 3 * 1024 * 1024);
        }
        other => panic!("{other:?}"),
    }
    sim.assert_quiet("oversize request");
    assert_eq!(sim.core.calls_in_progress(), 0);
    assert_eq!(sim.core.poll_timeout(), None);

    // Invalid requests fail the same way.
    let err = sim
        .core
        .start_unary(kv::Get::new("a").prefix().from_key(), opts_timeout(10), now)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    sim.assert_quiet("invalid request");
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn unknown_ids_are_ignored() {
    let mut sim = Sim::new();
    let (call, opened) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    let bogus = StreamId(opened.stream.0 + 1000);
    sim.core
        .handle_response_headers(bogus, StatusCode::OK, &grpc_headers(), false, now);
    sim.core.handle_response_headers(
        bogus,
        StatusCode::OK,
        &status_trailers("0", None),
        true,
        now,
    );
    sim.core
        .handle_data(bogus, frame(&range_response()), true, now);
    sim.core
        .handle_trailers(bogus, &status_trailers("13", None), now);
    sim.core.handle_stream_reset(bogus, 7, now);
    sim.core.handle_stream_error(bogus, "x", true, now);
    sim.core.handle_connected(EndpointId(42), now);
    sim.core.handle_connect_failed(EndpointId(42), "x", now);
    sim.core.handle_connection_lost(EndpointId(42), "x", now);
    sim.core.cancel(CallId(999), now);
    sim.core.handle_timeout(now);
    sim.assert_quiet("unknown ids");
    // Also inputs about the real endpoint that make no sense in its state.
    sim.core.handle_connected(EndpointId(0), now);
    sim.core.handle_connect_failed(EndpointId(0), "x", now);
    sim.assert_quiet("connected endpoint reported connected/failed again");

    // The real call is undisturbed.
    sim.respond_ok(opened.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

const EP_A: &str = "http://10.0.0.1:2379";
const EP_B: &str = "http://10.0.0.2:2379";

/// Two endpoints, both connected; returns their ids in configuration order.
fn two_connected(config: Config) -> (Sim, EndpointId, EndpointId) {
    let mut sim = Sim::with_config(config);
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("warm-up"), CallOptions::default(), now)
        .unwrap();
    // A waiting call connects every endpoint at once.
    let t = sim.transmits();
    let (a, b) = match t.as_slice() {
        [Transmit::Connect {
            endpoint: a,
            target: ta,
        }, Transmit::Connect {
            endpoint: b,
            target: tb,
        }] => {
            assert_eq!(ta.host, "10.0.0.1");
            assert_eq!(tb.host, "10.0.0.2");
            (*a, *b)
        }
        other => panic!("expected two Connects, got {other:?}"),
    };
    assert_ne!(a, b);
    sim.core.handle_connected(a, now);
    let opened = sim.expect_open();
    assert_eq!(opened.endpoint, a);
    sim.core.handle_connected(b, now);
    sim.assert_quiet("second connection, nothing waiting");
    sim.respond_ok(opened.stream, &range_response());
    assert_eq!(sim.expect_one_event().0, call);
    (sim, a, b)
}

#[test]
fn round_robin_over_connected_endpoints() {
    let (mut sim, a, b) = two_connected(base_config(&[EP_A, EP_B]));
    // The warm-up call went to `a`; the next ones alternate, starting with `b`.
    let mut used = Vec::new();
    let mut open = Vec::new();
    for i in 0..6 {
        let now = sim.now;
        sim.core
            .start_unary(kv::Get::new(format!("k{i}")), CallOptions::default(), now)
            .unwrap();
        let opened = sim.expect_open();
        let authority = opened
            .request
            .uri()
            .authority()
            .unwrap()
            .as_str()
            .to_string();
        let expected = if opened.endpoint == a {
            "10.0.0.1:2379"
        } else {
            "10.0.0.2:2379"
        };
        assert_eq!(authority, expected);
        used.push(opened.endpoint);
        open.push(opened.stream);
    }
    assert_eq!(used, vec![b, a, b, a, b, a]);
    // Finishing them in any order changes nothing about the alternation.
    for stream in open.into_iter().rev() {
        sim.respond_ok(stream, &range_response());
    }
    assert_eq!(sim.events().len(), 6);
    let now = sim.now;
    sim.core
        .start_unary(kv::Get::new("k"), CallOptions::default(), now)
        .unwrap();
    assert_eq!(sim.expect_open().endpoint, b);
}

#[test]
fn a_failed_endpoint_is_skipped() {
    let mut sim = Sim::with_config(base_config(&[EP_A, EP_B]));
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
        .unwrap();
    let t = sim.transmits();
    let (a, b) = match t.as_slice() {
        [Transmit::Connect { endpoint: a, .. }, Transmit::Connect { endpoint: b, .. }] => (*a, *b),
        other => panic!("expected two Connects, got {other:?}"),
    };
    let t = sim.at(MS);
    sim.core.handle_connect_failed(a, "connection refused", t);
    sim.assert_quiet("one endpoint failed, the other is still connecting");
    let t = sim.at(2 * MS);
    sim.core.handle_connected(b, t);
    let opened = sim.expect_open();
    assert_eq!(opened.endpoint, b);
    assert_eq!(
        opened.request.uri().authority().unwrap().as_str(),
        "10.0.0.2:2379"
    );
    sim.respond_ok(opened.stream, &range_response());
    assert_eq!(sim.expect_one_event().0, call);

    // While `a` backs off, every call goes to `b`.
    for _ in 0..3 {
        let now = sim.now;
        sim.core
            .start_unary(kv::Get::new("foo"), CallOptions::default(), now)
            .unwrap();
        assert_eq!(sim.expect_open().endpoint, b);
    }
}

#[test]
fn retry_goes_to_another_endpoint() {
    let (mut sim, a, b) = two_connected(base_config(&[EP_A, EP_B]));
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Get::new("foo"), opts_timeout(1000), now)
        .unwrap();
    let first = sim.expect_open();
    assert_eq!(first.endpoint, b);
    // "no leader" (UNAVAILABLE) on a read: sent again at once, to the other member.
    let t = sim.at(10 * MS);
    sim.core.handle_trailers(
        first.stream,
        &status_trailers("14", Some("etcdserver: no leader")),
        t,
    );
    assert!(sim.events().is_empty(), "retried, not finished");
    let second = sim.expect_open();
    assert_eq!(second.endpoint, a);
    assert_ne!(second.stream, first.stream);
    assert_eq!(second.body, first.body);
    // The retry carries what is left of the deadline.
    let left = parse_grpc_timeout(second.request.headers().get("grpc-timeout").unwrap());
    assert_eq!(left, Duration::from_millis(990));
    // A late answer on the abandoned stream is ignored.
    sim.core
        .handle_trailers(first.stream, &status_trailers("0", None), t);
    sim.assert_quiet("late answer on the first stream");

    sim.respond_ok(second.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn unavailable_is_not_retried_for_writes() {
    let (mut sim, _, _) = two_connected(base_config(&[EP_A, EP_B]));
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Put::new("k", "v"), CallOptions::default(), now)
        .unwrap();
    let opened = sim.expect_open();
    sim.core.handle_trailers(
        opened.stream,
        &status_trailers("14", Some("etcdserver: no leader")),
        now,
    );
    assert!(sim.transmits().is_empty(), "a write is never sent twice");
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert_eq!(
        result.unwrap_err().etcd_kind(),
        Some(EtcdErrorKind::NoLeader)
    );
}

#[test]
fn refused_stream_is_retried_even_for_writes() {
    let mut sim = Sim::new();
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Put::new("k", "v"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    sim.core.handle_connected(ep, now);
    let first = sim.expect_open();
    let t = sim.at(MS);
    sim.core.handle_stream_reset(first.stream, 7, t);
    sim.assert_quiet("refused: retry after a pause (one endpoint)");
    // One endpoint: every retry waits 25 ms +-10 %.
    let at = sim.core.poll_timeout().expect("retry pause is timed");
    let pause = at - t;
    assert!(
        pause >= Duration::from_micros(22_500) && pause <= Duration::from_micros(27_500),
        "{pause:?}"
    );
    sim.now = at;
    sim.core.handle_timeout(at);
    let second = sim.expect_open();
    assert_ne!(second.stream, first.stream);
    sim.respond_ok(second.stream, &[]);
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.is_ok());
}

#[test]
fn lost_connection_retries_reads_but_not_writes() {
    let mut sim = Sim::new();
    let (get, _) = sim.connected_call(CallOptions::default());
    let now = sim.now;
    let put = sim
        .core
        .start_unary(kv::Put::new("k", "v"), CallOptions::default(), now)
        .unwrap();
    sim.expect_open();
    let t = sim.at(MS);
    sim.core.handle_connection_lost(EndpointId(0), "reset", t);
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, put);
    let err = result.unwrap_err();
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
    assert!(sim.transmits().is_empty());
    // The read comes back after the retry pause, on a new connection.
    let at = sim.core.poll_timeout().unwrap();
    sim.now = at;
    sim.core.handle_timeout(at);
    let ep = sim.expect_connect();
    sim.core.handle_connected(ep, at);
    let opened = sim.expect_open();
    assert_eq!(opened.request.uri().path(), "/etcdserverpb.KV/Range");
    sim.respond_ok(opened.stream, &range_response());
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, get);
    assert!(result.is_ok());
}

#[test]
fn keepalive_ping_on_a_silent_connection() {
    let mut config = base_config(&[EP]);
    config.keepalive_interval = Some(Duration::from_secs(10));
    config.keepalive_timeout = Duration::from_secs(5);
    let mut sim = Sim::with_config(config);
    let now = sim.now;
    let call = sim
        .core
        .start_unary(kv::Put::new("k", "v"), CallOptions::default(), now)
        .unwrap();
    let ep = sim.expect_connect();
    sim.core.handle_connected(ep, now);
    let opened = sim.expect_open();
    // Data on the stream counts as activity and pushes the ping back.
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(10))
    );
    let t = sim.at(Duration::from_secs(8));
    sim.core
        .handle_response_headers(opened.stream, StatusCode::OK, &grpc_headers(), false, t);
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(18))
    );
    let t = sim.at(Duration::from_secs(18));
    sim.core.handle_timeout(t);
    match sim.transmits().as_slice() {
        [Transmit::Ping { endpoint }] => assert_eq!(*endpoint, ep),
        other => panic!("expected a Ping, got {other:?}"),
    }
    // Answered: the next one is due an interval later.
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(23))
    );
    let t = sim.at(Duration::from_secs(19));
    sim.core.handle_pong(ep, t);
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.t0 + Duration::from_secs(29))
    );
    let t = sim.at(Duration::from_secs(29));
    sim.core.handle_timeout(t);
    assert!(matches!(
        sim.transmits().as_slice(),
        [Transmit::Ping { .. }]
    ));
    // Unanswered: the connection is declared dead and the write fails.
    let t = sim.at(Duration::from_secs(34));
    sim.core.handle_timeout(t);
    match sim.transmits().as_slice() {
        [Transmit::Disconnect { endpoint }] => assert_eq!(*endpoint, ep),
        other => panic!("expected a Disconnect, got {other:?}"),
    }
    let (id, result) = sim.expect_one_event();
    assert_eq!(id, call);
    assert!(result.unwrap_err().outcome_unknown());
    assert_eq!(sim.core.poll_timeout(), None, "no streams, no pings");
}

#[test]
fn cancel_or_deadline_during_a_retry_pause() {
    for cancel in [true, false] {
        let mut sim = Sim::new();
        let now = sim.now;
        let call = sim
            .core
            .start_unary(kv::Put::new("k", "v"), opts_timeout(20), now)
            .unwrap();
        let ep = sim.expect_connect();
        sim.core.handle_connected(ep, now);
        let opened = sim.expect_open();
        let t = sim.at(MS);
        sim.core.handle_stream_reset(opened.stream, 7, t);
        sim.assert_quiet("refused: pausing before the retry");
        // The deadline (20 ms) comes before the end of the pause (~25 ms).
        assert_eq!(sim.core.poll_timeout(), Some(sim.t0 + 20 * MS));
        if cancel {
            let t = sim.at(5 * MS);
            sim.core.cancel(call, t);
        } else {
            let t = sim.at(20 * MS);
            sim.core.handle_timeout(t);
        }
        assert!(
            sim.transmits().is_empty(),
            "no stream is open: nothing to reset"
        );
        let (id, result) = sim.expect_one_event();
        assert_eq!(id, call);
        let expected = if cancel {
            Error::Cancelled
        } else {
            // The only attempt was refused, so nothing reached the server.
            Error::DeadlineExceeded {
                request_sent: false,
            }
        };
        assert_eq!(result.unwrap_err(), expected);
        // The pause is forgotten: no retry later.
        assert_eq!(sim.core.poll_timeout(), None);
        let t = sim.at(100 * MS);
        sim.core.handle_timeout(t);
        sim.assert_quiet("after the call ended");
    }
}
