//! The driver task: owns the core, its connections and every HTTP/2 stream on them. It
//! performs the core's transmits with `h2`, feeds the core what the streams receive, hands
//! results to callers, and sleeps until its next deadline.
//!
//! Everything happens in this one task: a wake-up takes every queued command, carries out
//! every transmit (so the frames of all requests that became ready leave in one write per
//! connection), and reads every stream that has something (streams are found through their
//! own wakers, never by scanning). Only connection attempts run in tasks of their own.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use etcd_proto_core::{
    CallId, Core, Endpoint, EndpointId, Error, Event, KeepAliveId, Scheme, StreamId, TlsConfig,
    Transmit, Watch, WatchId, WatchResponse,
};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::Request;
use tokio::sync::{mpsc, oneshot};

use crate::runtime::{BoxFuture, Runtime};
use crate::stream::{connect_task, Established, H2Connection, Input, Notifier, StreamWaker};
use crate::tls::TlsConnector;

/// Starts a call on the core (a closure so that any typed request fits one channel).
pub(crate) type StartFn = Box<dyn FnOnce(&mut Core, Instant) -> Result<CallId, Error> + Send>;

/// What client handles ask the driver.
pub(crate) enum Command {
    Unary {
        token: u64,
        start: StartFn,
        reply: oneshot::Sender<Result<Bytes, Error>>,
    },
    Cancel {
        token: u64,
    },
    ServerStream {
        token: u64,
        start: StartFn,
        items: mpsc::UnboundedSender<StreamItem>,
    },
    StreamConsumed {
        token: u64,
        bytes: usize,
    },
    SetEndpoints {
        endpoints: Vec<Endpoint>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Endpoints {
        reply: oneshot::Sender<Vec<Endpoint>>,
    },
    Watch {
        watch: Watch,
        reply: oneshot::Sender<Result<(WatchId, i64), Error>>,
        updates: WatchSender,
        flow: Arc<WatchFlow>,
    },
    CancelWatch {
        watch: WatchId,
    },
    /// The watcher consumed responses while its stream is paused for it (see [`WatchFlow`]).
    WatchConsumed {
        watch: WatchId,
    },
    RequestProgress {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    KeepAlive {
        lease: i64,
        ttl_hint: Option<std::time::Duration>,
        once: bool,
        reply: oneshot::Sender<Result<KeepAliveId, Error>>,
        updates: mpsc::UnboundedSender<KeepAliveUpdate>,
    },
    StopKeepAlive {
        keeper: KeepAliveId,
    },
    LeaseRevoked {
        lease: i64,
    },
}

/// What a server stream's channel carries.
pub(crate) enum StreamItem {
    Message(Bytes, usize),
    End(Result<(), Error>),
}

/// What a lease subscription's channel carries.
pub(crate) enum KeepAliveUpdate {
    Renewed { lease: i64, ttl: i64 },
    Ended(Error),
}

/// The channel a watcher's updates go to, tagged with the watcher (a [`crate::WatchSet`]
/// receives many watchers on one channel).
pub(crate) type WatchSender = crate::inbox::Sender<(WatchId, WatchUpdate)>;

/// What a watcher's channel carries.
pub(crate) enum WatchUpdate {
    Response(WatchResponse, usize),
    Ended(Option<Error>),
}

/// How a watcher reports what it consumed without a message per response: it adds the bytes
/// to `consumed`, which the driver collects when the core says the watcher is over its limit
/// counting what was not reported yet (once per buffer's worth of responses). Only while
/// the watcher is over its buffer limit (its stream paused, waiting for it) does the driver set
/// `report`, and then every consumption also sends [`Command::WatchConsumed`] so the stream
/// resumes promptly. Sequentially consistent: a watcher that reads `report` as false added its
/// bytes before the driver set it, so the driver's collection right after setting it sees them.
#[derive(Default)]
pub(crate) struct WatchFlow {
    consumed: AtomicUsize,
    report: AtomicBool,
}

impl WatchFlow {
    /// Called by the watcher for each response taken: counts its bytes, and tells the driver
    /// when it wants to hear.
    pub(crate) fn consumed(
        &self,
        commands: &mpsc::UnboundedSender<Command>,
        watch: WatchId,
        bytes: usize,
    ) {
        if bytes == 0 {
            return;
        }
        self.consumed.fetch_add(bytes, SeqCst);
        if self.report.load(SeqCst) {
            let _ = commands.send(Command::WatchConsumed { watch });
        }
    }
}

struct WatchSlot {
    created: Option<oneshot::Sender<Result<(WatchId, i64), Error>>>,
    updates: WatchSender,
    flow: Arc<WatchFlow>,
}

pub(crate) use etcd_proto_core::idhash::{IdHashMap as IdMap, SeqHashMap};

/// Rounds of work in one poll before the driver yields to the executor (fairness, and
/// tokio's cooperative budget, which only refills when the task is polled again).
const MAX_ROUNDS: usize = 32;

/// Response bytes the driver reads in one poll before it lets other tasks run. A burst of
/// watch responses (megabytes when watchers catch up) is handed to the application in
/// slices: what was read is consumed while it is still in the cache, and memory does not
/// balloon (and shrink back) with every burst, which costs page faults in the allocator.
const READ_BUDGET: usize = 64 << 10;

enum ConnSlot {
    /// A connect task is running; dropping `_cancel` abandons it.
    Connecting {
        generation: u64,
        _cancel: mpsc::UnboundedSender<()>,
    },
    Up(Box<UpConn>),
}

struct UpConn {
    send: SendRequest<Bytes>,
    connection: H2Connection,
    ping_pong: Option<h2::PingPong>,
    ping_outstanding: bool,
    /// Streams waiting for the connection to accept one more stream, oldest first.
    opening: VecDeque<StreamId>,
}

/// What a stream still has to receive.
// `Queued` holds the request head only until the stream opens (usually in the same round);
// boxing it would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Recv {
    /// Not opened yet: waiting for a stream slot on the connection.
    Queued {
        request: Request<()>,
        body: Bytes,
        end_stream: bool,
        /// Data the core sent meanwhile (bidirectional streams).
        more: Vec<(Bytes, bool)>,
    },
    Head(ResponseFuture),
    Body(RecvStream),
    Trailers(RecvStream),
    /// Placeholder while a state is moved.
    Done,
}

struct StreamSlot {
    endpoint: EndpointId,
    waker: Waker,
    manual_flow_control: bool,
    send: Option<SendStream<Bytes>>,
    recv: Recv,
}

/// How a stream failed, as the core wants it reported.
enum StreamFailure {
    Reset(u32),
    Error { error: String, request_sent: bool },
}

fn stream_failure(e: h2::Error, request_sent: bool) -> StreamFailure {
    match e.reason() {
        Some(reason) if e.is_reset() && e.is_remote() => StreamFailure::Reset(reason.into()),
        Some(h2::Reason::REFUSED_STREAM) => StreamFailure::Reset(h2::Reason::REFUSED_STREAM.into()),
        _ => StreamFailure::Error {
            error: e.to_string(),
            request_sent,
        },
    }
}

pub(crate) struct Driver<R: Runtime> {
    rt: R,
    core: Core,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    inbox_tx: mpsc::UnboundedSender<Input>,
    inbox_rx: mpsc::UnboundedReceiver<Input>,
    conns: IdMap<EndpointId, ConnSlot>,
    streams: IdMap<StreamId, StreamSlot>,
    pending: IdMap<CallId, (u64, oneshot::Sender<Result<Bytes, Error>>)>,
    tokens: IdMap<u64, CallId>,
    server_streams: IdMap<CallId, (u64, mpsc::UnboundedSender<StreamItem>)>,
    next_generation: u64,
    tls: Option<TlsConnector>,
    watches: SeqHashMap<WatchId, WatchSlot>,
    /// Watch responses drained but not yet sent, all for the inbox `outbox_channel`.
    outbox: Vec<(WatchId, WatchUpdate)>,
    outbox_channel: usize,
    /// Lease subscriptions: their channel, and whether they end after one renewal.
    keepers: IdMap<KeepAliveId, (mpsc::UnboundedSender<KeepAliveUpdate>, bool)>,
    notifier: Arc<Notifier>,
    /// Waker of everything the driver polls except stream receive sides.
    waker: Waker,
    sleep: Option<(Instant, BoxFuture<()>)>,
    /// Scratch list of ready streams (kept to reuse its allocation).
    ready: Vec<StreamId>,
    /// Bytes left to read in this poll (see [`READ_BUDGET`]).
    read_budget: usize,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        rt: R,
        core: Core,
        tls: Option<TlsConnector>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let notifier = Notifier::new();
        Driver {
            rt,
            core,
            commands,
            commands_open: true,
            inbox_tx,
            inbox_rx,
            conns: IdMap::default(),
            streams: IdMap::default(),
            pending: IdMap::default(),
            tokens: IdMap::default(),
            server_streams: IdMap::default(),
            next_generation: 0,
            tls,
            watches: SeqHashMap::default(),
            outbox: Vec::new(),
            outbox_channel: 0,
            keepers: IdMap::default(),
            waker: Waker::from(notifier.clone()),
            notifier,
            sleep: None,
            ready: Vec::new(),
            read_budget: READ_BUDGET,
        }
    }

