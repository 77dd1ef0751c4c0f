//! `engine_unary`: drives a [`Core`] with one endpoint (`http://127.0.0.1:2379`) through a
//! sequence of transport and application inputs decoded from the fuzz input, playing the
//! transport the way a driver would, and checks the engine against a model after every step.
//!
//! Setup: byte 0 picks the configuration (bits 0-1 default timeout, 2-3 receive limit, 4 no
//! keepalive, 5-6 max attempts, 7 no pause between retries); a Get is started, the `Connect`
//! transmit is answered with `handle_connected`, and its `OpenStream` gives the first stream.
//! Then, until the input runs out (at most [`MAX_OPS`] operations), one opcode byte (`% 17`)
//! and its operands:
//!
//! | op | operands | input |
//! |---|---|---|
//! | 0 | stream, status | response headers (HTTP status from a table; bit 4: end_stream, i.e. trailers-only, followed by a status spec) |
//! | 1 | stream, flags, len, bytes | DATA with raw bytes (flags bit 0: end_stream) |
//! | 2 | stream, flags, len, bytes | DATA with one well-formed gRPC message of those bytes |
//! | 3 | stream, flags | DATA with a canned real response (flags bit 0: end_stream; bits 1-2: which; bits 3-7: split point) |
//! | 4 | stream, status spec | trailers |
//! | 5 | stream, reason | RST_STREAM from the peer |
//! | 6 | stream, flag | stream error (flag bit 0: request_sent) |
//! | 7 | | connection established (ignored by the core when no attempt is pending) |
//! | 8 | | connection attempt failed |
//! | 9 | | connection lost |
//! | 10 | delta | time advances, `handle_timeout` |
//! | 11 | | time jumps to `poll_timeout`, `handle_timeout` |
//! | 12 | call | cancel |
//! | 13 | kind | start another call (Get/Put/Delete/Compact/Txn, timeout, require_leader) |
//! | 14 | | PING answered (if one is outstanding) |
//! | 15 | | close |
//! | 16 | delta | time advances without `handle_timeout` (a late timer) |
//!
//! A "stream" or "call" operand selects one seen so far, or (one past the end) an unknown one.
//! A status spec is one byte for `grpc-status` and one for `grpc-message` (some choices read a
//! length byte and raw bytes).
//!
//! Checked after every step: every call finishes at most once, and only for a reason the step
//! gives it; a call the step must finish (cancel, close, deadline, its response, a failed
//! attempt the public retry policy `retry::decide` does not retry) does, with the right result
//! (on success the response message, compared with a reference decoding of the bytes fed);
//! a retried call does not finish, and a non-repeatable call is only sent again when every
//! earlier attempt provably never left the client; streams are reset exactly when the client
//! abandons a live one; streams are only opened on a connection the transport reported
//! established, one attempt at a time, with a well-formed request head and the call's request;
//! pings only go out on a live connection, one at a time; `calls_in_progress` and
//! `poll_timeout` agree with the model; a call without a stream is never stranded (a
//! connection attempt or a timer is pending); after `close` every call has finished and
//! nothing more comes out.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use etcd_proto_core::error::Direction;
use etcd_proto_core::grpc::{encode_message, PREFIX_LEN};
use etcd_proto_core::proto::bytes::Bytes;
use etcd_proto_core::retry::{self, Attempt, Decision};
use etcd_proto_core::rpc::{decode_response, kv, RetryClass, UnaryRpc};
use etcd_proto_core::{
    CallId, CallOptions, Code, Config, Core, EndpointId, Error, Event, Status, StreamId, Transmit,
    RESET_CANCEL,
};
use http::{HeaderMap, HeaderValue, StatusCode};

/// Upper bound on operations per input, so that one input stays fast.
const MAX_OPS: usize = 512;

/// The `RangeResponse` of the worked example in the wire facts (§6), without its prefix.
const RANGE_RESPONSE: &[u8] = &[
    0x0a, 0x18, 0x08, 0x87, 0xd5, 0xed, 0xba, 0x8f, 0xd5, 0x9d, 0xc1, 0x04, 0x10, 0xc0, 0xc0, 0xca,
    0xaf, 0xc1, 0xba, 0x96, 0x89, 0x2e, 0x18, 0x02, 0x20, 0x02, 0x12, 0x10, 0x0a, 0x03, 0x66, 0x6f,
    0x6f, 0x10, 0x02, 0x18, 0x02, 0x20, 0x01, 0x2a, 0x03, 0x62, 0x61, 0x72, 0x20, 0x01,
];

/// A `PutResponse` with only a header (revision 3).
const PUT_RESPONSE: &[u8] = &[0x0a, 0x04, 0x18, 0x03, 0x20, 0x02];

