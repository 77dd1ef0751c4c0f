//! The call engine: endpoints and their connections, unary calls, retries, deadlines,
//! authentication, keepalive and endpoint sync.
//!
//! Inputs are method calls (`start_unary`, `cancel`, `handle_*`), outputs are polled
//! (`poll_transmit`, `poll_event`, `poll_timeout`). See the crate docs for the drain rule.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    AuthenticateRequest, AuthenticateResponse, MemberListRequest, MemberListResponse,
};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, StatusCode, Uri};
use prost::Message;

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::endpoints::{endpoints_from_members, Conn, EndpointState};
use crate::error::{Error, EtcdErrorKind};
use crate::grpc::{encode_message, MessageDecoder};
use crate::idhash::{IdHashMap, SeqHashMap};
use crate::retry::{self, Attempt, Decision};
use crate::rng::Rng;
use crate::rpc::{Method, RetryClass, ServerStreamingRpc, UnaryRpc};
use crate::status::{encode_timeout, Code, Status};

#[path = "lease.rs"]
pub(crate) mod lease;
#[path = "stream_slot.rs"]
mod stream_slot;
#[path = "watch.rs"]
pub(crate) mod watch;

use lease::{KeepAliveId, Keeper, LeaseLostReason};

use watch::{Group, GroupKey, WatchId, WatchResponse, Watcher};

/// Bytes of server-stream messages delivered ahead of the application before the core stops
/// releasing flow-control capacity.
pub const STREAM_BUFFER: usize = 4 << 20;

/// HTTP/2 RST_STREAM code CANCEL, sent when the client gives up on a call.
pub const RESET_CANCEL: u32 = 8;

/// The `client-api-version` we announce (the etcd API level this client speaks).
const CLIENT_API_VERSION: &str = "3.5";

/// Deadline of the internal MemberList call behind endpoint sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// One endpoint (and its connection).
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
    /// Send the call to this endpoint only (for per-member calls such as Status,
    /// Defragment, HashKV). It need not be one of the configured endpoints.
    pub endpoint: Option<Endpoint>,
}

impl CallOptions {
    /// Options with this deadline.
    pub fn with_timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
            ..Default::default()
        }
    }

    /// Options sending the call to one endpoint.
    pub fn on_endpoint(endpoint: Endpoint) -> CallOptions {
        CallOptions {
            endpoint: Some(endpoint),
            ..Default::default()
        }
    }
}

/// What the transport must do. `Debug` shows body sizes, never bodies (an Authenticate
/// request carries a password).
#[non_exhaustive]
// A transmit is moved once from the core to the driver; boxing the request head would cost
// an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
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
        /// When true, received bytes are handed back to HTTP/2 flow control only when the
        /// core says so ([`Transmit::ReleaseCapacity`]); otherwise as soon as they arrive.
        manual_flow_control: bool,
    },
    /// Hand `bytes` of received data on a stream back to HTTP/2 flow control (streams opened
    /// with `manual_flow_control`).
    ReleaseCapacity {
        /// The stream.
        stream: StreamId,
        /// How many bytes.
        bytes: usize,
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
    /// Send an HTTP/2 PING on the endpoint's connection and report the answer with
    /// [`Core::handle_pong`].
    Ping {
        /// Which connection.
        endpoint: EndpointId,
    },
    /// Close the endpoint's connection (or abandon the connection attempt).
    Disconnect {
        /// Which endpoint.
        endpoint: EndpointId,
    },
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transmit::Connect { endpoint, target } => f
                .debug_struct("Connect")
                .field("endpoint", endpoint)
                .field("target", target)
                .finish(),
            Transmit::OpenStream {
                endpoint,
                stream,
                request,
                body,
                end_stream,
                manual_flow_control,
            } => f
                .debug_struct("OpenStream")
                .field("endpoint", endpoint)
                .field("stream", stream)
                .field("path", &request.uri().path())
                .field("body_len", &body.len())
                .field("end_stream", end_stream)
                .field("manual_flow_control", manual_flow_control)
                .finish(),
            Transmit::ReleaseCapacity { stream, bytes } => f
                .debug_struct("ReleaseCapacity")
                .field("stream", stream)
                .field("bytes", bytes)
                .finish(),
            Transmit::SendData {
                stream,
                data,
                end_stream,
            } => f
                .debug_struct("SendData")
                .field("stream", stream)
                .field("data_len", &data.len())
                .field("end_stream", end_stream)
                .finish(),
            Transmit::ResetStream { stream, reason } => f
                .debug_struct("ResetStream")
                .field("stream", stream)
                .field("reason", reason)
                .finish(),
            Transmit::Ping { endpoint } => {
                f.debug_struct("Ping").field("endpoint", endpoint).finish()
            }
            Transmit::Disconnect { endpoint } => f
                .debug_struct("Disconnect")
                .field("endpoint", endpoint)
                .finish(),
        }
    }
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
    /// A watcher was created by the server (once; resumes after failures are not reported).
    /// Events after `revision` will be delivered.
    WatchCreated {
        /// The watcher.
        watch: WatchId,
        /// The store revision at creation.
        revision: i64,
    },
    /// A watcher has a response. `size` counts against the watcher's buffer until the
    /// application reports it consumed with [`Core::watch_consumed`]. Consumption may be
    /// reported lazily, in batches, except while `over_limit` is set.
    WatchResponse {
        /// The watcher.
        watch: WatchId,
        /// The response.
        response: WatchResponse,
        /// Bytes to report back when consumed.
        size: usize,
        /// The watcher is over its buffer limit counting what was not reported consumed
        /// yet: its stream stays paused until [`Core::watch_consumed`] brings it under.
        over_limit: bool,
    },
    /// A watcher ended: `None` after [`Core::cancel_watch`], else why (compaction, rejected
    /// create, no leader, client closed, ...). Nothing follows for it.
    WatchEnded {
        /// The watcher.
        watch: WatchId,
        /// Why, unless cancelled by the application.
        error: Option<Error>,
    },
    /// The server confirmed a lease renewal: the lease lives `ttl` seconds more.
    LeaseKeptAlive {
        /// The subscription.
        keeper: KeepAliveId,
        /// The lease.
        lease: i64,
        /// Remaining TTL in seconds.
        ttl: i64,
    },
    /// A kept-alive lease is gone; nothing follows for this subscription.
    LeaseLost {
        /// The subscription.
        keeper: KeepAliveId,
        /// The lease.
        lease: i64,
        /// Why.
        reason: LeaseLostReason,
    },
    /// The client closed while keeping the lease alive (the lease itself may live on).
    LeaseKeepAliveClosed {
        /// The subscription.
        keeper: KeepAliveId,
        /// The lease.
        lease: i64,
    },
    /// A message of a server-streaming call. `size` is reported back with
    /// [`Core::stream_consumed`] once the application took it.
    StreamMessage {
        /// The call.
        call: CallId,
        /// The message body (decode it with the call's message type).
        message: Bytes,
        /// Bytes to report back.
        size: usize,
    },
    /// The endpoint list changed (after a sync or [`Core::set_endpoints`]).
    EndpointsChanged {
        /// The new list.
        endpoints: Vec<Endpoint>,
    },
}

