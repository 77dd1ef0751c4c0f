//! Shared harness for the watch and lease tests: a core driven by hand with a simulated clock
//! (one `Instant` taken at the start plus `Duration`s), transmits sorted by kind, and gRPC
//! framing helpers for both directions.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto_core::grpc::{encode_message, MessageDecoder};
use etcd_proto_core::{Config, Core, EndpointId, Event, StreamId, Transmit};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use prost::Message;

pub const EP: &str = "http://127.0.0.1:2379";
pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);

/// A core plus a simulated clock.
pub struct Sim {
    pub core: Core,
    pub t0: Instant,
    pub now: Instant,
}

/// What an `OpenStream` transmit carried.
#[derive(Debug)]
pub struct Opened {
    pub endpoint: EndpointId,
    pub stream: StreamId,
    pub request: Request<()>,
    pub body: Bytes,
    pub end_stream: bool,
    pub manual_flow_control: bool,
}

impl Opened {
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
    }
}

/// One `SendData` transmit.
#[derive(Debug)]
pub struct Sent {
    pub stream: StreamId,
    pub data: Bytes,
    pub end_stream: bool,
}

/// One drained batch of transmits, sorted by kind (order within a kind is kept).
#[derive(Debug, Default)]
pub struct Out {
    pub connects: Vec<EndpointId>,
    pub opens: Vec<Opened>,
    pub sends: Vec<Sent>,
    pub releases: Vec<(StreamId, usize)>,
    pub resets: Vec<(StreamId, u32)>,
    pub pings: Vec<EndpointId>,
    pub disconnects: Vec<EndpointId>,
}

impl Out {
    pub fn is_empty(&self) -> bool {
        self.connects.is_empty()
            && self.opens.is_empty()
            && self.sends.is_empty()
            && self.releases.is_empty()
            && self.resets.is_empty()
            && self.pings.is_empty()
            && self.disconnects.is_empty()
    }

    /// Total bytes handed back to flow control.
    pub fn released(&self) -> usize {
        self.releases.iter().map(|(_, b)| b).sum()
    }

    /// Everything but capacity releases is empty.
    pub fn only_releases(&self) -> bool {
        self.connects.is_empty()
            && self.opens.is_empty()
            && self.sends.is_empty()
            && self.resets.is_empty()
            && self.pings.is_empty()
            && self.disconnects.is_empty()
    }

    /// Exactly one OpenStream and nothing else.
    #[track_caller]
    pub fn one_open(mut self) -> Opened {
        assert_eq!(self.opens.len(), 1, "expected one OpenStream: {self:?}");
        let opened = self.opens.remove(0);
        assert!(self.is_empty(), "expected only an OpenStream: {self:?}");
        opened
    }

    /// Exactly one SendData and nothing else.
    #[track_caller]
    pub fn one_send(mut self) -> Sent {
        assert_eq!(self.sends.len(), 1, "expected one SendData: {self:?}");
        let sent = self.sends.remove(0);
        assert!(self.is_empty(), "expected only a SendData: {self:?}");
        sent
    }
}

/// The defaults, with keepalive pings off so that only the timers under test are armed.
pub fn base_config() -> Config {
    let mut config = Config::from_endpoints([EP]).unwrap();
    config.keepalive_interval = None;
    config
}

impl Sim {
    pub fn new() -> Sim {
        Sim::with_config(base_config())
    }