const HTTP_STATUSES: [u16; 16] = [
    200, 200, 200, 404, 503, 400, 431, 500, 502, 429, 401, 403, 504, 418, 204, 299,
];

const MESSAGES: [&str; 8] = [
    "",
    "etcdserver: key is not provided",
    "etcdserver: leader changed",
    "etcdserver: mvcc: required revision has been compacted",
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    "caf%C3%A9 %zz %",
    "etcdserver: request timed out",
    "context deadline exceeded",
];

const DELTAS_MS: [u64; 12] = [0, 1, 10, 50, 99, 100, 101, 1000, 2000, 5000, 10_000, 60_000];

pub fn run(data: &[u8]) {
    let mut input = Input { data, pos: 0 };
    let Some(mut h) = Harness::new(input.byte().unwrap_or(0)) else {
        return;
    };
    // `ENGINE_UNARY_TRACE=1` prints every step (to debug a failing input).
    h.trace = std::env::var_os("ENGINE_UNARY_TRACE").is_some();
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        if h.trace {
            eprintln!("op {} at +{:?}", op % 17, h.now - h.start);
        }
        h.op(op % 17, &mut input);
    }
    if !h.closed {
        h.close();
    }
    h.check_all_finished();
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn byte_or0(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let end = (self.pos + n).min(self.data.len());
        let out = &self.data[self.pos..end];
        self.pos = end;
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Put,
    Delete,
    Compact,
    Txn,
}

#[derive(Debug)]
struct CallModel {
    path: &'static str,
    class: RetryClass,
    deadline: Option<Instant>,
    require_leader: bool,
    /// The stream of the attempt in flight.
    stream: Option<StreamId>,
    /// Streams opened so far (attempts made).
    attempts: u32,
    /// Every attempt that ended so far proved that its request never left the client.
    unsent_only: bool,
    /// An attempt that ended so far may have been applied (its outcome is unknown).
    maybe_applied: bool,
    finished: bool,
}

#[derive(Debug)]
struct StreamModel {
    call: CallId,
    /// Every response byte fed so far.
    bytes: Vec<u8>,
    http_status: Option<StatusCode>,
    /// The client reset it.
    reset: bool,
    /// Its attempt is over (the response ended, the peer reset it, the connection broke).
    ended: bool,
}

/// What a step does to a call.
#[derive(Debug, Clone)]
enum Expect {
    /// The call must finish, like this.
    Finish(Check),
    /// The attempt in flight failed with this error: the call is retried or finishes with it,
    /// as the public retry policy (`retry::decide`) says.
    AttemptFailed { error: ErrExpect, attempts: u32 },
}

#[derive(Debug, Clone)]
enum Check {
    Cancelled,
    ClientClosed,
    Deadline,
    /// Bad framing or a second message: a protocol error or a receive-size error.
    FrameError,
    /// The response: this message.
    Ok(Bytes),
}

impl Check {
    /// Whether the client abandons a live stream here (and so must reset it).
    fn resets(&self) -> bool {
        !matches!(self, Check::Ok(_))
    }
}

/// The error of a failed attempt, as precisely as the harness knows it.
#[derive(Debug, Clone)]
enum ErrExpect {
    /// Exactly this error (a non-OK grpc-status).
    Exact(Error),
    /// A status error with this code (no grpc-status, or a peer reset).
    Code(Code),
    /// A protocol error (OK status but no single whole message).
    Protocol,
    /// A transport error.
    Transport { request_sent: bool },
}

impl ErrExpect {
    /// An error of this class, for the retry policy.
    fn repr(&self) -> Error {
        match self {
            ErrExpect::Exact(e) => e.clone(),
            ErrExpect::Code(code) => Error::Status(Status::new(*code, "")),
            ErrExpect::Protocol => Error::Protocol(String::new()),
            ErrExpect::Transport { request_sent } => Error::Transport {
                message: String::new(),
                request_sent: *request_sent,
            },
        }
    }

    fn matches(&self, got: &Error) -> bool {
        match (self, got) {
            (ErrExpect::Exact(e), got) => e == got,
            (ErrExpect::Code(code), Error::Status(s)) => s.code == *code,
            (ErrExpect::Protocol, Error::Protocol(_)) => true,
            (
                ErrExpect::Transport { request_sent: a },
                Error::Transport {
                    request_sent: b, ..
                },
            ) => a == b,
            _ => false,
        }
    }
}

