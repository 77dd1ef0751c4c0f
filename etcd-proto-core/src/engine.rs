//! The call engine: endpoints and their connections, unary calls, deadlines.
//!
//! Inputs are method calls (`start_unary`, `cancel`, `handle_*`), outputs are polled
//! (`poll_transmit`, `poll_event`, `poll_timeout`). See the crate docs for the drain rule.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, StatusCode, Uri};

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::grpc::{encode_message, MessageDecoder};
use crate::rng::Rng;
use crate::rpc::{Method, UnaryRpc};
use crate::status::{encode_timeout, Code, Status};

/// HTTP/2 RST_STREAM code CANCEL, sent when the client gives up on a call.
pub const RESET_CANCEL: u32 = 8;

/// The `client-api-version` we announce (the etcd API level this client speaks).
const CLIENT_API_VERSION: &str = "3.5";

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);
    };
}

id_type!(
    /// A call started with [`Core::start_unary`].
    CallId
);
id_type!(
    /// One HTTP/2 stream the core asked the transport to open (a call may use several).
    StreamId
);
id_type!(
    /// One configured endpoint (and its connection).
    EndpointId
);

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// Deadline, measured from when the call starts. Sent as `grpc-timeout` and enforced
    /// locally. `None` uses the configured default.
    pub timeout: Option<Duration>,
    /// Fail at once with `NoLeader` if the member has no leader (`hasleader` metadata).
    pub require_leader: bool,
}

impl CallOptions {
    /// Options with this deadline.
    pub fn with_timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
            ..Default::default()
        }
    }
}

/// What the transport must do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Transmit {
    /// Open a connection (TCP, TLS if the scheme says so, HTTP/2 handshake), then report
    /// [`Core::handle_connected`] or [`Core::handle_connect_failed`].
    Connect {
        /// Which endpoint.
        endpoint: EndpointId,
        /// Its address.
        target: Endpoint,
    },
    /// Open an HTTP/2 stream on the endpoint's connection with this request head, then send
    /// `body` (ending the stream if `end_stream`).
    OpenStream {
        /// The connection.
        endpoint: EndpointId,
        /// The core's name for the stream, used in every later input about it.
        stream: StreamId,
        /// The request head (`:path`, `content-type`, `te`, `grpc-timeout`, metadata).
        request: Request<()>,
        /// The gRPC-framed request message(s).
        body: Bytes,
        /// Whether this is the end of the request stream.
        end_stream: bool,
    },
    /// Send more request bytes on an open stream.
    SendData {
        /// The stream.
        stream: StreamId,
        /// gRPC-framed bytes.
        data: Bytes,
        /// Whether this ends the request stream.
        end_stream: bool,
    },
    /// Reset a stream (RST_STREAM with this HTTP/2 error code) and forget it.
    ResetStream {
        /// The stream.
        stream: StreamId,
        /// HTTP/2 error code, usually [`RESET_CANCEL`].
        reason: u32,
    },
    /// Close the endpoint's connection (or abandon the connection attempt).
    Disconnect {
        /// Which endpoint.
        endpoint: EndpointId,
    },
}

/// What happened, for the application side.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A unary call finished: the response message body (decode it with
    /// [`decode_response`](crate::rpc::decode_response)) or the error.
    CallFinished {
        /// The call.
        call: CallId,
        /// The response message or the error.
        result: Result<Bytes, Error>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting { deadline: Instant },
    Connected,
    Backoff { until: Instant },
}

#[derive(Debug)]
struct EndpointState {
    id: EndpointId,
    target: Endpoint,
    scheme: http::uri::Scheme,
    authority: Authority,
    conn: Conn,
    failures: u32,
}

#[derive(Debug)]
struct ResponseState {
    http_status: Option<StatusCode>,
    decoder: MessageDecoder,
    message: Option<Bytes>,
}

#[derive(Debug)]
enum CallState {
    Waiting,
    InFlight {
        stream: StreamId,
        endpoint: EndpointId,
        response: ResponseState,
    },
}