    pub fn with_config(config: Config) -> Sim {
        let t0 = Instant::now();
        Sim {
            core: Core::new(config, t0).unwrap(),
            t0,
            now: t0,
        }
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set(&mut self, t: Instant) -> Instant {
        assert!(t >= self.now, "time must not go backwards");
        self.now = t;
        t
    }

    /// Moves the clock to `t0 + d`.
    pub fn at(&mut self, d: Duration) -> Instant {
        self.set(self.t0 + d)
    }

    /// Moves the clock forward by `d`.
    pub fn wait(&mut self, d: Duration) -> Instant {
        self.set(self.now + d)
    }

    /// `handle_timeout` at the current instant.
    pub fn timeout(&mut self) {
        let now = self.now;
        self.core.handle_timeout(now);
    }

    /// Drains the transmits.
    pub fn out(&mut self) -> Out {
        let mut out = Out::default();
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Connect { endpoint, .. } => out.connects.push(endpoint),
                Transmit::OpenStream {
                    endpoint,
                    stream,
                    request,
                    body,
                    end_stream,
                    manual_flow_control,
                } => out.opens.push(Opened {
                    endpoint,
                    stream,
                    request,
                    body,
                    end_stream,
                    manual_flow_control,
                }),
                Transmit::SendData {
                    stream,
                    data,
                    end_stream,
                } => out.sends.push(Sent {
                    stream,
                    data,
                    end_stream,
                }),
                Transmit::ReleaseCapacity { stream, bytes } => out.releases.push((stream, bytes)),
                Transmit::ResetStream { stream, reason } => out.resets.push((stream, reason)),
                Transmit::Ping { endpoint } => out.pings.push(endpoint),
                Transmit::Disconnect { endpoint } => out.disconnects.push(endpoint),
                other => panic!("unexpected transmit {other:?}"),
            }
        }
        out
    }

    /// Drains the events.
    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }

    #[track_caller]
    pub fn assert_quiet(&mut self, what: &str) {
        let out = self.out();
        assert!(out.is_empty(), "{what}: unexpected transmits {out:?}");
        let e = self.events();
        assert!(e.is_empty(), "{what}: unexpected events {e:?}");
    }

    /// Expects exactly one Connect (and nothing else) and reports the connection up. Returns
    /// the endpoint and whatever the connection made the core send.
    #[track_caller]
    pub fn connect(&mut self) -> (EndpointId, Out) {
        let out = self.out();
        assert_eq!(out.connects.len(), 1, "expected one Connect: {out:?}");
        let endpoint = out.connects[0];
        assert!(
            out.opens.is_empty() && out.sends.is_empty(),
            "nothing is sent before the connection is up: {out:?}"
        );
        let now = self.now;
        self.core.handle_connected(endpoint, now);
        (endpoint, self.out())
    }

    /// Response headers (HTTP 200, gRPC) on a stream.
    pub fn headers_ok(&mut self, stream: StreamId) {
        let now = self.now;
        self.core
            .handle_response_headers(stream, StatusCode::OK, &grpc_headers(), false, now);
    }

    /// Raw response bytes on a stream.
    pub fn data(&mut self, stream: StreamId, data: Bytes) {
        let now = self.now;
        self.core.handle_data(stream, data, false, now);
    }

    /// One framed message on a stream.
    pub fn message<M: Message>(&mut self, stream: StreamId, msg: &M) {
        self.data(stream, encode(msg));
    }

    /// Trailers on a stream.
    pub fn trailers(&mut self, stream: StreamId, trailers: &HeaderMap) {
        let now = self.now;
        self.core.handle_trailers(stream, trailers, now);
    }

    /// A complete unary response: headers, one message, OK trailers.
    pub fn respond<M: Message>(&mut self, stream: StreamId, msg: &M) {
        self.headers_ok(stream);
        self.message(stream, msg);
        self.trailers(stream, &status_trailers("0", None));
    }
}

pub fn grpc_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h
}

pub fn status_trailers(code: &'static str, message: Option<&'static str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from_static(code));
    if let Some(m) = message {
        h.insert("grpc-message", HeaderValue::from_static(m));
    }
    h
}

/// One gRPC-framed message.
pub fn encode<M: Message>(msg: &M) -> Bytes {
    encode_message(msg, u32::MAX as usize).unwrap()
}

/// Every gRPC-framed message in `bytes` (which must end on a message boundary).
#[track_caller]
pub fn decode_all<M: Message + Default>(bytes: &Bytes) -> Vec<M> {
    let mut decoder = MessageDecoder::new(u32::MAX as usize);
    decoder.push(bytes.clone());
    let mut out = Vec::new();
    while let Some(msg) = decoder.next_message().unwrap() {
        out.push(M::decode(msg).unwrap());
    }
    decoder.finish().expect("whole messages only");
    out
}