struct Harness {
    core: Core,
    now: Instant,
    limit: usize,
    max_attempts: u32,
    default_timeout: Option<Duration>,
    calls: BTreeMap<CallId, CallModel>,
    call_order: Vec<CallId>,
    streams: BTreeMap<StreamId, StreamModel>,
    stream_order: Vec<StreamId>,
    bodies: HashMap<Bytes, CallId>,
    conn: Conn,
    ping_outstanding: bool,
    /// A connection attempt failed since the transport last reported a connection: a call
    /// that never got a stream reports that failure at its deadline.
    connect_error: bool,
    closed: bool,
    next_key: u64,
    start: Instant,
    trace: bool,
}

impl Harness {
    fn new(config_byte: u8) -> Option<Harness> {
        let mut config = Config::from_endpoints(["http://127.0.0.1:2379"]).expect("valid config");
        let default_timeout = match config_byte & 3 {
            2 => Some(Duration::from_millis(100)),
            3 => Some(Duration::from_secs(5)),
            _ => None,
        };
        config.default_timeout = default_timeout;
        match (config_byte >> 2) & 3 {
            2 => {
                config.max_receive_message_size = 64;
                config.max_send_message_size = 64;
            }
            3 => {
                config.max_receive_message_size = 1024;
                config.max_send_message_size = 1024;
            }
            _ => {}
        }
        config.keepalive_interval = if config_byte & 0x10 != 0 {
            None
        } else {
            Some(Duration::from_secs(10))
        };
        config.max_attempts = [config.max_attempts, 1, 2, 3][((config_byte >> 5) & 3) as usize];
        if config_byte & 0x80 != 0 {
            config.retry_wait_between = Duration::ZERO;
        }
        let limit = config.max_receive_message_size;
        let max_attempts = config.max_attempts;
        let now = Instant::now();
        let core = Core::new(config, now).expect("valid config");
        let mut h = Harness {
            core,
            now,
            limit,
            max_attempts,
            default_timeout,
            calls: BTreeMap::new(),
            call_order: Vec::new(),
            streams: BTreeMap::new(),
            stream_order: Vec::new(),
            bodies: HashMap::new(),
            conn: Conn::Idle,
            ping_outstanding: false,
            connect_error: false,
            closed: false,
            next_key: 0,
            start: now,
            trace: false,
        };

        // The first call: connect, open its stream.
        let first = h.start(Kind::Get, CallOptions::default())?;
        assert_eq!(h.conn, Conn::Connecting, "starting a call connects");
        h.core.handle_connected(EndpointId(0), h.now);
        h.conn = Conn::Connected;
        h.drain(BTreeMap::new());
        assert!(
            h.calls[&first].stream.is_some(),
            "the first call got no stream once connected"
        );
        Some(h)
    }