    pub(crate) async fn run(mut self) {
        poll_fn(|cx| self.poll_run(cx)).await
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.notifier.enter(cx.waker());
        self.read_budget = READ_BUDGET;
        for _ in 0..MAX_ROUNDS {
            self.notifier.round();
            if self.round() {
                return Poll::Ready(());
            }
            if self.read_budget == 0 {
                // Streams with more to read are still listed in `ready`.
                break;
            }
            if self.notifier.try_park() {
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// One round: take every input, carry out every output. True when the driver is done.
    fn round(&mut self) -> bool {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let now = self.rt.now();
        while let Poll::Ready(Some(input)) = self.inbox_rx.poll_recv(&mut cx) {
            self.handle_input(input, now);
        }
        while self.commands_open {
            match self.commands.poll_recv(&mut cx) {
                Poll::Ready(Some(cmd)) => self.handle_command(cmd, now),
                Poll::Ready(None) => {
                    self.commands_open = false;
                    self.core.close(now);
                }
                Poll::Pending => break,
            }
        }
        if let Some((at, timer)) = self.sleep.as_mut() {
            if *at <= now || timer.as_mut().poll(&mut cx).is_ready() {
                self.sleep = None;
                self.core.handle_timeout(now);
            }
        }
        self.drain(now);
        // Flush what was queued, read what arrived (this marks streams ready).
        let lost = self.poll_connections(&mut cx, now);
        let opening: Vec<EndpointId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, ConnSlot::Up(up) if !up.opening.is_empty()))
            .map(|(e, _)| *e)
            .collect();
        for endpoint in opening {
            self.open_queued(endpoint, now);
        }
        self.read_ready_streams(now);
        for (endpoint, error) in lost {
            self.connection_lost(endpoint, &error, now);
        }
        self.drain(now);
        if !self.commands_open
            && self.core.calls_in_progress() == 0
            && self.core.watchers() == 0
            && self.core.kept_leases() == 0
        {
            // Every client handle is gone and nothing is in flight.
            return true;
        }
        match self.core.poll_timeout() {
            // A timer that fires early is harmless (the core ignores it): keep it unless the
            // new deadline is earlier, so a deadline that moves later on every response (the
            // keepalive ping) does not cost a new timer each time.
            Some(at) if self.sleep.as_ref().is_none_or(|(d, _)| at < *d) => {
                let mut timer = self.rt.sleep_until(at);
                if timer.as_mut().poll(&mut cx).is_ready() {
                    self.notifier.poke();
                }
                self.sleep = Some((at, timer));
            }
            Some(_) => {}
            None => self.sleep = None,
        }
        false
    }

    /// Polls every live connection (writes queued frames, reads arrived ones) and its PING.
    /// Returns the connections that ended.
    fn poll_connections(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Vec<(EndpointId, String)> {
        let mut lost = Vec::new();
        let mut pongs = Vec::new();
        for (&endpoint, slot) in self.conns.iter_mut() {
            let ConnSlot::Up(conn) = slot else {
                continue;
            };
            if let Poll::Ready(result) = conn.connection.as_mut().poll(cx) {
                lost.push((
                    endpoint,
                    match result {
                        Ok(()) => "connection closed by the server".to_string(),
                        Err(e) => format!("connection failed: {e}"),
                    },
                ));
                continue;
            }
            if conn.ping_outstanding {
                if let Some(pp) = conn.ping_pong.as_mut() {
                    if let Poll::Ready(result) = pp.poll_pong(cx) {
                        conn.ping_outstanding = false;
                        if result.is_ok() {
                            pongs.push(endpoint);
                        }
                    }
                }
            }
        }
        for endpoint in pongs {
            self.core.handle_pong(endpoint, now);
        }
        lost
    }

    fn connection_lost(&mut self, endpoint: EndpointId, error: &str, now: Instant) {
        if let Some(ConnSlot::Up(_)) = self.conns.get(&endpoint) {
            self.conns.remove(&endpoint);
            self.streams.retain(|_, s| s.endpoint != endpoint);
            self.core.handle_connection_lost(endpoint, error, now);
        }
    }

    /// Reads every stream whose waker fired, feeding the core.
    fn read_ready_streams(&mut self, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        let mut unread = Vec::new();
        loop {
            self.notifier.take_ready(&mut ready);
            if ready.is_empty() {
                break;
            }
            for stream in ready.drain(..) {
                if self.read_budget == 0 {
                    // Read next poll (its waker will not fire for data already buffered).
                    unread.push(stream);
                } else if !self.read_stream(stream, now) {
                    unread.push(stream);
                }
            }
            if self.read_budget == 0 {
                break;
            }
        }
        ready.append(&mut unread);
        self.ready = ready;
    }

    /// Reads what a stream has buffered; false if it stopped because the read budget ran out
    /// (the rest is read next poll).
    fn read_stream(&mut self, id: StreamId, now: Instant) -> bool {
        let core = &mut self.core;
        let budget = &mut self.read_budget;
        let Some(slot) = self.streams.get_mut(&id) else {
            return true;
        };
        let mut cx = Context::from_waker(&slot.waker);
        // `Some(failure)`: the stream is over (`None` inside: it ended normally).
        let over: Option<Option<(h2::Error, bool)>> = loop {
            match &mut slot.recv {
                Recv::Queued { .. } | Recv::Done => break None,
                Recv::Head(response) => match Pin::new(response).poll(&mut cx) {
                    Poll::Pending => break None,
                    Poll::Ready(Ok(response)) => {
                        let (head, body) = response.into_parts();
                        let end_stream = body.is_end_stream();
                        core.handle_response_headers(
                            id,
                            head.status,
                            &head.headers,
                            end_stream,
                            now,
                        );
                        if end_stream {
                            break Some(None);
                        }
                        slot.recv = Recv::Body(body);
                    }
                    Poll::Ready(Err(e)) => break Some(Some((e, true))),
                },
                Recv::Body(_) if *budget == 0 => return false,
                Recv::Body(body) => match body.poll_data(&mut cx) {
                    Poll::Pending => break None,
                    Poll::Ready(Some(Ok(data))) => {
                        if !slot.manual_flow_control {
                            let _ = body.flow_control().release_capacity(data.len());
                        }
                        *budget = budget.saturating_sub(data.len());
                        let end_stream = body.is_end_stream();
                        core.handle_data(id, data, end_stream, now);
                        if end_stream {
                            break Some(None);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => break Some(Some((e, true))),
                    Poll::Ready(None) => {
                        let Recv::Body(body) = std::mem::replace(&mut slot.recv, Recv::Done) else {
                            unreachable!("matched above")
                        };
                        slot.recv = Recv::Trailers(body);
                    }
                },
                Recv::Trailers(body) => match body.poll_trailers(&mut cx) {
                    Poll::Pending => break None,
                    Poll::Ready(Ok(Some(trailers))) => {
                        core.handle_trailers(id, &trailers, now);
                        break Some(None);
                    }
                    Poll::Ready(Ok(None)) => {
                        core.handle_data(id, Bytes::new(), true, now);
                        break Some(None);
                    }
                    Poll::Ready(Err(e)) => break Some(Some((e, true))),
                },
            }
        };
        if let Some(failure) = over {
            self.streams.remove(&id);
            if let Some((e, request_sent)) = failure {
                self.stream_failed(id, e, request_sent, now);
            }
        }
        true
    }

    /// Reports a failed stream (no longer in `streams`) to the core.
    fn stream_failed(&mut self, id: StreamId, e: h2::Error, request_sent: bool, now: Instant) {
        match stream_failure(e, request_sent) {
            StreamFailure::Reset(reason) => self.core.handle_stream_reset(id, reason, now),
            StreamFailure::Error {
                error,
                request_sent,
            } => self.core.handle_stream_error(id, &error, request_sent, now),
        }
    }

    /// Opens the streams waiting for a slot on this connection, as far as it accepts them.
    fn open_queued(&mut self, endpoint: EndpointId, now: Instant) {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        loop {
            let Some(ConnSlot::Up(conn)) = self.conns.get_mut(&endpoint) else {
                return;
            };
            let Some(&id) = conn.opening.front() else {
                return;
            };
            let queued = self
                .streams
                .get(&id)
                .is_some_and(|s| matches!(s.recv, Recv::Queued { .. }));
            if !queued {
                // Reset before it was opened.
                conn.opening.pop_front();
                continue;
            }
            let ready = match conn.send.poll_ready(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(r) => r,
            };
            conn.opening.pop_front();
            let mut slot = self.streams.remove(&id).expect("checked above");
            let Recv::Queued {
                request,
                body,
                end_stream,
                more,
            } = std::mem::replace(&mut slot.recv, Recv::Done)
            else {
                unreachable!("checked above")
            };
            let opened = ready.and_then(|()| conn.send.send_request(request, false));
            let (response, mut send) = match opened {
                Ok(pair) => pair,
                Err(e) => {
                    self.stream_failed(id, e, false, now);
                    continue;
                }
            };
            let mut failed = None;
            for (data, end) in std::iter::once((body, end_stream)).chain(more) {
                if let Err(e) = send.send_data(data, end) {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                self.stream_failed(id, e, true, now);
                continue;
            }
            slot.send = Some(send);
            slot.recv = Recv::Head(response);
            self.streams.insert(id, slot);
            // A first poll registers the stream's waker.
            self.notifier.stream_ready(id);
        }
    }

    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Unary {
                token,
                start,
                reply,
            } => match start(&mut self.core, now) {
                Ok(call) => {
                    self.pending.insert(call, (token, reply));
                    self.tokens.insert(token, call);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Cancel { token } => {
                if let Some(call) = self.tokens.remove(&token) {
                    self.pending.remove(&call);
                    self.server_streams.remove(&call);
                    self.core.cancel(call, now);
                }
            }
            Command::ServerStream {
                token,
                start,
                items,
            } => match start(&mut self.core, now) {
                Ok(call) => {
                    self.server_streams.insert(call, (token, items));
                    self.tokens.insert(token, call);
                }
                Err(e) => {
                    let _ = items.send(StreamItem::End(Err(e)));
                }
            },
            Command::StreamConsumed { token, bytes } => {
                if let Some(call) = self.tokens.get(&token) {
                    self.core.stream_consumed(*call, bytes);
                }
            }
            Command::SetEndpoints { endpoints, reply } => {
                let _ = reply.send(self.core.set_endpoints(endpoints, now));
            }
            Command::Endpoints { reply } => {
                let _ = reply.send(self.core.endpoints());
            }
            Command::Watch {
                watch,
                reply,
                updates,
                flow,
            } => match self.core.watch(watch, now) {
                Ok(id) => {
                    self.watches.insert(
                        id,
                        WatchSlot {
                            created: Some(reply),
                            updates,
                            flow,
                        },
                    );
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::CancelWatch { watch } => {
                self.watches.remove(&watch);
                self.core.cancel_watch(watch, now);
            }
            Command::WatchConsumed { watch } => self.collect_consumed(watch),
            Command::RequestProgress { reply } => {
                let _ = reply.send(self.core.request_progress(now));
            }
            Command::KeepAlive {
                lease,
                ttl_hint,
                once,
                reply,
                updates,
            } => {
                let started = if once {
                    self.core.keep_alive_once(lease, now)
                } else {
                    self.core.keep_alive(lease, ttl_hint, now)
                };
                if let Ok(id) = &started {
                    self.keepers.insert(*id, (updates, once));
                }
                let _ = reply.send(started);
            }
            Command::StopKeepAlive { keeper } => {
                self.keepers.remove(&keeper);
                self.core.stop_keep_alive(keeper, now);
            }
            Command::LeaseRevoked { lease } => self.core.lease_revoked(lease, now),
        }
    }

    fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Connected {
                endpoint,
                generation,
                established,
            } => {
                let current = matches!(
                    self.conns.get(&endpoint),
                    Some(ConnSlot::Connecting { generation: g, .. }) if *g == generation
                );
                if current {
                    let Established {
                        send,
                        connection,
                        ping_pong,
                    } = *established;
                    self.conns.insert(
                        endpoint,
                        ConnSlot::Up(Box::new(UpConn {
                            send,
                            connection,
                            ping_pong,
                            ping_outstanding: false,
                            opening: VecDeque::new(),
                        })),
                    );
                    self.core.handle_connected(endpoint, now);
                }
            }
            Input::ConnectFailed {
                endpoint,
                generation,
                error,
            } => {
                let current = matches!(
                    self.conns.get(&endpoint),
                    Some(ConnSlot::Connecting { generation: g, .. }) if *g == generation
                );
                if current {
                    self.conns.remove(&endpoint);
                    self.core.handle_connect_failed(endpoint, &error, now);
                }
            }
        }
    }

    fn perform(&mut self, transmit: Transmit, now: Instant) {
        match transmit {
            Transmit::Connect { endpoint, target } => {
                self.next_generation += 1;
                let generation = self.next_generation;
                let tls = match target.scheme {
                    Scheme::Http => None,
                    Scheme::Https => match self.tls_connector() {
                        Ok(tls) => Some(tls),
                        Err(e) => {
                            self.core
                                .handle_connect_failed(endpoint, &e.to_string(), now);
                            return;
                        }
                    },
                };
                let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
                // A connection being replaced is dropped here (the core disconnected it).
                self.drop_conn(endpoint);
                self.conns.insert(
                    endpoint,
                    ConnSlot::Connecting {
                        generation,
                        _cancel: cancel_tx,
                    },
                );
                let task = connect_task(
                    self.rt.clone(),
                    endpoint,
                    generation,
                    target,
                    tls,
                    self.inbox_tx.clone(),
                    cancel_rx,
                );
                self.rt.spawn(Box::pin(task));
            }
            Transmit::OpenStream {
                endpoint,
                stream,
                request,
                body,
                end_stream,
                manual_flow_control,
            } => {
                let Some(ConnSlot::Up(conn)) = self.conns.get_mut(&endpoint) else {
                    self.core
                        .handle_stream_error(stream, "connection not available", false, now);
                    return;
                };
                conn.opening.push_back(stream);
                let waker = Waker::from(Arc::new(StreamWaker {
                    stream,
                    notifier: self.notifier.clone(),
                }));
                self.streams.insert(
                    stream,
                    StreamSlot {
                        endpoint,
                        waker,
                        manual_flow_control,
                        send: None,
                        recv: Recv::Queued {
                            request,
                            body,
                            end_stream,
                            more: Vec::new(),
                        },
                    },
                );
                self.open_queued(endpoint, now);
            }
            Transmit::SendData {
                stream,
                data,
                end_stream,
            } => {
                if let Some(slot) = self.streams.get_mut(&stream) {
                    match (&mut slot.send, &mut slot.recv) {
                        (Some(send), _) => {
                            let _ = send.send_data(data, end_stream);
                        }
                        (None, Recv::Queued { more, .. }) => more.push((data, end_stream)),
                        (None, _) => {}
                    }
                }
            }
            Transmit::ResetStream { stream, reason } => {
                if let Some(slot) = self.streams.remove(&stream) {
                    if let Some(mut send) = slot.send {
                        send.send_reset(reason.into());
                    }
                }
            }
            Transmit::ReleaseCapacity { stream, bytes } => {
                if let Some(slot) = self.streams.get_mut(&stream) {
                    if let Recv::Body(body) | Recv::Trailers(body) = &mut slot.recv {
                        let _ = body.flow_control().release_capacity(bytes);
                    }
                }
            }
            Transmit::Ping { endpoint } => {
                if let Some(ConnSlot::Up(conn)) = self.conns.get_mut(&endpoint) {
                    if !conn.ping_outstanding {
                        if let Some(pp) = conn.ping_pong.as_mut() {
                            if pp.send_ping(h2::Ping::opaque()).is_ok() {
                                conn.ping_outstanding = true;
                                // Polled for the answer in the next round.
                                self.notifier.poke();
                            }
                        }
                    }
                }
            }
            Transmit::Disconnect { endpoint } => self.drop_conn(endpoint),
            _ => {}
        }
    }

    /// Closes a connection (or abandons the attempt) and forgets its streams.
    fn drop_conn(&mut self, endpoint: EndpointId) {
        if let Some(slot) = self.conns.remove(&endpoint) {
            if matches!(slot, ConnSlot::Up(_)) {
                self.streams.retain(|_, s| s.endpoint != endpoint);
            }
        }
    }

    /// Hands the core what a watcher consumed since the last collection, and arranges to be
    /// told of every consumption while the watcher holds its stream paused (see [`WatchFlow`]).
    fn collect_consumed(&mut self, watch: WatchId) {
        let Some(slot) = self.watches.get(&watch) else {
            return;
        };
        let flow = &slot.flow;
        let mut over = self
            .core
            .watch_consumed(watch, flow.consumed.swap(0, SeqCst));
        if over && !flow.report.load(SeqCst) {
            flow.report.store(true, SeqCst);
            over = self
                .core
                .watch_consumed(watch, flow.consumed.swap(0, SeqCst));
        }
        if !over && flow.report.load(SeqCst) {
            flow.report.store(false, SeqCst);
        }
    }

    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.core.poll_transmit() {
                progressed = true;
                self.perform(transmit, now);
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                match event {
                    Event::CallFinished { call, result } => {
                        if let Some((token, reply)) = self.pending.remove(&call) {
                            self.tokens.remove(&token);
                            let _ = reply.send(result);
                        } else if let Some((token, items)) = self.server_streams.remove(&call) {
                            self.tokens.remove(&token);
                            let _ = items.send(StreamItem::End(result.map(|_| ())));
                        }
                    }
                    Event::StreamMessage {
                        call,
                        message,
                        size,
                    } => {
                        let gone = match self.server_streams.get(&call) {
                            Some((_, items)) => {
                                items.send(StreamItem::Message(message, size)).is_err()
                            }
                            None => false,
                        };
                        if gone {
                            if let Some((token, _)) = self.server_streams.remove(&call) {
                                self.tokens.remove(&token);
                            }
                            self.core.cancel(call, now);
                        }
                    }
                    // The list is read on demand with `Client::endpoints`.
                    Event::EndpointsChanged { .. } => {}
                    Event::LeaseKeptAlive { keeper, lease, ttl } => {
                        // A one-shot subscription ends with its renewal (the core forgets
                        // it without an event).
                        let once = match self.keepers.get(&keeper) {
                            Some((tx, once)) => {
                                let _ = tx.send(KeepAliveUpdate::Renewed { lease, ttl });
                                *once
                            }
                            None => false,
                        };
                        if once {
                            self.keepers.remove(&keeper);
                        }
                    }
                    Event::LeaseLost {
                        keeper,
                        lease,
                        reason,
                    } => {
                        if let Some((tx, _)) = self.keepers.remove(&keeper) {
                            let _ =
                                tx.send(KeepAliveUpdate::Ended(Error::LeaseLost { lease, reason }));
                        }
                    }
                    Event::LeaseKeepAliveClosed { keeper, .. } => {
                        if let Some((tx, _)) = self.keepers.remove(&keeper) {
                            let _ = tx.send(KeepAliveUpdate::Ended(Error::ClientClosed));
                        }
                    }
                    Event::WatchCreated { watch, revision } => {
                        if let Some(reply) =
                            self.watches.get_mut(&watch).and_then(|w| w.created.take())
                        {
                            let _ = reply.send(Ok((watch, revision)));
                        }
                    }
                    Event::WatchResponse {
                        watch,
                        response,
                        size,
                        over_limit,
                    } => {
                        let Some(channel) =
                            self.watches.get(&watch).map(|w| w.updates.channel_id())
                        else {
                            self.core.cancel_watch(watch, now);
                            continue;
                        };
                        // Responses for one inbox (a fan-out to a watch set) go in one batch.
                        if channel != self.outbox_channel {
                            self.flush_outbox(now);
                            self.outbox_channel = channel;
                        }
                        self.outbox
                            .push((watch, WatchUpdate::Response(response, size)));
                        // What the watcher consumed is collected only when the core needs it:
                        // when the watcher is over its limit.
                        if over_limit {
                            self.collect_consumed(watch);
                        }
                    }
                    Event::WatchEnded { watch, error } => {
                        // Its responses first.
                        self.flush_outbox(now);
                        if let Some(mut slot) = self.watches.remove(&watch) {
                            match slot.created.take() {
                                Some(reply) => {
                                    let _ = reply.send(Err(error.unwrap_or(Error::Cancelled)));
                                }
                                None => {
                                    let _ = slot.updates.send((watch, WatchUpdate::Ended(error)));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.flush_outbox(now);
            if !progressed {
                return;
            }
        }
    }

    /// Sends the batched responses to their inbox; when its reader is gone, stops their
    /// watchers.
    fn flush_outbox(&mut self, now: Instant) {
        if self.outbox.is_empty() {
            return;
        }
        // Every item goes to the same inbox: any live watcher of the batch holds its sender.
        let Some(slot) = self
            .outbox
            .iter()
            .find_map(|(watch, _)| self.watches.get(watch))
        else {
            self.outbox.clear();
            return;
        };
        if slot.updates.send_all(&mut self.outbox).is_err() {
            for (watch, _) in std::mem::take(&mut self.outbox) {
                if self.watches.remove(&watch).is_some() {
                    self.core.cancel_watch(watch, now);
                }
            }
        }
        self.outbox.clear();
    }

    /// roots) when none were configured.
    fn tls_connector(&mut self) -> Result<TlsConnector, Error> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        let tls = TlsConnector::new(&TlsConfig::default())?;
        self.tls = Some(tls.clone());
        Ok(tls)
    }
}