struct ResponseState {
    http_status: Option<StatusCode>,
    decoder: MessageDecoder,
    message: Option<Bytes>,
}

// Sizes only: an Authenticate response carries the token.
impl fmt::Debug for ResponseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseState")
            .field("http_status", &self.http_status)
            .field("buffered", &self.decoder.buffered())
            .field("message_len", &self.message.as_ref().map(Bytes::len))
            .finish()
    }
}

#[derive(Debug)]
enum CallState {
    Waiting,
    Backoff {
        until: Instant,
    },
    InFlight {
        stream: StreamId,
        endpoint: EndpointId,
        response: ResponseState,
    },
}

/// What a stream serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamOwner {
    Call(CallId),
    Watch(GroupKey),
    Lease,
}

/// Who waits for a call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    User,
    /// The internal Authenticate call.
    Auth,
    /// The internal MemberList call behind sync.
    Sync,
    /// The internal Range call re-reading a compacted watcher's range.
    Resync(WatchId),
}

struct Call {
    owner: Owner,
    method: Method,
    body: Bytes,
    options: CallOptions,
    deadline: Option<Instant>,
    attempts: u32,
    auth_retries: u32,
    /// The endpoint of the last failed attempt, tried last next time.
    avoid: Option<EndpointId>,
    /// The only endpoint this call may use.
    pinned: Option<EndpointId>,
    /// Waits for a token before it is sent (all but Authenticate itself).
    needs_token: bool,
    /// Token generation the last attempt carried.
    token_generation: u64,
    /// An earlier attempt may have reached a server without an answer coming back.
    maybe_applied: bool,
    /// A server-streaming call: each message is an event.
    streaming: bool,
    /// Messages delivered (a server stream is not retried once one arrived).
    received: u64,
    /// Delivered message bytes not yet reported consumed, and capacity held back for them.
    buffered: usize,
    held: usize,
    state: CallState,
}

// The body by size only: it may carry a password (Authenticate, UserAdd, ...).
impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("owner", &self.owner)
            .field("method", &self.method)
            .field("body_len", &self.body.len())
            .field("options", &self.options)
            .field("deadline", &self.deadline)
            .field("attempts", &self.attempts)
            .field("auth_retries", &self.auth_retries)
            .field("avoid", &self.avoid)
            .field("pinned", &self.pinned)
            .field("needs_token", &self.needs_token)
            .field("token_generation", &self.token_generation)
            .field("maybe_applied", &self.maybe_applied)
            .field("state", &self.state)
            .finish()
    }
}

#[derive(Debug)]
enum Auth {
    /// No credentials configured.
    Off,
    /// A token is needed before the next call.
    Needed,
    /// Authenticate is in flight.
    Fetching,
    /// Calls carry this token.
    Ready(HeaderValue),
    /// The server has auth disabled: calls carry no token.
    NotEnabled,
}

/// The sans-IO etcd client core.
#[derive(Debug)]
pub struct Core {
    config: Config,
    endpoints: Vec<EndpointState>,
    next_endpoint: u64,
    cursor: usize,
    calls: IdHashMap<CallId, Call>,
    waiting: VecDeque<CallId>,
    streams: IdHashMap<StreamId, StreamOwner>,
    watchers: SeqHashMap<WatchId, Watcher>,
    groups: IdHashMap<GroupKey, Group>,
    /// Leaders of shared server watches, by what they watch.
    watch_shares: HashMap<watch::ShareKey, WatchId>,
    /// Leaders with a batch for their followers, handed out when the application polls.
    fanout_pending: Vec<WatchId>,
    /// The highest store revision seen in a response header (a new watcher that shares a
    /// server watch starts after it).
    max_revision: i64,
    next_watch: u64,
    keeper: Keeper,
    deadlines: BTreeSet<(Instant, CallId)>,
    backoffs: BTreeSet<(Instant, CallId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_call: u64,
    next_stream: u64,
    rng: Rng,
    auth: Auth,
    /// Failed Authenticate calls in a row; streams waiting for a token retry after a backoff.
    auth_failures: u32,
    /// Before this, streams (watches, keepalives) alone do not start another Authenticate.
    auth_retry_at: Option<Instant>,
    token_generation: u64,
    next_sync: Option<Instant>,
    sync_in_flight: bool,
    /// Why the last connection attempt failed, until a connection succeeds: a call that
    /// never got a connection reports it at its deadline (e.g. a TLS verification error).
    last_connect_error: Option<String>,
    user_agent: HeaderValue,
    /// The headers every request carries (content-type, te, user-agent, client-api-version),
    /// built once: a request head clones it instead of hashing and inserting each header.
    base_headers: HeaderMap,
    closed: bool,
}

impl Core {
    /// A core for this configuration, created at `now` (the core never reads a clock).
    /// Nothing is sent until a call starts.
    pub fn new(config: Config, now: Instant) -> Result<Core, Error> {
        config.validate()?;
        let mut core = Core {
            endpoints: Vec::new(),
            next_endpoint: 0,
            cursor: 0,
            calls: IdHashMap::default(),
            waiting: VecDeque::new(),
            streams: IdHashMap::default(),
            watchers: SeqHashMap::default(),
            groups: IdHashMap::default(),
            watch_shares: HashMap::new(),
            fanout_pending: Vec::new(),
            max_revision: 0,
            next_watch: 1,
            keeper: Keeper::new(),
            deadlines: BTreeSet::new(),
            backoffs: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_call: 0,
            next_stream: 0,
            rng: Rng::new(config.seed),
            auth: if config.credentials.is_some() {
                Auth::Needed
            } else {
                Auth::Off
            },
            auth_failures: 0,
            auth_retry_at: None,
            token_generation: 0,
            next_sync: config.auto_sync_interval.map(|i| now + i),
            sync_in_flight: false,
            last_connect_error: None,
            user_agent: HeaderValue::from_static(concat!("etcd-rs/", env!("CARGO_PKG_VERSION"))),
            base_headers: HeaderMap::new(),
            closed: false,
            config,
        };
        let mut base = HeaderMap::with_capacity(8);
        base.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        base.insert(TE, HeaderValue::from_static("trailers"));
        base.insert(USER_AGENT, core.user_agent.clone());
        base.insert(
            "client-api-version",
            HeaderValue::from_static(CLIENT_API_VERSION),
        );
        core.base_headers = base;
        for target in core.config.endpoints.clone() {
            core.add_endpoint(target, false, now)?;
        }
        Ok(core)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The endpoints calls are balanced over.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !e.pinned_only)
            .map(|e| e.target.clone())
            .collect()
    }