    fn op(&mut self, op: u8, input: &mut Input<'_>) {
        let now = self.now;
        let mut expect = BTreeMap::new();
        match op {
            0 => {
                let stream = self.pick_stream(input.byte_or0());
                let b = input.byte_or0();
                let status = StatusCode::from_u16(HTTP_STATUSES[(b & 15) as usize]).expect("valid");
                let end_stream = b & 16 != 0;
                let headers = if end_stream {
                    status_spec(input)
                } else {
                    HeaderMap::new()
                };
                if let Some(call) = self.live_call(stream) {
                    self.streams.get_mut(&stream).expect("known").http_status = Some(status);
                    if end_stream {
                        let e = self.completion(stream, Some(&headers));
                        expect.insert(call, e);
                    }
                }
                self.core
                    .handle_response_headers(stream, status, &headers, end_stream, now);
            }
            1..=3 => {
                let stream = self.pick_stream(input.byte_or0());
                let flags = input.byte_or0();
                let end_stream = flags & 1 != 0;
                let payload: Vec<u8> = match op {
                    1 => {
                        let n = input.byte_or0() as usize;
                        input.bytes(n).to_vec()
                    }
                    2 => {
                        let n = input.byte_or0() as usize;
                        frame(input.bytes(n))
                    }
                    _ => match (flags >> 1) & 3 {
                        0 => frame(RANGE_RESPONSE),
                        1 => frame(PUT_RESPONSE),
                        2 => frame(&[]),
                        _ => [frame(RANGE_RESPONSE), frame(PUT_RESPONSE)].concat(),
                    },
                };
                if let Some(call) = self.live_call(stream) {
                    let model = self.streams.get_mut(&stream).expect("known");
                    // The body of a non-200 response is not gRPC (e.g. a proxy's error page):
                    // it is ignored.
                    let grpc_body = model.http_status.is_none_or(|s| s == StatusCode::OK);
                    if grpc_body {
                        model.bytes.extend_from_slice(&payload);
                    }
                    let parsed = parse(&model.bytes, self.limit);
                    if parsed.error || parsed.messages.len() > 1 {
                        expect.insert(call, Expect::Finish(Check::FrameError));
                    } else if end_stream {
                        let e = self.completion(stream, None);
                        expect.insert(call, e);
                    }
                }
                if op == 3 && flags >> 3 != 0 && payload.len() > 1 {
                    // Split the canned response in two DATA frames.
                    let at = (flags >> 3) as usize % payload.len();
                    let (a, b) = payload.split_at(at);
                    self.core
                        .handle_data(stream, Bytes::copy_from_slice(a), false, now);
                    self.core
                        .handle_data(stream, Bytes::copy_from_slice(b), end_stream, now);
                } else {
                    self.core
                        .handle_data(stream, Bytes::from(payload), end_stream, now);
                }
            }
            4 => {
                let stream = self.pick_stream(input.byte_or0());
                let trailers = status_spec(input);
                if let Some(call) = self.live_call(stream) {
                    let e = self.completion(stream, Some(&trailers));
                    expect.insert(call, e);
                }
                self.core.handle_trailers(stream, &trailers, now);
            }
            5 => {
                let stream = self.pick_stream(input.byte_or0());
                let reason = match input.byte_or0() % 9 {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    3 => 7,
                    4 => 8,
                    5 => 11,
                    6 => 12,
                    7 => 13,
                    _ => u32::from_be_bytes([
                        input.byte_or0(),
                        input.byte_or0(),
                        input.byte_or0(),
                        input.byte_or0(),
                    ]),
                };
                if let Some(call) = self.live_call(stream) {
                    // REFUSED_STREAM proves the server did not process the request.
                    let error = match Code::from_reset_reason(reason) {
                        Code::Unavailable => ErrExpect::Transport {
                            request_sent: false,
                        },
                        code => ErrExpect::Code(code),
                    };
                    let e = self.attempt_failed(call, error);
                    expect.insert(call, e);
                }
                self.core.handle_stream_reset(stream, reason, now);
            }
            6 => {
                let stream = self.pick_stream(input.byte_or0());
                let request_sent = input.byte_or0() & 1 != 0;
                if let Some(call) = self.live_call(stream) {
                    let e = self.attempt_failed(call, ErrExpect::Transport { request_sent });
                    expect.insert(call, e);
                }
                self.core
                    .handle_stream_error(stream, "stream broke", request_sent, now);
            }
            7 => {
                self.core.handle_connected(EndpointId(0), now);
                // Any report of a connection clears the remembered connect failure.
                self.connect_error = false;
                if self.conn == Conn::Connecting {
                    self.conn = Conn::Connected;
                }
            }
            8 => {
                self.core
                    .handle_connect_failed(EndpointId(0), "connection refused", now);
                if self.conn == Conn::Connecting {
                    self.conn = Conn::Idle;
                    self.connect_error = true;
                }
            }
            9 => {
                self.fail_live_attempts(&mut expect);
                self.conn = Conn::Idle;
                self.ping_outstanding = false;
                self.core
                    .handle_connection_lost(EndpointId(0), "connection reset", now);
            }
            10 | 11 => {
                if op == 10 {
                    let ms = DELTAS_MS[input.byte_or0() as usize % DELTAS_MS.len()];
                    self.now += Duration::from_millis(ms);
                } else if let Some(at) = self.core.poll_timeout() {
                    self.now = self.now.max(at);
                }
                let now = self.now;
                for (&id, call) in &self.calls {
                    if !call.finished && call.deadline.is_some_and(|d| d <= now) {
                        expect.insert(id, Expect::Finish(Check::Deadline));
                    }
                }
                self.core.handle_timeout(now);
            }
            12 => {
                let b = input.byte_or0() as usize;
                let call = self
                    .call_order
                    .get(b % (self.call_order.len() + 1))
                    .copied()
                    .unwrap_or(CallId(u64::MAX));
                if self.calls.get(&call).is_some_and(|c| !c.finished) {
                    expect.insert(call, Expect::Finish(Check::Cancelled));
                }
                self.core.cancel(call, now);
            }
            13 => {
                let b = input.byte_or0();
                let kind = [Kind::Get, Kind::Put, Kind::Delete, Kind::Compact, Kind::Txn]
                    [(b % 5) as usize];
                let mut options = CallOptions::default();
                options.timeout = match (b >> 3) % 5 {
                    0 => None,
                    1 => Some(Duration::ZERO),
                    2 => Some(Duration::from_millis(10)),
                    3 => Some(Duration::from_millis(100)),
                    _ => Some(Duration::from_secs(1)),
                };
                options.require_leader = b & 0x80 != 0;
                // `start` drains by itself.
                let _ = self.start(kind, options);
                return;
            }
            16 => {
                // The driver's timer fires late: time passes without `handle_timeout`.
                let ms = DELTAS_MS[input.byte_or0() as usize % DELTAS_MS.len()];
                self.now += Duration::from_millis(ms);
                return;
            }
            14 => {
                if self.ping_outstanding {
                    self.ping_outstanding = false;
                    self.core.handle_pong(EndpointId(0), now);
                }
            }
            _ => {
                self.close();
                return;
            }
        }
        self.drain(expect);
    }