#[derive(Debug)]
struct Call {
    method: Method,
    body: Bytes,
    options: CallOptions,
    deadline: Option<Instant>,
    state: CallState,
}

/// The sans-IO etcd client core.
#[derive(Debug)]
pub struct Core {
    config: Config,
    endpoints: Vec<EndpointState>,
    cursor: usize,
    calls: HashMap<CallId, Call>,
    waiting: VecDeque<CallId>,
    streams: HashMap<StreamId, CallId>,
    deadlines: BTreeSet<(Instant, CallId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_call: u64,
    next_stream: u64,
    rng: Rng,
    token: Option<HeaderValue>,
    user_agent: HeaderValue,
    closed: bool,
}

impl Core {
    /// A core for this configuration. Nothing happens until a call is started.
    pub fn new(config: Config) -> Result<Core, Error> {
        config.validate()?;
        let endpoints = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let authority = Authority::try_from(ep.authority().as_str()).map_err(|e| {
                    Error::InvalidConfig(format!("endpoint {ep}: invalid authority: {e}"))
                })?;
                let scheme = match ep.scheme {
                    crate::endpoint::Scheme::Http => http::uri::Scheme::HTTP,
                    crate::endpoint::Scheme::Https => http::uri::Scheme::HTTPS,
                };
                Ok(EndpointState {
                    id: EndpointId(i as u64),
                    target: ep.clone(),
                    scheme,
                    authority,
                    conn: Conn::Idle,
                    failures: 0,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let rng = Rng::new(config.seed);
        Ok(Core {
            config,
            endpoints,
            cursor: 0,
            calls: HashMap::new(),
            waiting: VecDeque::new(),
            streams: HashMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_call: 0,
            next_stream: 0,
            rng,
            token: None,
            user_agent: HeaderValue::from_static(concat!(
                "etcd-rs/",
                env!("CARGO_PKG_VERSION")
            )),
            closed: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets (or clears) the auth token sent as `token` metadata on every new stream.
    pub fn set_token(&mut self, token: Option<&str>) -> Result<(), Error> {
        self.token = match token {
            None => None,
            Some(t) => Some(HeaderValue::from_str(t).map_err(|_| {
                Error::Protocol("auth token is not a valid header value".into())
            })?),
        };
        Ok(())
    }

    /// Starts a unary call. Local validation and the send size limit are checked here, so an
    /// `Err` means nothing was sent. The outcome arrives as [`Event::CallFinished`].
    pub fn start_unary<R: UnaryRpc>(
        &mut self,
        rpc: R,
        options: CallOptions,
        now: Instant,
    ) -> Result<CallId, Error> {
        if self.closed {
            return Err(Error::ClientClosed);
        }
        let request = rpc.into_request()?;
        let body = encode_message(&request, self.config.max_send_message_size)?;
        let id = CallId(self.next_call);
        self.next_call += 1;
        let deadline = options
            .timeout
            .or(self.config.default_timeout)
            .map(|t| now + t);
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        self.calls.insert(
            id,
            Call {
                method: R::METHOD,
                body,
                options,
                deadline,
                state: CallState::Waiting,
            },
        );
        self.waiting.push_back(id);
        self.dispatch(now);
        Ok(id)
    }

    /// Cancels a call: its stream is reset and it finishes with [`Error::Cancelled`]. Unknown
    /// or finished calls are ignored.
    pub fn cancel(&mut self, call: CallId, _now: Instant) {
        self.finish(call, Err(Error::Cancelled));
    }

    /// Closes the client: every call fails with [`Error::ClientClosed`] and every connection
    /// is dropped.
    pub fn close(&mut self, _now: Instant) {
        self.closed = true;
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.finish(id, Err(Error::ClientClosed));
        }
        for ep in &mut self.endpoints {
            if matches!(ep.conn, Conn::Connected | Conn::Connecting { .. }) {
                self.transmits
                    .push_back(Transmit::Disconnect { endpoint: ep.id });
            }
            ep.conn = Conn::Idle;
        }
    }

    /// Number of calls not yet finished.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The connection to `endpoint` is ready for streams.
    pub fn handle_connected(&mut self, endpoint: EndpointId, now: Instant) {
        if let Some(ep) = self.endpoint_mut(endpoint) {
            if matches!(ep.conn, Conn::Connecting { .. }) {
                ep.conn = Conn::Connected;
                ep.failures = 0;
            }
        }
        self.dispatch(now);
    }

    /// The connection attempt to `endpoint` failed.
    pub fn handle_connect_failed(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        let _ = reason;
        if let Some(idx) = self.endpoint_index(endpoint) {
            if matches!(self.endpoints[idx].conn, Conn::Connecting { .. }) {
                self.backoff(idx, now);
            }
        }
        self.dispatch(now);
    }

    /// The connection to `endpoint` closed or broke. Calls in flight on it fail with a
    /// transport error that says the request was sent.
    pub fn handle_connection_lost(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        let Some(idx) = self.endpoint_index(endpoint) else {
            return;
        };
        match self.endpoints[idx].conn {
            Conn::Connecting { .. } => self.backoff(idx, now),
            Conn::Connected => self.endpoints[idx].conn = Conn::Idle,
            _ => {}
        }
        let lost: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                matches!(c.state, CallState::InFlight { endpoint: e, .. } if e == endpoint)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.finish_quietly(
                id,
                Err(Error::Transport {
                    message: format!("connection lost: {reason}"),
                    request_sent: true,
                }),
            );
        }
        self.dispatch(now);
    }

    /// Response headers arrived on a stream (`end_stream`: a trailers-only response).
    pub fn handle_response_headers(
        &mut self,
        stream: StreamId,
        status: StatusCode,
        headers: &HeaderMap,
        end_stream: bool,
        now: Instant,
    ) {
        let Some(call) = self.call_of_stream(stream) else {
            return;
        };
        if let Some(response) = self.response_mut(call) {
            response.http_status = Some(status);
        }
        if end_stream {
            self.complete(call, Some(headers), now);
        }
    }

    /// Response bytes arrived on a stream (any split).
    pub fn handle_data(&mut self, stream: StreamId, data: Bytes, end_stream: bool, now: Instant) {
        let Some(call) = self.call_of_stream(stream) else {
            return;
        };
        let outcome = {
            let Some(response) = self.response_mut(call) else {
                return;
            };
            response.decoder.push(data);
            let mut outcome = Ok(());
            loop {
                match response.decoder.next_message() {
                    Ok(Some(msg)) => {
                        if response.message.is_some() {
                            outcome = Err(Error::Protocol(
                                "more than one message in a unary response".into(),
                            ));
                            break;
                        }
                        response.message = Some(msg);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        outcome = Err(e.into());
                        break;
                    }
                }
            }
            outcome
        };
        if let Err(e) = outcome {
            self.finish(call, Err(e));
        } else if end_stream {
            // The stream ended without trailers: the status comes from the HTTP status.
            self.complete(call, None, now);
        }
    }

    /// Trailers arrived: the call's outcome is known.
    pub fn handle_trailers(&mut self, stream: StreamId, trailers: &HeaderMap, now: Instant) {
        if let Some(call) = self.call_of_stream(stream) {
            self.complete(call, Some(trailers), now);
        }
    }

    /// The peer reset a stream with this HTTP/2 error code.
    pub fn handle_stream_reset(&mut self, stream: StreamId, reason: u32, now: Instant) {
        let Some(call) = self.call_of_stream(stream) else {
            return;
        };
        let code = Code::from_reset_reason(reason);
        let error = if code == Code::Unavailable {
            // REFUSED_STREAM: the server did not process the request.
            Error::Transport {
                message: "stream refused by the server".into(),
                request_sent: false,
            }
        } else {
            Error::Status(Status::new(
                code,
                format!("stream reset by the server (HTTP/2 error code {reason})"),
            ))
        };
        self.finish_quietly(call, Err(error));
        self.dispatch(now);
    }

    /// The transport failed a stream without a reset from the peer (for example the
    /// connection broke while the stream was open). `request_sent` is false when the stream
    /// could not even be opened, so nothing reached the server.
    pub fn handle_stream_error(
        &mut self,
        stream: StreamId,
        reason: &str,
        request_sent: bool,
        now: Instant,
    ) {
        let Some(call) = self.call_of_stream(stream) else {
            return;
        };
        self.finish_quietly(
            call,
            Err(Error::Transport {
                message: reason.to_string(),
                request_sent,
            }),
        );
        self.dispatch(now);
    }

    /// Time has advanced to `now`: expire deadlines, connection attempts and backoffs.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, call)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let request_sent = matches!(
                self.calls.get(&call).map(|c| &c.state),
                Some(CallState::InFlight { .. })
            );
            self.finish(call, Err(Error::DeadlineExceeded { request_sent }));
        }
        for idx in 0..self.endpoints.len() {
            match self.endpoints[idx].conn {
                Conn::Connecting { deadline } if deadline <= now => {
                    let id = self.endpoints[idx].id;
                    self.transmits
                        .push_back(Transmit::Disconnect { endpoint: id });
                    self.backoff(idx, now);
                }
                Conn::Backoff { until } if until <= now => self.endpoints[idx].conn = Conn::Idle,
                _ => {}
            }
        }
        self.dispatch(now);
    }

