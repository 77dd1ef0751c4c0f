//! The driver task: owns the core, performs its transmits with `h2`, feeds it what the
//! connection and stream tasks report, and sleeps until its next deadline.

use std::collections::HashMap;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use etcd_proto_core::{
    CallId, Core, Endpoint, EndpointId, Error, Event, KeepAliveId, Scheme, StreamId, TlsConfig,
    Transmit, Watch, WatchId, WatchResponse,
};
use h2::client::SendRequest;
use tokio::sync::{mpsc, oneshot};

use crate::runtime::{BoxFuture, Runtime};
use crate::stream::{connection_task, stream_task, ConnCmd, Input, StreamCmd, StreamOpen};
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
        updates: mpsc::UnboundedSender<WatchUpdate>,
    },
    CancelWatch {
        watch: WatchId,
    },
    WatchConsumed {
        watch: WatchId,
        bytes: usize,
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

/// What a watcher's channel carries.
pub(crate) enum WatchUpdate {
    Response(WatchResponse, usize),
    Ended(Option<Error>),
}

struct WatchSlot {
    created: Option<oneshot::Sender<Result<(WatchId, i64), Error>>>,
    updates: mpsc::UnboundedSender<WatchUpdate>,
}

struct ConnSlot {
    generation: u64,
    send: Option<SendRequest<Bytes>>,
    /// Dropping this tells the connection task to stop.
    cmds: mpsc::UnboundedSender<ConnCmd>,
}

enum Wake {
    Command(Option<Command>),
    Input(Input),
    Timer,
}

pub(crate) struct Driver<R: Runtime> {
    rt: R,
    core: Core,
    commands: mpsc::UnboundedReceiver<Command>,
    inbox_tx: mpsc::UnboundedSender<Input>,
    inbox_rx: mpsc::UnboundedReceiver<Input>,
    conns: HashMap<EndpointId, ConnSlot>,
    streams: HashMap<StreamId, mpsc::UnboundedSender<StreamCmd>>,
    pending: HashMap<CallId, (u64, oneshot::Sender<Result<Bytes, Error>>)>,
    tokens: HashMap<u64, CallId>,
    server_streams: HashMap<CallId, (u64, mpsc::UnboundedSender<StreamItem>)>,
    next_generation: u64,
    tls: Option<TlsConnector>,
    watches: HashMap<WatchId, WatchSlot>,
    keepers: HashMap<KeepAliveId, mpsc::UnboundedSender<KeepAliveUpdate>>,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        rt: R,
        core: Core,
        tls: Option<TlsConnector>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        Driver {
            rt,
            core,
            commands,
            inbox_tx,
            inbox_rx,
            conns: HashMap::new(),
            streams: HashMap::new(),
            pending: HashMap::new(),
            tokens: HashMap::new(),
            server_streams: HashMap::new(),
            next_generation: 0,
            tls,
            watches: HashMap::new(),
            keepers: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut sleep: Option<(Instant, BoxFuture<()>)> = None;
        let mut commands_open = true;
        loop {
            self.drain();
            if !commands_open
                && self.core.calls_in_progress() == 0
                && self.core.watchers() == 0
                && self.core.kept_leases() == 0
            {
                // Every client handle is gone and nothing is in flight.
                return;
            }
            match self.core.poll_timeout() {
                Some(at) if sleep.as_ref().map(|(d, _)| *d) != Some(at) => {
                    sleep = Some((at, self.rt.sleep_until(at)));
                }
                Some(_) => {}
                None => sleep = None,
            }
            let commands = &mut self.commands;
            let inbox = &mut self.inbox_rx;
            let wake = poll_fn(|cx| {
                if let Poll::Ready(Some(input)) = inbox.poll_recv(cx) {
                    return Poll::Ready(Wake::Input(input));
                }
                if commands_open {
                    if let Poll::Ready(cmd) = commands.poll_recv(cx) {
                        return Poll::Ready(Wake::Command(cmd));
                    }
                }
                if let Some((_, timer)) = sleep.as_mut() {
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                }
                Poll::Pending
            })
            .await;
            let now = self.rt.now();
            match wake {
                Wake::Input(input) => self.handle_input(input, now),
                Wake::Command(Some(cmd)) => self.handle_command(cmd, now),
                Wake::Command(None) => {
                    commands_open = false;
                    self.core.close(now);
                }
                Wake::Timer => {
                    sleep = None;
                    self.core.handle_timeout(now);
                }
            }
            // Take whatever else is already queued before draining once (batching).
            while let Ok(input) = self.inbox_rx.try_recv() {
                self.handle_input(input, now);
            }
            if commands_open {
                while let Ok(cmd) = self.commands.try_recv() {
                    self.handle_command(cmd, now);
                }
            }
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
            } => match self.core.watch(watch, now) {
                Ok(id) => {
                    self.watches.insert(
                        id,
                        WatchSlot {
                            created: Some(reply),
                            updates,
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
            Command::WatchConsumed { watch, bytes } => self.core.watch_consumed(watch, bytes),
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
                    self.keepers.insert(*id, updates);
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
        let core = &mut self.core;
        match input {
            Input::Connected {
                endpoint,
                generation,
                send,
            } => match self.conns.get_mut(&endpoint) {
                Some(slot) if slot.generation == generation => {
                    slot.send = Some(send);
                    core.handle_connected(endpoint, now);
                }
                _ => {}
            },
            Input::ConnectFailed {
                endpoint,
                generation,
                error,
            } => {
                if self.take_conn(endpoint, generation) {
                    self.core.handle_connect_failed(endpoint, &error, now);
                }
            }
            Input::ConnectionLost {
                endpoint,
                generation,
                error,
            } => {
                if self.take_conn(endpoint, generation) {
                    self.core.handle_connection_lost(endpoint, &error, now);
                }
            }
            Input::Pong {
                endpoint,
                generation,
            } => {
                if self.conns.get(&endpoint).map(|s| s.generation) == Some(generation) {
                    core.handle_pong(endpoint, now);
                }
            }
            Input::Headers {
                stream,
                status,
                headers,
                end_stream,
            } => {
                core.handle_response_headers(stream, status, &headers, end_stream, now);
                if end_stream {
                    self.streams.remove(&stream);
                }
            }
            Input::Data {
                stream,
                data,
                end_stream,
            } => {
                core.handle_data(stream, data, end_stream, now);
                if end_stream {
                    self.streams.remove(&stream);
                }
            }
            Input::Trailers { stream, trailers } => {
                core.handle_trailers(stream, &trailers, now);
                self.streams.remove(&stream);
            }
            Input::Reset { stream, reason } => {
                core.handle_stream_reset(stream, reason, now);
                self.streams.remove(&stream);
            }
            Input::StreamError {
                stream,
                error,
                request_sent,
            } => {
                core.handle_stream_error(stream, &error, request_sent, now);
                self.streams.remove(&stream);
            }
        }
    }

    /// Forgets the connection if `generation` is current; stale reports are ignored.
    fn take_conn(&mut self, endpoint: EndpointId, generation: u64) -> bool {
        match self.conns.get(&endpoint) {
            Some(slot) if slot.generation == generation => {
                self.conns.remove(&endpoint);
                true
            }
            _ => false,
        }
    }

    /// Carries out every transmit and delivers every event (the core's drain rule).
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.core.poll_transmit() {
                progressed = true;
                self.perform(transmit);
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
                            let now = self.rt.now();
                            self.core.cancel(call, now);
                        }
                    }
                    // The list is read on demand with `Client::endpoints`.
                    Event::EndpointsChanged { .. } => {}
                    Event::LeaseKeptAlive { keeper, lease, ttl } => {
                        if let Some(tx) = self.keepers.get(&keeper) {
                            let _ = tx.send(KeepAliveUpdate::Renewed { lease, ttl });
                        }
                    }
                    Event::LeaseLost {
                        keeper,
                        lease,
                        reason,
                    } => {
                        if let Some(tx) = self.keepers.remove(&keeper) {
                            let _ =
                                tx.send(KeepAliveUpdate::Ended(Error::LeaseLost { lease, reason }));
                        }
                    }
                    Event::LeaseKeepAliveClosed { keeper, .. } => {
                        if let Some(tx) = self.keepers.remove(&keeper) {
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
                    } => {
                        let delivered = self.watches.get(&watch).is_some_and(|w| {
                            w.updates
                                .send(WatchUpdate::Response(response, size))
                                .is_ok()
                        });
                        if !delivered {
                            // The consumer is gone: stop the watcher.
                            self.watches.remove(&watch);
                            let now = self.rt.now();
                            self.core.cancel_watch(watch, now);
                        }
                    }
                    Event::WatchEnded { watch, error } => {
                        if let Some(mut slot) = self.watches.remove(&watch) {
                            match slot.created.take() {
                                Some(reply) => {
                                    let _ = reply.send(Err(error.unwrap_or(Error::Cancelled)));
                                }
                                None => {
                                    let _ = slot.updates.send(WatchUpdate::Ended(error));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn perform(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Connect { endpoint, target } => {
                self.next_generation += 1;
                let generation = self.next_generation;
                let tls = match target.scheme {
                    Scheme::Http => None,
                    Scheme::Https => match self.tls_connector() {
                        Ok(tls) => Some(tls),
                        Err(e) => {
                            let now = self.rt.now();
                            self.core
                                .handle_connect_failed(endpoint, &e.to_string(), now);
                            return;
                        }
                    },
                };
                let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
                self.conns.insert(
                    endpoint,
                    ConnSlot {
                        generation,
                        send: None,
                        cmds: cmd_tx,
                    },
                );
                let task = connection_task(
                    self.rt.clone(),
                    endpoint,
                    generation,
                    target,
                    tls,
                    self.inbox_tx.clone(),
                    cmd_rx,
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
                let send = self.conns.get(&endpoint).and_then(|s| s.send.clone());
                let Some(send) = send else {
                    let now = self.rt.now();
                    self.core
                        .handle_stream_error(stream, "connection not available", false, now);
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                self.streams.insert(stream, tx);
                let open = StreamOpen {
                    stream,
                    request,
                    body,
                    end_stream,
                    manual_flow_control,
                };
                let task = stream_task(send, open, self.inbox_tx.clone(), rx);
                self.rt.spawn(Box::pin(task));
            }
            Transmit::SendData {
                stream,
                data,
                end_stream,
            } => {
                if let Some(tx) = self.streams.get(&stream) {
                    let _ = tx.send(StreamCmd::Data { data, end_stream });
                }
            }
            Transmit::ResetStream { stream, reason } => {
                if let Some(tx) = self.streams.remove(&stream) {
                    let _ = tx.send(StreamCmd::Reset(reason));
                }
            }
            Transmit::ReleaseCapacity { stream, bytes } => {
                if let Some(tx) = self.streams.get(&stream) {
                    let _ = tx.send(StreamCmd::Release(bytes));
                }
            }
            Transmit::Ping { endpoint } => {
                if let Some(slot) = self.conns.get(&endpoint) {
                    let _ = slot.cmds.send(ConnCmd::Ping);
                }
            }
            Transmit::Disconnect { endpoint } => {
                // Dropping the slot drops `cmds`, which stops the connection task.
                self.conns.remove(&endpoint);
            }
            _ => {}
        }
    }

    /// The TLS connector for `https://` endpoints, built from the default settings (Mozilla
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