    fn close(&mut self) {
        let mut expect = BTreeMap::new();
        for (&id, call) in &self.calls {
            if !call.finished {
                expect.insert(id, Expect::Finish(Check::ClientClosed));
            }
        }
        let was_closed = self.closed;
        self.core.close(self.now);
        if was_closed {
            self.drain(expect);
        } else {
            self.drain_checked(expect);
            self.closed = true;
        }
        assert_eq!(self.conn, Conn::Idle, "close left a connection");
        self.check_all_finished();
        let again = self
            .core
            .start_unary(kv::Get::new("late"), CallOptions::default(), self.now);
        assert!(
            matches!(again, Err(Error::ClientClosed)),
            "start after close: {again:?}"
        );
        self.drain(BTreeMap::new());
    }

    fn check_all_finished(&self) {
        assert_eq!(self.core.calls_in_progress(), 0);
        for (id, call) in &self.calls {
            assert!(call.finished, "{id:?} never finished");
        }
    }

    /// Starts a call with a unique request (so that its streams can be recognized).
    fn start(&mut self, kind: Kind, options: CallOptions) -> Option<CallId> {
        let n = self.next_key;
        self.next_key += 1;
        let key = format!("k{n}");
        let result = match kind {
            Kind::Get => self.start_rpc(kv::Get::new(key.as_str()), &options),
            Kind::Put => self.start_rpc(kv::Put::new(key.as_str(), "v"), &options),
            Kind::Delete => self.start_rpc(kv::Delete::new(key.as_str()), &options),
            Kind::Compact => self.start_rpc(kv::Compact::new(n as i64 + 1), &options),
            Kind::Txn => self.start_rpc(
                kv::Txn::new()
                    .when([kv::Compare::version(key.as_str(), kv::CompareOp::Equal, 0)])
                    .and_then([kv::Put::new(key.as_str(), "v")]),
                &options,
            ),
        };
        let id = match result {
            Ok(id) => Some(id),
            Err(Error::ClientClosed) => {
                assert!(self.closed, "ClientClosed from an open client");
                None
            }
            Err(Error::MessageTooLarge { .. }) => None,
            Err(e) => panic!("start_unary failed: {e:?}"),
        };
        self.drain(BTreeMap::new());
        id
    }

    fn start_rpc<R: UnaryRpc + Clone>(
        &mut self,
        rpc: R,
        options: &CallOptions,
    ) -> Result<CallId, Error> {
        let request = rpc.clone().into_request().expect("valid request");
        let body = encode_message(&request, usize::MAX).expect("encodable");
        let id = self.core.start_unary(rpc, options.clone(), self.now)?;
        assert!(!self.calls.contains_key(&id), "call id {id:?} reused");
        self.calls.insert(
            id,
            CallModel {
                path: R::METHOD.path,
                class: R::METHOD.retry,
                deadline: options
                    .timeout
                    .or(self.default_timeout)
                    .map(|t| self.now + t),
                require_leader: options.require_leader,
                stream: None,
                attempts: 0,
                unsent_only: true,
                maybe_applied: false,
                finished: false,
            },
        );
        self.call_order.push(id);
        self.bodies.insert(body, id);
        Ok(id)
    }

    fn pick_stream(&self, b: u8) -> StreamId {
        self.stream_order
            .get(b as usize % (self.stream_order.len() + 1))
            .copied()
            .unwrap_or(StreamId(u64::MAX - 1))
    }

    /// The unfinished call whose attempt in flight uses this stream.
    fn live_call(&self, stream: StreamId) -> Option<CallId> {
        let call = self.streams.get(&stream)?.call;
        let model = &self.calls[&call];
        (!model.finished && model.stream == Some(stream)).then_some(call)
    }

    /// The attempt in flight of `call` is over with this error.
    fn attempt_failed(&mut self, call: CallId, error: ErrExpect) -> Expect {
        let model = self.calls.get_mut(&call).expect("known call");
        let stream = model.stream.take().expect("an attempt in flight");
        model.unsent_only &= matches!(
            error,
            ErrExpect::Transport {
                request_sent: false
            }
        );
        model.maybe_applied |= error.repr().outcome_unknown();
        self.streams.get_mut(&stream).expect("known").ended = true;
        Expect::AttemptFailed {
            error,
            attempts: model.attempts,
        }
    }