    /// The next thing for the transport to do.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next (`None`: nothing is timed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.deadlines.first().map(|(at, _)| *at);
        let waiting = !self.waiting.is_empty();
        for ep in &self.endpoints {
            let at = match ep.conn {
                Conn::Connecting { deadline } => Some(deadline),
                Conn::Backoff { until } if waiting => Some(until),
                _ => None,
            };
            next = match (next, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    fn endpoint_index(&self, id: EndpointId) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id)
    }

    fn endpoint_mut(&mut self, id: EndpointId) -> Option<&mut EndpointState> {
        self.endpoints.iter_mut().find(|e| e.id == id)
    }

    fn call_of_stream(&self, stream: StreamId) -> Option<CallId> {
        self.streams.get(&stream).copied()
    }

    fn response_mut(&mut self, call: CallId) -> Option<&mut ResponseState> {
        match self.calls.get_mut(&call).map(|c| &mut c.state) {
            Some(CallState::InFlight { response, .. }) => Some(response),
            _ => None,
        }
    }

    fn backoff(&mut self, idx: usize, now: Instant) {
        let ep = &mut self.endpoints[idx];
        let exp = ep.failures.min(16);
        ep.failures = ep.failures.saturating_add(1);
        let base = self
            .config
            .reconnect_backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.config.reconnect_backoff_max);
        // +-20% jitter so that many clients do not reconnect in lockstep.
        let jitter = 0.8 + 0.4 * self.rng.next_f64();
        ep.conn = Conn::Backoff {
            until: now + base.mul_f64(jitter),
        };
    }