    /// Replaces the endpoint list. Connections to endpoints that stay are kept; removed
    /// endpoints are disconnected, and calls in flight there are retried elsewhere when
    /// their class allows it.
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>, now: Instant) -> Result<(), Error> {
        if endpoints.is_empty() {
            return Err(Error::InvalidConfig("no endpoints given".into()));
        }
        let removed: Vec<EndpointId> = self
            .endpoints
            .iter()
            .filter(|e| !e.pinned_only && !endpoints.contains(&e.target))
            .map(|e| e.id)
            .collect();
        for target in &endpoints {
            match self.endpoints.iter_mut().find(|e| &e.target == target) {
                Some(existing) => existing.pinned_only = false,
                None => {
                    self.add_endpoint(target.clone(), false, now)?;
                }
            }
        }
        for id in removed {
            let pinned_calls = self.calls.values().any(|c| c.pinned == Some(id));
            if pinned_calls {
                // Calls were sent to it explicitly: keep it for them only.
                if let Some(ep) = self.endpoint_mut(id) {
                    ep.pinned_only = true;
                }
                continue;
            }
            self.drop_endpoint(id, "endpoint removed from the list", now);
        }
        self.config.endpoints = endpoints.clone();
        self.cursor = 0;
        self.events.push_back(Event::EndpointsChanged { endpoints });
        self.dispatch(now);
        Ok(())
    }

    /// Refreshes the endpoint list from the cluster's member list (started, non-learner
    /// members), as Go's `Sync`. The result arrives as [`Event::EndpointsChanged`].
    pub fn sync(&mut self, now: Instant) {
        self.start_sync(now);
        self.dispatch(now);
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
        self.start_call(Owner::User, R::METHOD, &request, options, now)
    }

    /// Starts a server-streaming call (Snapshot, Observe): each response message arrives as
    /// [`Event::StreamMessage`] and the end as [`Event::CallFinished`] (with an empty body on
    /// success). It is retried like a unary call of its class only until the first message
    /// arrived. Report consumed bytes with [`Core::stream_consumed`]: at most
    /// [`STREAM_BUFFER`] bytes are delivered ahead of the application.
    pub fn start_server_stream<R: ServerStreamingRpc>(
        &mut self,
        rpc: R,
        options: CallOptions,
        now: Instant,
    ) -> Result<CallId, Error> {
        if self.closed {
            return Err(Error::ClientClosed);
        }
        let request = rpc.into_request()?;
        let id = self.start_call(Owner::User, R::METHOD, &request, options, now)?;
        if let Some(call) = self.calls.get_mut(&id) {
            call.streaming = true;
        }
        Ok(id)
    }

    /// The application took `bytes` of a server stream's messages: flow-control capacity held
    /// back for them is released.
    pub fn stream_consumed(&mut self, call: CallId, bytes: usize) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.buffered = c.buffered.saturating_sub(bytes);
        if c.buffered <= STREAM_BUFFER && c.held > 0 {
            let held = std::mem::take(&mut c.held);
            if let CallState::InFlight { stream, .. } = c.state {
                self.transmits.push_back(Transmit::ReleaseCapacity {
                    stream,
                    bytes: held,
                });
            }
        }
    }

    /// Cancels a call: its stream is reset and it finishes with [`Error::Cancelled`]. Unknown
    /// or finished calls are ignored.
    pub fn cancel(&mut self, call: CallId, now: Instant) {
        self.finish(call, Err(Error::Cancelled), now);
    }

    /// Closes the client: every call fails with [`Error::ClientClosed`] and every connection
    /// is dropped.
    pub fn close(&mut self, now: Instant) {
        self.closed = true;
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.finish(id, Err(Error::ClientClosed), now);
        }
        self.close_watches();
        self.close_keeper();
        for ep in &mut self.endpoints {
            if matches!(ep.conn, Conn::Connected | Conn::Connecting { .. }) {
                self.transmits
                    .push_back(Transmit::Disconnect { endpoint: ep.id });
            }
            ep.conn = Conn::Idle;
        }
        self.next_sync = None;
    }

    /// Number of calls not yet finished (internal ones included).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The connection to `endpoint` is ready for streams.
    pub fn handle_connected(&mut self, endpoint: EndpointId, now: Instant) {
        self.last_connect_error = None;
        if let Some(ep) = self.endpoint_mut(endpoint) {
            if matches!(ep.conn, Conn::Connecting { .. }) {
                ep.conn = Conn::Connected;
                ep.connect_failures = 0;
                ep.last_activity = now;
                ep.ping_deadline = None;
            }
        }
        self.dispatch(now);
    }

    /// The connection attempt to `endpoint` failed.
    pub fn handle_connect_failed(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        if let Some(idx) = self.endpoint_index(endpoint) {
            if matches!(self.endpoints[idx].conn, Conn::Connecting { .. }) {
                self.last_connect_error = Some(reason.to_string());
                self.connect_backoff(idx, now);
            }
        }
        self.dispatch(now);
    }

    /// The connection to `endpoint` closed or broke. Calls in flight on it are retried when
    /// their class allows it, or fail with a transport error saying the request was sent.
    pub fn handle_connection_lost(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        self.connection_lost(endpoint, &format!("connection lost: {reason}"), now);
        self.dispatch(now);
    }

    /// The answer to a [`Transmit::Ping`] arrived.
    pub fn handle_pong(&mut self, endpoint: EndpointId, now: Instant) {
        if let Some(ep) = self.endpoint_mut(endpoint) {
            ep.ping_deadline = None;
            ep.last_activity = now;
        }
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
        if let Some(key) = self.watch_of_stream(stream, now) {
            self.watch_headers(key, status, headers, end_stream, now);
            return;
        }
        if self.is_keeper_stream(stream, now) {
            self.keeper_headers(status, headers, end_stream, now);
            return;
        }
        let Some(call) = self.call_of_stream(stream, now) else {
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
        if let Some(key) = self.watch_of_stream(stream, now) {
            self.watch_data(key, data, end_stream, now);
            return;
        }
        if self.is_keeper_stream(stream, now) {
            self.keeper_data(data, end_stream, now);
            return;
        }
        let Some(call) = self.call_of_stream(stream, now) else {
            return;
        };
        let streaming = self.calls.get(&call).is_some_and(|c| c.streaming);
        if streaming {
            // Release at once unless the application is behind (then hold until it catches
            // up); partial messages are released too, so a large message cannot deadlock.
            if let Some(c) = self.calls.get_mut(&call) {
                if c.buffered > STREAM_BUFFER {
                    c.held += data.len();
                } else if let CallState::InFlight { stream, .. } = c.state {
                    self.transmits.push_back(Transmit::ReleaseCapacity {
                        stream,
                        bytes: data.len(),
                    });
                }
            }
        }
        let outcome = {
            let Some(response) = self.response_mut(call) else {
                return;
            };
            if response.http_status.is_some_and(|s| s != StatusCode::OK) {
                // Not a gRPC response (e.g. a proxy's error page): the body is not
                // length-prefixed messages. The outcome comes from the trailers or, without
                // them, from the HTTP status when the stream ends.
                Ok(Vec::new())
            } else if streaming {
                response.decoder.push(data);
                let mut messages = Vec::new();
                let mut outcome = Ok(());
                loop {
                    match response.decoder.next_message() {
                        Ok(Some(msg)) => messages.push(msg),
                        Ok(None) => break,
                        Err(e) => {
                            outcome = Err(e.into());
                            break;
                        }
                    }
                }
                outcome.map(|()| messages)
            } else {
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
                outcome.map(|()| Vec::new())
            }
        };
        let outcome = outcome.map(|messages| self.stream_messages(call, messages));
        if let Err(e) = outcome {
            self.finish(call, Err(e), now);
            self.dispatch(now);
        } else if end_stream {
            // The stream ended without trailers: the status comes from the HTTP status.
            self.complete(call, None, now);
        }
    }

    /// Delivers server-stream messages, holding back flow-control capacity beyond the buffer.
    fn stream_messages(&mut self, id: CallId, messages: Vec<Bytes>) {
        for message in messages {
            let size = message.len() + crate::grpc::PREFIX_LEN;
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            call.received += 1;
            call.buffered += size;
            self.events.push_back(Event::StreamMessage {
                call: id,
                message,
                size,
            });
        }
    }

    /// Trailers arrived: the call's outcome is known.
    pub fn handle_trailers(&mut self, stream: StreamId, trailers: &HeaderMap, now: Instant) {
        if let Some(key) = self.watch_of_stream(stream, now) {
            self.watch_trailers(key, trailers, now);
            return;
        }
        if self.is_keeper_stream(stream, now) {
            self.keeper_trailers(trailers, now);
            return;
        }
        if let Some(call) = self.call_of_stream(stream, now) {
            self.complete(call, Some(trailers), now);
        }
    }

    /// The peer reset a stream with this HTTP/2 error code.
    pub fn handle_stream_reset(&mut self, stream: StreamId, reason: u32, now: Instant) {
        let code = Code::from_reset_reason(reason);
        if let Some(key) = self.watch_of_stream(stream, now) {
            let error = Error::Status(Status::new(
                if code == Code::Cancelled {
                    Code::Unavailable
                } else {
                    code
                },
                format!("watch stream reset by the server (HTTP/2 error code {reason})"),
            ));
            self.watch_stream_failed(key, error, false, now);
            return;
        }
        if self.is_keeper_stream(stream, now) {
            let error = Error::Status(Status::new(
                Code::Unavailable,
                format!("keepalive stream reset by the server (HTTP/2 error code {reason})"),
            ));
            self.keeper_stream_failed(error, false, now);
            return;
        }
        let Some(call) = self.call_of_stream(stream, now) else {
            return;
        };
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
        self.attempt_failed(call, error, now);
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
        let call = match self.streams.get(&stream).copied() {
            Some(StreamOwner::Call(call)) => call,
            Some(StreamOwner::Watch(key)) => {
                let error = Error::Transport {
                    message: reason.to_string(),
                    request_sent,
                };
                self.watch_stream_failed(key, error, false, now);
                return;
            }
            Some(StreamOwner::Lease) => {
                let error = Error::Transport {
                    message: reason.to_string(),
                    request_sent,
                };
                self.keeper_stream_failed(error, false, now);
                return;
            }
            None => return,
        };
        let error = Error::Transport {
            message: reason.to_string(),
            request_sent,
        };
        if let Some(CallState::InFlight { endpoint, .. }) = self.calls.get(&call).map(|c| &c.state)
        {
            let endpoint = *endpoint;
            let (threshold, cooldown) =
                (self.config.breaker_threshold, self.config.breaker_cooldown);
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.transport_failure(now, threshold, cooldown);
            }
        }
        self.attempt_failed(call, error, now);
        self.dispatch(now);
    }

    /// Time has advanced to `now`: expire deadlines, backoffs, connection attempts and
    /// keepalive pings; start due pings and syncs.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, call)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let request_sent = self
                .calls
                .get(&call)
                .is_some_and(|c| c.maybe_applied || matches!(c.state, CallState::InFlight { .. }));
            let error = match (&self.last_connect_error, request_sent) {
                (Some(cause), false) => Error::Transport {
                    message: format!("no connection before the deadline: {cause}"),
                    request_sent: false,
                },
                _ => Error::DeadlineExceeded { request_sent },
            };
            self.finish(call, Err(error), now);
        }
        while let Some(&(at, call)) = self.backoffs.first() {
            if at > now {
                break;
            }
            self.backoffs.pop_first();
            if let Some(c) = self.calls.get_mut(&call) {
                if matches!(c.state, CallState::Backoff { .. }) {
                    c.state = CallState::Waiting;
                    self.waiting.push_back(call);
                }
            }
        }
        self.watch_timers(now);
        self.keeper_timers(now);
        let interval = self.config.keepalive_interval;
        let timeout = self.config.keepalive_timeout;
        for idx in 0..self.endpoints.len() {
            let id = self.endpoints[idx].id;
            if self.endpoints[idx]
                .breaker_until
                .is_some_and(|until| until <= now)
            {
                // Cool-down over: no timer left in the past. The failure count stays, so one
                // more failure puts the endpoint aside again at once.
                self.endpoints[idx].breaker_until = None;
            }
            match self.endpoints[idx].conn {
                Conn::Connecting { deadline } if deadline <= now => {
                    self.transmits
                        .push_back(Transmit::Disconnect { endpoint: id });
                    self.connect_backoff(idx, now);
                }
                Conn::Backoff { until } if until <= now => self.endpoints[idx].conn = Conn::Idle,
                Conn::Connected => {
                    let ep = &mut self.endpoints[idx];
                    if ep.ping_deadline.is_some_and(|d| d <= now) {
                        self.transmits
                            .push_back(Transmit::Disconnect { endpoint: id });
                        self.connection_lost(id, "keepalive ping unanswered", now);
                    } else if ep.ping_due(interval).is_some_and(|due| due <= now) {
                        ep.ping_deadline = Some(now + timeout);
                        ep.last_activity = now;
                        self.transmits.push_back(Transmit::Ping { endpoint: id });
                    }
                }
                _ => {}
            }
        }
        if self.next_sync.is_some_and(|at| at <= now) {
            self.next_sync = self.config.auto_sync_interval.map(|i| now + i);
            self.start_sync(now);
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
        if !self.fanout_pending.is_empty() {
            self.flush_fanouts();
        }
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next (`None`: nothing is timed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting =
            !self.waiting.is_empty() || self.watches_need_token() || self.keeper.waiting();
        let interval = self.config.keepalive_interval;
        let endpoint_timers = self.endpoints.iter().flat_map(|ep| {
            let conn = match ep.conn {
                Conn::Connecting { deadline } => Some(deadline),
                Conn::Backoff { until } if waiting => Some(until),
                _ => None,
            };
            let breaker = ep.breaker_until.filter(|_| waiting);
            [conn, breaker, ep.ping_deadline, ep.ping_due(interval)]
        });
        [
            self.deadlines.first().map(|(at, _)| *at),
            self.backoffs.first().map(|(at, _)| *at),
            self.next_sync,
            self.watch_poll_timeout(),
            self.keeper_poll_timeout(),
            self.auth_retry_at
                .filter(|_| matches!(self.auth, Auth::Needed) && waiting),
        ]
        .into_iter()
        .chain(endpoint_timers)
        .flatten()
        .min()
    }

    fn add_endpoint(
        &mut self,
        target: Endpoint,
        pinned_only: bool,
        now: Instant,
    ) -> Result<EndpointId, Error> {
        let id = EndpointId(self.next_endpoint);
        self.next_endpoint += 1;
        self.endpoints
            .push(EndpointState::new(id, target, pinned_only, now)?);
        Ok(id)
    }

    fn drop_endpoint(&mut self, id: EndpointId, reason: &str, now: Instant) {
        let Some(idx) = self.endpoint_index(id) else {
            return;
        };
        if matches!(
            self.endpoints[idx].conn,
            Conn::Connected | Conn::Connecting { .. }
        ) {
            self.transmits
                .push_back(Transmit::Disconnect { endpoint: id });
        }
        self.fail_in_flight(id, reason, now);
        self.endpoints.remove(idx);
    }

    /// An endpoint outside the list, reached only by calls pinned to it, goes (with its
    /// connection) when its last call is over, as Go closes the connection it dials for a
    /// maintenance call to one endpoint; the table does not grow with every URL ever pinned.
    fn forget_unused_pinned_only(&mut self, id: EndpointId, now: Instant) {
        let pinned_only = self
            .endpoint_index(id)
            .is_some_and(|i| self.endpoints[i].pinned_only);
        if pinned_only && !self.calls.values().any(|c| c.pinned == Some(id)) {
            self.drop_endpoint(id, "pinned endpoint no longer used", now);
        }
    }

    fn endpoint_index(&self, id: EndpointId) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id)
    }

    fn endpoint_mut(&mut self, id: EndpointId) -> Option<&mut EndpointState> {
        self.endpoints.iter_mut().find(|e| e.id == id)
    }

    /// The call a stream belongs to; notes activity on the stream's connection.
    fn call_of_stream(&mut self, stream: StreamId, now: Instant) -> Option<CallId> {
        let StreamOwner::Call(call) = *self.streams.get(&stream)? else {
            return None;
        };
        if let Some(CallState::InFlight { endpoint, .. }) = self.calls.get(&call).map(|c| &c.state)
        {
            let endpoint = *endpoint;
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.last_activity = now;
            }
        }
        Some(call)
    }

    /// Whether `stream` is the keepalive stream; notes activity on its connection.
    fn is_keeper_stream(&mut self, stream: StreamId, now: Instant) -> bool {
        if self.streams.get(&stream) != Some(&StreamOwner::Lease) {
            return false;
        }
        if let Some(endpoint) = self.keeper_endpoint() {
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.last_activity = now;
            }
        }
        true
    }

    /// The watch group a stream belongs to; notes activity on the stream's connection.
    fn watch_of_stream(&mut self, stream: StreamId, now: Instant) -> Option<GroupKey> {
        let StreamOwner::Watch(key) = *self.streams.get(&stream)? else {
            return None;
        };
        if let Some((_, endpoint)) = self.groups.get(&key).and_then(Group::open_on) {
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.last_activity = now;
            }
        }
        Some(key)
    }

    fn response_mut(&mut self, call: CallId) -> Option<&mut ResponseState> {
        match self.calls.get_mut(&call).map(|c| &mut c.state) {
            Some(CallState::InFlight { response, .. }) => Some(response),
            _ => None,
        }
    }

    fn start_call<M: Message>(
        &mut self,
        owner: Owner,
        method: Method,
        request: &M,
        options: CallOptions,
        now: Instant,
    ) -> Result<CallId, Error> {
        let body = encode_message(request, self.config.max_send_message_size)?;
        let pinned = match &options.endpoint {
            None => None,
            Some(target) => Some(match self.endpoints.iter().find(|e| &e.target == target) {
                Some(ep) => ep.id,
                None => self.add_endpoint(target.clone(), true, now)?,
            }),
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let timeout = match owner {
            Owner::User => options.timeout.or(self.config.default_timeout),
            Owner::Auth => Some(options.timeout.unwrap_or(self.config.auth_timeout)),
            Owner::Sync => Some(options.timeout.unwrap_or(SYNC_TIMEOUT)),
            Owner::Resync(_) => options.timeout.or(self.config.default_timeout),
        };
        let deadline = timeout.map(|t| now + t);
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        self.calls.insert(
            id,
            Call {
                owner,
                method,
                body,
                options,
                deadline,
                attempts: 0,
                auth_retries: 0,
                avoid: None,
                pinned,
                needs_token: owner != Owner::Auth,
                token_generation: 0,
                maybe_applied: false,
                streaming: false,
                received: 0,
                buffered: 0,
                held: 0,
                state: CallState::Waiting,
            },
        );
        self.waiting.push_back(id);
        self.dispatch(now);
        Ok(id)
    }

    /// A stream's token was refused: fetch a new one, unless a fetch is under way already.
    fn token_rejected(&mut self) {
        if !matches!(self.auth, Auth::Fetching | Auth::Off) {
            self.auth = Auth::Needed;
        }
    }

    fn start_sync(&mut self, now: Instant) {
        if self.sync_in_flight || self.closed {
            return;
        }
        let method = Method {
            path: "/etcdserverpb.Cluster/MemberList",
            retry: RetryClass::Repeatable,
        };
        let request = MemberListRequest { linearizable: true };
        if self
            .start_call(Owner::Sync, method, &request, CallOptions::default(), now)
            .is_ok()
        {
            self.sync_in_flight = true;
        }
    }

    fn start_auth(&mut self, now: Instant) {
        let Some(creds) = self.config.credentials.clone() else {
            return;
        };
        // Authenticating twice only mints two tokens: safe to retry like a read.
        let method = Method {
            path: "/etcdserverpb.Auth/Authenticate",
            retry: RetryClass::Repeatable,
        };
        let request = AuthenticateRequest {
            name: creds.user,
            password: creds.password,
        };
        self.auth = Auth::Fetching;
        if let Err(e) = self.start_call(Owner::Auth, method, &request, CallOptions::default(), now)
        {
            self.auth = Auth::Needed;
            self.fail_token_waiters(e, now);
        }
    }

    fn connect_backoff(&mut self, idx: usize, now: Instant) {
        let (threshold, cooldown) = (self.config.breaker_threshold, self.config.breaker_cooldown);
        let jitter = 0.8 + 0.4 * self.rng.next_f64();
        let ep = &mut self.endpoints[idx];
        let exp = ep.connect_failures.min(16);
        ep.connect_failures = ep.connect_failures.saturating_add(1);
        ep.transport_failure(now, threshold, cooldown);
        let base = self
            .config
            .reconnect_backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.config.reconnect_backoff_max);
        // +-20% jitter so that many clients do not reconnect in lockstep.
        ep.conn = Conn::Backoff {
            until: now + base.mul_f64(jitter),
        };
    }

    /// A connection is gone: mark it, count the failure, and deal with its calls.
    fn connection_lost(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        let Some(idx) = self.endpoint_index(endpoint) else {
            return;
        };
        match self.endpoints[idx].conn {
            Conn::Connecting { .. } => self.connect_backoff(idx, now),
            Conn::Connected => {
                let (threshold, cooldown) =
                    (self.config.breaker_threshold, self.config.breaker_cooldown);
                let ep = &mut self.endpoints[idx];
                ep.conn = Conn::Idle;
                ep.ping_deadline = None;
                ep.transport_failure(now, threshold, cooldown);
            }
            _ => {}
        }
        self.fail_in_flight(endpoint, reason, now);
    }

    fn fail_in_flight(&mut self, endpoint: EndpointId, reason: &str, now: Instant) {
        if self.keeper_on(endpoint) {
            let error = Error::Transport {
                message: reason.to_string(),
                request_sent: true,
            };
            self.keeper_stream_failed(error, false, now);
        }
        for key in self.watch_groups_on(endpoint) {
            let error = Error::Transport {
                message: reason.to_string(),
                request_sent: true,
            };
            self.watch_stream_failed(key, error, false, now);
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
            self.attempt_failed(
                id,
                Error::Transport {
                    message: reason.to_string(),
                    request_sent: true,
                },
                now,
            );
        }
    }

    /// Takes a call off its stream (the stream is over or abandoned).
    fn detach(&mut self, id: CallId) -> Option<EndpointId> {
        let call = self.calls.get_mut(&id)?;
        let state = std::mem::replace(&mut call.state, CallState::Waiting);
        match state {
            CallState::InFlight {
                stream, endpoint, ..
            } => {
                self.streams.remove(&stream);
                if let Some(ep) = self.endpoint_mut(endpoint) {
                    ep.active_streams = ep.active_streams.saturating_sub(1);
                }
                Some(endpoint)
            }
            other => {
                call.state = other;
                None
            }
        }
    }

    /// An attempt failed: retry it or finish the call, as the retry policy says.
    fn attempt_failed(&mut self, id: CallId, error: Error, now: Instant) {
        let endpoint = self.detach(id);
        let endpoints = self.endpoints.iter().filter(|e| !e.pinned_only).count();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.maybe_applied |= error.outcome_unknown();
        let call = &*call;
        // A pinned call has one endpoint to go to, whatever the list holds.
        let endpoints = if call.pinned.is_some() { 1 } else { endpoints };
        let attempt = Attempt {
            class: call.method.retry,
            attempts: call.attempts,
            max_attempts: self.config.max_attempts,
            endpoints,
            has_credentials: self.config.credentials.is_some(),
            auth_retries: call.auth_retries,
        };
        // A server stream that delivered messages cannot be replayed without duplicates.
        let decision = if call.received > 0 {
            Decision::Fail
        } else {
            retry::decide(attempt, &error)
        };
        match decision {
            Decision::Fail => self.finish_quietly(id, Err(error), now),
            Decision::Retry { refresh_token } => {
                let pause = retry::backoff(
                    call.attempts,
                    endpoints,
                    self.config.retry_wait_between,
                    self.config.retry_jitter,
                    &mut self.rng,
                );
                let used_generation = call.token_generation;
                if refresh_token
                    && used_generation == self.token_generation
                    && !matches!(self.auth, Auth::Fetching)
                {
                    // The token this call carried is the current one: it is bad (unless a
                    // new one is already on its way).
                    self.auth = Auth::Needed;
                }
                let call = self.calls.get_mut(&id).expect("checked above");
                if refresh_token {
                    call.auth_retries += 1;
                }
                call.avoid = endpoint;
                if pause.is_zero() {
                    call.state = CallState::Waiting;
                    self.waiting.push_back(id);
                } else {
                    let until = now + pause;
                    call.state = CallState::Backoff { until };
                    self.backoffs.insert((until, id));
                }
            }
        }
    }

    /// Sends waiting calls to connected endpoints, connecting endpoints as needed.
    fn dispatch(&mut self, now: Instant) {
        let watches_waiting = self.watches_need_token() || self.keeper.waiting();
        if self.waiting.is_empty() && !watches_waiting {
            return;
        }
        // A call waiting for a token starts an attempt at once (it has its own deadline);
        // streams alone wait out the backoff after a failure, so a server refusing the
        // credentials is not asked again and again.
        if matches!(self.auth, Auth::Needed)
            && ((watches_waiting && self.auth_retry_at.is_none_or(|at| at <= now))
                || self
                    .waiting
                    .iter()
                    .any(|id| self.calls.get(id).is_some_and(|c| c.needs_token)))
        {
            self.start_auth(now);
        }
        let token_ready = matches!(self.auth, Auth::Off | Auth::Ready(_) | Auth::NotEnabled);
        if watches_waiting {
            let want_watch = self.dispatch_watches(now, token_ready);
            let want_keeper = self.dispatch_keeper(now, token_ready);
            if want_watch || want_keeper {
                self.ensure_connecting(now);
            }
        }
        let queue = std::mem::take(&mut self.waiting);
        let mut still_waiting = VecDeque::with_capacity(queue.len());
        let mut want_connect = false;
        let mut want_pinned = Vec::new();
        for id in queue {
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            if !matches!(call.state, CallState::Waiting) {
                continue;
            }
            if call.needs_token && !token_ready {
                still_waiting.push_back(id);
                continue;
            }
            let pinned = call.pinned;
            let target = match pinned {
                Some(pinned) => self
                    .endpoint_index(pinned)
                    .filter(|&i| self.endpoints[i].conn == Conn::Connected)
                    .ok_or(Some(pinned)),
                None => self.pick_connected(call.avoid, now).ok_or(None),
            };
            match target {
                Ok(idx) => {
                    self.open_stream(id, idx, now);
                    // Calls flow: endpoints that dropped out and may be tried again (reconnect
                    // backoff over, breaker closed) are reconnected, so round robin gets them
                    // back.
                    want_connect |= pinned.is_none();
                }
                Err(pinned) => {
                    match pinned {
                        Some(p) => want_pinned.push(p),
                        None => want_connect = true,
                    }
                    still_waiting.push_back(id);
                }
            }
        }
        // Calls queued meanwhile (by finishing or retrying) go after the ones kept.
        still_waiting.extend(self.waiting.drain(..));
        self.waiting = still_waiting;
        if want_connect {
            self.ensure_connecting(now);
        }
        for id in want_pinned {
            if let Some(idx) = self.endpoint_index(id) {
                self.connect_if_idle(idx, now);
            }
        }
    }

    /// Round robin over connected endpoints, skipping `avoid` and endpoints whose breaker is
    /// open unless nothing else is left.
    fn pick_connected(&mut self, avoid: Option<EndpointId>, now: Instant) -> Option<usize> {
        let n = self.endpoints.len();
        for pass in 0..3 {
            for i in 0..n {
                let idx = (self.cursor + i) % n;
                let ep = &self.endpoints[idx];
                let usable = ep.conn == Conn::Connected
                    && !ep.pinned_only
                    && (pass >= 1 || Some(ep.id) != avoid)
                    && (pass >= 2 || ep.breaker_closed(now));
                if usable {
                    self.cursor = (idx + 1) % n;
                    return Some(idx);
                }
            }
        }
        None
    }

    /// Connects every endpoint that may serve calls and is not connected or connecting.
    fn ensure_connecting(&mut self, now: Instant) {
        let any_closed_breaker = self
            .endpoints
            .iter()
            .any(|e| !e.pinned_only && e.breaker_closed(now));
        for idx in 0..self.endpoints.len() {
            let ep = &self.endpoints[idx];
            if ep.pinned_only || (any_closed_breaker && !ep.breaker_closed(now)) {
                continue;
            }
            self.connect_if_idle(idx, now);
        }
    }

    fn connect_if_idle(&mut self, idx: usize, now: Instant) {
        let ep = &mut self.endpoints[idx];
        let ready = match ep.conn {
            Conn::Idle => true,
            Conn::Backoff { until } => until <= now,
            _ => false,
        };
        if ready {
            ep.conn = Conn::Connecting {
                deadline: now + self.config.connect_timeout,
            };
            self.transmits.push_back(Transmit::Connect {
                endpoint: ep.id,
                target: ep.target.clone(),
            });
        }
    }

    fn open_stream(&mut self, id: CallId, idx: usize, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let timeout = match call.deadline {
            Some(d) if d <= now => {
                let request_sent = call.maybe_applied;
                self.finish(id, Err(Error::DeadlineExceeded { request_sent }), now);
                return;
            }
            Some(d) => Some(d - now),
            None => None,
        };
        let with_token = call.needs_token;
        let streaming = call.streaming;
        let ep = &self.endpoints[idx];
        let request = self.request_head(ep, call.method.path, &call.options, timeout, with_token);
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
            manual_flow_control: streaming,
        });
        self.streams.insert(stream, StreamOwner::Call(id));
        self.endpoints[idx].active_streams += 1;
        let limit = self.config.max_receive_message_size;
        let generation = self.token_generation;
        if let Some(call) = self.calls.get_mut(&id) {
            call.attempts += 1;
            call.token_generation = generation;
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
        with_token: bool,
    ) -> Request<()> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(ep.scheme.clone());
        parts.authority = Some(ep.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_static(path));
        let uri = Uri::from_parts(parts).expect("scheme, authority and path are all set");
        let mut request = Request::new(());
        *request.method_mut() = HttpMethod::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.base_headers.clone();
        let headers = request.headers_mut();
        if let Some(t) = timeout {
            // Different in every call: marked sensitive so HPACK sends it as a literal that is
            // never indexed, instead of churning both sides' dynamic tables.
            let mut value = encode_timeout(t);
            value.set_sensitive(true);
            headers.insert("grpc-timeout", value);
        }
        if let (true, Auth::Ready(token)) = (with_token, &self.auth) {
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
        let streaming = self.calls.get(&id).is_some_and(|c| c.streaming);
        let (result, answered) = {
            let Some(response) = self.response_mut(id) else {
                return;
            };
            let http_status = response.http_status.unwrap_or(StatusCode::OK);
            let status = trailers.and_then(Status::from_headers);
            let answered = status.is_some();
            let status = status.unwrap_or_else(|| {
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
            let result = if !status.is_ok() {
                Err(Error::from_status(status))
            } else if let Err(e) = response.decoder.finish() {
                Err(e.into())
            } else if streaming {
                Ok(Bytes::new())
            } else {
                match response.message.take() {
                    Some(msg) => Ok(msg),
                    None => Err(Error::Protocol(
                        "unary call ended with OK but without a response message".into(),
                    )),
                }
            };
            (result, answered)
        };
        // The stream is over; no reset needed.
        let endpoint = self.detach(id);
        if answered {
            if let Some(ep) = endpoint.and_then(|e| self.endpoint_mut(e)) {
                ep.success();
            }
        }
        match result {
            Ok(msg) => self.finish_quietly(id, Ok(msg), now),
            Err(e) => self.attempt_failed(id, e, now),
        }
        self.dispatch(now);
    }

    /// Finishes a call and resets its stream if it is still open.
    fn finish(&mut self, id: CallId, result: Result<Bytes, Error>, now: Instant) {
        if let Some(CallState::InFlight { stream, .. }) = self.calls.get(&id).map(|c| &c.state) {
            self.transmits.push_back(Transmit::ResetStream {
                stream: *stream,
                reason: RESET_CANCEL,
            });
        }
        self.finish_quietly(id, result, now);
    }

    /// Finishes a call whose stream is over (or was reset by [`Core::finish`]).
    fn finish_quietly(&mut self, id: CallId, result: Result<Bytes, Error>, now: Instant) {
        self.detach(id);
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(d) = call.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let CallState::Backoff { until } = call.state {
            self.backoffs.remove(&(until, id));
        }
        if let Some(pinned) = call.pinned {
            self.forget_unused_pinned_only(pinned, now);
        }
        match call.owner {
            Owner::User => {
                if let Ok(body) = &result {
                    if call.method.path.starts_with("/etcdserverpb.")
                        || call.method.path.starts_with("/v3lockpb.")
                        || call.method.path.starts_with("/v3electionpb.")
                    {
                        // Every etcd response starts with its header.
                        let revision = crate::wire::header_revision(body);
                        self.max_revision = self.max_revision.max(revision);
                    }
                }
                self.events
                    .push_back(Event::CallFinished { call: id, result })
            }
            Owner::Auth => self.auth_finished(result, now),
            Owner::Sync => self.sync_finished(result, now),
            Owner::Resync(watch) => self.resync_finished(watch, result, now),
        }
    }

    fn auth_finished(&mut self, result: Result<Bytes, Error>, now: Instant) {
        let outcome = result.and_then(|body| {
            AuthenticateResponse::decode(body)
                .map_err(|e| Error::Protocol(format!("undecodable Authenticate response: {e}")))
        });
        match outcome {
            Ok(resp) => match HeaderValue::from_str(&resp.token) {
                Ok(mut token) => {
                    token.set_sensitive(true);
                    self.token_generation += 1;
                    self.auth = Auth::Ready(token);
                    self.auth_failures = 0;
                    self.auth_retry_at = None;
                }
                Err(_) => {
                    self.auth = Auth::Needed;
                    self.auth_failed_at(now);
                    let e = Error::Protocol(
                        "the server sent an auth token that is not a valid header value".into(),
                    );
                    self.fail_token_waiters(e, now);
                }
            },
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::AuthNotEnabled) => {
                self.token_generation += 1;
                self.auth = Auth::NotEnabled;
            }
            Err(e) => {
                self.auth = Auth::Needed;
                self.auth_failed_at(now);
                // Wrong credentials will not get better by waiting: watches that need a token
                // end with the error too (a keepalive's leases are reported lost when they
                // expire). Other failures (unreachable, timeouts) are retried.
                if e.etcd_kind() == Some(EtcdErrorKind::AuthFailed) {
                    self.fail_watches_waiting_for_token(&e);
                }
                self.fail_token_waiters(e, now);
            }
        }
    }

    /// Schedules the next attempt of streams waiting for a token: 100 ms, doubling up to 5 s.
    fn auth_failed_at(&mut self, now: Instant) {
        let pause = Duration::from_millis(100).saturating_mul(1 << self.auth_failures.min(6));
        self.auth_failures = self.auth_failures.saturating_add(1);
        self.auth_retry_at = Some(now + pause.min(Duration::from_secs(5)));
    }

    /// Authentication failed: calls waiting for a token get its error (the next call starts
    /// a new attempt).
    fn fail_token_waiters(&mut self, error: Error, now: Instant) {
        let waiters: Vec<CallId> = self
            .waiting
            .iter()
            .copied()
            .filter(|id| {
                self.calls
                    .get(id)
                    .is_some_and(|c| c.needs_token && matches!(c.state, CallState::Waiting))
            })
            .collect();
        for id in waiters {
            self.finish_quietly(id, Err(error.clone()), now);
        }
    }

    fn sync_finished(&mut self, result: Result<Bytes, Error>, now: Instant) {
        self.sync_in_flight = false;
        let Ok(body) = result else {
            // A failed sync keeps the current list; the next tick tries again.
            return;
        };
        let Ok(resp) = MemberListResponse::decode(body) else {
            return;
        };
        let endpoints = endpoints_from_members(&resp.members);
        if !endpoints.is_empty() && endpoints != self.endpoints() {
            let _ = self.set_endpoints(endpoints, now);
        }
    }
}