    /// The connection is gone: every attempt in flight fails.
    fn fail_live_attempts(&mut self, expect: &mut BTreeMap<CallId, Expect>) {
        let live: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(id, c)| !c.finished && c.stream.is_some() && !expect.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for call in live {
            let e = self.attempt_failed(call, ErrExpect::Transport { request_sent: true });
            expect.insert(call, e);
        }
    }

    /// The response on `stream` ended now (`trailers`: `None` when the stream ended without
    /// them): what happens to its call.
    fn completion(&mut self, stream: StreamId, trailers: Option<&HeaderMap>) -> Expect {
        let model = &self.streams[&stream];
        let call = model.call;
        let error = match trailers.and_then(Status::from_headers) {
            Some(status) if status.is_ok() => {
                let parsed = parse(&model.bytes, self.limit);
                assert!(!parsed.error, "a framing error would have ended the call");
                match (parsed.messages.as_slice(), parsed.left_over) {
                    ([msg], 0) => {
                        let msg = msg.clone();
                        self.streams.get_mut(&stream).expect("known").ended = true;
                        return Expect::Finish(Check::Ok(msg));
                    }
                    _ => ErrExpect::Protocol,
                }
            }
            Some(status) => ErrExpect::Exact(Error::from_status(status)),
            None => {
                let http = model.http_status.unwrap_or(StatusCode::OK);
                ErrExpect::Code(if http == StatusCode::OK {
                    Code::Unknown
                } else {
                    Code::from_http_status(http)
                })
            }
        };
        self.attempt_failed(call, error)
    }

    /// Carries out every transmit and delivers every event (the drain rule), checking them;
    /// after `close` nothing may come out.
    fn drain(&mut self, expect: BTreeMap<CallId, Expect>) {
        if self.closed {
            assert!(expect.is_empty());
            if let Some(t) = self.core.poll_transmit() {
                panic!("transmit after close: {t:?}");
            }
            if let Some(e) = self.core.poll_event() {
                panic!("event after close: {e:?}");
            }
            self.check_state();
            return;
        }
        self.drain_checked(expect);
    }

    fn drain_checked(&mut self, mut expect: BTreeMap<CallId, Expect>) {
        let mut resets = BTreeSet::new();
        if self.trace {
            eprintln!("  expect {expect:?}");
        }
        while let Some(t) = self.core.poll_transmit() {
            if self.trace {
                eprintln!("  transmit {t:?}");
            }
            self.transmit(t, &mut resets, &mut expect);
        }
        // call -> (whether it had to reset its stream, the stream in flight when it finished)
        let mut finished: BTreeMap<CallId, (bool, Option<StreamId>)> = BTreeMap::new();
        while let Some(event) = self.core.poll_event() {
            if self.trace {
                eprintln!("  event {event:?}");
            }
            let Event::CallFinished { call, result } = event else {
                panic!("unexpected event {event:?}");
            };
            let resets = self.finished(call, result, expect.get(&call));
            let stream = self.calls.get_mut(&call).expect("known").stream.take();
            finished.insert(call, (resets, stream));
        }
        for (call, e) in &expect {
            let must_finish = match e {
                Expect::Finish(_) => true,
                Expect::AttemptFailed { error, attempts } => {
                    self.decide(*call, error, *attempts) == Decision::Fail
                }
            };
            if must_finish {
                assert!(
                    finished.contains_key(call),
                    "{call:?} had to finish ({e:?}) but did not"
                );
            }
        }
        // Resets: exactly for the live streams the client abandons.
        for stream in &resets {
            let call = self.streams[stream].call;
            match finished.get(&call) {
                Some((true, Some(s))) if s == stream => {}
                other => panic!("{stream:?} reset, but its {call:?} ended with {other:?}"),
            }
        }
        for (call, (must_reset, stream)) in &finished {
            if let Some(stream) = stream {
                assert_eq!(
                    *must_reset,
                    resets.contains(stream),
                    "{call:?} finished on live {stream:?}; reset expected: {must_reset}"
                );
            }
        }
        self.check_state();
    }

    fn decide(&self, call: CallId, error: &ErrExpect, attempts: u32) -> Decision {
        let attempt = Attempt {
            class: self.calls[&call].class,
            attempts,
            max_attempts: self.max_attempts,
            endpoints: 1,
            has_credentials: false,
            auth_retries: 0,
        };
        retry::decide(attempt, &error.repr())
    }