    /// Sends waiting calls to connected endpoints, connecting one if none is.
    fn dispatch(&mut self, now: Instant) {
        while let Some(&id) = self.waiting.front() {
            if !matches!(
                self.calls.get(&id).map(|c| &c.state),
                Some(CallState::Waiting)
            ) {
                self.waiting.pop_front();
                continue;
            }
            let Some(idx) = self.pick_connected() else {
                self.ensure_connecting(now);
                return;
            };
            self.waiting.pop_front();
            self.open_stream(id, idx, now);
        }
    }

    fn pick_connected(&mut self) -> Option<usize> {
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            if self.endpoints[idx].conn == Conn::Connected {
                self.cursor = (idx + 1) % n;
                return Some(idx);
            }
        }
        None
    }

    fn ensure_connecting(&mut self, now: Instant) {
        if self
            .endpoints
            .iter()
            .any(|e| matches!(e.conn, Conn::Connecting { .. }))
        {
            return;
        }
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            let ready = match self.endpoints[idx].conn {
                Conn::Idle => true,
                Conn::Backoff { until } => until <= now,
                _ => false,
            };
            if ready {
                let ep = &mut self.endpoints[idx];
                ep.conn = Conn::Connecting {
                    deadline: now + self.config.connect_timeout,
                };
                self.transmits.push_back(Transmit::Connect {
                    endpoint: ep.id,
                    target: ep.target.clone(),
                });
                return;
            }
        }
    }

    fn open_stream(&mut self, id: CallId, idx: usize, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let timeout = match call.deadline {
            Some(d) if d <= now => {
                self.finish(id, Err(Error::DeadlineExceeded { request_sent: false }));
                return;
            }
            Some(d) => Some(d - now),
            None => None,
        };
        let ep = &self.endpoints[idx];
        let request = self.request_head(ep, call.method.path, &call.options, timeout);
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        let body = call.body.clone();
        let endpoint = ep.id;
        self.transmits.push_back(Transmit::OpenStream {
            endpoint,
            stream,
            request,
            body,
            end_stream: true,
        });
        self.streams.insert(stream, id);
        let limit = self.config.max_receive_message_size;
        if let Some(call) = self.calls.get_mut(&id) {
            call.state = CallState::InFlight {
                stream,
                endpoint,
                response: ResponseState {
                    http_status: None,
                    decoder: MessageDecoder::new(limit),
                    message: None,
                },
            };
        }
    }

    fn request_head(
        &self,
        ep: &EndpointState,
        path: &'static str,
        options: &CallOptions,
        timeout: Option<Duration>,
    ) -> Request<()> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(ep.scheme.clone());
        parts.authority = Some(ep.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_static(path));
        let uri = Uri::from_parts(parts).expect("scheme, authority and path are all set");
        let mut request = Request::new(());
        *request.method_mut() = HttpMethod::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if let Some(t) = timeout {
            headers.insert("grpc-timeout", encode_timeout(t));
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(USER_AGENT, self.user_agent.clone());
        headers.insert(
            "client-api-version",
            HeaderValue::from_static(CLIENT_API_VERSION),
        );
        if let Some(token) = &self.token {
            headers.insert("token", token.clone());
        }
        if options.require_leader {
            headers.insert("hasleader", HeaderValue::from_static("true"));
        }
        request
    }

    /// The response ended (trailers, trailers-only headers, or end of stream without
    /// trailers): decide the outcome.
    fn complete(&mut self, id: CallId, trailers: Option<&HeaderMap>, now: Instant) {
        let result = {
            let Some(response) = self.response_mut(id) else {
                return;
            };
            let http_status = response.http_status.unwrap_or(StatusCode::OK);
            let status = trailers.and_then(Status::from_headers).unwrap_or_else(|| {
                let code = if http_status == StatusCode::OK {
                    Code::Unknown
                } else {
                    Code::from_http_status(http_status)
                };
                Status::new(
                    code,
                    format!("response without grpc-status (HTTP status {http_status})"),
                )
            });
            if !status.is_ok() {
                Err(Error::from_status(status))
            } else if let Err(e) = response.decoder.finish() {
                Err(e.into())
            } else {
                match response.message.take() {
                    Some(msg) => Ok(msg),
                    None => Err(Error::Protocol(
                        "unary call ended with OK but without a response message".into(),
                    )),
                }
            }
        };
        // The stream is over; no reset needed.
        self.finish_quietly(id, result);
        self.dispatch(now);
    }

    /// Finishes a call and resets its stream if it is still open.
    fn finish(&mut self, id: CallId, result: Result<Bytes, Error>) {
        if let Some(CallState::InFlight { stream, .. }) = self.calls.get(&id).map(|c| &c.state) {
            self.transmits.push_back(Transmit::ResetStream {
                stream: *stream,
                reason: RESET_CANCEL,
            });
        }
        self.finish_quietly(id, result);
    }

    /// Finishes a call whose stream is already over.
    fn finish_quietly(&mut self, id: CallId, result: Result<Bytes, Error>) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(d) = call.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let CallState::InFlight { stream, .. } = call.state {
            self.streams.remove(&stream);
        }
        self.events.push_back(Event::CallFinished { call: id, result });
    }
}