    fn transmit(
        &mut self,
        t: Transmit,
        resets: &mut BTreeSet<StreamId>,
        expect: &mut BTreeMap<CallId, Expect>,
    ) {
        match t {
            Transmit::Connect { endpoint, target } => {
                assert_eq!(endpoint, EndpointId(0));
                assert_eq!(target.authority(), "127.0.0.1:2379");
                assert_eq!(self.conn, Conn::Idle, "connect while {:?}", self.conn);
                self.conn = Conn::Connecting;
            }
            Transmit::OpenStream {
                endpoint,
                stream,
                request,
                body,
                end_stream,
                ..
            } => {
                assert_eq!(endpoint, EndpointId(0));
                assert_eq!(
                    self.conn,
                    Conn::Connected,
                    "stream opened while {:?}",
                    self.conn
                );
                assert!(end_stream, "a unary request is one message");
                assert!(!self.streams.contains_key(&stream), "{stream:?} reused");
                let call = *self
                    .bodies
                    .get(&body)
                    .unwrap_or_else(|| panic!("unknown request body {body:?}"));
                let model = self.calls.get_mut(&call).expect("known call");
                assert!(!model.finished, "stream opened for finished {call:?}");
                assert!(model.stream.is_none(), "two attempts at once for {call:?}");
                if model.attempts > 0 && model.class == RetryClass::NonRepeatable {
                    assert!(
                        model.unsent_only,
                        "{call:?} ({}) sent again after an attempt that may have reached the server",
                        model.path
                    );
                }
                model.attempts += 1;
                assert!(
                    model.attempts <= self.max_attempts,
                    "{call:?}: too many attempts"
                );
                model.stream = Some(stream);
                assert_eq!(request.method(), http::Method::POST);
                assert_eq!(request.uri().scheme_str(), Some("http"));
                assert_eq!(
                    request.uri().authority().map(|a| a.as_str()),
                    Some("127.0.0.1:2379")
                );
                assert_eq!(request.uri().path(), model.path);
                let headers = request.headers();
                assert_eq!(headers["content-type"], "application/grpc");
                assert_eq!(headers["te"], "trailers");
                assert_eq!(
                    headers.contains_key("grpc-timeout"),
                    model.deadline.is_some()
                );
                assert_eq!(
                    headers.get("hasleader").is_some_and(|v| v == "true"),
                    model.require_leader
                );
                if let Some(d) = model.deadline {
                    assert!(d > self.now, "stream opened for an expired call");
                }
                self.streams.insert(
                    stream,
                    StreamModel {
                        call,
                        bytes: Vec::new(),
                        http_status: None,
                        reset: false,
                        ended: false,
                    },
                );
                self.stream_order.push(stream);
            }
            Transmit::ResetStream { stream, reason } => {
                assert_eq!(reason, RESET_CANCEL);
                let model = self
                    .streams
                    .get_mut(&stream)
                    .unwrap_or_else(|| panic!("reset of unknown {stream:?}"));
                assert!(!model.reset, "{stream:?} reset twice");
                assert!(!model.ended, "{stream:?} reset after its attempt ended");
                model.reset = true;
                resets.insert(stream);
            }
            Transmit::Ping { endpoint } => {
                assert_eq!(endpoint, EndpointId(0));
                assert_eq!(self.conn, Conn::Connected, "ping while {:?}", self.conn);
                assert!(
                    !self.ping_outstanding,
                    "second ping before the first was answered"
                );
                self.ping_outstanding = true;
            }
            Transmit::Disconnect { endpoint } => {
                assert_eq!(endpoint, EndpointId(0));
                assert_ne!(self.conn, Conn::Idle, "disconnect without a connection");
                if self.conn == Conn::Connected {
                    // Closing a live connection (keepalive timeout) ends its attempts.
                    self.fail_live_attempts(expect);
                }
                self.conn = Conn::Idle;
                self.ping_outstanding = false;
            }
            other => panic!("unexpected transmit for unary calls: {other:?}"),
        }
    }

    /// A call finished: it must be allowed to, with the right result. Returns whether it had
    /// to reset its stream.
    fn finished(&mut self, call: CallId, result: Result<Bytes, Error>, e: Option<&Expect>) -> bool {
        let now = self.now;
        let decision = match e {
            Some(Expect::AttemptFailed { error, attempts }) => {
                Some(self.decide(call, error, *attempts))
            }
            _ => None,
        };
        let limit = self.limit;
        let model = self
            .calls
            .get_mut(&call)
            .unwrap_or_else(|| panic!("unknown {call:?} finished"));
        assert!(!model.finished, "{call:?} finished twice");
        model.finished = true;
        // A deadline reports whether the request may have been applied: it is in flight, or
        // an earlier attempt's outcome is unknown.
        let sent = model.stream.is_some() || model.maybe_applied;
        let deadline = model.deadline;
        let is_get = model.path == kv::Get::METHOD.path;

        let connect_error = self.connect_error;
        let deadline_ok = |result: &Result<Bytes, Error>| match result {
            Err(Error::DeadlineExceeded { request_sent }) => {
                assert!(
                    deadline.is_some_and(|d| d <= now),
                    "{call:?} timed out early"
                );
                *request_sent == sent && (sent || !connect_error)
            }
            // A call that never reached a server reports why it could not connect.
            Err(Error::Transport {
                request_sent: false,
                ..
            }) => {
                assert!(
                    deadline.is_some_and(|d| d <= now),
                    "{call:?} timed out early"
                );
                connect_error && !sent
            }
            _ => false,
        };
        let (ok, resets) = match (e, &result) {
            (Some(Expect::Finish(check)), result) => {
                let ok = match (check, result) {
                    (Check::Cancelled, Err(Error::Cancelled)) => true,
                    (Check::ClientClosed, Err(Error::ClientClosed)) => true,
                    (Check::Deadline, r) => deadline_ok(r),
                    (Check::FrameError, Err(Error::Protocol(_))) => true,
                    (
                        Check::FrameError,
                        Err(Error::MessageTooLarge {
                            size,
                            limit: l,
                            direction,
                        }),
                    ) => *size > *l && *l == limit && *direction == Direction::Receive,
                    (Check::Ok(msg), Ok(got)) => msg == got,
                    _ => false,
                };
                (ok, check.resets())
            }
            (Some(Expect::AttemptFailed { error, .. }), Err(got))
                if decision == Some(Decision::Fail) =>
            {
                (error.matches(got), false)
            }
            // Otherwise a call may only run out of time (e.g. when dispatched after its
            // deadline, or waiting for a retry).
            (_, r) => (deadline_ok(r), true),
        };
        assert!(
            ok,
            "{call:?} finished with {result:?}; expected {e:?} (retry decision {decision:?})"
        );
        if let (true, Ok(msg)) = (is_get, &result) {
            let _ = decode_response::<kv::Get>(msg.clone());
        }
        resets
    }

    fn check_state(&self) {
        let unfinished: Vec<(&CallId, &CallModel)> =
            self.calls.iter().filter(|(_, c)| !c.finished).collect();
        assert_eq!(self.core.calls_in_progress(), unfinished.len());
        let next = self.core.poll_timeout();
        for (id, call) in &unfinished {
            if let Some(d) = call.deadline {
                assert!(
                    next.is_some_and(|t| t <= d),
                    "{id:?} has a deadline but poll_timeout is {next:?}"
                );
            }
            match call.stream {
                Some(s) => assert!(!self.streams[&s].ended && !self.streams[&s].reset),
                None => assert!(
                    self.conn == Conn::Connecting || next.is_some(),
                    "{id:?} is stranded: no stream, no connection attempt and no timer"
                ),
            }
        }
    }
}

/// One well-formed gRPC message.
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

struct Parsed {
    messages: Vec<Bytes>,
    /// A bad flag or an oversized message.
    error: bool,
    left_over: usize,
}

/// Reference gRPC framing over all the bytes of a response so far.
fn parse(bytes: &[u8], limit: usize) -> Parsed {
    let mut messages = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= PREFIX_LEN {
        let len = u32::from_be_bytes([bytes[at + 1], bytes[at + 2], bytes[at + 3], bytes[at + 4]])
            as usize;
        if bytes[at] != 0 || len > limit {
            return Parsed {
                messages,
                error: true,
                left_over: 0,
            };
        }
        if bytes.len() - at - PREFIX_LEN < len {
            break;
        }
        messages.push(Bytes::copy_from_slice(
            &bytes[at + PREFIX_LEN..at + PREFIX_LEN + len],
        ));
        at += PREFIX_LEN + len;
    }
    Parsed {
        messages,
        error: false,
        left_over: bytes.len() - at,
    }
}

/// Trailers (or trailers-only headers) from a status spec in the input.
fn status_spec(input: &mut Input<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let s = input.byte_or0();
    let status: Option<Vec<u8>> = match s % 24 {
        n @ 0..=16 => Some(n.to_string().into_bytes()),
        17..=19 => Some(b"0".to_vec()),
        20 => None,
        21 => Some(b" 0 ".to_vec()),
        22 => Some(b"abc".to_vec()),
        _ => {
            let n = input.byte_or0() as usize;
            Some(input.bytes(n).to_vec())
        }
    };
    if let Some(v) = status.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        headers.insert("grpc-status", v);
    }
    let m = input.byte_or0();
    let message: Option<Vec<u8>> = match m % 10 {
        0 => None,
        n @ 1..=8 => Some(MESSAGES[n as usize - 1].as_bytes().to_vec()),
        _ => {
            let n = input.byte_or0() as usize;
            Some(input.bytes(n).to_vec())
        }
    };
    if let Some(v) = message.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        headers.insert("grpc-message", v);
    }
    headers
}
